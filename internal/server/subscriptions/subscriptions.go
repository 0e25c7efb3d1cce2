// Package subscriptions provides askgate's streaming GraphQL transports for
// gqlgen: WebSocket (the graphql-transport-ws subprotocol of
// enisdenjo/graphql-ws and the legacy graphql-ws subprotocol of Apollo's
// subscriptions-transport-ws) and server-sent events (graphql-sse, distinct
// connections mode). Each is a graphql.Transport to add to a gqlgen
// handler.Server with AddTransport.
//
// The transports are hand-written rather than gqlgen's own
// (transport.Websocket, transport.SSE) because those get things wrong that
// matter to a gateway streaming LLM answers:
//
//   - gqlgen's WebSocket transport silently replaces a subscription whose
//     id is already in use, where graphql-transport-ws requires closing the
//     socket with 4409; it closes most failures with 1002 instead of the
//     protocol's 44xx codes, has no per-connection subscription limit, and
//     writes from every subscription goroutine under one mutex, so a slow
//     client blocks every producer of the connection without bound.
//   - It runs on coder/websocket, not gorilla/websocket, and keeps the HTTP
//     handler goroutine and its buffers (about 10 KiB) for the life of the
//     socket, plus one or two timer goroutines per connection.
//   - Its SSE transport answers only POST, echoes the request body into
//     error messages, leaves the HTTP server's write timeout in force (which
//     cuts long streams) and runs none of askgate's persisted-query and
//     cost checks.
//
// Both transports run the server's own checks around gqlgen's parsing and
// validation (see Operations), so an operation is refused on a WebSocket or
// an event stream exactly as it is over plain HTTP.
package subscriptions

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"askgate/internal/chat"
)

// Operations are the server's checks around gqlgen's parsing and
// validation. Both transports call Prepare, then gqlgen's
// CreateOperationContext (parsing, validation, variable coercion), then
// Guard, before an operation executes; an error from any step refuses the
// operation.
type Operations interface {
	// Prepare readies raw params before parsing (persisted queries,
	// document limits); errors refuse the operation.
	Prepare(ctx context.Context, p *graphql.RawParams) (context.Context, gqlerror.List)
	// Guard checks a parsed, validated operation (cost); errors refuse it.
	// prepCtx is what Prepare returned.
	Guard(prepCtx context.Context, oc *graphql.OperationContext) (cost int, errs gqlerror.List)
	// Refused is told of an operation refused after Prepare and before
	// Guard (parsing, validation, variables, a transport's own rule), for
	// what Guard would have counted.
	Refused(prepCtx context.Context)
}

// Authenticator turns a connection_init payload (or the upgrade request's
// Authorization header) into a context carrying the viewer, and returns
// when its credentials expire (zero = never). An error means a bad token.
//
// The WebSocket transport calls it once per connection, when the client's
// connection_init arrives, with the upgrade request r and the init
// payload (nil when the client sent none). Clients put
// {"authorization": "Bearer <JWT>"} (or "Authorization") in the payload;
// the function decides whether a header on r is accepted as well. The
// returned context must be derived from ctx.
type Authenticator func(ctx context.Context, r *http.Request, payload map[string]any) (context.Context, time.Time, error)

// Error codes this package puts in extensions.code; the values are the
// contract's (see internal/chat).
const (
	codeRateLimited     = string(chat.CodeRateLimited)
	codeUnauthenticated = string(chat.CodeUnauthenticated)
	codeForbidden       = string(chat.CodeForbidden)
	codeInternal        = string(chat.CodeInternal)
	// codeBadRequest is the code of a request that is not a GraphQL
	// request (an addition to the contract's codes).
	codeBadRequest = "BAD_REQUEST"
	// codeUnavailable is the code of a refusal while the server shuts
	// down (an addition to the contract's codes).
	codeUnavailable = "SERVICE_UNAVAILABLE"
)

// codedError returns a GraphQL error with extensions.code.
func codedError(code, msg string) *gqlerror.Error {
	return &gqlerror.Error{Message: msg, Extensions: map[string]any{"code": code}}
}

