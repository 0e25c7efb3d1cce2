package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// wsConn is one WebSocket connection. Its reader goroutine (serve) reads
// the client's messages and has each handled, in order, by a short-lived
// goroutine (handle); a writer (writeLoop) runs while the outgoing queue
// has messages, on the goroutine of the operation that queued the first of
// them (sendWrite) or on one of its own (send); each operation is readied
// by a goroutine of its own (run), then streamed by another (stream),
// which a subscription may release while it waits (see Parked); the
// results of a parked subscription may then be pushed, written straight
// to the socket by the goroutine that has them (see push). Timers
// send pings and enforce the init timeout and the credentials' expiry
// without goroutines of their own.
type wsConn struct {
	t      *WebSocket
	ws     *websocket.Conn
	exec   graphql.GraphExecutor
	legacy bool // graphql-ws rather than graphql-transport-ws
	known  bool // a supported subprotocol was negotiated

	q         chan wsItem   // outgoing messages
	closingCh chan struct{} // closed once the connection is closing
	wg        sync.WaitGroup

	mu         sync.Mutex
	req        *http.Request      // the upgrade request, until connection_init
	opCtx      context.Context    // the parent of operations' contexts; after init, the authenticated one
	authCancel context.CancelFunc // cancels Authenticate's context while it runs
	initSeen   bool
	acked      bool
	closing    bool
	closed     bool // no goroutine may start any more
	draining   bool // the server is shutting down: no new operation starts
	active     int  // operations whose goroutines (run, then stream) have not returned
	writing    bool // a writer goroutine is running
	// controls counts the control frames being written outside the
	// writer (pings, pongs, close replies): no push starts meanwhile.
	controls uint8
	// closeFrame is the close frame the writer is to send once it has
	// written what is queued; closeBy bounds those last writes.
	closeFrame  *closeFrame
	closeBy     time.Time
	ops         []*wsOperation // the running operations (a few: a slice is smaller than a map)
	initTimer   *time.Timer
	pingTimer   *time.Timer
	expiryTimer *time.Timer

	// raw is the socket as pushes write it, once one has (see push).
	raw *rawSocket
}

// wsOperation is an operation running on a connection.
type wsOperation struct {
	id     string
	cancel context.CancelFunc
	// stopped is set when the client has stopped the operation (or, on
	// the legacy subprotocol, started another with its id): nothing more
	// of it is sent.
	stopped atomic.Bool
	// live is set once the operation's first result has been sent or
	// queued: from then on its results may be pushed.
	live atomic.Bool
}

// closeFrame is how the server closes a connection: finals are messages
// that explain the closure (for legacy clients), written after what is
// already queued unless discard is set (a client too slow for it).
type closeFrame struct {
	code    int
	reason  string
	finals  [][]byte
	discard bool
}

// wsItem is an outgoing message; op is the operation it belongs to, if
// any.
type wsItem struct {
	data []byte
	op   *wsOperation
}

func newWSConn(t *WebSocket, ws *websocket.Conn, r *http.Request, exec graphql.GraphExecutor) *wsConn {
	// The connection outlives the upgrade request: keep the request
	// context's values, not its cancellation or deadline. Operations have
	// contexts of their own, cancelled one by one.
	var ctx context.Context
	if t.ConnContext != nil {
		ctx = t.ConnContext(r)
	} else {
		ctx = context.WithoutCancel(r.Context())
	}
	c := &wsConn{
		t:         t,
		ws:        ws,
		exec:      exec,
		q:         make(chan wsItem, queueSize),
		closingCh: make(chan struct{}),
		req:       r,
		opCtx:     ctx,
	}
	switch ws.Subprotocol() {
	case SubprotocolTransportWS:
		c.known = true
	case SubprotocolLegacyWS:
		c.known, c.legacy = true, true
	}
	return c
}

