package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.opentelemetry.io/otel/trace"

	"askgate/internal/answers"
	"askgate/internal/auth"
	"askgate/internal/server/subscriptions"
	"askgate/loaders"
)

// SubscriptionOptions configure the WebSocket and server-sent events
// transports. The zero value of each field selects its default.
type SubscriptionOptions struct {
	// InitTimeout is how long a WebSocket client has to send
	// connection_init (4408 after it). Default 3 s.
	InitTimeout time.Duration
	// MaxSubscriptions is how many operations one WebSocket connection
	// may run at a time. Default 20.
	MaxSubscriptions int
	// AllowedOrigins are the origins whose pages may open WebSockets;
	// empty allows the same origin only.
	AllowedOrigins []string
	// PingInterval is the interval of the server's pings and keep-alive
	// comments. Default 15 s.
	PingInterval time.Duration
}

// liveTransports returns the subscription transports, in the order the
// GraphQL handler must try them: before the plain HTTP one, which takes
// every request without an Upgrade header.
func (s *Server) liveTransports() []graphql.Transport {
	o := s.deps.Subscriptions
	ops := liveOps{s}
	s.ws = &subscriptions.WebSocket{
		Authenticate:     s.authenticateSocket,
		Ops:              ops,
		InitTimeout:      o.InitTimeout,
		PingInterval:     o.PingInterval,
		MaxSubscriptions: o.MaxSubscriptions,
		AllowedOrigins:   o.AllowedOrigins,
		RequestTimeout:   s.requestTimeout(),
		ConnContext:      socketContext,
		Logger:           s.log,
	}
	s.sse = &subscriptions.SSE{Ops: ops, PingInterval: o.PingInterval, RequestTimeout: s.requestTimeout(), Logger: s.log}
	return []graphql.Transport{s.ws, s.sse}
}

// socketContext is the context a WebSocket keeps from its upgrade
// request: the trace, for the log lines of its operations, and nothing
// else (the viewer comes with connection_init). The request's log line
// has been written by then.
func socketContext(r *http.Request) context.Context {
	ctx := context.Background()
	if sc := trace.SpanContextFromContext(r.Context()); sc.IsValid() {
		ctx = trace.ContextWithSpanContext(ctx, sc)
	}
	return ctx
}

// requestTimeout bounds a query or mutation.
func (s *Server) requestTimeout() time.Duration {
	if s.deps.RequestTimeout > 0 {
		return s.deps.RequestTimeout
	}
	return DefaultRequestTimeout
}

// liveOps gives the subscription transports the same checks as the HTTP
// transport.
type liveOps struct{ s *Server }

func (o liveOps) Prepare(ctx context.Context, p *graphql.RawParams) (context.Context, gqlerror.List) {
	return o.s.prepare(ctx, p)
}

func (o liveOps) Guard(prepCtx context.Context, oc *graphql.OperationContext) (int, gqlerror.List) {
	return o.s.guard(prepCtx, oc)
}

func (o liveOps) Refused(prepCtx context.Context) { o.s.refused(prepCtx) }

// authenticateSocket authenticates a WebSocket connection from its
// connection_init payload ({"authorization": "Bearer <JWT>"}), or else
// from the upgrade request's Authorization header. The connection closes
// (4403) when the token expires.
func (s *Server) authenticateSocket(ctx context.Context, r *http.Request, payload map[string]any) (context.Context, time.Time, error) {
	var header string
	for _, key := range []string{"authorization", "Authorization"} {
		if v, ok := payload[key].(string); ok {
			header = v
			break
		}
	}
	var v *auth.Viewer
	var err error
	if header != "" {
		v, err = s.deps.Auth.AuthenticateHeader(header)
	} else {
		v, err = s.deps.Auth.Authenticate(r)
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "WebSocket authentication failed",
			slog.String("error", err.Error()), slog.String("trace_id", traceID(ctx)))
		return ctx, time.Time{}, err
	}
	if rl := requestLogFrom(ctx); rl != nil {
		rl.mu.Lock()
		rl.userID = v.ID
		rl.mu.Unlock()
	}
	s.observeViewer(ctx, v)
	return auth.WithViewer(ctx, v), v.ExpiresAt, nil
}

