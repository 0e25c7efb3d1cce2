package auth

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"askgate/internal/chat"
)

var testSecret = []byte("a-test-secret-of-more-than-32-bytes!")

// claimsWith returns the claims of a valid token (sub, iat, exp in an hour,
// scope) changed by each of edits.
func claimsWith(edits ...func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub":   "u1",
		"iat":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
		"scope": "read:chat write:chat",
		"name":  "Ada",
		"email": "ada@example.com",
	}
	for _, e := range edits {
		e(c)
	}
	return c
}

func set(k string, v any) func(jwt.MapClaims) { return func(c jwt.MapClaims) { c[k] = v } }
func del(k string) func(jwt.MapClaims)        { return func(c jwt.MapClaims) { delete(c, k) } }

// sign returns claims signed by method with key, with kid in the header
// when it is not empty.
func sign(t testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing a %s token: %v", method.Alg(), err)
	}
	return s
}

func newVerifier(t testing.TB, cfg Config) *Verifier {
	t.Helper()
	v, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

// checkUnauthenticated fails t unless err is an UNAUTHENTICATED *chat.Error
// with message want.
func checkUnauthenticated(t *testing.T, err error, want string) {
	t.Helper()
	var ce *chat.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *chat.Error", err, err)
	}
	if ce.Code != chat.CodeUnauthenticated {
		t.Errorf("code = %s, want %s", ce.Code, chat.CodeUnauthenticated)
	}
	if ce.Message != want {
		t.Errorf("message = %q, want %q (cause: %v)", ce.Message, want, ce.Err)
	}
	t.Logf("cause: %v", ce.Err)
}

func allKeys() []testKey {
	return []testKey{
		{kid: "rsa-1", alg: "RS256", priv: rsaKey()},
		{kid: "pss-1", alg: "PS256", priv: rsaKey()},
		{kid: "ec-1", alg: "ES256", priv: ecKey()},
		{kid: "ec384-1", alg: "ES384", priv: ec384Key()},
		{kid: "ed-1", alg: "EdDSA", priv: edKey()},
	}
}

func TestVerifyHS256(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret})
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claimsWith(set("exp", exp.Unix())))

	got, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := &Viewer{ID: "u1", Name: "Ada", Email: "ada@example.com", Scopes: []string{ScopeRead, ScopeWrite}, ExpiresAt: exp}
	checkViewer(t, got, want)
}

// TestVerifiedTokenUntilExpiry: a token verified once is accepted again,
// as the same viewer, until it expires and no longer after, although the
// leeway would have accepted it a little longer.
func TestVerifiedTokenUntilExpiry(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret, Leeway: 30 * time.Second})
	exp := time.Now().Add(2 * time.Second).Truncate(time.Second).Add(time.Second)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claimsWith(set("exp", exp.Unix())))
	want := &Viewer{ID: "u1", Name: "Ada", Email: "ada@example.com", Scopes: []string{ScopeRead, ScopeWrite}, ExpiresAt: exp}
	for range 2 {
		got, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		checkViewer(t, got, want)
		got.ID = "changed by the caller"
	}
	if _, ok := v.verified.Get(tok); !ok {
		t.Fatal("the verified token was not remembered")
	}
	time.Sleep(time.Until(exp) + 10*time.Millisecond)
	if _, err := v.Verify(tok); err != nil {
		t.Fatalf("within the leeway: %v", err) // verified again, by the parser
	}
	if v.verified.Len() != 1 {
		t.Errorf("%d tokens remembered; want 1", v.verified.Len())
	}
	if other := newVerifier(t, Config{Secret: []byte("another-secret-of-more-than-32-bytes")}); other.verified != nil {
		if _, err := other.Verify(tok); err == nil {
			t.Error("a token remembered by one verifier was accepted by another with a different secret")
		}
	}
}

func checkViewer(t *testing.T, got, want *Viewer) {
	t.Helper()
	if got.ID != want.ID || got.Name != want.Name || got.Email != want.Email ||
		!slices.Equal(got.Scopes, want.Scopes) || !got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("viewer = %+v, want %+v", got, want)
	}
}

