package subscriptions

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Known limit: gorilla's reader answers a client's protocol error (a bad
// opcode, an unmasked frame) with a close frame written through
// WriteControl, outside beginControl; it can fall in the middle of a
// partially pushed frame. Only that misbehaving client's connection,
// which is ending, is affected.
//
// The push path: a parked subscription's results written by the goroutine
// that has them (an answer's hub, which renders each event once for all
// its subscribers), straight to the socket, rather than by the
// operation's own goroutine through the outgoing queue (see PusherFrom).
//
// A pushed result is one WebSocket frame, built once for every connection
// that sends the same result under the same operation id, and written
// with one non-blocking write system call: a client that does not take it
// at once never holds the pusher. When the socket takes none of it, the
// push fails and the result goes the usual way; when it takes part of it,
// the connection's writer (a goroutine of its own) writes the rest, and
// nothing else is written meanwhile.

// rawSocket is a connection's socket as the push path writes it. It is
// made by the first push.
type rawSocket struct {
	rc syscall.RawConn // nil: the connection cannot be written this way (TLS)
	// mu is held by whoever writes to the socket outside gorilla's
	// message writer: a push (and, after a partial write, the writer until
	// it has written rest), pings, pongs, close replies.
	mu sync.Mutex
	// rest is what a partial push left to write; the writer writes it
	// first (and then unlocks mu).
	rest []byte

	frame []byte // the frame being written, for do
	n     int
	err   error
	fn    func(fd uintptr) bool // do, bound once
}

// do writes frame once, without waiting.
func (r *rawSocket) do(fd uintptr) bool {
	r.n, r.err = syscall.Write(int(fd), r.frame)
	return true
}

// newRawSocket returns the rawSocket of ws.
func newRawSocket(ws *websocket.Conn) *rawSocket {
	r := &rawSocket{}
	if sc, ok := ws.NetConn().(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			r.rc = rc
		}
	}
	r.fn = r.do
	return r
}

// beginControl is called before a control frame is written outside the
// writer: it keeps pushes from starting, and waits for the one writing
// (and for the writer to finish what a partial push left). It returns
// what endControl takes.
func (c *wsConn) beginControl() *rawSocket {
	c.mu.Lock()
	c.controls++
	r := c.raw
	c.mu.Unlock()
	if r != nil && r.rc != nil {
		r.mu.Lock()
		return r
	}
	return nil
}

// endControl ends what beginControl began.
func (c *wsConn) endControl(r *rawSocket) {
	if r != nil {
		r.mu.Unlock()
	}
	c.mu.Lock()
	c.controls--
	c.mu.Unlock()
}

// push sends the result of op whose payload is {"data": data} at once, if
// the connection can take it without waiting (see PusherFrom).
func (c *wsConn) push(op *wsOperation, data []byte) bool {
	if !op.live.Load() || op.stopped.Load() {
		return false
	}
	c.mu.Lock()
	if c.writing || c.closing || c.closed || c.controls > 0 || len(c.q) > 0 {
		c.mu.Unlock()
		return false
	}
	if c.raw == nil {
		c.raw = newRawSocket(c.ws)
	}
	r := c.raw
	if r.rc == nil { // not a plain socket (TLS): the usual way
		c.mu.Unlock()
		return false
	}
	c.writing = true
	c.mu.Unlock()
	pushed, partial := c.writeRaw(r, c.t.frame(c.legacy, op.id, data))
	if !partial {
		c.doneWriting()
	}
	return pushed
}

// writeRaw writes frame to the socket without waiting. pushed reports
// whether the frame was written or is being written; partial, that a
// writer has been started for the rest. The caller holds the writing
// flag; unless partial, it is the caller's to release.
func (c *wsConn) writeRaw(r *rawSocket, frame []byte) (pushed, partial bool) {
	if r.rc == nil || !r.mu.TryLock() {
		return false, false
	}
	if c.isClosing() { // a close frame may have been written meanwhile
		r.mu.Unlock()
		return false, false
	}
	// n is reset: a Write that fails before calling do (the socket
	// closed meanwhile) must not report the previous push's count.
	r.frame, r.n, r.err = frame, 0, nil
	err := r.rc.Write(r.fn)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// The deadline of an earlier write has passed: the push path
		// needs none.
		_ = c.ws.NetConn().SetWriteDeadline(time.Time{})
		err = r.rc.Write(r.fn)
	}
	n := r.n
	if err == nil {
		err = r.err
	} else {
		n = 0
	}
	r.frame, r.err = nil, nil
	switch {
	case n == len(frame):
		r.mu.Unlock()
		return true, false
	case n > 0:
		// The socket took part of the frame: the writer writes the
		// rest, holding r.mu until it has.
		r.rest = frame[n:]
		c.mu.Lock()
		if c.closed {
			c.writing = false
			c.mu.Unlock()
			r.rest = nil
			r.mu.Unlock()
			return true, true
		}
		c.wg.Add(1)
		c.mu.Unlock()
		go c.writeLoop()
		return true, true
	case errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR):
		r.mu.Unlock()
		return false, false
	default:
		r.mu.Unlock()
		c.t.log().LogAttrs(context.Background(), slog.LevelDebug, "websocket write failed", slog.Any("error", err))
		c.abort()
		return false, false
	}
}

