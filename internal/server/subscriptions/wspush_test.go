package subscriptions

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/gorilla/websocket"
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