// serve runs the connection until it has ended, then releases it.
func (c *wsConn) serve() {
	defer c.t.forget(c)
	c.ws.SetPongHandler(func(string) error {
		c.extendRead()
		return nil
	})
	// Gorilla's own handlers, but excluding pushes (see beginControl).
	c.ws.SetPingHandler(c.pingHandler)
	c.ws.SetCloseHandler(c.closeHandler)
	if c.known {
		c.mu.Lock()
		c.initTimer = time.AfterFunc(c.t.initTimeout(), c.initTimedOut)
		c.pingTimer = time.AfterFunc(c.t.pingInterval(), c.ping)
		c.mu.Unlock()
		c.extendRead()
	} else {
		// The client offered no subprotocol this server speaks.
		c.shut(CloseSubprotocol, "Subprotocol not acceptable")
	}
	c.readLoop()
	c.end()
}

// readLoop reads and handles messages until the connection fails or the
// peer's close frame arrives. Once the connection is closing it only
// waits for that frame, discarding messages.
func (c *wsConn) readLoop() {
	limit := c.t.maxMessageBytes()
	for {
		_, r, err := c.ws.NextReader()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.extendRead()
		start := graphql.Now()
		data, err := io.ReadAll(io.LimitReader(r, limit+1))
		if err != nil {
			c.readFailed(err)
			return
		}
		if c.isClosing() {
			continue
		}
		if int64(len(data)) > limit {
			c.shut(websocket.CloseMessageTooBig, "Message too big")
			continue
		}
		c.handle(data, start)
	}
}

// handle handles a message on a goroutine of its own and waits for it
// (or for the connection to close). Handling decodes JSON, authenticates
// and so on, which grows a goroutine's stack; the reader, which lives as
// long as the connection, keeps a small one that way (a grown stack is
// kept while a goroutine waits, 8 KiB per idle connection). Messages are
// still handled one at a time, in order.
func (c *wsConn) handle(data []byte, start time.Time) {
	done := make(chan struct{})
	c.wg.Add(1) // the reader has not reached end's Wait
	go func() {
		defer c.wg.Done()
		defer close(done)
		if c.legacy {
			c.handleLegacy(data, start)
		} else {
			c.handleTransportWS(data, start)
		}
	}()
	select {
	case <-done:
	case <-c.closingCh:
	}
}

// readFailed notes why reading ended.
func (c *wsConn) readFailed(err error) {
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		// The peer closed the connection; gorilla has answered its close
		// frame.
	case c.isClosing():
		// Our close frame went unanswered in time, or the connection was
		// dropped.
	default:
		c.t.log().LogAttrs(context.Background(), slog.LevelDebug, "websocket connection lost", slog.String("error", err.Error()))
	}
	c.markClosing(nil)
}

// end stops everything of a connection whose reading has ended and waits
// for its goroutines.
func (c *wsConn) end() {
	c.markClosing(nil)
	c.mu.Lock()
	c.closed = true
	for _, tm := range []*time.Timer{c.initTimer, c.pingTimer, c.expiryTimer} {
		if tm != nil {
			tm.Stop()
		}
	}
	c.mu.Unlock()
	_ = c.ws.Close()
	c.wg.Wait()
}

// extendRead moves the read deadline: a live peer sends something, if only
// a pong, within a ping interval and the pong timeout. A closing
// connection keeps the short deadline writeClose set.
func (c *wsConn) extendRead() {
	if c.isClosing() {
		return
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(c.t.pingInterval() + c.t.pongTimeout()))
	if c.isClosing() { // shut ran meanwhile: restore its deadline
		_ = c.ws.SetReadDeadline(time.Now().Add(closeGrace))
	}
}

func (c *wsConn) isClosing() bool {
	select {
	case <-c.closingCh:
		return true
	default:
		return false
	}
}