func TestVerifyJWKS(t *testing.T) {
	keys := allKeys()
	srv := newJWKSServer(t, keys...)
	v := newVerifier(t, Config{JWKSURL: srv.url(), Secret: testSecret})

	methods := map[string]jwt.SigningMethod{
		"RS256": jwt.SigningMethodRS256,
		"PS256": jwt.SigningMethodPS256,
		"ES256": jwt.SigningMethodES256,
		"ES384": jwt.SigningMethodES384,
		"EdDSA": jwt.SigningMethodEdDSA,
	}
	for _, k := range keys {
		t.Run(k.alg, func(t *testing.T) {
			exp := time.Now().Add(time.Hour).Truncate(time.Second)
			tok := sign(t, methods[k.alg], k.priv, k.kid, claimsWith(set("exp", exp.Unix()), set("sub", "u-"+k.alg)))
			got, err := v.Verify(tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			checkViewer(t, got, &Viewer{ID: "u-" + k.alg, Name: "Ada", Email: "ada@example.com", Scopes: []string{ScopeRead, ScopeWrite}, ExpiresAt: exp})
		})
	}

	t.Run("no kid", func(t *testing.T) {
		tok := sign(t, jwt.SigningMethodES256, ecKey(), "", claimsWith())
		if _, err := v.Verify(tok); err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
}

func TestVerifyRefused(t *testing.T) {
	keys := allKeys()
	octSecret := []byte("a-symmetric-key-served-in-the-jwks!!")
	srv := newJWKSServer(t, append(keys,
		testKey{kid: "ec-noalg", priv: ecKey()},
		testKey{kid: "rsa-weak", alg: "RS256", priv: weakRSAKey()},
		testKey{kid: "rsa-weak-noalg", priv: weakRSAKey()},
		testKey{kid: "oct-1", alg: "HS256", oct: octSecret},
		testKey{kid: "oct-noalg", oct: octSecret},
	)...)
	rsaPub := &rsaKey().PublicKey
	der, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaPub)})
	jwk := keys[0].jwk()

	otherEC := ecKey2()
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claimsWith()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	hs := func(c jwt.MapClaims) string { return sign(t, jwt.SigningMethodHS256, testSecret, "", c) }

	secretOnly := Config{Secret: testSecret}
	jwksOnly := Config{JWKSURL: srv.url()}
	both := Config{Secret: testSecret, JWKSURL: srv.url()}
	strict := Config{Secret: testSecret, Issuer: "https://idp.example", Audience: "askgate"}

	tests := []struct {
		name  string
		cfg   Config
		token string
		want  string
	}{
		{"alg none", secretOnly, none, "invalid token"},
		{"alg none with JWKS", both, none, "invalid token"},
		{"HS256 keyed with RSA public key PEM, JWKS only", jwksOnly, sign(t, jwt.SigningMethodHS256, pemBytes, "rsa-1", claimsWith()), "invalid token"},
		{"HS256 keyed with RSA public key PEM, JWKS and secret", both, sign(t, jwt.SigningMethodHS256, pemBytes, "rsa-1", claimsWith()), "invalid token"},
		{"HS256 keyed with RSA public key PKCS#1 PEM", both, sign(t, jwt.SigningMethodHS256, pkcs1PEM, "rsa-1", claimsWith()), "invalid token"},
		{"HS256 keyed with RSA public key DER", both, sign(t, jwt.SigningMethodHS256, der, "rsa-1", claimsWith()), "invalid token"},
		{"HS256 keyed with RSA modulus", both, sign(t, jwt.SigningMethodHS256, []byte(jwk["n"]), "rsa-1", claimsWith()), "invalid token"},
		{"HS256 without secret", jwksOnly, hs(claimsWith()), "invalid token"},
		{"RS256 without JWKS", secretOnly, sign(t, jwt.SigningMethodRS256, rsaKey(), "rsa-1", claimsWith()), "invalid token"},
		{"wrong secret", secretOnly, sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-more-than-32-bytes"), "", claimsWith()), "invalid token"},
		{"ES256 by a key not in the set, known kid", jwksOnly, sign(t, jwt.SigningMethodES256, otherEC, "ec-1", claimsWith()), "invalid token"},
		{"ES256 by a key not in the set, no kid", jwksOnly, sign(t, jwt.SigningMethodES256, otherEC, "", claimsWith()), "invalid token"},
		{"RS256 naming an EC key", jwksOnly, sign(t, jwt.SigningMethodRS256, rsaKey(), "ec-1", claimsWith()), "invalid token"},
		{"RS256 naming an EC key without alg", jwksOnly, sign(t, jwt.SigningMethodRS256, rsaKey(), "ec-noalg", claimsWith()), "invalid token"},
		{"RS256 by a 1024-bit key", jwksOnly, sign(t, jwt.SigningMethodRS256, weakRSAKey(), "rsa-weak", claimsWith()), "invalid token"},
		{"RS256 by a 1024-bit key without alg", jwksOnly, sign(t, jwt.SigningMethodRS256, weakRSAKey(), "rsa-weak-noalg", claimsWith()), "invalid token"},
		{"HS256 by a symmetric JWKS key, JWKS only", jwksOnly, sign(t, jwt.SigningMethodHS256, octSecret, "oct-1", claimsWith()), "invalid token"},
		{"HS256 by a symmetric JWKS key, JWKS and secret", both, sign(t, jwt.SigningMethodHS256, octSecret, "oct-1", claimsWith()), "invalid token"},
		{"HS256 by a symmetric JWKS key without alg", both, sign(t, jwt.SigningMethodHS256, octSecret, "oct-noalg", claimsWith()), "invalid token"},
		{"RS256 naming the PS256 key", jwksOnly, sign(t, jwt.SigningMethodRS256, rsaKey(), "pss-1", claimsWith()), "invalid token"},
		{"expired", secretOnly, hs(claimsWith(set("exp", time.Now().Add(-time.Hour).Unix()))), "token expired"},
		{"expired beyond leeway", secretOnly, hs(claimsWith(set("exp", time.Now().Add(-40*time.Second).Unix()))), "token expired"},
		{"expired, JWKS", jwksOnly, sign(t, jwt.SigningMethodEdDSA, edKey(), "ed-1", claimsWith(set("exp", time.Now().Add(-time.Hour).Unix()))), "token expired"},
		{"no exp", secretOnly, hs(claimsWith(del("exp"))), "invalid token"},
		{"exp not a number", secretOnly, hs(claimsWith(set("exp", "tomorrow"))), "invalid token"},
		{"nbf beyond leeway", secretOnly, hs(claimsWith(set("nbf", time.Now().Add(2*time.Minute).Unix()))), "token not valid yet"},
		{"iat in the future", secretOnly, hs(claimsWith(set("iat", time.Now().Add(2*time.Minute).Unix()))), "token not valid yet"},
		{"wrong iss", strict, hs(claimsWith(set("iss", "https://evil.example"), set("aud", "askgate"))), "invalid token"},
		{"no iss", strict, hs(claimsWith(set("aud", "askgate"))), "invalid token"},
		{"wrong aud", strict, hs(claimsWith(set("iss", "https://idp.example"), set("aud", "other"))), "invalid token"},
		{"no aud", strict, hs(claimsWith(set("iss", "https://idp.example"))), "invalid token"},
		{"missing sub", secretOnly, hs(claimsWith(del("sub"))), "invalid token"},
		{"empty sub", secretOnly, hs(claimsWith(set("sub", ""))), "invalid token"},
		{"scope not a string", secretOnly, hs(claimsWith(set("scope", 42))), "invalid token"},
		{"garbage", secretOnly, "garbage", "invalid token"},
		{"three garbage segments", secretOnly, "a.b.c", "invalid token"},
		{"tampered payload", secretOnly, tamper(hs(claimsWith())), "invalid token"},
		{"empty", secretOnly, "", "missing bearer token"},
		{"too large", secretOnly, strings.Repeat("a", MaxTokenBytes+1), "token too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, tt.cfg)
			got, err := v.Verify(tt.token)
			if err == nil {
				t.Fatalf("Verify = %+v, want an error", got)
			}
			checkUnauthenticated(t, err, tt.want)
		})
	}
}

