package server_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"askgate/internal/auth"
	"askgate/internal/chat"
)

// jwksServer serves the public half of key as a JWKS with kid "k1".
func jwksServer(t *testing.T, key *rsa.PrivateKey) string {
	t.Helper()
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	set := map[string]any{"keys": []any{map[string]any{
		"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
		"n": b64(key.N.Bytes()), "e": b64(big.NewInt(int64(key.E)).Bytes()),
	}}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims, header map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	for k, v := range header {
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestBadTokensAreRefusedBeforeAnythingRuns: every bad token gets 401 with
// a Bearer challenge and UNAUTHENTICATED, and neither the store nor the user
// service is touched.
func TestBadTokensAreRefusedBeforeAnythingRuns(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{authConfig: &auth.Config{
		Secret: testSecret, JWKSURL: jwksServer(t, key), Issuer: "https://issuer.example", Audience: "askgate",
	}})
	now := time.Now()
	good := func() jwt.MapClaims {
		return jwt.MapClaims{
			"sub": "alice", "scope": "read:chat write:chat", "iss": "https://issuer.example", "aud": "askgate",
			"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		}
	}
	with := func(k string, v any) jwt.MapClaims { c := good(); c[k] = v; return c }
	without := func(k string) jwt.MapClaims { c := good(); delete(c, k); return c }
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(&key.PublicKey))})

	// The good tokens pass, so the failures below are the tokens' fault.
	for name, tok := range map[string]string{
		"HS256": sign(t, jwt.SigningMethodHS256, testSecret, good(), nil),
		"RS256": sign(t, jwt.SigningMethodRS256, key, good(), map[string]any{"kid": "k1"}),
	} {
		if r := e.post("Bearer "+tok, `{ conversations { totalCount } }`, nil); r.Status != 200 || len(r.Errors) > 0 {
			t.Fatalf("good %s token: status %d, errors %+v", name, r.Status, r.Errors)
		}
	}

	noneTok := func() string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, good()).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}()
	cases := []struct {
		name, header string
	}{
		{"no header", ""},
		{"alg none", "Bearer " + noneTok},
		{"HS256 signed with the RSA public key", "Bearer " + sign(t, jwt.SigningMethodHS256, pubPEM, good(), map[string]any{"kid": "k1"})},
		{"wrong secret", "Bearer " + sign(t, jwt.SigningMethodHS256, []byte("another-secret-that-is-long-enough-too"), good(), nil)},
		{"expired", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("exp", now.Add(-time.Hour).Unix()), nil)},
		{"no exp", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, without("exp"), nil)},
		{"future nbf", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("nbf", now.Add(10*time.Minute).Unix()), nil)},
		{"wrong iss", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("iss", "https://evil.example"), nil)},
		{"wrong aud", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("aud", "someone-else"), nil)},
		{"no sub", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, without("sub"), nil)},
		{"sub with a NUL", "Bearer " + sign(t, jwt.SigningMethodHS256, testSecret, with("sub", "ali\x00ce"), nil)},
		{"garbage", "Bearer not.a.jwt"},
		{"empty bearer", "Bearer "},
		{"basic scheme", "Basic YWxpY2U6c2VjcmV0"},
		{"1 MB header", "Bearer " + strings.Repeat("a", 1<<20)},
	}
	storeBefore, usersBefore := e.Store.Calls(), e.Users.Calls()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post(tc.header, `{ conversations { totalCount } } `, nil)
			if r.Status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", r.Status)
			}
			if got := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
				t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
			}
			if got := r.codes(); len(got) != 1 || got[0] != "UNAUTHENTICATED" {
				t.Errorf("codes = %v, want [UNAUTHENTICATED]", got)
			}
			if r.Data != nil {
				t.Errorf("data = %s, want none", r.Data)
			}
		})
	}
	if got := e.Store.Calls() - storeBefore; got != 0 {
		t.Errorf("store calls during refused requests = %d, want 0", got)
	}
	if got := e.Users.Calls() - usersBefore; got != 0 {
		t.Errorf("user service calls during refused requests = %d, want 0", got)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestReadScopeCannotWrite: a read:chat token gets FORBIDDEN on every
// mutation and nothing changes.
func TestReadScopeCannotWrite(t *testing.T) {
	e := newEnv(t, envOptions{})
	var started struct {
		StartConversation struct{ Conversation struct{ ID, Title string } }
	}
	e.do("alice", `mutation { startConversation(input: {title: "mine"}) { conversation { id title } } }`, nil, &started)
	id := started.StartConversation.Conversation.ID

	readOnly := "Bearer " + e.token("alice", auth.ScopeRead)
	for _, op := range []string{
		`mutation { startConversation(input: {title: "new"}) { conversation { id } } }`,
		`mutation($id: ID!) { renameConversation(input: {id: $id, title: "renamed"}) { id } }`,
		`mutation($id: ID!) { deleteConversation(id: $id) }`,
	} {
		before := e.Store.Calls()
		r := e.post(readOnly, op, map[string]any{"id": id})
		if got := r.codes(); len(got) != 1 || got[0] != "FORBIDDEN" {
			t.Errorf("%s: codes = %v, want [FORBIDDEN]", op, got)
		}
		if got := e.Store.Calls() - before; got != 0 {
			t.Errorf("%s: %d store calls, want 0", op, got)
		}
	}
	var list struct {
		Conversations struct {
			TotalCount int
			Nodes      []struct{ Title string }
		}
	}
	e.do("alice", `{ conversations { totalCount nodes { title } } }`, nil, &list)
	if list.Conversations.TotalCount != 1 || list.Conversations.Nodes[0].Title != "mine" {
		t.Errorf("after refused writes: %+v, want the one conversation, unchanged", list.Conversations)
	}

	// And a token with write:chat only cannot read: neither at the root
	// nor through what a mutation returns.
	if err := e.Store.AddMessages(context.Background(), "alice", &chat.Message{
		ConversationID: mustLocal(t, id), Role: chat.RoleUser, AuthorID: "alice", Content: "secret question", Status: chat.StatusComplete,
	}); err != nil {
		t.Fatal(err)
	}
	writeOnly := "Bearer " + e.token("alice", auth.ScopeWrite)
	r := e.post(writeOnly, `{ conversations { totalCount } }`, nil)
	if got := r.codes(); len(got) != 1 || got[0] != "FORBIDDEN" {
		t.Errorf("write-only read: codes = %v, want [FORBIDDEN]", got)
	}
	r = e.post(writeOnly, `mutation($id: ID!) { renameConversation(input: {id: $id, title: "mine"}) {
		id lastMessage { content } messages { nodes { content } } } }`, map[string]any{"id": id})
	if strings.Contains(string(r.Body), "secret question") {
		t.Errorf("a write-only token read messages through a mutation: %s", r.Body)
	}
	if got := r.codes(); len(got) == 0 || got[0] != "FORBIDDEN" {
		t.Errorf("write-only nested read: codes = %v, want FORBIDDEN", got)
	}
}

// mustLocal returns the local id of a conversation's global id.
func mustLocal(t *testing.T, gid string) string {
	t.Helper()
	id, err := chat.DecodeNodeIDOf(chat.KindConversation, gid)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
