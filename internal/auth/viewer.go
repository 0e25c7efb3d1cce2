// Package auth verifies the JSON Web Tokens that authenticate askgate's
// clients and carries the resulting Viewer through a request's context.
//
// A Verifier accepts HS256 tokens signed with a shared secret and RS256,
// PS256, ES256, ES384 and EdDSA tokens whose public keys it reads from a
// JWKS endpoint. Every failure is a *chat.Error with code UNAUTHENTICATED
// and a short message that is safe to show to a client; the reason, for the
// log, is the error's cause.
package auth

import (
	"context"
	"slices"
	"time"

	"askgate/internal/chat"
)

// The scopes of the public contract, found in a token's scope or scp claim.
const (
	// ScopeRead allows reading the viewer's conversations and messages.
	ScopeRead = "read:chat"
	// ScopeWrite allows asking, renaming, cancelling and deleting.
	ScopeWrite = "write:chat"
)

// Viewer is the authenticated user of a request, as their access token
// describes them.
type Viewer struct {
	// ID is the token's subject (sub); it is never empty.
	ID string
	// Name and Email come from the name and email claims, when present.
	Name  string
	Email string
	// Scopes are the token's scopes, without duplicates.
	Scopes []string
	// ExpiresAt is when the token expires.
	ExpiresAt time.Time
}

// Has reports whether the viewer's token grants scope. A nil Viewer has no
// scopes.
func (v *Viewer) Has(scope string) bool {
	return v != nil && slices.Contains(v.Scopes, scope)
}

// User returns the viewer as a user of the directory, built from the token's
// claims.
func (v *Viewer) User() *chat.User {
	return &chat.User{ID: v.ID, Name: v.Name, Email: v.Email}
}

type viewerKey struct{}

// WithViewer returns a copy of ctx that carries v.
func WithViewer(ctx context.Context, v *Viewer) context.Context {
	return context.WithValue(ctx, viewerKey{}, v)
}

// ViewerFrom returns the viewer stored in ctx by WithViewer, and whether
// there is one. A nil viewer stored in ctx counts as none.
func ViewerFrom(ctx context.Context) (*Viewer, bool) {
	v, ok := ctx.Value(viewerKey{}).(*Viewer)
	return v, ok && v != nil
}
