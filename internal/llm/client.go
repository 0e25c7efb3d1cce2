// Package llm provides askgate's language model backends, the two
// implementations of chat.LLM: Client streams answers from any
// OpenAI-compatible Chat Completions server, and Demo is the built-in
// offline backend used when none is configured.
//
// The Chat Completions protocol is written by hand here, on net/http and
// bufio: what askgate needs of it (one streaming request read as
// server-sent events, and the model list) is small, and an SDK would pull a
// large dependency tree into the gateway.
package llm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"golang.org/x/sync/singleflight"

	"askgate/internal/chat"
)

// Defaults of Options.
const (
	DefaultRetries           = 2
	DefaultBackoff           = 200 * time.Millisecond
	DefaultFirstTokenTimeout = 30 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultModelsTTL         = 5 * time.Minute
)

// MaxRetryWait caps the wait before a retry, whether it comes from the
// backoff or from the backend's Retry-After.
const MaxRetryWait = 5 * time.Second

// Limits of a Client.
const (
	// maxEventBytes caps the data of one server-sent event.
	maxEventBytes = 1 << 20
	// maxBodyBytes caps the body of a model list or of an error response.
	maxBodyBytes = 4 << 20
	// snippetBytes is how much of an upstream body an error's cause keeps,
	// for the log.
	snippetBytes = 256
	// modelsTimeout bounds one fetch of the model list.
	modelsTimeout = 10 * time.Second
	// modelsRetry is how long a stale model list is served after a failed
	// refresh before the next attempt (at most the TTL).
	modelsRetry = 30 * time.Second
)

// The messages clients see. Upstream details only ever go in the cause of
// a *chat.Error, for the log.
const (
	msgUnavailable = "the language model is unavailable"
	msgNoStart     = "the language model did not start answering in time"
	msgStalled     = "the language model stopped answering"
	msgCut         = "the language model's answer was cut off"
	msgFailed      = "the language model failed while answering"
)

var (
	// errTimeout is the cancellation cause of a stream whose timer fired.
	errTimeout = errors.New("llm: timeout")
	// errClosed is returned by Next after Close.
	errClosed = chat.Wrap(chat.CodeInternal, errors.New("llm: Next called after Close"), "the answer stream is closed")
)

var (
	_ chat.LLM              = (*Client)(nil)
	_ chat.LLM              = (*Demo)(nil)
	_ chat.CompletionStream = (*stream)(nil)
	_ chat.CompletionStream = (*demoStream)(nil)
)

// Options configure a Client. The zero value gives the defaults.
type Options struct {
	// APIKey, when set, is sent as "Authorization: Bearer <APIKey>".
	APIKey string
	// DefaultModel is the model of requests that name none, listed first
	// by Models. Empty means the first model the backend lists.
	DefaultModel string
	// HTTPClient sends the requests. Nil means a client with a keep-alive
	// transport and no overall timeout: the Client's own timers bound the
	// wait for each token, never the length of an answer. A client's
	// Timeout, if set, would cut long answers.
	HTTPClient *http.Client
	// Retries is how many times a request the backend refused (429, 500,
	// 502, 503, 504) or could not be sent is retried, with exponential
	// backoff and jitter: zero means DefaultRetries, a negative value none.
	Retries int
	// Backoff is the wait before the first retry, doubled for each next
	// one: zero means DefaultBackoff. A Retry-After from the backend
	// replaces it. Either is capped at MaxRetryWait.
	Backoff time.Duration
	// FirstTokenTimeout bounds the time from sending a request to the
	// first piece of text, response headers included: zero means
	// DefaultFirstTokenTimeout.
	FirstTokenTimeout time.Duration
	// IdleTimeout bounds the wait for each next piece of text: zero means
	// DefaultIdleTimeout.
	IdleTimeout time.Duration
	// ModelsTTL is how long Models caches the backend's list: zero means
	// DefaultModelsTTL.
	ModelsTTL time.Duration
	// Logger receives retries and failed refreshes of the model list. Nil
	// means slog.Default().
	Logger *slog.Logger
}

// Client is a chat.LLM backed by an OpenAI-compatible Chat Completions
// server:
//
//	POST {base}/chat/completions  {"model","messages","stream":true,…} → text/event-stream
//	GET  {base}/models            → {"data":[{"id","owned_by"}]}
//
// It forwards the W3C traceparent of the caller's context. Every failure is
// a *chat.Error whose message is safe to show a client; the upstream detail
// (status, a truncated body) is in its cause, for the log.
//
// A Client is safe for concurrent use.
type Client struct {
	chatURL      string
	modelsURL    string
	apiKey       string
	defaultModel string
	http         *http.Client
	retries      int
	backoff      time.Duration
	firstToken   time.Duration
	idle         time.Duration
	modelsTTL    time.Duration
	log          *slog.Logger
	prop         propagation.TraceContext

	fetches singleflight.Group
	mu      sync.Mutex
	models  []chat.Model // never modified once stored
	expires time.Time
}

