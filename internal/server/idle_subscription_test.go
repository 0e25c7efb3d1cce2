package server_test

import (
	"strings"
	"testing"
)

// An answer subscription waiting for its next event holds no goroutine of
// its own (the transport parks it): stopping it then ends it at once, and
// the connection's other subscriptions, parked or not, go on to the end.
func TestIdleSubscriptionsStopAndResume(t *testing.T) {
	e := newEnv(t, envOptions{})
	tokens := []string{"a", "b", "c", "d"}
	e.Backend.SetReply(tokens...)
	e.Backend.Hold()
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "letters").Ask.Answer.ID

	c := e.dial("graphql-transport-ws")
	c.init(e.token("alice"))
	c.send(subscribeMsg("1", id, 0))
	c.send(subscribeMsg("2", id, 0))
	e.Backend.Release(1)
	for range 2 { // either may come first
		msg := c.read()
		if msg["type"] != "next" || msg["id"] != "1" && msg["id"] != "2" {
			t.Fatalf("got %v, want the first event of 1 or 2", msg)
		}
	}

	// Both wait now; the client stops the first. The pong tells that the
	// server has read the complete: events already on their way when a
	// client stops a subscription may still arrive (the protocol allows
	// it), and the push path writes events the moment they come.
	c.send(map[string]any{"id": "1", "type": "complete"})
	c.send(map[string]any{"type": "ping"})
	if msg := c.read(); msg["type"] != "pong" {
		t.Fatalf("got %v, want pong", msg)
	}
	e.Backend.Unhold()
	var got strings.Builder
	got.WriteString("a")
	for done := false; !done; {
		msg := c.read()
		switch {
		case msg["id"] == "1":
			t.Fatalf("got %v after stopping subscription 1", msg)
		case msg["type"] == "complete":
			done = true
		case msg["type"] == "next":
			p := msg["payload"].(map[string]any)["data"].(map[string]any)["answer"].(map[string]any)
			got.WriteString(p["delta"].(string))
		default:
			t.Fatalf("got %v", msg)
		}
	}
	want := strings.Join(tokens, "")
	if got.String() != want {
		t.Errorf("second subscription got %q, want %q", got.String(), want)
	}
	// The connection still serves: a finished answer's final event.
	c.send(subscribeMsg("3", id, 0))
	final, _ := c.events("3")
	if len(final) != 1 || !final[0].Done || final[0].Message.Content != want {
		t.Errorf("finished answer gave %+v", final)
	}
}