// markClosing starts closing the connection: it cancels every operation
// (and an Authenticate call in progress) and, given a close frame, has the
// writer send it after what is queued. It reports whether the connection
// was open.
func (c *wsConn) markClosing(cf *closeFrame) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	c.closeBy = time.Now().Add(min(c.t.writeTimeout(), closeGrace))
	close(c.closingCh)
	ops := c.ops
	c.ops = nil
	authCancel := c.authCancel
	startWriter := false
	if cf != nil && !c.closed {
		c.closeFrame = cf
		if !c.writing {
			startWriter, c.writing = true, true
			c.wg.Add(1)
		}
	}
	c.mu.Unlock()
	for _, op := range ops {
		op.cancel()
	}
	if authCancel != nil {
		authCancel()
	}
	if startWriter {
		go c.writeLoop()
	}
	return true
}

// shut closes the connection with a close frame of code and reason,
// written after the messages already queued and finals (messages that
// explain the closure), then gives the peer closeGrace to answer it.
func (c *wsConn) shut(code int, reason string, finals ...[]byte) {
	c.markClosing(&closeFrame{code: code, reason: reason, finals: finals})
}

// abort drops the connection without a close frame.
func (c *wsConn) abort() {
	c.markClosing(nil)
	_ = c.ws.Close()
}

// closeReason fits a reason into a close frame (123 bytes).
func closeReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// send queues a message. When the queue stays full for WriteTimeout the
// client is not keeping up: the connection closes with 1013, its queued
// messages dropped. It reports whether the message was queued. A writer
// goroutine writes it, unless one is running already.
func (c *wsConn) send(it wsItem) bool { return c.queue(it, false) }

// sendWrite is send for an operation's results: when no writer is
// running, the caller writes the queue itself, rather than start a
// goroutine (whose stack would grow to write) for each message. It waits
// for the write, which WriteTimeout bounds, as send waits for room in the
// queue.
func (c *wsConn) sendWrite(it wsItem) bool { return c.queue(it, true) }

func (c *wsConn) queue(it wsItem, inline bool) bool {
	if c.isClosing() {
		return false
	}
	select {
	case c.q <- it:
	default:
		timer := time.NewTimer(c.t.writeTimeout())
		select {
		case c.q <- it:
			timer.Stop()
		case <-c.closingCh:
			timer.Stop()
			return false
		case <-timer.C:
			c.markClosing(&closeFrame{code: websocket.CloseTryAgainLater, reason: "client too slow", discard: true})
			return false
		}
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	start := !c.writing
	if start {
		c.writing = true
		c.wg.Add(1)
	}
	c.mu.Unlock()
	switch {
	case start && inline:
		c.writeLoop()
	case start:
		go c.writeLoop()
	}
	return true
}

// writeLoop writes what a partial push left (see writeRaw), then queued
// messages until the queue is empty, then the close frame if the
// connection is closing. While it runs (c.writing), it is the only
// goroutine that writes messages (gorilla allows one, and a push needs
// c.writing); pings and the close frame are control frames, which may be
// written concurrently.
func (c *wsConn) writeLoop() {
	defer c.wg.Done()
	if !c.writeRest() {
		return
	}
	for {
		select {
		case it := <-c.q:
			if !c.write(it) {
				return
			}
			continue
		default:
		}
		c.mu.Lock()
		if len(c.q) > 0 {
			c.mu.Unlock()
			continue
		}
		cf := c.closeFrame
		c.closeFrame = nil
		if cf == nil {
			c.writing = false
			c.mu.Unlock()
			return
		}
		deadline := c.closeBy
		c.mu.Unlock()
		c.writeClose(cf, deadline)
		return // writing stays set: the connection is closing
	}
}

// write writes one message. A write that does not finish in time drops
// the connection: no close frame can follow a half-written message.
func (c *wsConn) write(it wsItem) bool {
	if it.op != nil && it.op.stopped.Load() {
		return true
	}
	c.mu.Lock()
	deadline := time.Now().Add(c.t.writeTimeout())
	if c.closing {
		if c.closeFrame != nil && c.closeFrame.discard {
			c.mu.Unlock()
			return true
		}
		deadline = c.closeBy
	}
	c.mu.Unlock()
	_ = c.ws.SetWriteDeadline(deadline)
	if err := c.ws.WriteMessage(websocket.TextMessage, it.data); err != nil {
		c.t.log().LogAttrs(context.Background(), slog.LevelDebug, "websocket write failed", slog.String("error", err.Error()))
		c.abort()
		return false
	}
	return true
}

// writeClose writes the final messages and the close frame, then gives
// the peer closeGrace to answer with its own.
func (c *wsConn) writeClose(cf *closeFrame, deadline time.Time) {
	_ = c.ws.SetWriteDeadline(deadline)
	var err error
	for _, f := range cf.finals {
		if err = c.ws.WriteMessage(websocket.TextMessage, f); err != nil {
			break
		}
	}
	if err == nil {
		err = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(cf.code, closeReason(cf.reason)), deadline)
	}
	if err != nil {
		_ = c.ws.Close()
		return
	}
	_ = c.ws.SetReadDeadline(time.Now().Add(closeGrace))
}