// tamper changes the subject of a signed token without re-signing it.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = b64url(`{"sub":"admin","exp":9999999999}`)
	return strings.Join(parts, ".")
}

func TestAuthenticate(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret})
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", claimsWith())

	tests := []struct {
		name    string
		headers []string
		want    string // the error message; empty for success
	}{
		{"bearer", []string{"Bearer " + tok}, ""},
		{"lower-case scheme", []string{"bearer " + tok}, ""},
		{"upper-case scheme", []string{"BEARER " + tok}, ""},
		{"surrounding spaces", []string{"  Bearer   " + tok + " "}, ""},
		{"no header", nil, "missing bearer token"},
		{"empty header", []string{""}, "missing bearer token"},
		{"empty bearer", []string{"Bearer "}, "missing bearer token"},
		{"scheme only", []string{"Bearer"}, "missing bearer token"},
		{"wrong scheme", []string{"Basic dXNlcjpwYXNz"}, "missing bearer token"},
		{"token without scheme", []string{tok}, "missing bearer token"},
		{"two headers", []string{"Bearer " + tok, "Bearer " + tok}, "invalid authorization header"},
		{"bad token", []string{"Bearer garbage"}, "invalid token"},
		{"1 MB header", []string{"Bearer " + strings.Repeat("x", 1<<20)}, "token too large"},
		{"header just over 8 KiB", []string{"Bearer " + strings.Repeat("x", MaxTokenBytes)}, "token too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/graphql", nil)
			for _, h := range tt.headers {
				r.Header.Add("Authorization", h)
			}
			got, err := v.Authenticate(r)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Authenticate: %v", err)
				}
				if got.ID != "u1" {
					t.Errorf("viewer id = %q, want %q", got.ID, "u1")
				}
				return
			}
			checkUnauthenticated(t, err, tt.want)
		})
	}

	t.Run("AuthenticateHeader", func(t *testing.T) {
		got, err := v.AuthenticateHeader("Bearer " + tok)
		if err != nil || got.ID != "u1" {
			t.Fatalf("AuthenticateHeader = %+v, %v; want u1", got, err)
		}
		_, err = v.AuthenticateHeader("")
		checkUnauthenticated(t, err, "missing bearer token")
	})
}