// start runs everything that precedes execution: ops.Prepare, gqlgen's
// parsing and validation, then ops.Guard. It returns the operation to
// dispatch, or the response (presented errors) that refuses it.
//
// allow, when not nil, sees the parsed operation before Guard charges it
// (rate, cost budget, persisted-query registration): when it returns
// false it has answered the request itself, and start returns nil, nil.
func start(ctx context.Context, exec graphql.GraphExecutor, ops Operations, params *graphql.RawParams, allow func(*graphql.OperationContext) bool) (*graphql.OperationContext, *graphql.Response) {
	prepCtx := ctx
	if ops != nil {
		var errs gqlerror.List
		if prepCtx, errs = ops.Prepare(ctx, params); len(errs) > 0 {
			return nil, exec.DispatchError(prepCtx, errs)
		}
	}
	oc, errs := exec.CreateOperationContext(ctx, params)
	if len(errs) > 0 {
		if ops != nil {
			ops.Refused(prepCtx)
		}
		errCtx := ctx
		if oc != nil {
			errCtx = graphql.WithOperationContext(ctx, oc)
		}
		return nil, exec.DispatchError(errCtx, errs)
	}
	if allow != nil && !allow(oc) {
		if ops != nil {
			ops.Refused(prepCtx)
		}
		return nil, nil
	}
	if ops != nil {
		cost, errs := ops.Guard(prepCtx, oc)
		if len(errs) > 0 {
			return nil, WithCost(exec.DispatchError(graphql.WithOperationContext(ctx, oc), errs), cost, oc)
		}
		oc.Stats.SetExtension(costStatsKey, cost)
	}
	return oc, nil
}

// Parked is what a subscription's response handler returns, instead of
// waiting for its next event, to release the transport's goroutine while
// the subscription is idle: the handler has arranged for the function
// WakeFunc returned to be called once when the next call would not wait
// (an event has come, the stream has ended or the context is done); the
// transport then calls it again, on a goroutine of its own. Return it only
// when WakeFunc returned a function.
var Parked = &graphql.Response{}

// WakeFunc returns the function that resumes a subscription parked on
// ctx, the context of a call of its response handler, or nil when the
// transport does not park operations: the handler must then wait.
func WakeFunc(ctx context.Context) func() {
	if w, _ := ctx.Value(wakerKey{}).(*waker); w != nil {
		return w.resume
	}
	return nil
}

// A Pusher sends a parked subscription's results without the transport's
// goroutine (see PusherFrom).
type Pusher interface {
	// Push sends a result made of data alone (a response with Data and
	// nothing else) at once, and reports whether it did. It never waits:
	// it reports false when it could not send the result at once (the
	// operation's first response has not been sent, the connection is
	// busy writing or closing, the operation was stopped), and the result
	// is then the caller's to hand to the transport the usual way, by
	// waking the operation and returning it from the next call of the
	// response handler. Data must not be modified afterwards.
	Push(data []byte) bool
}

// PusherFrom returns, for a subscription whose transport parks it (see
// WakeFunc) and can write its results from any goroutine, the Pusher that
// sends its results directly; nil when the transport cannot. While the
// subscription is parked, the code that its wake function would otherwise
// have resumed may push its results instead, in order, from one goroutine
// at a time.
func PusherFrom(ctx context.Context) Pusher {
	if w, _ := ctx.Value(wakerKey{}).(*waker); w != nil && w.c != nil {
		return w
	}
	return nil
}

type wakerKey struct{}

// waker resumes a parked operation, or sends its results directly
// (Push) when c is set.
type waker struct {
	resume func()
	c      *wsConn
	op     *wsOperation
}

// Push is the operation's Pusher.
func (w *waker) Push(data []byte) bool { return w.c.push(w.op, data) }

// costStatsKey keeps an operation's cost in its stats, for dispatch.
const costStatsKey = "askgate.cost"

