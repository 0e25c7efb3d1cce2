package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultTTL is the lifetime of a token minted with a zero MintClaims.TTL.
const DefaultTTL = time.Hour

// MintClaims describes a token to mint.
type MintClaims struct {
	// Subject is the user's id (sub); it is required.
	Subject string
	// Scope is a space-separated list of scopes, such as
	// "read:chat write:chat".
	Scope string
	// Name and Email, when set, become the name and email claims.
	Name  string
	Email string
	// TTL is how long the token is valid: zero means DefaultTTL.
	TTL time.Duration
	// Issuer and Audience, when set, become the iss and aud claims.
	Issuer   string
	Audience string
}

// Mint returns an HS256 token for c signed with secret, for development and
// tests: askgate token uses it. The token is issued now and expires after
// c.TTL.
func Mint(secret []byte, c MintClaims) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("auth: the HS256 secret is %d bytes long; it must be at least %d", len(secret), MinSecretBytes)
	}
	if c.Subject == "" {
		return "", errors.New("auth: a token needs a subject")
	}
	switch {
	case c.TTL < 0:
		return "", fmt.Errorf("auth: negative TTL %v", c.TTL)
	case c.TTL == 0:
		c.TTL = DefaultTTL
	}
	now := time.Now()
	claims := jwt.MapClaims{
		"sub": c.Subject,
		"iat": now.Unix(),
		"exp": now.Add(c.TTL).Unix(),
	}
	if s := strings.Join(strings.Fields(c.Scope), " "); s != "" {
		claims["scope"] = s
	}
	if c.Name != "" {
		claims["name"] = c.Name
	}
	if c.Email != "" {
		claims["email"] = c.Email
	}
	if c.Issuer != "" {
		claims["iss"] = c.Issuer
	}
	if c.Audience != "" {
		claims["aud"] = c.Audience
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(secret)
}
