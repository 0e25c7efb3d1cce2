package server_test

import (
	"net"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// Answer events are pushed to parked subscriptions by the answer's hub,
// straight to their sockets: a subscriber that stops reading (its socket
// full, pushes to it refused or half written) holds neither the answer
// nor the other subscribers, and gets every byte of the text, in order,
// once it reads again.
func TestPushedEventsToSlowAndFastSubscribers(t *testing.T) {
	e := newEnv(t, envOptions{})
	tokens := make([]string, 48)
	for i := range tokens {
		tokens[i] = strings.Repeat(string(rune('a'+i%26)), 24<<10)
	}
	e.Backend.SetReply(tokens...)
	e.Backend.Hold()
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "a long one").Ask.Answer.ID

	// The slow connection runs several subscriptions of the answer, so
	// that what it does not read fills its socket's buffers.
	const slowSubs = 8
	fast := e.dial("graphql-transport-ws")
	fast.init(e.token("alice"))
	slow := dialSmallWindow(t, e)
	slow.init(e.token("alice"))
	fast.send(subscribeMsg("1", id, 0))
	for i := range slowSubs {
		slow.send(subscribeMsg(strconv.Itoa(i), id, 0))
	}
	e.Backend.Release(1)
	if ev := fast.next("1"); ev.Delta != tokens[0] {
		t.Fatalf("first event %d bytes, want the first token", len(ev.Delta))
	}
	got := make(map[string]*strings.Builder)
	for range slowSubs {
		msg := slow.read()
		id, _ := msg["id"].(string)
		if msg["type"] != "next" || got[id] != nil {
			t.Fatalf("got %v, want a first event", msg)
		}
		// The first response reports the operation's cost, as ever.
		if _, ok := msg["payload"].(map[string]any)["extensions"].(map[string]any)["cost"]; !ok {
			t.Errorf("subscription %s: first event without extensions.cost", id)
		}
		got[id] = &strings.Builder{}
		got[id].WriteString(msg["payload"].(map[string]any)["data"].(map[string]any)["answer"].(map[string]any)["delta"].(string))
	}

	// The slow connection reads nothing until the fast one has it all.
	e.Backend.Unhold()
	want := strings.Join(tokens, "")
	events, errs := fast.events("1")
	if len(errs) > 0 {
		t.Fatalf("fast subscriber: %v", errs)
	}
	if got := tokens[0] + joined(events); got != want {
		t.Errorf("fast subscriber got %d bytes, want %d", len(got), len(want))
	}
	checkSeqs(t, events)
	last := make(map[string]int)
	for completed := 0; completed < slowSubs; {
		msg := slow.read()
		id, _ := msg["id"].(string)
		if got[id] == nil {
			t.Fatalf("got %v", msg)
		}
		switch msg["type"] {
		case "next":
			if ext, ok := msg["payload"].(map[string]any)["extensions"]; ok {
				t.Errorf("subscription %s: a later event with extensions %v", id, ext)
			}
			ev := msg["payload"].(map[string]any)["data"].(map[string]any)["answer"].(map[string]any)
			if seq := int(ev["seq"].(float64)); seq <= last[id] {
				t.Errorf("subscription %s: seq %d after %d", id, seq, last[id])
			} else {
				last[id] = seq
			}
			got[id].WriteString(ev["delta"].(string))
			if ev["done"] == true {
				if content := ev["message"].(map[string]any)["content"]; content != want {
					t.Errorf("subscription %s: final message of %d bytes", id, len(content.(string)))
				}
			}
		case "complete":
			completed++
		default:
			t.Fatalf("got %v", msg)
		}
	}
	for id, b := range got {
		if b.Len() != len(want) || b.String() != want {
			t.Errorf("slow subscription %s got %d bytes, want %d", id, b.Len(), len(want))
		}
	}
}

// checkSeqs checks that seqs grow and that only the last event is done.
func checkSeqs(t *testing.T, events []answerEvent) {
	t.Helper()
	for i, ev := range events {
		if i > 0 && ev.Seq <= events[i-1].Seq {
			t.Errorf("event %d: seq %d after %d", i, ev.Seq, events[i-1].Seq)
		}
		if ev.Done != (i == len(events)-1) {
			t.Errorf("event %d of %d: done %v", i, len(events), ev.Done)
		}
	}
}

// dialSmallWindow dials a graphql-transport-ws client whose socket takes
// little before the server's writes must wait.
func dialSmallWindow(t *testing.T, e *env) *wsClient {
	t.Helper()
	d := websocket.Dialer{
		Subprotocols:     []string{"graphql-transport-ws"},
		HandshakeTimeout: 5 * time.Second,
		NetDialContext: (&net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
			// Before the connection is made: its window stays small.
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		}}).DialContext,
	}
	conn, res, err := d.Dial("ws"+strings.TrimPrefix(e.URL, "http")+"/graphql", nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, res)
	}
	t.Cleanup(func() { conn.Close() })
	return &wsClient{t: t, conn: conn}
}
