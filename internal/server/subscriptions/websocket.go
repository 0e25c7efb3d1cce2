package subscriptions

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// Defaults of the WebSocket options.
const (
	DefaultInitTimeout      = 3 * time.Second
	DefaultPingInterval     = 15 * time.Second
	DefaultPongTimeout      = 10 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxSubscriptions = 20
	DefaultMaxMessageBytes  = 1 << 20
)

// The WebSocket subprotocols, in the order of preference.
const (
	// SubprotocolTransportWS is graphql-transport-ws, the protocol of
	// enisdenjo/graphql-ws.
	SubprotocolTransportWS = "graphql-transport-ws"
	// SubprotocolLegacyWS is graphql-ws, the protocol of Apollo's
	// deprecated subscriptions-transport-ws.
	SubprotocolLegacyWS = "graphql-ws"
)

// Close codes the WebSocket transport uses besides RFC 6455's. The 44xx
// codes are graphql-transport-ws's; the legacy subprotocol uses the same
// ones for the same causes.
const (
	CloseBadRequest          = 4400 // malformed message
	CloseUnauthorized        = 4401 // subscribe before connection_ack
	CloseForbidden           = 4403 // bad credentials, or credentials expired
	CloseSubprotocol         = 4406 // no supported subprotocol offered
	CloseInitTimeout         = 4408 // no connection_init in time
	CloseSubscriberExists    = 4409 // subscribe with an id in use
	CloseTooManyInitRequests = 4429 // a second connection_init
)

// Timings that are not options.
const (
	// closeGrace is how long a closing connection waits for the peer's
	// close frame before it drops the TCP connection.
	closeGrace = time.Second
	// handshakeTimeout bounds writing the upgrade response.
	handshakeTimeout = 10 * time.Second
	// queueSize is the capacity of a connection's outgoing queue.
	queueSize = 8
	// shutdownDrain bounds how long Shutdown lets running operations end
	// by themselves before it closes their connections (or streams).
	shutdownDrain = 500 * time.Millisecond
)

// WebSocket is the GraphQL-over-WebSocket transport. It speaks
// graphql-transport-ws and the legacy graphql-ws, chosen by the client's
// Sec-WebSocket-Protocol (graphql-transport-ws when it offers both), on
// gorilla/websocket.
//
// Each connection has a reader goroutine, a writer that runs only while
// there is something to write (the goroutine of the operation whose result
// it is, or one of its own), and one goroutine per active operation, which
// a subscription waiting for its next event may release (see Parked);
// nothing outlives the connection. The results of a parked subscription
// may be pushed instead, each written with one non-blocking write by the
// goroutine that has them (see PusherFrom): a socket that cannot take one
// at once sends it back the usual way. An idle connection holding one answer
// subscription costs the server about 16 KiB (see
// BenchmarkIdleWebSocketMemory in internal/server).
//
// Outgoing messages go through a small bounded queue that the one writer
// drains, so a slow client cannot hold the producers (resolvers) or the
// other operations of its connection for long: a client that does not
// take its messages within WriteTimeout is disconnected and every
// operation of the connection cancelled. The close code is 1013 (try again
// later: graphql-ws clients reconnect, and resume an answer with its
// after: argument) when a close frame can still be written; when the
// client has stopped reading altogether it cannot, and the TCP connection
// is simply closed.
//
// The transport sends a WebSocket ping frame every PingInterval (browsers
// answer them on their own) and drops a peer that has sent nothing, not
// even a pong, for PingInterval+PongTimeout. Over the legacy subprotocol it
// also sends the protocol's "ka" keep-alive message at the same interval.
//
// Configure the exported fields before first use; the zero value of each
// means its default. A WebSocket must be used by pointer and not copied
// after first use; its methods are safe for concurrent use.
type WebSocket struct {
	// Authenticate checks the credentials of connection_init. A nil
	// Authenticate accepts every connection as it is.
	Authenticate Authenticator
	// Ops are the server's checks around parsing and validation; nil
	// runs gqlgen's alone.
	Ops Operations
	// InitTimeout is how long a client has to send connection_init after
	// the upgrade (4408 after it). Default 3 s.
	InitTimeout time.Duration
	// PingInterval is the interval between the server's pings. Default
	// 15 s.
	PingInterval time.Duration
	// PongTimeout is how long past a ping the peer may stay silent before
	// it is taken for dead and dropped. Default 10 s.
	PongTimeout time.Duration
	// WriteTimeout bounds a write to the client and the time a producer
	// may wait for room in the outgoing queue; past it the client is
	// disconnected (see above). Default 10 s.
	WriteTimeout time.Duration
	// MaxSubscriptions is how many operations one connection may run at a
	// time; a subscribe over it is refused with an error message
	// (RATE_LIMITED) and the connection stays. Default 20.
	MaxSubscriptions int
	// MaxMessageBytes is the largest message a client may send; a larger
	// one closes the connection with 1009. Default 1 MiB.
	MaxMessageBytes int64
	// AllowedOrigins are the exact origins (scheme://host[:port]) whose
	// browser pages may connect. Empty allows only the same origin: the
	// Origin header's host must equal the request's Host. A request
	// without an Origin header (not from a browser) is always allowed.
	AllowedOrigins []string
	// RequestTimeout bounds a query or mutation, as over HTTP; zero means
	// none. Subscriptions are exempt.
	RequestTimeout time.Duration
	// ConnContext returns the context of a connection, the parent of
	// Authenticate's and of its operations', from the upgrade request. A
	// connection keeps it for its life: returning only the values
	// operations need, rather than all of the request's, saves memory on
	// every connection. Nil keeps the request context's values (not its
	// cancellation or deadline).
	ConnContext func(r *http.Request) context.Context
	// Logger receives what the transport has to say; nil is
	// slog.Default().
	Logger *slog.Logger

	initOnce sync.Once
	upgrader websocket.Upgrader

	mu       sync.Mutex
	conns    map[*wsConn]struct{}
	shutdown bool
	wg       sync.WaitGroup // one per connection

	// lastFrame is the frame last pushed (see frame).
	lastFrame atomic.Pointer[frameCache]
}