// ping sends a ping frame (and, on the legacy subprotocol once
// acknowledged, a "ka" message) and schedules the next.
func (c *wsConn) ping() {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	ka := c.legacy && c.acked
	c.pingTimer.Reset(c.t.pingInterval())
	c.mu.Unlock()
	r := c.beginControl()
	_ = c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.t.writeTimeout()))
	c.endControl(r)
	if ka {
		c.send(wsItem{data: msgKeepAlive})
	}
}

// initTimedOut closes a connection whose client has sent no
// connection_init in time.
func (c *wsConn) initTimedOut() {
	c.mu.Lock()
	seen := c.initSeen
	c.mu.Unlock()
	if !seen {
		c.shutWithConnectionError(CloseInitTimeout, "Connection initialisation timeout")
	}
}

// expired closes a connection whose credentials have expired.
func (c *wsConn) expired() {
	c.shutWithConnectionError(CloseForbidden, "Forbidden: credentials expired")
}

// shutWithConnectionError closes the connection; on the legacy
// subprotocol, whose clients learn of failures from connection_error
// messages rather than close codes, it sends one first.
func (c *wsConn) shutWithConnectionError(code int, reason string) {
	if c.legacy {
		c.shut(code, reason, connectionError(reason))
		return
	}
	c.shut(code, reason)
}

// connectionInit authenticates the connection and acknowledges it.
func (c *wsConn) connectionInit(payload map[string]any) {
	c.mu.Lock()
	if c.initSeen {
		c.mu.Unlock()
		c.shutWithConnectionError(CloseTooManyInitRequests, "Too many initialisation requests")
		return
	}
	c.initSeen = true
	if c.initTimer != nil {
		c.initTimer.Stop()
		c.initTimer = nil
	}
	ctx, r := c.opCtx, c.req
	authCtx, authCancel := context.WithCancel(ctx)
	c.authCancel = authCancel
	c.mu.Unlock()

	var expiry time.Time
	if c.t.Authenticate != nil {
		actx, exp, err := c.t.Authenticate(authCtx, r.WithContext(authCtx), payload)
		if err == nil && actx == nil {
			err = errors.New("the authenticator returned no context")
		}
		if err != nil {
			authCancel()
			c.t.log().LogAttrs(ctx, slog.LevelDebug, "websocket connection refused", slog.String("error", err.Error()))
			c.shutWithConnectionError(CloseForbidden, "Forbidden")
			return
		}
		// Keep the viewer, not the cancellation of the call.
		ctx, expiry = context.WithoutCancel(actx), exp
	}
	authCancel()
	c.mu.Lock()
	c.authCancel = nil
	if !expiry.IsZero() && !c.closing {
		c.expiryTimer = time.AfterFunc(time.Until(expiry), c.expired)
	}
	c.opCtx, c.req, c.acked = ctx, nil, true
	c.mu.Unlock()
	c.send(wsItem{data: msgConnectionAck})
	if c.legacy {
		c.send(wsItem{data: msgKeepAlive})
	}
}