// writeRest writes what a partial push left, first thing in the writer.
// It reports whether the connection can still be written.
func (c *wsConn) writeRest() bool {
	r := c.raw // set before this writer started, if by a push
	if r == nil || r.rest == nil {
		return true
	}
	rest := r.rest
	r.rest = nil
	nc := c.ws.NetConn()
	_ = nc.SetWriteDeadline(time.Now().Add(c.t.writeTimeout()))
	_, err := nc.Write(rest)
	_ = nc.SetWriteDeadline(time.Time{})
	r.mu.Unlock()
	if err != nil {
		c.t.log().LogAttrs(context.Background(), slog.LevelDebug, "websocket write failed", slog.String("error", err.Error()))
		c.abort()
		return false
	}
	return true
}

// doneWriting releases the writing flag after a push, or hands it to a
// writer when something was queued meanwhile or a close frame awaits.
func (c *wsConn) doneWriting() {
	c.mu.Lock()
	if (len(c.q) > 0 || c.closeFrame != nil) && !c.closed {
		c.wg.Add(1)
		c.mu.Unlock()
		go c.writeLoop()
		return
	}
	c.writing = false
	c.mu.Unlock()
}

// pingHandler answers the peer's pings, as gorilla's default handler does,
// excluding pushes.
func (c *wsConn) pingHandler(message string) error {
	r := c.beginControl()
	defer c.endControl(r)
	err := c.ws.WriteControl(websocket.PongMessage, []byte(message), time.Now().Add(time.Second))
	if err == websocket.ErrCloseSent {
		return nil
	} else if e, ok := err.(interface{ Temporary() bool }); ok && e.Temporary() {
		return nil
	}
	return err
}

// closeHandler answers the peer's close frame, as gorilla's default
// handler does; the connection is closing from then on, so that nothing is
// pushed after the reply.
func (c *wsConn) closeHandler(code int, _ string) error {
	r := c.beginControl()
	defer c.endControl(r)
	c.markClosing(nil)
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
	return nil
}

// frameCache is the frame last built for a pushed result: the subscribers
// of one answer event on many connections get the same data, usually
// under the same operation id.
type frameCache struct {
	data   []byte
	legacy bool
	id     string
	frame  []byte
}

// frame returns the WebSocket frame (a final text frame, unmasked) of the
// next (or, legacy, data) message of operation id whose payload is
// {"data": data}, as encodeResult encodes it.
func (t *WebSocket) frame(legacy bool, id string, data []byte) []byte {
	if f := t.lastFrame.Load(); f != nil && f.legacy == legacy && len(f.data) == len(data) &&
		(len(data) == 0 || &f.data[0] == &data[0]) && f.id == id {
		return f.frame
	}
	typ := typeNext
	if legacy {
		typ = typeData
	}
	const head, tail = `,"payload":{"data":`, `}}`
	n := len(`{"type":"","id":`) + len(typ) + len(id) + 2 + len(head) + len(data) + len(tail)
	if !plainJSONString(id) {
		n += len(id) * 5 // room enough for most escapes
	}
	b := make([]byte, 10, 10+n)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","id":`...)
	b = appendJSONString(b, id)
	b = append(b, head...)
	b = append(b, data...)
	b = append(b, tail...)
	size := len(b) - 10
	// The header, right-aligned in the 10 bytes reserved for it.
	var start int
	switch {
	case size < 126:
		start = 8
		b[9] = byte(size)
	case size <= 0xffff:
		start = 6
		b[7] = 126
		b[8], b[9] = byte(size>>8), byte(size)
	default:
		start = 0
		b[1] = 127
		for i := 0; i < 8; i++ {
			b[2+i] = byte(uint64(size) >> (56 - 8*i))
		}
	}
	b[start] = 0x80 | websocket.TextMessage // FIN, text
	frame := b[start:]
	t.lastFrame.Store(&frameCache{data: data, legacy: legacy, id: id, frame: frame})
	return frame
}