// dispatch starts executing oc. The first response reports the
// operation's cost in extensions.cost.requestedQueryCost, as every HTTP
// response does; the events of a subscription that follow do not repeat
// it.
//
// A query or mutation runs for at most timeout (when positive), as over
// HTTP; subscriptions are exempt.
func dispatch(ctx context.Context, exec graphql.GraphExecutor, oc *graphql.OperationContext, timeout time.Duration) (graphql.ResponseHandler, context.Context) {
	cancel := context.CancelFunc(func() {})
	if timeout > 0 && oc.Operation != nil && oc.Operation.Operation != ast.Subscription {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	responses, ctx := exec.DispatchOperation(ctx, oc)
	cost, hasCost := oc.Stats.GetExtension(costStatsKey).(int)
	first := true
	return func(ctx context.Context) *graphql.Response {
		resp := responses(ctx)
		if resp == Parked {
			return resp
		}
		if resp == nil {
			cancel()
			return nil
		}
		if first && hasCost {
			WithCost(resp, cost, oc)
		}
		first = false
		return resp
	}, ctx
}

// encodeResult encodes the message of type typ (next or data) that
// carries resp for operation id. A response of data alone, as most events
// of a subscription are, is copied as it is rather than passed through
// encoding/json, which would check and compact data that gqlgen has
// already encoded.
func encodeResult(typ, id string, resp *graphql.Response) ([]byte, error) {
	if len(resp.Errors) > 0 || len(resp.Extensions) > 0 || resp.Label != "" || resp.Path != nil || resp.HasNext != nil || len(resp.Data) == 0 {
		b, err := json.Marshal(resp)
		if err != nil {
			return nil, err
		}
		return encodeMessage(typ, id, b), nil
	}
	const head, tail = `,"payload":{"data":`, `}}`
	b := make([]byte, 0, len(`{"type":"","id":`)+len(typ)+len(id)+2+len(head)+len(resp.Data)+len(tail))
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","id":`...)
	b = appendJSONString(b, id)
	b = append(b, head...)
	b = append(b, resp.Data...)
	return append(b, tail...), nil
}

// ThrottleStatsKey keeps, in an operation's stats, the state of the
// viewer's cost budget after Operations.Guard debited the operation's
// cost: the value of extensions.cost.throttleStatus. Guard sets it when a
// cost budget is in force.
const ThrottleStatsKey = "askgate.throttle"

// SettleStatsKey keeps, in an operation's stats, the Settle function of
// an operation that a cost budget admitted. Operations.Guard sets it.
const SettleStatsKey = "askgate.settle"

// Settle is called with an operation's first response once it has run: it
// returns the operation's actual cost (extensions.cost.actualQueryCost),
// having refunded what was debited and not used, and the cost budget's
// state afterwards (throttleStatus).
type Settle func(resp *graphql.Response) (actual int, throttleStatus any)

// WithCost reports cost, and with a cost budget its state and the actual
// cost, in resp's extensions. An operation the budget refused has a null
// actualQueryCost: nothing ran.
func WithCost(resp *graphql.Response, cost int, oc *graphql.OperationContext) *graphql.Response {
	if resp.Extensions == nil {
		resp.Extensions = make(map[string]any, 1)
	}
	ext := map[string]any{"requestedQueryCost": cost}
	if oc != nil {
		if settle, ok := oc.Stats.GetExtension(SettleStatsKey).(Settle); ok {
			ext["actualQueryCost"], ext["throttleStatus"] = settle(resp)
		} else if ts := oc.Stats.GetExtension(ThrottleStatsKey); ts != nil {
			ext["actualQueryCost"], ext["throttleStatus"] = nil, ts
		}
	}
	resp.Extensions["cost"] = ext
	return resp
}

// namesStoredOperation reports whether params without a query name a
// stored one instead (an automatic persisted query hash or a trusted
// document id), which Operations.Prepare resolves.
func namesStoredOperation(p *graphql.RawParams) bool {
	_, apq := p.Extensions["persistedQuery"]
	_, doc := p.Extensions["documentId"]
	return apq || doc
}

// logger returns l, or slog.Default() when l is nil.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.Default()
	}
	return l
}