// TestErrorMessagesAreClientSafe checks that library detail stays in the
// cause, out of the message.
func TestErrorMessagesAreClientSafe(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret})
	_, err := v.Verify(sign(t, jwt.SigningMethodHS256, []byte("another-secret-of-more-than-32-bytes"), "", claimsWith()))
	var ce *chat.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a *chat.Error", err)
	}
	if ce.Err == nil {
		t.Errorf("cause is nil; want the library's error for the log")
	}
	if got := chat.ErrorMessage(err); got != "invalid token" {
		t.Errorf("ErrorMessage = %q, want %q", got, "invalid token")
	}
}

func TestLeeway(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		leeway time.Duration
		claims jwt.MapClaims
		want   string // the error message; empty for success
	}{
		{"expired 10s ago, default leeway", 0, claimsWith(set("exp", now.Add(-10*time.Second).Unix())), ""},
		{"expired 10s ago, leeway 30s", 30 * time.Second, claimsWith(set("exp", now.Add(-10*time.Second).Unix())), ""},
		{"expired 10s ago, leeway 1s", time.Second, claimsWith(set("exp", now.Add(-10*time.Second).Unix())), "token expired"},
		{"expired 40s ago, leeway 30s", 30 * time.Second, claimsWith(set("exp", now.Add(-40*time.Second).Unix())), "token expired"},
		{"nbf in 10s, leeway 30s", 30 * time.Second, claimsWith(set("nbf", now.Add(10*time.Second).Unix())), ""},
		{"nbf in 50s, leeway 30s", 30 * time.Second, claimsWith(set("nbf", now.Add(50*time.Second).Unix())), "token not valid yet"},
		{"nbf in 50s, leeway 60s", 60 * time.Second, claimsWith(set("nbf", now.Add(50*time.Second).Unix())), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, Config{Secret: testSecret, Leeway: tt.leeway})
			_, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, "", tt.claims))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			checkUnauthenticated(t, err, tt.want)
		})
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)

	tests := []struct {
		name string
		cfg  Config
	}{
		{"no key", Config{}},
		{"short secret", Config{Secret: []byte("short")}},
		{"leeway over 60s", Config{Secret: testSecret, Leeway: 61 * time.Second}},
		{"negative leeway", Config{Secret: testSecret, Leeway: -time.Second}},
		{"JWKS URL not http", Config{JWKSURL: "file:///etc/passwd"}},
		{"JWKS URL relative", Config{JWKSURL: "/jwks.json"}},
		{"JWKS server down", Config{JWKSURL: down.URL}},
		{"JWKS not found", Config{JWKSURL: notFound.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := New(t.Context(), tt.cfg)
			if err == nil {
				v.Close()
				t.Fatalf("New succeeded, want an error")
			}
		})
	}

	t.Run("leeway of exactly 60s", func(t *testing.T) {
		newVerifier(t, Config{Secret: testSecret, Leeway: 60 * time.Second})
	})
}

