package subscriptions

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// maxBodyBytes caps an SSE request body, as for plain HTTP.
const maxBodyBytes = 2 << 20

// SSE is the GraphQL-over-server-sent-events transport, in graphql-sse's
// distinct connections mode: each request (POST with a JSON body, or GET
// with the query string, per GraphQL over HTTP) runs one operation whose
// results stream back as "next" events, followed by a "complete" event.
//
// A request that is not a well-formed GraphQL request (body not JSON, no
// query, over 2 MB, wrong content type) is answered with a 4xx status and
// a JSON {"errors":[…]} body, as is a mutation over GET (405). Once the
// request is well-formed the stream is accepted (200) and every refusal
// before execution — Prepare, parse, validation and Guard errors — is
// reported through it as one next event carrying {"errors":[…]}, then
// complete, as the graphql-sse protocol requires (browsers' EventSource
// cannot read the body of a non-2xx response).
//
// The stream ends when the operation completes or the client goes away
// (the request's context), and is kept alive by a comment line every
// PingInterval. Authentication is the server middleware's business: it
// runs before the transport, on the Authorization header. Server
// middleware must not put a deadline on these requests' contexts; the
// HTTP server's WriteTimeout is lifted for the stream, each write getting
// WriteTimeout of its own.
//
// The zero value is ready to use with the defaults. An SSE must be used
// by pointer and not copied after first use; its methods are safe for
// concurrent use.
type SSE struct {
	// Ops are the server's checks around parsing and validation; nil runs
	// gqlgen's alone.
	Ops Operations
	// PingInterval is the interval between keep-alive comments. Default
	// 15 s.
	PingInterval time.Duration
	// WriteTimeout bounds each write to the client; a client that does
	// not take an event within it is dropped. Default 10 s.
	WriteTimeout time.Duration
	// RequestTimeout bounds a query or mutation, as over HTTP; zero means
	// none. Subscriptions are exempt.
	RequestTimeout time.Duration
	// Logger receives what the transport has to say; nil is
	// slog.Default().
	Logger *slog.Logger

	mu       sync.Mutex
	streams  map[*sseStream]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

var _ graphql.Transport = (*SSE)(nil)

// Supports takes GET and POST requests whose Accept header asks for
// text/event-stream.
func (t *SSE) Supports(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		return false
	}
	if r.Header.Get("Upgrade") != "" {
		return false
	}
	return acceptsEventStream(r.Header.Values("Accept"))
}

// Do runs one operation and streams its results.
func (t *SSE) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s := &sseStream{w: w, rc: http.NewResponseController(w), cancel: cancel, writeTimeout: orDefault(t.WriteTimeout, DefaultWriteTimeout)}
	if !t.register(s) {
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusServiceUnavailable, codeUnavailable, "the server is shutting down")
		return
	}
	defer t.unregister(s)
	if !canFlush(w) {
		writeJSONError(w, http.StatusInternalServerError, codeInternal, "streaming is not supported here")
		return
	}

	begin := graphql.Now()
	params, status, err := readParams(w, r)
	if err != nil {
		writeJSONError(w, status, codeBadRequest, err.Error())
		return
	}
	if strings.TrimSpace(params.Query) == "" && !namesStoredOperation(params) {
		writeJSONError(w, http.StatusBadRequest, codeBadRequest, "the request has no query")
		return
	}
	params.Headers = r.Header
	params.ReadTime = graphql.TraceTiming{Start: begin, End: graphql.Now()}

	// A GET mutation is refused before anything is charged for it.
	allow := func(oc *graphql.OperationContext) bool {
		if r.Method == http.MethodGet && oc.Operation != nil && oc.Operation.Operation == ast.Mutation {
			w.Header().Set("Allow", http.MethodPost)
			writeJSONError(w, http.StatusMethodNotAllowed, codeBadRequest, "GET cannot run mutations; send them with POST")
			return false
		}
		return true
	}
	oc, refusal := start(ctx, exec, t.Ops, params, allow)
	if oc == nil && refusal == nil {
		return // allow answered
	}

	// The stream is accepted.
	_ = s.rc.SetWriteDeadline(time.Time{}) // lift the server's WriteTimeout; writes set their own
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if !s.write(nil) {
		return
	}
	if refusal != nil {
		if s.next(refusal) {
			s.complete()
		}
		return
	}

	interval := orDefault(t.PingInterval, DefaultPingInterval)
	s.mu.Lock()
	s.keepAlive = time.AfterFunc(interval, func() { s.ping(interval) })
	s.mu.Unlock()
	defer s.end()

	responses, ctx := dispatch(ctx, exec, oc, t.RequestTimeout)
	for {
		resp := responses(ctx)
		if resp == nil {
			break
		}
		if !s.next(resp) {
			logger(t.Logger).LogAttrs(ctx, slog.LevelDebug, "event stream write failed")
			return
		}
		s.mu.Lock()
		s.keepAlive.Reset(interval)
		s.mu.Unlock()
	}
	if ctx.Err() == nil { // the client is still there
		s.complete()
	}
}