// subscribe starts an operation. A second operation with the id of a
// running one closes the connection with 4409 (graphql-transport-ws) or
// replaces it (legacy, as Apollo's server does). One over the limit is
// refused with an error message.
func (c *wsConn) subscribe(id string, params *graphql.RawParams) {
	c.mu.Lock()
	if c.closing || c.draining {
		c.mu.Unlock()
		return
	}
	if slices.ContainsFunc(c.ops, func(o *wsOperation) bool { return o.id == id }) {
		if !c.legacy {
			c.mu.Unlock()
			c.shut(CloseSubscriberExists, "Subscriber for "+id+" already exists")
			return
		}
		old := c.removeLocked(id)
		old.stopped.Store(true)
		old.cancel()
	}
	if max := c.t.maxSubscriptions(); len(c.ops) >= max {
		ctx := c.opCtx
		c.mu.Unlock()
		err := codedError(codeRateLimited, "too many operations on this connection: at most "+itoa(max)+" may run at a time")
		c.sendErrors(&wsOperation{id: id}, c.exec.DispatchError(ctx, gqlerror.List{err}).Errors)
		return
	}
	ctx, cancel := context.WithCancel(c.opCtx)
	op := &wsOperation{id: id, cancel: cancel}
	c.ops = append(c.ops, op)
	c.active++
	c.wg.Add(1)
	c.mu.Unlock()
	go c.run(ctx, op, params)
}

// stop ends an operation at the client's request. On the legacy
// subprotocol the server confirms with complete; graphql-transport-ws
// sends nothing more.
func (c *wsConn) stop(id string) {
	c.mu.Lock()
	op := c.removeLocked(id)
	c.mu.Unlock()
	if op == nil {
		return
	}
	op.stopped.Store(true)
	op.cancel()
	if c.legacy {
		c.send(wsItem{data: encodeMessage(typeComplete, id, nil)})
	}
}

// opEnded notes that an operation's last goroutine is returning, its last
// messages queued.
func (c *wsConn) opEnded() {
	c.mu.Lock()
	c.active--
	c.mu.Unlock()
}

// drain stops the connection from starting operations and reports
// whether it still runs some (and is not closing).
func (c *wsConn) drain() (busy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	return c.active > 0 && !c.closing
}

// release removes a finished operation; it reports whether the operation
// was still registered (neither stopped nor replaced).
func (c *wsConn) release(op *wsOperation) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, o := range c.ops {
		if o == op {
			c.ops = slices.Delete(c.ops, i, i+1)
			return true
		}
	}
	return false
}

// removeLocked removes the running operation with id and returns it, or
// nil; c.mu is held.
func (c *wsConn) removeLocked(id string) *wsOperation {
	for i, o := range c.ops {
		if o.id == id {
			c.ops = slices.Delete(c.ops, i, i+1)
			return o
		}
	}
	return nil
}

