package server_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"askgate/internal/chat"
	"askgate/internal/demo"
	"askgate/internal/store/postgres/pgtest"
)

// panickingStore panics when conversations are looked up, as a bug would.
type panickingStore struct{ chat.Store }

func (panickingStore) ConversationsByID(context.Context, string, []string) ([]*chat.Conversation, error) {
	panic("bug: index out of range [3] with length 3")
}

// CountConversations panics in a resolver itself, outside any loader.
func (panickingStore) CountConversations(context.Context, string) (int, error) {
	panic("bug: nil map write")
}

// TestPanicsAreMasked: a resolver that panics gives the client a plain
// INTERNAL_SERVER_ERROR, without the panic's text or a stack trace; the
// log has both. The server keeps serving.
func TestPanicsAreMasked(t *testing.T) {
	e := newEnv(t, envOptions{store: panickingStore{newSQLiteStore(t)}})
	r := e.post("Bearer "+e.token("alice"), `query($id: ID!) { viewer { name } conversation(id: $id) { title } }`,
		map[string]any{"id": chat.EncodeNodeID(chat.KindConversation, "c1")})
	if got := r.codes(); len(got) != 1 || got[0] != "INTERNAL_SERVER_ERROR" {
		t.Fatalf("codes = %v, want [INTERNAL_SERVER_ERROR]", got)
	}
	if r.Errors[0].Message != "internal server error" || internals.Match(r.Body) || strings.Contains(string(r.Body), "index out of range") {
		t.Errorf("the panic leaked: %s", r.Body)
	}
	if !strings.Contains(string(r.Data), `"name":"Alice"`) {
		t.Errorf("data = %s, want the viewer despite the failed field", r.Data)
	}
	var logged bool
	for _, l := range e.Logs.lines("request error") {
		msg, _ := l["error"].(string)
		logged = logged || strings.Contains(msg, "index out of range") && strings.Contains(msg, "goroutine")
	}
	if !logged {
		t.Errorf("no log line with the panic and its stack:\n%s", e.Logs)
	}
	// A panic in a resolver itself is masked and logged the same way.
	r = e.post("Bearer "+e.token("alice"), `{ conversations { totalCount } }`, nil)
	if got := r.codes(); len(got) != 1 || got[0] != "INTERNAL_SERVER_ERROR" || strings.Contains(string(r.Body), "nil map") {
		t.Errorf("resolver panic: codes %v, body %s", got, r.Body)
	}
	if l := e.Logs.lines("resolver panicked"); len(l) != 1 || !strings.Contains(l[0]["stack"].(string), "goroutine") {
		t.Errorf("resolver panic log lines = %v, want one with the stack", l)
	}
	// The next request is served normally.
	if r := e.post("Bearer "+e.token("alice"), `{ viewer { name } }`, nil); r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Errorf("after the panic: status %d, errors %+v", r.Status, r.Errors)
	}
}

// TestForgedIDsOnPostgres: ids and cursors that decode but hold bytes no
// store can take (NUL, invalid UTF-8, times out of range) are refused with
// the contract's codes instead of reaching PostgreSQL; well-formed cursors
// naming nothing simply page from that position.
func TestForgedIDsOnPostgres(t *testing.T) {
	e := newEnv(t, envOptions{store: pgtest.NewStore(t)})
	if _, err := demo.Seed(context.Background(), e.Store, "alice", 3, 1); err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	cases := []struct {
		name, op string
		vars     map[string]any
		want     string
	}{
		{"conversation id with NUL", `query($id: ID!) { conversation(id: $id) { id } }`, map[string]any{"id": b64("Conversation:a\x00b")}, "NOT_FOUND"},
		{"node id with invalid UTF-8", `query($id: ID!) { node(id: $id) { id } }`, map[string]any{"id": b64("Message:\xff\xfe")}, "NOT_FOUND"},
		{"delete with NUL", `mutation($id: ID!) { deleteConversation(id: $id) }`, map[string]any{"id": b64("Conversation:\x00")}, "NOT_FOUND"},
		{"rename with a huge id", `mutation($id: ID!) { renameConversation(input: {id: $id, title: "x"}) { id } }`, map[string]any{"id": b64("Conversation:" + strings.Repeat("a", 1000))}, "NOT_FOUND"},
		{"cursor id with NUL", `query($c: String) { conversations(after: $c) { totalCount } }`, map[string]any{"c": b64("c:1:a\x00b")}, "BAD_USER_INPUT"},
		{"cursor time out of range", `query($c: String) { conversations(after: $c) { totalCount } }`, map[string]any{"c": b64("c:-1y2p0ij32e8e7:abc")}, "BAD_USER_INPUT"},
		{"well-formed cursor naming nothing", `query($c: String) { conversations(after: $c) { totalCount } }`, map[string]any{"c": b64("c:kz0pz1c0:no-such-id")}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post("Bearer "+e.token("alice"), tc.op, tc.vars)
			var got string
			if len(r.Errors) > 0 {
				got = r.Errors[0].code()
			}
			if got != tc.want {
				t.Errorf("code = %q (%+v), want %q", got, r.Errors, tc.want)
			}
		})
	}
	if l := e.Logs.lines("request error"); len(l) > 0 {
		t.Errorf("forged ids reached the store and failed there: %v", l)
	}
}

// hangingStore never answers a list of conversations until its caller
// gives up.
type hangingStore struct{ chat.Store }

func (hangingStore) ListConversations(ctx context.Context, _ string, _ chat.Page) (*chat.ConversationPage, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestRequestTimeout: a query that runs past the request timeout is cut
// off and answered with an error; the server serves the next one.
func TestRequestTimeout(t *testing.T) {
	e := newEnv(t, envOptions{store: hangingStore{newSQLiteStore(t)}, timeout: 200 * time.Millisecond})
	done := make(chan *response, 1)
	go func() { done <- e.post("Bearer "+e.token("alice"), `{ conversations { totalCount } }`, nil) }()
	select {
	case r := <-done:
		if len(r.Errors) == 0 || internals.Match(r.Body) {
			t.Errorf("timed-out query: %s, want a masked error", r.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the query was not cut off by the request timeout")
	}
	if r := e.post("Bearer "+e.token("alice"), `{ viewer { name } }`, nil); len(r.Errors) > 0 {
		t.Errorf("after a timeout: %+v", r.Errors)
	}
}

// TestRequestTimeoutOverWebSocket: a query over a WebSocket meets the same
// request timeout, while subscriptions on the connection are exempt.
func TestRequestTimeoutOverWebSocket(t *testing.T) {
	e := newEnv(t, envOptions{store: hangingStore{newSQLiteStore(t)}, timeout: 200 * time.Millisecond})
	c := e.dial("graphql-transport-ws")
	c.init(e.token("alice"))
	c.send(map[string]any{"id": "q", "type": "subscribe", "payload": map[string]any{"query": "{ conversations { totalCount } }"}})
	msg := c.read() // within read's 10 s, not never
	raw, _ := json.Marshal(msg["payload"])
	if msg["type"] != "next" || !strings.Contains(string(raw), `"errors"`) || internals.Match(raw) {
		t.Errorf("timed-out query over WebSocket: %v", msg)
	}
}
