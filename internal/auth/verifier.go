package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"

	"askgate/internal/chat"
)

// Limits and defaults of a Verifier.
const (
	// MaxTokenBytes is the largest Authorization header value, and so the
	// largest token, that a Verifier looks at. Anything longer is refused
	// before it is parsed.
	MaxTokenBytes = 8 << 10
	// MinSecretBytes is the shortest HS256 secret accepted: RFC 7518,
	// section 3.2, requires a key at least as long as the hash output.
	MinSecretBytes = 32
	// DefaultLeeway is the clock skew tolerated when Config.Leeway is zero.
	DefaultLeeway = 30 * time.Second
	// MaxLeeway is the largest clock skew a Config may ask for.
	MaxLeeway = 60 * time.Second
)

// JWKS fetching. The key set is fetched once by New, again every
// jwksRefreshInterval in the background, and again when a token names a key
// id the set does not hold — but such refreshes happen at most once every
// jwksUnknownKIDInterval, so that tokens with made-up key ids cannot turn the
// gateway into a flood of requests to the identity provider.
const (
	jwksRefreshInterval    = time.Hour
	jwksUnknownKIDInterval = 30 * time.Second
	jwksHTTPTimeout        = 10 * time.Second
	// jwksRefreshWaitMax bounds how long a request waits for the
	// unknown-kid rate limiter and the refresh it allows, together.
	jwksRefreshWaitMax = 5 * time.Second
	// jwksMaxBytes caps the size of a JWKS document.
	jwksMaxBytes = 1 << 20
	// minRSABits is the smallest RSA modulus accepted from the key set.
	minRSABits = 2048
)

const algHS256 = "HS256"

// jwksAlgs are the algorithms accepted for tokens verified with the key set.
var jwksAlgs = []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"}

// Config configures a Verifier. At least one of Secret and JWKSURL must be
// set. A token's alg header decides which of the two verifies it: HS256
// tokens only ever use Secret, every other algorithm only the key set, so a
// public key can never serve as an HMAC secret.
type Config struct {
	// Secret is the HS256 key, at least MinSecretBytes long. Empty means
	// HS256 tokens are refused.
	Secret []byte
	// JWKSURL is the http(s) address of a JSON Web Key Set whose keys verify
	// RS256, PS256, ES256, ES384 and EdDSA tokens. Empty means such tokens
	// are refused.
	JWKSURL string
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
	// Leeway is the clock skew tolerated on exp, nbf and iat: zero means
	// DefaultLeeway; it may not exceed MaxLeeway.
	Leeway time.Duration
	// HTTPClient fetches the key set. Nil means a client with a ten-second
	// timeout.
	HTTPClient *http.Client
	// Logger receives failures to refresh the key set. Nil means
	// slog.Default().
	Logger *slog.Logger

	// refreshInterval overrides jwksRefreshInterval, for tests.
	refreshInterval time.Duration
}

// Verifier checks access tokens. It is safe for concurrent use.
type Verifier struct {
	secret []byte
	jwks   keyfunc.Keyfunc
	parser *jwt.Parser
	ctx    context.Context
	cancel context.CancelFunc
	// verified keeps the viewers of tokens already verified, by their
	// exact text, until the tokens expire; nil with a JWKS, whose keys can
	// be withdrawn before the tokens they signed expire.
	verified *lru.Cache[string, Viewer]
}

// verifiedTokens bounds the verified tokens a Verifier remembers. A
// client sends the same token with every request until it expires, and
// checking an HS256 signature and decoding the claims again each time is a
// noticeable part of serving a small request.
const verifiedTokens = 4096

