// Package users finds the profiles of askgate's users: Client asks the HTTP
// user service of the contract, in batches; Directory is the built-in
// directory, kept in the store and filled from token claims.
//
// Both implement chat.UserDirectory and are safe for concurrent use.
package users

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/sony/gobreaker/v2"
	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/sync/errgroup"

	"askgate/internal/chat"
)

// Defaults of Options.
const (
	DefaultTimeout         = 2 * time.Second
	DefaultMaxBatch        = 100
	DefaultBreakerFailures = 5
	DefaultBreakerTimeout  = 10 * time.Second
)

// Limits of a Client.
const (
	// MaxResponseBytes caps the body of a response from the user service.
	MaxResponseBytes = 4 << 20
	// maxParallelBatches bounds the calls one UsersByID makes at once when
	// it splits a long list of ids.
	maxParallelBatches = 4
	// snippetBytes is how much of an error response is kept for the log.
	snippetBytes = 256
)

// unavailable is the only message a client of the gateway ever sees about a
// failure of the user service.
const unavailable = "user service unavailable"

// Options configure a Client. The zero value gives the defaults.
type Options struct {
	// HTTPClient sends the requests. Nil means a client whose keep-alive
	// transport keeps enough idle connections to the user service for
	// hundreds of calls per second.
	HTTPClient *http.Client
	// Timeout bounds each call: zero means DefaultTimeout.
	Timeout time.Duration
	// MaxBatch is the most ids asked for in one call: zero means
	// DefaultMaxBatch. Longer lists are split into several calls.
	MaxBatch int
	// BreakerFailures is the number of consecutive failed calls that opens
	// the circuit breaker: zero means DefaultBreakerFailures. While it is
	// open, calls fail at once without reaching the user service.
	BreakerFailures int
	// BreakerTimeout is how long the breaker stays open before it lets one
	// trial call through: zero means DefaultBreakerTimeout.
	BreakerTimeout time.Duration
	// Logger receives the breaker's state changes. Nil means slog.Default().
	Logger *slog.Logger
}

// Client is a chat.UserDirectory backed by the HTTP user service:
//
//	GET {base}/users?ids=ID1,ID2,… → 200 {"users":[{"id","name","email","avatarUrl"}]}
//
// It asks for all the ids of one UsersByID in one call (several when there
// are more than MaxBatch), forwards the W3C traceparent of the caller's
// context, and stops calling a failing service for a while (circuit
// breaker). Every failure is a *chat.Error with code UPSTREAM_UNAVAILABLE
// whose message says only "user service unavailable"; the detail is in its
// cause, for the log.
//
// A Client is safe for concurrent use.
type Client struct {
	endpoint string // {base}/users
	http     *http.Client
	timeout  time.Duration
	maxBatch int
	breaker  *gobreaker.CircuitBreaker[[]*chat.User]
	prop     propagation.TraceContext
}

// NewClient returns a Client of the user service at baseURL, an http(s) URL
// to which the client appends /users.
func NewClient(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("users: base URL %q is not an http(s) URL", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("users: base URL %q has a query or fragment", baseURL)
	}
	if opts.Timeout < 0 || opts.MaxBatch < 0 || opts.BreakerFailures < 0 || opts.BreakerTimeout < 0 {
		return nil, errors.New("users: negative option")
	}
	c := &Client{
		endpoint: u.JoinPath("users").String(),
		http:     opts.HTTPClient,
		timeout:  cmp.Or(opts.Timeout, DefaultTimeout),
		maxBatch: cmp.Or(opts.MaxBatch, DefaultMaxBatch),
	}
	if c.http == nil {
		c.http = &http.Client{Transport: newTransport()}
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	failures := uint32(cmp.Or(opts.BreakerFailures, DefaultBreakerFailures))
	c.breaker = gobreaker.NewCircuitBreaker[[]*chat.User](gobreaker.Settings{
		Name:        "user-service",
		MaxRequests: 1,
		Timeout:     cmp.Or(opts.BreakerTimeout, DefaultBreakerTimeout),
		ReadyToTrip: func(counts gobreaker.Counts) bool { return counts.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return errors.As(err, new(excludedError)) },
		OnStateChange: func(name string, from, to gobreaker.State) {
			logger.Warn("users: circuit breaker changed state", "breaker", name, "from", from.String(), "to", to.String())
		},
	})
	return c, nil
}

// newTransport returns a keep-alive transport sized for hundreds of calls
// per second to one host.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   2 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          512,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
	}
}