func TestScopes(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret})
	tests := []struct {
		name   string
		claims jwt.MapClaims
		want   []string
	}{
		{"scope string", claimsWith(set("scope", "read:chat write:chat")), []string{ScopeRead, ScopeWrite}},
		{"scope with extra spaces", claimsWith(set("scope", "  read:chat   write:chat ")), []string{ScopeRead, ScopeWrite}},
		{"scope array", claimsWith(set("scope", []string{"read:chat"})), []string{ScopeRead}},
		{"scp array", claimsWith(del("scope"), set("scp", []string{"read:chat", "write:chat"})), []string{ScopeRead, ScopeWrite}},
		{"scp string", claimsWith(del("scope"), set("scp", "write:chat read:chat")), []string{ScopeWrite, ScopeRead}},
		{"scope and scp merged", claimsWith(set("scope", "read:chat"), set("scp", []string{"read:chat", "write:chat"})), []string{ScopeRead, ScopeWrite}},
		{"duplicates", claimsWith(set("scope", "read:chat read:chat")), []string{ScopeRead}},
		{"none", claimsWith(del("scope")), nil},
		{"empty", claimsWith(set("scope", "")), nil},
		{"null", claimsWith(set("scope", nil)), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := v.Verify(sign(t, jwt.SigningMethodHS256, testSecret, "", tt.claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !slices.Equal(got.Scopes, tt.want) {
				t.Errorf("scopes = %q, want %q", got.Scopes, tt.want)
			}
			for _, s := range []string{ScopeRead, ScopeWrite} {
				if got, want := got.Has(s), slices.Contains(tt.want, s); got != want {
					t.Errorf("Has(%q) = %v, want %v", s, got, want)
				}
			}
		})
	}
}

func TestJWKSRefreshFindsNewKey(t *testing.T) {
	srv := newJWKSServer(t, testKey{kid: "rsa-1", alg: "RS256", priv: rsaKey()})
	v := newVerifier(t, Config{JWKSURL: srv.url()})
	if got := srv.requests.Load(); got != 1 {
		t.Fatalf("JWKS requests after New = %d, want 1", got)
	}

	// The identity provider rotates in a new key; a token signed with it
	// arrives before the next scheduled refresh.
	srv.add(testKey{kid: "ed-2", alg: "EdDSA", priv: edKey()})
	got, err := v.Verify(sign(t, jwt.SigningMethodEdDSA, edKey(), "ed-2", claimsWith()))
	if err != nil {
		t.Fatalf("Verify with the new key: %v", err)
	}
	if got.ID != "u1" {
		t.Errorf("viewer id = %q, want u1", got.ID)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Errorf("JWKS requests = %d, want 2 (one refresh)", got)
	}
	// The key is now cached: no further request.
	if _, err := v.Verify(sign(t, jwt.SigningMethodEdDSA, edKey(), "ed-2", claimsWith())); err != nil {
		t.Fatalf("Verify again: %v", err)
	}
	if got := srv.requests.Load(); got != 2 {
		t.Errorf("JWKS requests = %d, want still 2", got)
	}
}

func TestJWKSUnknownKIDFloodIsRateLimited(t *testing.T) {
	srv := newJWKSServer(t, testKey{kid: "ec-1", alg: "ES256", priv: ecKey()})
	v := newVerifier(t, Config{JWKSURL: srv.url()})

	start := time.Now()
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		tok := sign(t, jwt.SigningMethodES256, ecKey(), fmt.Sprintf("made-up-%d", i), claimsWith())
		wg.Go(func() {
			_, err := v.Verify(tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if chat.ErrorCode(err) != chat.CodeUnauthenticated {
			t.Fatalf("Verify with an unknown kid: %v, want UNAUTHENTICATED", err)
		}
	}
	// One fetch at start, at most one refresh for the whole flood.
	if got := srv.requests.Load(); got > 2 {
		t.Errorf("JWKS requests = %d for %d unknown kids, want at most 2", got, n)
	}
	// Refused at once rather than queued behind the rate limiter.
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the flood took %v; unknown kids should be refused without waiting", d)
	}
	// Known keys still work.
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, ecKey(), "ec-1", claimsWith())); err != nil {
		t.Errorf("Verify with a known kid after the flood: %v", err)
	}
}