// New returns a Verifier for cfg. When cfg.JWKSURL is set, New fetches the
// key set before it returns and fails if it cannot — a wrong URL is a
// configuration error best found at start-up — then keeps it fresh from a
// background goroutine that runs until ctx is cancelled or Close is called.
func New(ctx context.Context, cfg Config) (*Verifier, error) {
	if len(cfg.Secret) == 0 && cfg.JWKSURL == "" {
		return nil, errors.New("auth: no key to verify tokens with: set a secret or a JWKS URL")
	}
	if len(cfg.Secret) > 0 && len(cfg.Secret) < MinSecretBytes {
		return nil, fmt.Errorf("auth: the HS256 secret is %d bytes long; it must be at least %d", len(cfg.Secret), MinSecretBytes)
	}
	switch {
	case cfg.Leeway < 0:
		return nil, fmt.Errorf("auth: negative leeway %v", cfg.Leeway)
	case cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("auth: leeway %v is over the maximum of %v", cfg.Leeway, MaxLeeway)
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultLeeway
	}

	v := &Verifier{}
	v.ctx, v.cancel = context.WithCancel(ctx)
	var methods []string
	if len(cfg.Secret) > 0 {
		v.secret = slices.Clone(cfg.Secret)
		methods = append(methods, algHS256)
	}
	if cfg.JWKSURL != "" {
		kf, err := newJWKS(v.ctx, cfg)
		if err != nil {
			v.cancel()
			return nil, err
		}
		v.jwks = kf
		methods = append(methods, jwksAlgs...)
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)
	if v.jwks == nil {
		v.verified, _ = lru.New[string, Viewer](verifiedTokens) // size > 0
	}
	return v, nil
}

// newJWKS fetches the key set at cfg.JWKSURL and starts refreshing it until
// ctx is done.
func newJWKS(ctx context.Context, cfg Config) (keyfunc.Keyfunc, error) {
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("auth: JWKS URL %q is not an http(s) URL", cfg.JWKSURL)
	}
	client := &http.Client{Timeout: jwksHTTPTimeout}
	if cfg.HTTPClient != nil {
		c := *cfg.HTTPClient
		client = &c
	}
	base := client.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	client.Transport = limitBodyTransport{base: base, max: jwksMaxBytes}

	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	interval := jwksRefreshInterval
	if cfg.refreshInterval > 0 {
		interval = cfg.refreshInterval
	}
	failOnFirst := false
	kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{cfg.JWKSURL}, keyfunc.Override{
		Client:                    client,
		HTTPTimeout:               jwksHTTPTimeout,
		NoErrorReturnFirstHTTPReq: &failOnFirst,
		RateLimitWaitMax:          jwksRefreshWaitMax,
		RefreshInterval:           interval,
		RefreshUnknownKID:         rate.NewLimiter(rate.Every(jwksUnknownKIDInterval), 1),
		RefreshErrorHandlerFunc: func(u string) func(context.Context, error) {
			return func(ctx context.Context, err error) {
				logger.WarnContext(ctx, "auth: cannot refresh the JWKS", "url", u, "error", err)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("auth: cannot fetch the JWKS at %s: %w", cfg.JWKSURL, err)
	}
	return kf, nil
}

// Close stops refreshing the key set in the background. Cancelling the
// context given to New does the same. Tokens can still be verified with the
// keys already fetched.
func (v *Verifier) Close() { v.cancel() }

// Authenticate verifies the bearer token in r's Authorization header.
func (v *Verifier) Authenticate(r *http.Request) (*Viewer, error) {
	values := r.Header.Values("Authorization")
	if len(values) > 1 {
		return nil, unauthenticated("invalid authorization header", errors.New("more than one Authorization header"))
	}
	var h string
	if len(values) == 1 {
		h = values[0]
	}
	return v.authenticate(r.Context(), h)
}

// AuthenticateHeader verifies the bearer token in value, an Authorization
// header's value ("Bearer <JWT>", scheme case-insensitive), such as the
// authorization field of a WebSocket connection_init payload.
func (v *Verifier) AuthenticateHeader(value string) (*Viewer, error) {
	return v.authenticate(v.ctx, value)
}

func (v *Verifier) authenticate(ctx context.Context, h string) (*Viewer, error) {
	if len(h) > MaxTokenBytes {
		return nil, unauthenticated("token too large", fmt.Errorf("authorization header of %d bytes", len(h)))
	}
	h = strings.TrimSpace(h)
	if h == "" {
		return nil, unauthenticated("missing bearer token", nil)
	}
	scheme, token, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, unauthenticated("missing bearer token", errors.New("authorization scheme is not Bearer"))
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, unauthenticated("missing bearer token", errors.New("empty bearer token"))
	}
	return v.verify(ctx, token)
}

// Verify checks token — its signature, algorithm and claims — and returns
// the viewer it describes.
func (v *Verifier) Verify(token string) (*Viewer, error) {
	return v.verify(v.ctx, token)
}

// claims are the claims a token may carry.
type claims struct {
	jwt.RegisteredClaims
	// Scope is a space-separated list (RFC 8693); an array is accepted too.
	Scope jwt.ClaimStrings `json:"scope,omitempty"`
	// Scp is an array of scopes (or a space-separated string), as some
	// identity providers send them.
	Scp   jwt.ClaimStrings `json:"scp,omitempty"`
	Name  string           `json:"name,omitempty"`
	Email string           `json:"email,omitempty"`
}