var _ graphql.Transport = (*WebSocket)(nil)

// writeBuffers is shared by every WebSocket: a connection holds a write
// buffer only while it writes a message.
var writeBuffers sync.Pool

// Supports takes requests that ask for a WebSocket upgrade. Do answers
// methods other than GET with 405.
func (t *WebSocket) Supports(r *http.Request) bool {
	return headerHasToken(r.Header, "Upgrade", "websocket")
}

// Do upgrades the request to a WebSocket and serves it. It returns as
// soon as the connection is established: the connection's own goroutines
// serve it from then on, so that the HTTP server's per-request buffers and
// goroutine are released. Middleware around the transport therefore sees
// the upgrade end at once, and a request timeout it sets on the context
// does not apply to the connection (the context's values do).
//
// Operations over a WebSocket see no request headers
// (graphql.OperationContext.Headers is nil): the upgrade request is passed
// to Authenticate, which puts whatever operations need in the context.
func (t *WebSocket) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	t.init()
	t.mu.Lock()
	down := t.shutdown
	if !down {
		t.wg.Add(1) // released by the connection, or below on failure
	}
	t.mu.Unlock()
	if down {
		w.Header().Set("Retry-After", "1")
		writeJSONError(w, http.StatusServiceUnavailable, codeUnavailable, "the server is shutting down")
		return
	}
	ws, err := t.upgrader.Upgrade(w, r, nil)
	if err != nil {
		// The upgrader has answered the request.
		logger(t.Logger).LogAttrs(r.Context(), slog.LevelDebug, "websocket upgrade refused", slog.String("error", err.Error()))
		t.wg.Done()
		return
	}
	c := newWSConn(t, ws, r, exec)
	t.mu.Lock()
	if t.shutdown {
		// Shutdown began during the upgrade and did not see c.
		t.mu.Unlock()
		c.shut(websocket.CloseGoingAway, "server shutting down")
	} else {
		t.conns[c] = struct{}{}
		t.mu.Unlock()
	}
	go c.serve()
}

