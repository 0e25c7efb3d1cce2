package auth_test

import (
	"context"
	"fmt"
	"net/http/httptest"

	"askgate/internal/auth"
	"askgate/internal/chat"
)

func Example() {
	secret := []byte("a-development-secret-of-32-bytes-or-more")
	v, err := auth.New(context.Background(), auth.Config{Secret: secret})
	if err != nil {
		panic(err)
	}
	token, err := auth.Mint(secret, auth.MintClaims{Subject: "u1", Name: "Ada", Scope: "read:chat"})
	if err != nil {
		panic(err)
	}

	r := httptest.NewRequest("POST", "/graphql", nil)
	r.Header.Set("Authorization", "Bearer "+token)
	viewer, err := v.Authenticate(r)
	if err != nil {
		panic(err)
	}
	fmt.Println(viewer.ID, viewer.Name, viewer.Has(auth.ScopeRead), viewer.Has(auth.ScopeWrite))

	r.Header.Set("Authorization", "Bearer "+token+"x")
	_, err = v.Authenticate(r)
	fmt.Println(chat.ErrorCode(err), chat.ErrorMessage(err))
	// Output:
	// u1 Ada true false
	// UNAUTHENTICATED invalid token
}