// Shutdown lets open streams end by themselves for a short while (at most
// 500 ms and half of the time ctx has left), then ends the rest (without
// complete: clients reconnect) and waits until their handlers have
// returned or ctx is done. Requests from then on are refused with 503.
func (t *SSE) Shutdown(ctx context.Context) error {
	t.mu.Lock()
	t.shutdown = true
	t.mu.Unlock()
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	// Streams that are ending (an answer's last event on its way) get to
	// send it before the rest are ended.
	drain(ctx, func() bool {
		select {
		case <-done:
			return false
		default:
			return true
		}
	})
	t.mu.Lock()
	for s := range t.streams {
		s.cancel()
	}
	t.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (t *SSE) register(s *sseStream) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.shutdown {
		return false
	}
	if t.streams == nil {
		t.streams = make(map[*sseStream]struct{})
	}
	t.streams[s] = struct{}{}
	t.wg.Add(1)
	return true
}

func (t *SSE) unregister(s *sseStream) {
	t.mu.Lock()
	delete(t.streams, s)
	t.mu.Unlock()
	t.wg.Done()
}

// sseStream writes one event stream; the keep-alive timer and the
// operation write under mu.
type sseStream struct {
	w            http.ResponseWriter
	rc           *http.ResponseController
	cancel       context.CancelFunc
	writeTimeout time.Duration

	mu        sync.Mutex
	ended     bool // the handler is returning: nothing may be written
	failed    bool
	keepAlive *time.Timer
}

var (
	eventComplete = []byte("event: complete\ndata:\n\n")
	commentPing   = []byte(": keep-alive\n\n")
)

// next writes a next event.
func (s *sseStream) next(resp *graphql.Response) bool {
	b, err := json.Marshal(resp)
	if err != nil {
		return false
	}
	ev := make([]byte, 0, len(b)+len("event: next\ndata: \n\n"))
	ev = append(ev, "event: next\ndata: "...)
	ev = append(ev, b...)
	ev = append(ev, "\n\n"...)
	return s.write(ev)
}

func (s *sseStream) complete() { s.write(eventComplete) }

// ping writes a keep-alive comment and schedules the next.
func (s *sseStream) ping(interval time.Duration) {
	if s.write(commentPing) {
		s.mu.Lock()
		if !s.ended {
			s.keepAlive.Reset(interval)
		}
		s.mu.Unlock()
	}
}

// write writes b (nothing when nil) and flushes. A failed write cancels
// the operation.
func (s *sseStream) write(b []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.failed {
		return false
	}
	_ = s.rc.SetWriteDeadline(time.Now().Add(s.writeTimeout))
	var err error
	if len(b) > 0 {
		_, err = s.w.Write(b)
	}
	if err == nil {
		err = s.rc.Flush()
	}
	if err != nil {
		s.failed = true
		s.cancel()
		return false
	}
	return true
}

// end stops the keep-alive: nothing is written once the handler returns.
func (s *sseStream) end() {
	s.mu.Lock()
	s.ended = true
	if s.keepAlive != nil {
		s.keepAlive.Stop()
	}
	s.mu.Unlock()
}

// acceptsEventStream reports whether Accept headers list text/event-stream
// with a non-zero quality.
func acceptsEventStream(accept []string) bool {
	for _, v := range accept {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil || mt != "text/event-stream" {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// canFlush reports whether w, or a writer it wraps, can flush.
func canFlush(w http.ResponseWriter) bool {
	for {
		if _, ok := w.(http.Flusher); ok {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
}

// readParams decodes the operation of a GET (query string) or POST (JSON
// body) request, as GraphQL over HTTP has it. On failure it returns the
// HTTP status to answer with.
func readParams(w http.ResponseWriter, r *http.Request) (*graphql.RawParams, int, error) {
	params := &graphql.RawParams{}
	var documentID string
	if r.Method == http.MethodGet {
		q := r.URL.Query()
		params.Query = q.Get("query")
		params.OperationName = q.Get("operationName")
		documentID = q.Get("documentId")
		for name, dst := range map[string]*map[string]any{"variables": &params.Variables, "extensions": &params.Extensions} {
			if v := q.Get(name); v != "" {
				if !isObject([]byte(v)) || decodeStrict([]byte(v), dst) != nil {
					return nil, http.StatusBadRequest, errors.New(name + " must be a JSON object")
				}
			}
		}
	} else {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if mt != "application/json" {
			return nil, http.StatusUnsupportedMediaType, errors.New("the request body must be application/json")
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		if err != nil {
			if errors.As(err, new(*http.MaxBytesError)) {
				return nil, http.StatusRequestEntityTooLarge, errors.New("the request body is over 2 MB")
			}
			return nil, http.StatusBadRequest, errors.New("the request body could not be read")
		}
		var p subscribePayload
		if !isObject(body) || decodeStrict(body, &p) != nil {
			return nil, http.StatusBadRequest, errors.New("the request body is not a JSON object with a query")
		}
		if p.Query != nil {
			params.Query = *p.Query
		}
		if p.OperationName != nil {
			params.OperationName = *p.OperationName
		}
		params.Variables, params.Extensions, documentID = p.Variables, p.Extensions, p.DocumentID
	}
	if documentID != "" {
		if params.Extensions == nil {
			params.Extensions = make(map[string]any, 1)
		}
		params.Extensions["documentId"] = documentID
	}
	return params, 0, nil
}

// decodeStrict decodes one JSON value, keeping numbers exact, and refuses
// trailing data.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("trailing data")
	}
	return nil
}