// Shutdown stops every connection from starting operations, lets the
// running ones end by themselves for a short while (at most 500 ms and
// half of the time ctx has left, so that a subscription whose last event
// is on its way delivers it), then closes every connection with 1001
// (going away) and waits until their goroutines have ended or ctx is
// done; in the latter case it drops the connections that are still open
// (their goroutines end as soon as their resolvers honour their cancelled
// contexts) and returns ctx.Err(). Upgrade requests from then on are
// refused with 503. The HTTP server's own Shutdown does not know about
// upgraded connections: call both.
func (t *WebSocket) Shutdown(ctx context.Context) error {
	t.init()
	t.mu.Lock()
	t.shutdown = true
	conns := make([]*wsConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	drain(ctx, func() bool { return slices.ContainsFunc(conns, (*wsConn).drain) })
	for _, c := range conns {
		c.shut(websocket.CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		t.mu.Lock()
		for c := range t.conns {
			c.abort()
		}
		t.mu.Unlock()
		return ctx.Err()
	}
}

// drain waits until busy reports false, for at most shutdownDrain and
// half of the time ctx has left: operations that are ending (a
// subscription whose last event is on its way) get to send their last
// messages before the server closes their connections.
func drain(ctx context.Context, busy func() bool) {
	limit := shutdownDrain
	if d, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(d)/2)
	}
	timer := time.NewTimer(limit)
	defer timer.Stop()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for busy() {
		select {
		case <-tick.C:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// init fills in the upgrader once.
func (t *WebSocket) init() {
	t.initOnce.Do(func() {
		t.conns = make(map[*wsConn]struct{})
		t.upgrader = websocket.Upgrader{
			HandshakeTimeout: handshakeTimeout,
			// Small read buffers and pooled write buffers keep an idle
			// connection at a few KiB.
			ReadBufferSize:  256,
			WriteBufferSize: 4096,
			WriteBufferPool: &writeBuffers,
			Subprotocols:    []string{SubprotocolTransportWS, SubprotocolLegacyWS},
			CheckOrigin:     t.checkOrigin,
			Error:           upgradeError,
		}
	})
}

// forget removes a connection that has ended.
func (t *WebSocket) forget(c *wsConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.wg.Done()
}

// checkOrigin allows a request without an Origin header, one from an
// allowed origin, or, when no origins are configured, one from the same
// host.
func (t *WebSocket) checkOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(t.AllowedOrigins) > 0 {
		for _, o := range t.AllowedOrigins {
			if strings.EqualFold(strings.TrimSuffix(o, "/"), origin) {
				return true
			}
		}
		return false
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	return strings.EqualFold(u.Host, r.Host)
}

// Option accessors with defaults.

func (t *WebSocket) initTimeout() time.Duration {
	return orDefault(t.InitTimeout, DefaultInitTimeout)
}

func (t *WebSocket) pingInterval() time.Duration {
	return orDefault(t.PingInterval, DefaultPingInterval)
}

func (t *WebSocket) pongTimeout() time.Duration {
	return orDefault(t.PongTimeout, DefaultPongTimeout)
}

func (t *WebSocket) writeTimeout() time.Duration {
	return orDefault(t.WriteTimeout, DefaultWriteTimeout)
}

func (t *WebSocket) maxSubscriptions() int {
	if t.MaxSubscriptions > 0 {
		return t.MaxSubscriptions
	}
	return DefaultMaxSubscriptions
}

func (t *WebSocket) maxMessageBytes() int64 {
	if t.MaxMessageBytes > 0 {
		return t.MaxMessageBytes
	}
	return DefaultMaxMessageBytes
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// upgradeError answers an upgrade request that is refused, with a GraphQL
// error body.
func upgradeError(w http.ResponseWriter, _ *http.Request, status int, reason error) {
	msg := "the WebSocket upgrade failed"
	if reason != nil {
		msg = reason.Error()
	}
	code := codeBadRequest
	if status == http.StatusForbidden {
		code = codeForbidden
	}
	writeJSONError(w, status, code, msg)
}

// writeJSONError writes {"errors":[{message, extensions.code}]}.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	body, _ := json.Marshal(graphql.Response{Errors: gqlerror.List{codedError(code, msg)}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// headerHasToken reports whether a comma-separated header lists token,
// case-insensitively.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, part := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}