func (v *Verifier) verify(ctx context.Context, token string) (*Viewer, error) {
	if len(token) > MaxTokenBytes {
		return nil, unauthenticated("token too large", fmt.Errorf("token of %d bytes", len(token)))
	}
	if token == "" {
		return nil, unauthenticated("missing bearer token", nil)
	}
	if v.verified != nil {
		// A token verified before is valid until it expires (not before
		// and issued at are in the past by then); the leeway only makes
		// verification accept it a little longer.
		if vw, ok := v.verified.Get(token); ok && time.Now().Before(vw.ExpiresAt) {
			return &vw, nil
		}
	}
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.keyfunc(ctx)); err != nil {
		switch {
		case errors.Is(err, jwt.ErrTokenExpired):
			return nil, unauthenticated("token expired", err)
		case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
			return nil, unauthenticated("token not valid yet", err)
		}
		return nil, unauthenticated("invalid token", err)
	}
	if c.Subject == "" {
		return nil, unauthenticated("invalid token", errors.New("token has no subject"))
	}
	if !chat.ValidID(c.Subject) {
		return nil, unauthenticated("invalid token", errors.New("token subject is not a valid user id"))
	}
	vw := &Viewer{
		ID:     c.Subject,
		Name:   c.Name,
		Email:  c.Email,
		Scopes: scopes(c.Scope, c.Scp),
	}
	if c.ExpiresAt != nil {
		vw.ExpiresAt = c.ExpiresAt.Time
		if v.verified != nil {
			v.verified.Add(token, *vw)
		}
	}
	return vw, nil
}

// scopes returns the scopes listed in the scope and scp claims, each entry
// of which may hold several space-separated scopes, without duplicates.
func scopes(lists ...jwt.ClaimStrings) []string {
	var out []string
	for _, l := range lists {
		for _, s := range l {
			for _, f := range strings.Fields(s) {
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
		}
	}
	return out
}

// keyfunc returns the jwt.Keyfunc that picks the key for a token by its
// algorithm. The parser has already refused any algorithm not configured.
func (v *Verifier) keyfunc(ctx context.Context) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		if alg == algHS256 {
			if v.secret == nil {
				return nil, errors.New("HS256 is not enabled")
			}
			return v.secret, nil
		}
		if v.jwks == nil || !slices.Contains(jwksAlgs, alg) {
			return nil, fmt.Errorf("algorithm %s is not enabled", alg)
		}
		key, err := v.jwks.KeyfuncCtx(ctx)(t)
		if err != nil {
			return nil, err
		}
		if set, ok := key.(jwt.VerificationKeySet); ok {
			// No kid: try every key of the set that fits the algorithm.
			var fit jwt.VerificationKeySet
			for _, k := range set.Keys {
				if keyFits(alg, k) {
					fit.Keys = append(fit.Keys, k)
				}
			}
			if len(fit.Keys) == 0 {
				return nil, fmt.Errorf("no key in the JWKS fits %s", alg)
			}
			return fit, nil
		}
		if !keyFits(alg, key) {
			return nil, fmt.Errorf("the JWKS key of kid %v does not fit %s", t.Header["kid"], alg)
		}
		return key, nil
	}
}

// keyFits reports whether key is a public key of the type and strength alg
// needs.
func keyFits(alg string, key any) bool {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return (alg == "RS256" || alg == "PS256") && k.N != nil && k.N.BitLen() >= minRSABits
	case *ecdsa.PublicKey:
		return (alg == "ES256" && k.Curve == elliptic.P256()) || (alg == "ES384" && k.Curve == elliptic.P384())
	case ed25519.PublicKey:
		return alg == "EdDSA" && len(k) == ed25519.PublicKeySize
	}
	return false
}

// unauthenticated returns an UNAUTHENTICATED error with a client-safe message
// and the cause for the log.
func unauthenticated(message string, cause error) *chat.Error {
	return chat.Wrap(chat.CodeUnauthenticated, cause, message)
}

// limitBodyTransport caps the size of response bodies.
type limitBodyTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitBodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	resp.Body = limitedBody{Reader: io.LimitReader(resp.Body, t.max), Closer: resp.Body}
	return resp, nil
}

type limitedBody struct {
	io.Reader
	io.Closer
}