// UsersByID returns the users with the given ids, in any order; unknown ids
// are absent. Duplicate and empty ids are ignored, and so are ids containing
// a comma, which the contract's id list cannot carry.
func (c *Client) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	ids = uniqueIDs(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	if len(ids) <= c.maxBatch {
		return c.call(ctx, ids)
	}

	var batches [][]string
	for len(ids) > 0 {
		n := min(len(ids), c.maxBatch)
		batches = append(batches, ids[:n])
		ids = ids[n:]
	}
	results := make([][]*chat.User, len(batches))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(maxParallelBatches)
	for i, b := range batches {
		g.Go(func() error {
			us, err := c.call(gctx, b)
			results[i] = us
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	var all []*chat.User
	for _, us := range results {
		all = append(all, us...)
	}
	return all, nil
}

// uniqueIDs returns the ids that can be asked for, each once, in their
// first order.
func uniqueIDs(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if id == "" || strings.Contains(id, ",") {
			continue
		}
		if _, ok := seen[id]; ok {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out
}

// call asks the user service for one batch of ids, through the breaker.
func (c *Client) call(ctx context.Context, ids []string) ([]*chat.User, error) {
	users, err := c.breaker.Execute(func() ([]*chat.User, error) { return c.fetch(ctx, ids) })
	if err != nil {
		var ex excludedError
		if errors.As(err, &ex) {
			err = ex.err
		}
		return nil, chat.Wrap(chat.CodeUpstreamUnavailable, err, unavailable)
	}
	return users, nil
}

// excludedError marks a failure that says nothing about the health of the
// user service, so that it does not count against the breaker: the caller
// gave up (its context was cancelled), or the service refused this
// particular request with a 4xx other than 408 and 429. A deadline, the
// caller's or the Client's own, does count: the service was too slow.
type excludedError struct{ err error }

func (e excludedError) Error() string { return e.err.Error() }
func (e excludedError) Unwrap() error { return e.err }

// callerLeft reports whether ctx, the caller's context, was cancelled.
func callerLeft(ctx context.Context) bool {
	return errors.Is(ctx.Err(), context.Canceled)
}

// response is the user service's answer.
type response struct {
	Users []struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Email     string `json:"email"`
		AvatarURL string `json:"avatarUrl"`
	} `json:"users"`
}

// fetch makes one call to the user service.
func (c *Client) fetch(ctx context.Context, ids []string) ([]*chat.User, error) {
	callCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	escaped := make([]string, len(ids))
	for i, id := range ids {
		escaped[i] = url.QueryEscape(id)
	}
	req, err := http.NewRequestWithContext(callCtx, http.MethodGet, c.endpoint+"?ids="+strings.Join(escaped, ","), nil)
	if err != nil {
		return nil, fmt.Errorf("users: building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "askgate")
	c.prop.Inject(ctx, propagation.HeaderCarrier(req.Header))

	resp, err := c.http.Do(req)
	if err != nil {
		err = fmt.Errorf("users: GET %s (%d ids): %w", c.endpoint, len(ids), err)
		if callerLeft(ctx) {
			return nil, excludedError{err}
		}
		return nil, err
	}
	defer func() {
		// Drain a little so that the connection can be reused.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()

	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, snippetBytes))
		err := fmt.Errorf("users: GET %s (%d ids): status %d: %q", c.endpoint, len(ids), resp.StatusCode, snippet)
		if resp.StatusCode >= 400 && resp.StatusCode < 500 &&
			resp.StatusCode != http.StatusRequestTimeout && resp.StatusCode != http.StatusTooManyRequests {
			return nil, excludedError{err}
		}
		return nil, err
	}

	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		err = fmt.Errorf("users: GET %s (%d ids): reading the response: %w", c.endpoint, len(ids), err)
		if callerLeft(ctx) {
			return nil, excludedError{err}
		}
		return nil, err
	}
	if len(body) > MaxResponseBytes {
		return nil, fmt.Errorf("users: GET %s (%d ids): response over %d bytes", c.endpoint, len(ids), MaxResponseBytes)
	}
	var r response
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("users: GET %s (%d ids): decoding the response: %w", c.endpoint, len(ids), err)
	}

	// Keep only users that were asked for, each once.
	wanted := make(map[string]bool, len(ids))
	for _, id := range ids {
		wanted[id] = true
	}
	users := make([]*chat.User, 0, len(r.Users))
	for _, u := range r.Users {
		if !wanted[u.ID] {
			continue
		}
		wanted[u.ID] = false
		users = append(users, &chat.User{ID: u.ID, Name: u.Name, Email: u.Email, AvatarURL: u.AvatarURL})
	}
	return users, nil
}