// Shutdown closes every WebSocket with 1001 (going away) and ends every
// server-sent events stream, then waits for their goroutines or ctx. Call
// it after the answers have been finished or saved, so that subscribers
// have had their terminal events.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ws == nil {
		return nil
	}
	return errors.Join(s.ws.Shutdown(ctx), s.sse.Shutdown(ctx))
}

// isSubscription reports whether oc is a subscription's.
func isSubscription(oc *graphql.OperationContext) bool {
	return oc != nil && oc.Operation != nil && oc.Operation.Operation == ast.Subscription
}

// aroundSubscription runs a subscription (next) so that each answer event
// is rendered once for all the subscribers whose operations render it
// alike: the same document, operation, variables and viewer. The first of
// them to take an event has gqlgen execute its selection on it, with
// dataloaders of its own; the others reuse the result. Without an answer
// subscription in it (or when its resolver fails), the operation runs as
// it is, each response with dataloaders of its own.
//
// Where the transport can push results (see subscriptions.PusherFrom), the
// subscription parks whenever it has no event waiting, and the answer's
// events are pushed by the goroutine that delivers them (the answer's
// hub), one after another, each rendered once: no goroutine of the
// subscription runs for them. An event that cannot be pushed (the
// connection is busy, the first response is not sent yet, the terminal
// event) wakes the subscription, which returns it as usual.
//
// The subscription's resolver gets no dataloaders: answer needs none.
func (s *Server) aroundSubscription(ctx context.Context, oc *graphql.OperationContext, viewerID string, next graphql.OperationHandler) graphql.ResponseHandler {
	ctx, relay := answers.WithRelay(ctx)
	inner := next(ctx)
	src := relay.Source()
	if src == nil {
		return func(ctx context.Context) *graphql.Response {
			return inner(loaders.With(ctx, loaders.New(s.loaderConfig(), viewerID)))
		}
	}
	l := &liveAnswer{s: s, relay: relay, src: src, inner: inner, viewerID: viewerID, key: renderingKey(oc, viewerID),
		gap: time.Duration(math.MaxInt64)}
	return l.next
}

// liveAnswer is a running answer subscription (see aroundSubscription).
type liveAnswer struct {
	s        *Server
	relay    *answers.Relay
	src      <-chan *answers.Event
	inner    graphql.ResponseHandler
	viewerID string
	key      string

	// lastAt is the time of the last event (Unix ns), gap the time
	// before it.
	lastAt int64
	gap    time.Duration

	// looked is set once wake and push have been looked up in the
	// context; wake resumes the parked subscription, push sends a
	// result without it (nil where the transport cannot).
	looked bool
	// held is set when pushEvents took from src what it could not push,
	// for the next call: an event to render, or a response.
	held      bool
	wake      func()
	push      subscriptions.Pusher
	heldEvent *answers.Event
	heldResp  *graphql.Response
	// pushNext is pushEvents, bound once; parkCtx is the context of the
	// call that parked, for rendering while parked.
	pushNext func()
	parkCtx  context.Context
}

// next is the subscription's response handler.
func (l *liveAnswer) next(ctx context.Context) *graphql.Response {
	if l.held {
		e, resp := l.heldEvent, l.heldResp
		l.heldEvent, l.heldResp, l.held = nil, nil, false
		if e != nil {
			return l.render(ctx, e, true)
		}
		return resp
	}
	for {
		select {
		case e, ok := <-l.src:
			l.took()
			return l.render(ctx, e, ok)
		default:
		}
		// Nothing yet: unless events come thick and fast, a transport
		// that can resume the operation gets its goroutine back until
		// the next event; one that can push gets it back at once. (The
		// transport's functions are looked up in the context's chain
		// once.)
		if !l.looked {
			l.looked = true
			l.wake, l.push = subscriptions.WakeFunc(ctx), subscriptions.PusherFrom(ctx)
			if l.wake != nil && l.push != nil && l.key != "" {
				l.pushNext = l.pushEvents
			} else {
				l.push = nil
			}
		}
		if l.push != nil || (l.wake != nil && l.gap >= streamingGap) {
			armed := false
			if l.push != nil {
				l.parkCtx = ctx
				armed = l.relay.ArmFunc(&l.pushNext)
			} else if l.wake != nil {
				armed = l.relay.Arm(l.wake)
			}
			if armed {
				if !l.relay.Ready() {
					return subscriptions.Parked
				}
				continue
			}
		}
		select {
		case e, ok := <-l.src:
			l.took()
			return l.render(ctx, e, ok)
		case <-ctx.Done():
			return l.inner(ctx)
		}
	}
}

