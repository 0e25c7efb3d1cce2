package subscriptions

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

// A pushed frame is the message encodeResult encodes, in one final,
// unmasked text frame, whatever its length; the frame of the same data
// and id is built once.
func TestPushedFrame(t *testing.T) {
	var ws WebSocket
	for _, size := range []int{0, 1, 125 - 60, 126, 1000, 65535 - 40, 65535, 70000} {
		data := []byte(`{"x":"` + strings.Repeat("a", size) + `"}`)
		for _, legacy := range []bool{false, true} {
			for _, id := range []string{"1", `we"ird<id>`} {
				typ := typeNext
				if legacy {
					typ = typeData
				}
				want, err := encodeResult(typ, id, &graphql.Response{Data: data})
				if err != nil {
					t.Fatal(err)
				}
				f := ws.frame(legacy, id, data)
				if f[0] != 0x81 {
					t.Fatalf("first byte %#x, want a final text frame", f[0])
				}
				var n uint64
				var payload []byte
				switch l := f[1]; {
				case l&0x80 != 0:
					t.Fatal("masked")
				case l < 126:
					n, payload = uint64(l), f[2:]
				case l == 126:
					n, payload = uint64(binary.BigEndian.Uint16(f[2:4])), f[4:]
				default:
					n, payload = binary.BigEndian.Uint64(f[2:10]), f[10:]
				}
				if n != uint64(len(payload)) || !bytes.Equal(payload, want) {
					t.Errorf("size %d, id %q, legacy %v: frame of %d bytes (length %d) does not hold %d bytes of the message", size, id, legacy, len(payload), n, len(want))
				}
				if &ws.frame(legacy, id, data)[0] != &f[0] {
					t.Errorf("size %d: the frame was built again", size)
				}
			}
		}
	}
}

// The peer's pings are answered with its data, as gorilla's own handler
// does.
func TestPingFromThePeer(t *testing.T) {
	h := newHarness(t, nil)
	c := h.connect(t)
	pong := make(chan string, 1)
	c.conn.SetPongHandler(func(s string) error {
		pong <- s
		return nil
	})
	if err := c.conn.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(5*time.Second)); err != nil {
		t.Fatal(err)
	}
	c.roundTrip() // reads the pong frame on its way
	select {
	case s := <-pong:
		if s != "hi" {
			t.Errorf("pong %q, want hi", s)
		}
	default:
		t.Error("no pong before the pong message")
	}
}

// pushSource is a subscription whose results a producer pushes while it is
// parked (see PusherFrom), as an answer's hub does, and hands over the
// usual way when a push is refused.
type pushSource struct {
	mu      sync.Mutex
	first   bool // the first response has been returned
	pending [][]byte
	done    bool
	parked  bool
	wake    func()
	pusher  Pusher
	pushed  int // results pushed
}

// next is the subscription's response handler.
func (s *pushSource) next(ctx context.Context) *graphql.Response {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.first {
		s.first = true
		return &graphql.Response{Data: json.RawMessage(`{"n":0}`)}
	}
	if len(s.pending) > 0 {
		d := s.pending[0]
		s.pending = s.pending[1:]
		return &graphql.Response{Data: d}
	}
	if s.done || ctx.Err() != nil {
		return nil
	}
	if s.wake == nil {
		s.wake, s.pusher = WakeFunc(ctx), PusherFrom(ctx)
	}
	s.parked = true
	return Parked
}

// produce pushes data, or hands it over.
func (s *pushSource) produce(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.parked && len(s.pending) == 0 && s.pusher.Push(data) {
		s.pushed++
		return
	}
	s.pending = append(s.pending, data)
	if s.parked {
		s.parked = false
		s.wake()
	}
}

// end ends the subscription after what is pending.
func (s *pushSource) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done = true
	if s.parked {
		s.parked = false
		s.wake()
	}
}

// Pushed results reach a client that reads nothing until they are all
// produced (its socket fills: pushes are refused or half written), in
// order, intact, each once, and complete follows them.
func TestPushedResultsInOrder(t *testing.T) {
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { n: Int! }
		type Subscription { n: Int! }
	`})
	src := &pushSource{}
	started := make(chan struct{}, 1)
	srv := handler.New(&graphql.ExecutableSchemaMock{
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			return graphql.OneShot(&graphql.Response{Data: json.RawMessage(`{"n":0}`)})
		},
		SchemaFunc: func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 1, true
		},
	})
	// Around the operation, as askgate's server runs answer subscriptions:
	// gqlgen's own response handling (which would write into Parked) is
	// inside.
	srv.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		_ = next(ctx)
		started <- struct{}{}
		return src.next
	})
	h := newHarnessWith(t, srv, nil)
	d := websocket.Dialer{
		Subprotocols: []string{SubprotocolTransportWS},
		NetDialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}).DialContext,
	}
	conn, _, err := d.Dial(h.url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &client{t: t, conn: conn}
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer good"}})
	c.expect("connection_ack", "")
	c.send(subscribeMsg("s", "subscription { n }"))
	<-started
	if m := c.expect("next", "s"); !strings.Contains(string(m.Payload), `"n":0`) {
		t.Fatalf("first result %s", m.Payload)
	}

	const results = 200
	pad := strings.Repeat("x", 32<<10)
	for i := 1; i <= results; i++ {
		src.produce([]byte(`{"n":` + strconv.Itoa(i) + `,"pad":"` + pad + `"}`))
	}
	src.end()
	for i := 1; i <= results; i++ {
		m := c.expect("next", "s")
		var p struct{ Data struct{ N int } }
		if err := json.Unmarshal(m.Payload, &p); err != nil || p.Data.N != i {
			t.Fatalf("result %d: n %d (%v)", i, p.Data.N, err)
		}
	}
	c.expect("complete", "s")
	src.mu.Lock()
	pushed := src.pushed
	src.mu.Unlock()
	if pushed == 0 || pushed == results {
		t.Logf("%d of %d results pushed: the socket never or always took them", pushed, results)
	}
}