// NewClient returns a Client of the Chat Completions server at baseURL, an
// http(s) URL such as https://api.openai.com/v1 to which the client appends
// /chat/completions and /models.
func NewClient(baseURL string, opts Options) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("llm: base URL %q is not an http(s) URL", baseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("llm: base URL %q has a query or fragment", baseURL)
	}
	if opts.Backoff < 0 || opts.FirstTokenTimeout < 0 || opts.IdleTimeout < 0 || opts.ModelsTTL < 0 {
		return nil, errors.New("llm: negative duration in options")
	}
	c := &Client{
		chatURL:      u.JoinPath("chat", "completions").String(),
		modelsURL:    u.JoinPath("models").String(),
		apiKey:       opts.APIKey,
		defaultModel: opts.DefaultModel,
		http:         opts.HTTPClient,
		retries:      cmp.Or(opts.Retries, DefaultRetries),
		backoff:      cmp.Or(opts.Backoff, DefaultBackoff),
		firstToken:   cmp.Or(opts.FirstTokenTimeout, DefaultFirstTokenTimeout),
		idle:         cmp.Or(opts.IdleTimeout, DefaultIdleTimeout),
		modelsTTL:    cmp.Or(opts.ModelsTTL, DefaultModelsTTL),
		log:          opts.Logger,
	}
	c.retries = max(c.retries, 0)
	if c.http == nil {
		c.http = &http.Client{Transport: newTransport()}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	return c, nil
}