// pushEvents runs instead of the wake function of a parked subscription
// when its source changes, on the goroutine of the source's sender: it
// pushes the events waiting, rendered once for all, and parks again; what
// it cannot push it holds, and wakes the subscription to return it.
func (l *liveAnswer) pushEvents() {
	for {
		var e *answers.Event
		var ok bool
		select {
		case e, ok = <-l.src:
		default:
			// Nothing (any more): park again.
			if !l.relay.ArmFunc(&l.pushNext) {
				l.wake() // the source no longer notifies
				return
			}
			if !l.relay.Ready() {
				return
			}
			continue
		}
		if !ok {
			l.wake() // the end: src stays closed for next
			return
		}
		if e.Done {
			l.hold(e, nil)
			return
		}
		data := e.Rendered(l.key)
		if data == nil {
			resp, ok := l.renderHere(e)
			if !ok {
				l.hold(e, nil) // rendered again, where a panic is reported
				return
			}
			if data = e.Rendered(l.key); data == nil {
				l.hold(nil, resp)
				return
			}
		}
		if !l.push.Push(data) {
			l.hold(nil, &graphql.Response{Data: data})
			return
		}
	}
}

// renderHere renders e on the goroutine of pushEvents; ok is false when
// rendering panicked.
func (l *liveAnswer) renderHere(e *answers.Event) (resp *graphql.Response, ok bool) {
	defer func() {
		if recover() != nil {
			resp, ok = nil, false
		}
	}()
	return l.render(l.parkCtx, e, true), true
}

// hold keeps an event or response for the next call, and wakes the
// subscription to make it.
func (l *liveAnswer) hold(e *answers.Event, resp *graphql.Response) {
	l.heldEvent, l.heldResp, l.held = e, resp, true
	l.wake()
}

// render returns the response of e (the end when !ok), rendered once for
// every subscriber with the same rendering key.
func (l *liveAnswer) render(ctx context.Context, e *answers.Event, ok bool) *graphql.Response {
	if !ok {
		l.relay.Close()
		return l.inner(ctx) // the end, for gqlgen too
	}
	if data := e.Rendered(l.key); data != nil {
		return &graphql.Response{Data: data}
	}
	l.relay.Feed(e)
	resp := l.inner(loaders.With(ctx, loaders.New(l.s.loaderConfig(), l.viewerID)))
	if resp != nil && len(resp.Errors) == 0 && len(resp.Extensions) == 0 && l.key != "" {
		// gqlgen reuses resp.Data's buffer for the next event.
		e.SetRendered(l.key, bytes.Clone(resp.Data))
	}
	return resp
}

// took notes the time of an event.
func (l *liveAnswer) took() {
	now := time.Now().UnixNano()
	if l.lastAt != 0 {
		l.gap = time.Duration(now - l.lastAt)
	}
	l.lastAt = now
}

// streamingGap is the longest gap between two events of a subscription
// after which it keeps its goroutine waiting for the next: parking and
// resuming costs a goroutine's start (and stack growth) per event, which
// matters only when events come faster than this.
const streamingGap = 10 * time.Millisecond

// renderingKey returns what identifies the rendering of a subscription's
// events: its document, operation, variables and viewer; "" when the
// variables cannot be encoded.
func renderingKey(oc *graphql.OperationContext, viewerID string) string {
	vars, err := json.Marshal(oc.Variables)
	if err != nil {
		return ""
	}
	var b strings.Builder
	b.Grow(len(oc.RawQuery) + len(oc.OperationName) + len(vars) + len(viewerID) + 3)
	for i, part := range []string{oc.RawQuery, oc.OperationName, string(vars), viewerID} {
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(part)
	}
	return b.String()
}