func TestJWKSRefreshStopsWithContext(t *testing.T) {
	srv := newJWKSServer(t, testKey{kid: "ec-1", alg: "ES256", priv: ecKey()})
	ctx, cancel := context.WithCancel(t.Context())
	_, err := New(ctx, Config{JWKSURL: srv.url(), refreshInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return srv.requests.Load() >= 3 })

	cancel()
	time.Sleep(50 * time.Millisecond) // let a refresh in flight finish
	after := srv.requests.Load()
	time.Sleep(100 * time.Millisecond)
	if got := srv.requests.Load(); got != after {
		t.Errorf("JWKS requests went from %d to %d after the context was cancelled", after, got)
	}
}

func TestCloseStopsRefresh(t *testing.T) {
	srv := newJWKSServer(t, testKey{kid: "ec-1", alg: "ES256", priv: ecKey()})
	v := newVerifier(t, Config{JWKSURL: srv.url(), refreshInterval: 10 * time.Millisecond})
	waitFor(t, func() bool { return srv.requests.Load() >= 3 })
	v.Close()
	time.Sleep(50 * time.Millisecond)
	after := srv.requests.Load()
	time.Sleep(100 * time.Millisecond)
	if got := srv.requests.Load(); got != after {
		t.Errorf("JWKS requests went from %d to %d after Close", after, got)
	}
	// Keys already fetched still verify.
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, ecKey(), "ec-1", claimsWith())); err != nil {
		t.Errorf("Verify after Close: %v", err)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMint(t *testing.T) {
	v := newVerifier(t, Config{Secret: testSecret, Issuer: "askgate-dev", Audience: "askgate"})
	tok, err := Mint(testSecret, MintClaims{
		Subject: "u7", Scope: " read:chat  write:chat", Name: "Grace", Email: "grace@example.com",
		TTL: 10 * time.Minute, Issuer: "askgate-dev", Audience: "askgate",
	})
	if err != nil {
		t.Fatalf("Mint: %v", err)
	}
	got, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if got.ID != "u7" || got.Name != "Grace" || got.Email != "grace@example.com" || !slices.Equal(got.Scopes, []string{ScopeRead, ScopeWrite}) {
		t.Errorf("viewer = %+v", got)
	}
	if d := time.Until(got.ExpiresAt); d < 9*time.Minute || d > 10*time.Minute {
		t.Errorf("expires in %v, want about 10m", d)
	}

	bad := []struct {
		name   string
		secret []byte
		c      MintClaims
	}{
		{"no subject", testSecret, MintClaims{}},
		{"short secret", []byte("short"), MintClaims{Subject: "u1"}},
		{"negative TTL", testSecret, MintClaims{Subject: "u1", TTL: -time.Second}},
	}
	for _, tt := range bad {
		if _, err := Mint(tt.secret, tt.c); err == nil {
			t.Errorf("Mint with %s succeeded, want an error", tt.name)
		}
	}
}

func TestViewerContext(t *testing.T) {
	if _, ok := ViewerFrom(t.Context()); ok {
		t.Error("ViewerFrom(empty context) reports a viewer")
	}
	want := &Viewer{ID: "u1", Scopes: []string{ScopeRead}}
	got, ok := ViewerFrom(WithViewer(t.Context(), want))
	if !ok || got != want {
		t.Errorf("ViewerFrom = %v, %v; want %v, true", got, ok, want)
	}
	if _, ok := ViewerFrom(WithViewer(t.Context(), nil)); ok {
		t.Error("ViewerFrom reports a nil viewer")
	}
	if !want.Has(ScopeRead) || want.Has(ScopeWrite) {
		t.Errorf("Has: got read=%v write=%v, want true, false", want.Has(ScopeRead), want.Has(ScopeWrite))
	}
	var none *Viewer
	if none.Has(ScopeRead) {
		t.Error("a nil viewer has a scope")
	}
}

func BenchmarkVerifyHS256(b *testing.B) {
	v := newVerifier(b, Config{Secret: testSecret})
	tok := sign(b, jwt.SigningMethodHS256, testSecret, "", claimsWith())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}