// newTransport returns a keep-alive transport with bounded connection
// set-up and no bound on a response's length.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   128,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// Models returns the models the backend lists, Options.DefaultModel first
// when set (even if the backend does not list it). The list is cached for
// Options.ModelsTTL and fetched by one call at a time; when a refresh fails,
// the previous list is served and the failure is logged.
func (c *Client) Models(ctx context.Context) ([]chat.Model, error) {
	c.mu.Lock()
	models, fresh := c.models, time.Now().Before(c.expires)
	c.mu.Unlock()
	if models != nil && fresh {
		return slices.Clone(models), nil
	}
	// The fetch is shared by every caller waiting for it, so one caller
	// leaving must not cancel it; its own timeout bounds it.
	ch := c.fetches.DoChan("models", func() (any, error) {
		return c.refreshModels(context.WithoutCancel(ctx))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return slices.Clone(r.Val.([]chat.Model)), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// refreshModels fetches the model list and caches it, or falls back on the
// cached one.
func (c *Client) refreshModels(ctx context.Context) ([]chat.Model, error) {
	ctx, cancel := context.WithTimeout(ctx, modelsTimeout)
	defer cancel()
	fetched, err := c.fetchModels(ctx)

	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if err != nil {
		if c.models != nil {
			c.expires = now.Add(min(c.modelsTTL, modelsRetry))
			c.log.WarnContext(ctx, "llm: refreshing the model list failed; serving the cached one", "error", err)
			return c.models, nil
		}
		return nil, chat.Wrap(chat.CodeUpstreamUnavailable, err, msgUnavailable)
	}
	if c.defaultModel != "" {
		def := chat.Model{ID: c.defaultModel}
		if i := slices.IndexFunc(fetched, func(m chat.Model) bool { return m.ID == c.defaultModel }); i >= 0 {
			def = fetched[i]
			fetched = slices.Delete(fetched, i, i+1)
		}
		fetched = slices.Insert(fetched, 0, def)
	}
	c.models, c.expires = fetched, now.Add(c.modelsTTL)
	return fetched, nil
}

// fetchModels makes one GET {base}/models.
func (c *Client) fetchModels(ctx context.Context) ([]chat.Model, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.modelsURL, nil)
	if err != nil {
		return nil, fmt.Errorf("llm: building the request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	c.setHeaders(ctx, req)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("llm: GET %s: %w", c.modelsURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err != nil {
		return nil, fmt.Errorf("llm: GET %s: reading the response: %w", c.modelsURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("llm: GET %s: status %d: %q", c.modelsURL, resp.StatusCode, snippet(body))
	}
	if len(body) > maxBodyBytes {
		return nil, fmt.Errorf("llm: GET %s: response over %d bytes", c.modelsURL, maxBodyBytes)
	}
	var list struct {
		Data []struct {
			ID      string `json:"id"`
			OwnedBy string `json:"owned_by"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("llm: GET %s: decoding the response: %w", c.modelsURL, err)
	}
	models := make([]chat.Model, 0, len(list.Data))
	for _, m := range list.Data {
		if m.ID != "" && !slices.ContainsFunc(models, func(o chat.Model) bool { return o.ID == m.ID }) {
			models = append(models, chat.Model{ID: m.ID, OwnedBy: m.OwnedBy})
		}
	}
	return models, nil
}

// setHeaders adds the headers every request carries.
func (c *Client) setHeaders(ctx context.Context, req *http.Request) {
	req.Header.Set("User-Agent", "askgate")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	c.prop.Inject(ctx, propagation.HeaderCarrier(req.Header))
}

// defaultModelID returns the model of a request that names none.
func (c *Client) defaultModelID(ctx context.Context) (string, error) {
	if c.defaultModel != "" {
		return c.defaultModel, nil
	}
	models, err := c.Models(ctx)
	if err != nil {
		return "", err
	}
	if len(models) == 0 {
		return "", chat.Wrap(chat.CodeUpstreamUnavailable, errors.New("llm: the backend lists no model"), msgUnavailable)
	}
	return models[0].ID, nil
}

// completionRequest is the body of POST /chat/completions.
type completionRequest struct {
	Model         string          `json:"model"`
	Messages      []promptMessage `json:"messages"`
	Stream        bool            `json:"stream"`
	StreamOptions streamOptions   `json:"stream_options"`
	MaxTokens     int             `json:"max_tokens,omitempty"`
}

type promptMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// Complete sends req and returns once the backend has accepted it (status
// 200), retrying before that as Options.Retries says; it never retries once
// the answer has started. An empty req.Model means Options.DefaultModel, or
// else the first model of Models. ctx governs the whole answer: cancelling
// it closes the upstream request and makes Next return ctx's error.
//
// Besides chat.CompletionStream, the stream has a method
//
//	FinishReason() string
//
// giving the backend's finish_reason ("stop", "length", …) once known.
func (c *Client) Complete(ctx context.Context, req chat.CompletionRequest) (chat.CompletionStream, error) {
	if len(req.Messages) == 0 {
		return nil, chat.Errorf(chat.CodeBadUserInput, "the prompt is empty")
	}
	if req.MaxTokens < 0 {
		return nil, chat.Errorf(chat.CodeBadUserInput, "max tokens must not be negative")
	}
	model := req.Model
	if model == "" {
		var err error
		if model, err = c.defaultModelID(ctx); err != nil {
			return nil, err
		}
	}
	msgs := make([]promptMessage, len(req.Messages))
	for i, m := range req.Messages {
		msgs[i] = promptMessage{Role: m.Role, Content: m.Content}
	}
	body, err := json.Marshal(completionRequest{
		Model:         model,
		Messages:      msgs,
		Stream:        true,
		StreamOptions: streamOptions{IncludeUsage: true},
		MaxTokens:     req.MaxTokens,
	})
	if err != nil {
		return nil, chat.Wrap(chat.CodeInternal, err, "internal server error")
	}

	for attempt := 1; ; attempt++ {
		s, err := c.start(ctx, model, body)
		if err == nil {
			return s, nil
		}
		var r *retryable
		if !errors.As(err, &r) {
			return nil, err
		}
		if attempt > c.retries {
			r.err.Err = fmt.Errorf("%d attempts: %w", attempt, r.err.Err)
			return nil, r.err
		}
		wait := r.after
		if wait == 0 {
			wait = c.backoffFor(attempt)
		}
		c.log.WarnContext(ctx, "llm: request failed, retrying", "attempt", attempt, "wait", wait, "error", r.err.Err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
}

// backoffFor returns the wait before retry number attempt (from 1):
// exponential, with equal jitter, capped at MaxRetryWait.
func (c *Client) backoffFor(attempt int) time.Duration {
	d := c.backoff << min(attempt-1, 16)
	if d <= 0 || d > MaxRetryWait {
		d = MaxRetryWait
	}
	if d < 2 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// retryable is a failure of an attempt that may be retried. after is the
// wait the backend asked for, zero when it did not.
type retryable struct {
	err   *chat.Error
	after time.Duration
}

func (r *retryable) Error() string { return r.err.Error() }
func (r *retryable) Unwrap() error { return r.err }

// start makes one attempt: it sends the request and waits for the
// response's status, under the first-token timer.
func (c *Client) start(ctx context.Context, model string, body []byte) (*stream, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	timer := time.AfterFunc(c.firstToken, func() { cancel(errTimeout) })
	release := func() {
		timer.Stop()
		cancel(nil)
	}
	req, err := http.NewRequestWithContext(sctx, http.MethodPost, c.chatURL, bytes.NewReader(body))
	if err != nil {
		release()
		return nil, chat.Wrap(chat.CodeInternal, err, "internal server error")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	c.setHeaders(ctx, req)

	resp, err := c.http.Do(req)
	if err != nil {
		timedOut := context.Cause(sctx) == errTimeout
		release()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case timedOut:
			return nil, chat.Wrap(chat.CodeUpstreamUnavailable,
				fmt.Errorf("llm: POST %s: no response within %v", c.chatURL, c.firstToken), msgNoStart)
		}
		return nil, &retryable{err: chat.Wrap(chat.CodeUpstreamUnavailable, fmt.Errorf("llm: POST %s: %w", c.chatURL, err), msgUnavailable)}
	}
	if resp.StatusCode != http.StatusOK {
		defer release()
		defer resp.Body.Close()
		return nil, c.statusError(resp, model)
	}
	return &stream{
		ctx:    ctx,
		sctx:   sctx,
		cancel: cancel,
		timer:  timer,
		idle:   c.idle,
		body:   resp.Body,
		events: newEventReader(resp.Body, maxEventBytes),
		model:  model,
	}, nil
}

// statusError classifies a response other than 200.
func (c *Client) statusError(resp *http.Response, model string) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	cause := fmt.Errorf("llm: POST %s: status %d: %q", c.chatURL, resp.StatusCode, snippet(body))
	switch code := resp.StatusCode; code {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return &retryable{
			err:   chat.Wrap(chat.CodeUpstreamUnavailable, cause, msgUnavailable),
			after: retryAfter(resp.Header, time.Now()),
		}
	case http.StatusBadRequest, http.StatusNotFound:
		if aboutModel(code, body) {
			return chat.Wrap(chat.CodeBadUserInput, cause, fmt.Sprintf("unknown model %q", model))
		}
	}
	return chat.Wrap(chat.CodeUpstreamUnavailable, cause, msgUnavailable)
}

// aboutModel reports whether an error body of a 400 or 404 clearly says
// that the model does not exist. OpenAI says so with code
// "model_not_found"; others with param "model", or, with a 404, a message
// about the model ("The model `x` does not exist", "model \"x\" not found").
func aboutModel(status int, body []byte) bool {
	type detail struct {
		Message string `json:"message"`
		Param   any    `json:"param"`
		Code    any    `json:"code"`
	}
	var e struct {
		Error *detail `json:"error"`
		detail
	}
	if json.Unmarshal(body, &e) != nil {
		return false
	}
	d := e.detail
	if e.Error != nil {
		d = *e.Error
	}
	if d.Code == "model_not_found" || d.Param == "model" {
		return true
	}
	msg := strings.ToLower(d.Message)
	return status == http.StatusNotFound && strings.Contains(msg, "model") &&
		(strings.Contains(msg, "not found") || strings.Contains(msg, "does not exist"))
}

// retryAfter returns the wait a refusal asks for (OpenAI's retry-after-ms,
// or Retry-After in seconds or as a date), capped at MaxRetryWait; zero
// when it asks for none.
func retryAfter(h http.Header, now time.Time) time.Duration {
	var d time.Duration
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 {
		d = time.Duration(min(ms, float64(MaxRetryWait/time.Millisecond)) * float64(time.Millisecond))
	} else if v := strings.TrimSpace(h.Get("Retry-After")); v != "" {
		if secs, err := strconv.Atoi(v); err == nil {
			d = time.Duration(min(max(secs, 0), int(MaxRetryWait/time.Second)+1)) * time.Second
		} else if t, err := http.ParseTime(v); err == nil {
			d = t.Sub(now)
		}
	}
	return min(max(d, 0), MaxRetryWait)
}

// snippet returns the start of an upstream body, for an error's cause.
func snippet(b []byte) string {
	if len(b) > snippetBytes {
		return string(b[:snippetBytes]) + "…"
	}
	return string(b)
}

// stream is the answer of a Client, read from the response's event stream
// in the caller's goroutine: it starts no goroutine. A timer cancels the
// request's context when the next piece is late.
type stream struct {
	ctx    context.Context // the caller's
	sctx   context.Context // the request's, cancelled by cancel
	cancel context.CancelCauseFunc
	// timer runs from the request to the first piece, then within each
	// Next until a piece arrives.
	timer  *time.Timer
	idle   time.Duration
	body   io.ReadCloser
	events *eventReader
	closed atomic.Bool

	model   string
	usage   *chat.TokenUsage
	finish  string
	started bool  // a piece has been returned
	err     error // the end: io.EOF or a failure
	chunk   chunk // reused for every event
}

// chunk is one event of the stream.
type chunk struct {
	Model   string `json:"model"`
	Choices []struct {
		Delta struct {
			Content string `json:"content"`
			// ReasoningContent is the thinking of a reasoning model
			// (DeepSeek-R1 through vLLM or Ollama, …): not answer text,
			// but the backend is working.
			ReasoningContent string `json:"reasoning_content"`
		} `json:"delta"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// reset empties c for the next event, keeping its memory: json.Unmarshal
// reuses a slice's elements without zeroing them.
func (c *chunk) reset() *chunk {
	choices := c.Choices[:cap(c.Choices)]
	clear(choices)
	*c = chunk{Choices: choices[:0]}
	return c
}

// Next returns the next non-empty piece of text.
func (s *stream) Next() (string, error) {
	if s.closed.Load() {
		return "", errClosed
	}
	if s.err != nil {
		return "", s.err
	}
	if s.started {
		s.timer.Reset(s.idle)
	}
	for {
		data, err := s.events.Next()
		if err != nil {
			return "", s.end(s.readError(err))
		}
		if bytes.Equal(bytes.TrimSpace(data), doneData) {
			return "", s.end(io.EOF)
		}
		c := s.chunk.reset()
		if err := json.Unmarshal(data, c); err != nil {
			return "", s.end(chat.Wrap(chat.CodeUpstreamUnavailable,
				fmt.Errorf("llm: decoding a chunk: %w: %q", err, snippet(data)), msgFailed))
		}
		if len(c.Error) > 0 && string(c.Error) != "null" {
			return "", s.end(chat.Wrap(chat.CodeUpstreamUnavailable,
				fmt.Errorf("llm: error in the stream: %s", snippet(c.Error)), msgFailed))
		}
		if c.Model != "" && c.Model != s.model {
			s.model = c.Model
		}
		if u := c.Usage; u != nil {
			s.usage = &chat.TokenUsage{
				PromptTokens:     u.PromptTokens,
				CompletionTokens: u.CompletionTokens,
				TotalTokens:      cmp.Or(u.TotalTokens, u.PromptTokens+u.CompletionTokens),
			}
		}
		if len(c.Choices) == 0 {
			continue
		}
		if r := c.Choices[0].FinishReason; r != "" {
			s.finish = r
		}
		if piece := c.Choices[0].Delta.Content; piece != "" {
			s.started = true
			s.timer.Stop()
			return piece, nil
		}
		if c.Choices[0].Delta.ReasoningContent != "" {
			// A model that thinks before it answers is making progress:
			// the wait for text starts again (as long as an idle gap).
			s.timer.Reset(s.idle)
		}
	}
}

// readError turns a failure to read the next event into Next's error.
func (s *stream) readError(err error) error {
	switch {
	case s.closed.Load():
		return errClosed
	case s.ctx.Err() != nil:
		return s.ctx.Err()
	case context.Cause(s.sctx) == errTimeout && s.started:
		return chat.Wrap(chat.CodeUpstreamUnavailable, fmt.Errorf("llm: no token within %v", s.idle), msgStalled)
	case context.Cause(s.sctx) == errTimeout:
		return chat.Wrap(chat.CodeUpstreamUnavailable, errors.New("llm: no first token in time"), msgNoStart)
	case errors.Is(err, errEventTooLarge):
		return chat.Wrap(chat.CodeUpstreamUnavailable, err, msgFailed)
	case err == io.EOF:
		err = errors.New("llm: the stream ended without [DONE]")
	default:
		err = fmt.Errorf("llm: reading the stream: %w", err)
	}
	return chat.Wrap(chat.CodeUpstreamUnavailable, err, msgCut)
}

// end records the stream's result and releases the request.
func (s *stream) end(err error) error {
	s.err = err
	s.release()
	return err
}

// release stops the timer and closes the request.
func (s *stream) release() {
	s.timer.Stop()
	s.cancel(nil)
	s.body.Close()
}

// Model returns the model the backend named in its chunks, or the model
// requested.
func (s *stream) Model() string { return s.model }

// Usage returns the usage the backend reported, nil when it did not.
func (s *stream) Usage() *chat.TokenUsage { return s.usage }

// FinishReason returns the backend's finish_reason, empty until known.
func (s *stream) FinishReason() string { return s.finish }

// Close closes the upstream request. It may be called more than once, and
// from another goroutine to interrupt a Next.
func (s *stream) Close() error {
	if !s.closed.Swap(true) {
		s.release()
	}
	return nil
}