// run readies an operation (Prepare, parsing, validation, Guard),
// dispatches it, then hands its results to a fresh goroutine, stream: the
// preparation grows this goroutine's stack, which would stay grown for as
// long as a subscription waits for events.
func (c *wsConn) run(ctx context.Context, op *wsOperation, params *graphql.RawParams) {
	defer c.wg.Done()
	handedOver := false
	defer func() {
		if !handedOver {
			op.cancel()
			c.opEnded()
		}
	}()
	ctx = graphql.StartOperationTrace(ctx)
	var oc *graphql.OperationContext
	defer func() {
		if p := recover(); p != nil {
			c.recovered(ctx, op, oc, p)
		}
	}()

	oc, refusal := start(ctx, c.exec, c.t.Ops, params, nil)
	if refusal != nil {
		if c.release(op) {
			c.sendErrors(op, refusal.Errors)
		}
		return
	}
	var w *waker
	if oc.Operation != nil && oc.Operation.Operation == ast.Subscription {
		w = &waker{c: c, op: op}
		ctx = context.WithValue(ctx, wakerKey{}, w)
	}
	responses, ctx := dispatch(ctx, c.exec, oc, c.t.RequestTimeout)
	if w != nil {
		w.resume = func() { go c.stream(ctx, op, oc, responses) }
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.wg.Add(1)
	c.mu.Unlock()
	handedOver = true
	go c.stream(ctx, op, oc, responses)
}

// stream sends an operation's results as they come, then complete. When
// the operation parks (see Parked), stream returns and the operation's
// wake function starts it again.
func (c *wsConn) stream(ctx context.Context, op *wsOperation, oc *graphql.OperationContext, responses graphql.ResponseHandler) {
	parked := false
	defer func() {
		if parked {
			return
		}
		op.cancel()
		c.opEnded()
		c.wg.Done()
	}()
	defer func() {
		if p := recover(); p != nil {
			parked = false
			c.recovered(ctx, op, oc, p)
		}
	}()
	typ := typeNext
	if c.legacy {
		typ = typeData
	}
	for {
		resp := responses(ctx)
		if resp == Parked {
			parked = true
			return
		}
		if resp == nil {
			break
		}
		msg, err := encodeResult(typ, op.id, resp)
		if err != nil {
			c.t.log().LogAttrs(ctx, slog.LevelError, "websocket result not encodable", slog.String("error", err.Error()))
			if c.release(op) {
				c.sendErrors(op, gqlerror.List{codedError(codeInternal, "internal server error")})
			}
			return
		}
		if !c.sendWrite(wsItem{data: msg, op: op}) {
			return
		}
		if !op.live.Load() {
			op.live.Store(true)
		}
	}
	if c.release(op) {
		c.send(wsItem{data: encodeMessage(typeComplete, op.id, nil), op: op})
	}
}

// recovered reports a panic of an operation to the client as an error
// (through the error presenter) and ends the operation.
func (c *wsConn) recovered(ctx context.Context, op *wsOperation, oc *graphql.OperationContext, p any) {
	var err error = errors.New("internal server error")
	if oc != nil && oc.RecoverFunc != nil {
		err = oc.Recover(ctx, p) // the server's recover function logs it
	} else {
		c.t.log().LogAttrs(ctx, slog.LevelError, "panic in a websocket operation", slog.Any("panic", p))
	}
	if c.release(op) {
		c.sendErrors(op, c.exec.DispatchError(ctx, gqlerror.List{internalError(err)}).Errors)
	}
}

// sendErrors sends the error message of an operation refused before it
// ran: an array of GraphQL errors on graphql-transport-ws, the first error
// on the legacy subprotocol (its protocol's payload is one error object).
// No complete follows.
func (c *wsConn) sendErrors(op *wsOperation, errs gqlerror.List) {
	if len(errs) == 0 {
		errs = gqlerror.List{codedError(codeInternal, "internal server error")}
	}
	var payload any = errs
	if c.legacy {
		payload = errs[0]
	}
	b, err := json.Marshal(payload)
	if err != nil {
		b = []byte(`[{"message":"internal server error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]`)
	}
	c.send(wsItem{data: encodeMessage(typeError, op.id, b), op: op})
}

// internalError wraps a recovered panic for the error presenter.
func internalError(err error) *gqlerror.Error {
	var gerr *gqlerror.Error
	if errors.As(err, &gerr) {
		return gerr
	}
	return gqlerror.WrapIfUnwrapped(err)
}

// log returns the transport's logger.
func (t *WebSocket) log() *slog.Logger { return logger(t.Logger) }
