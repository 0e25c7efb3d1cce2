package server_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"askgate/internal/auth"
	"askgate/internal/chat"
)

const askMutation = `mutation($c: ID!, $q: String!, $k: String) {
  ask(input: {conversationId: $c, question: $q, idempotencyKey: $k}) {
    question { id role status content author { id } }
    answer { id role status content model }
  }
}`

const answerSubscription = `subscription($id: ID!, $after: Int) {
  answer(messageId: $id, after: $after) {
    messageId seq delta done
    message { id status content completedAt error usage { promptTokens completionTokens totalTokens } }
  }
}`

type askResult struct {
	Ask struct {
		Question struct{ ID, Role, Status, Content string }
		Answer   struct{ ID, Role, Status, Content, Model string }
	}
}

type answerEvent struct {
	MessageID string `json:"messageId"`
	Seq       int    `json:"seq"`
	Delta     string `json:"delta"`
	Done      bool   `json:"done"`
	Message   *struct {
		ID, Status, Content string
		CompletedAt         *string
		Error               *string
		Usage               *struct{ PromptTokens, CompletionTokens, TotalTokens int }
	} `json:"message"`
}

// startConversation starts an empty conversation for sub and returns its id.
func (e *env) startConversation(sub string) string {
	e.t.Helper()
	var out struct {
		StartConversation struct{ Conversation struct{ ID string } }
	}
	e.do(sub, `mutation { startConversation(input: {title: "t"}) { conversation { id } } }`, nil, &out)
	return out.StartConversation.Conversation.ID
}

// ask asks question in conversation as sub.
func (e *env) ask(sub, conversation, question string) askResult {
	e.t.Helper()
	var out askResult
	e.do(sub, askMutation, map[string]any{"c": conversation, "q": question}, &out)
	return out
}

// wsClient is a graphql-transport-ws (or legacy graphql-ws) client.
type wsClient struct {
	t    testing.TB
	conn *websocket.Conn
}

// dial opens a WebSocket to the gateway with the given subprotocol.
func (e *env) dial(protocol string) *wsClient {
	e.t.Helper()
	d := websocket.Dialer{Subprotocols: []string{protocol}, HandshakeTimeout: 5 * time.Second}
	conn, res, err := d.Dial("ws"+strings.TrimPrefix(e.URL, "http")+"/graphql", nil)
	if err != nil {
		e.t.Fatalf("dial: %v (%v)", err, res)
	}
	e.t.Cleanup(func() { conn.Close() })
	return &wsClient{t: e.t, conn: conn}
}

func (c *wsClient) send(msg map[string]any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(msg); err != nil {
		c.t.Fatal(err)
	}
}

// read returns the next message, failing the test on a close or timeout.
func (c *wsClient) read() map[string]any {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var msg map[string]any
	if err := c.conn.ReadJSON(&msg); err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return msg
}

// closeCode waits for the server to close the connection and returns the
// close code.
func (c *wsClient) closeCode() int {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.conn.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if ok := asCloseError(err, &ce); ok {
			return ce.Code
		}
		c.t.Fatalf("read: %v, want a close frame", err)
	}
}

func asCloseError(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	if ok {
		*ce = e
	}
	return ok
}

// init sends connection_init with a bearer token and waits for the ack.
func (c *wsClient) init(token string) {
	c.t.Helper()
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + token}})
	if msg := c.read(); msg["type"] != "connection_ack" {
		c.t.Fatalf("after connection_init: %v", msg)
	}
}

// events reads the answer events of subscription id until complete.
func (c *wsClient) events(id string) ([]answerEvent, []gqlError) {
	c.t.Helper()
	var out []answerEvent
	for {
		msg := c.read()
		if msg["id"] != id {
			continue
		}
		switch msg["type"] {
		case "next", "data":
			var payload struct {
				Data   struct{ Answer answerEvent }
				Errors []gqlError
			}
			raw, _ := json.Marshal(msg["payload"])
			if err := json.Unmarshal(raw, &payload); err != nil {
				c.t.Fatal(err)
			}
			if len(payload.Errors) > 0 {
				return out, payload.Errors
			}
			out = append(out, payload.Data.Answer)
		case "error":
			var errs []gqlError
			raw, _ := json.Marshal(msg["payload"])
			json.Unmarshal(raw, &errs)
			if len(errs) == 0 { // the legacy protocol sends one error
				var one gqlError
				json.Unmarshal(raw, &one)
				errs = append(errs, one)
			}
			return out, errs
		case "complete":
			return out, nil
		}
	}
}

// next reads the next event of subscription id.
func (c *wsClient) next(id string) answerEvent {
	c.t.Helper()
	for {
		msg := c.read()
		if msg["id"] != id {
			continue
		}
		if msg["type"] != "next" && msg["type"] != "data" {
			c.t.Fatalf("got %v, want an event", msg)
		}
		var p struct{ Data struct{ Answer answerEvent } }
		raw, _ := json.Marshal(msg["payload"])
		if err := json.Unmarshal(raw, &p); err != nil {
			c.t.Fatal(err)
		}
		return p.Data.Answer
	}
}

func subscribeMsg(id, answerID string, after int) map[string]any {
	return map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{
		"query": answerSubscription, "variables": map[string]any{"id": answerID, "after": after},
	}}
}

func joined(events []answerEvent) string {
	var b strings.Builder
	for _, ev := range events {
		b.WriteString(ev.Delta)
	}
	return b.String()
}

// checkEvents checks seqs grow from after and that only the last event is
// done, with the final message.
func checkEvents(t *testing.T, events []answerEvent, after int) {
	t.Helper()
	if len(events) == 0 {
		t.Fatal("no events")
	}
	prev := after
	for i, ev := range events {
		if ev.Seq <= prev {
			t.Errorf("event %d: seq %d after %d", i, ev.Seq, prev)
		}
		prev = ev.Seq
		last := i == len(events)-1
		if ev.Done != last || (ev.Message != nil) != last {
			t.Errorf("event %d of %d: done %v, message %v", i, len(events), ev.Done, ev.Message != nil)
		}
	}
}

func TestAskAndStreamOverWebSocket(t *testing.T) {
	e := newEnv(t, envOptions{})
	tokens := []string{"The ", "answer ", "is ", "forty", "-two", "."}
	e.Backend.SetReply(tokens...)
	e.Backend.Hold()
	conv := e.startConversation("alice")
	res := e.ask("alice", conv, "What is the answer?")

	// ask returned before the backend sent its first token.
	if a := res.Ask.Answer; a.Status != "STREAMING" || a.Content != "" || a.Role != "ASSISTANT" {
		t.Fatalf("answer from ask: %+v", a)
	}
	if q := res.Ask.Question; q.Status != "COMPLETE" || q.Content != "What is the answer?" || q.Role != "USER" {
		t.Fatalf("question from ask: %+v", q)
	}

	c := e.dial("graphql-transport-ws")
	c.init(e.token("alice"))
	c.send(subscribeMsg("1", res.Ask.Answer.ID, 0))
	// Tokens one at a time, so that each arrives as its own event.
	var events []answerEvent
	for range tokens {
		e.Backend.Release(1)
		events = append(events, c.next("1"))
	}
	e.Backend.Unhold()
	rest, errs := c.events("1")
	if errs != nil {
		t.Fatalf("errors: %+v", errs)
	}
	events = append(events, rest...)
	if len(events) != len(tokens)+1 {
		t.Errorf("%d events for %d tokens", len(events), len(tokens))
	}
	checkEvents(t, events, 0)
	want := strings.Join(tokens, "")
	if got := joined(events); got != want {
		t.Errorf("deltas %q, want %q", got, want)
	}
	last := events[len(events)-1]
	if last.MessageID != res.Ask.Answer.ID || last.Message.Status != "COMPLETE" || last.Message.Content != want ||
		last.Message.Usage == nil || last.Message.Usage.TotalTokens == 0 || last.Message.CompletedAt == nil {
		t.Errorf("last event %+v, message %+v", last, last.Message)
	}
	// The saved answer is the streamed text.
	var node struct {
		Node struct{ Content, Status string }
	}
	e.do("alice", `query($id: ID!) { node(id: $id) { ... on Message { content status } } }`, map[string]any{"id": res.Ask.Answer.ID}, &node)
	if node.Node.Content != want || node.Node.Status != "COMPLETE" {
		t.Errorf("saved answer %+v", node.Node)
	}

	// Resubscribing after the third event, on a new connection, delivers
	// exactly the rest.
	c2 := e.dial("graphql-transport-ws")
	c2.init(e.token("alice"))
	n := events[2].Seq
	c2.send(subscribeMsg("a", res.Ask.Answer.ID, n))
	rest, errs = c2.events("a")
	if errs != nil {
		t.Fatal(errs)
	}
	checkEvents(t, rest, n)
	if got := joined(events[:3]) + joined(rest); got != want {
		t.Errorf("first three %q + rest %q != %q", joined(events[:3]), joined(rest), want)
	}
}

func TestSubscriberDisconnectsAndAnotherWatches(t *testing.T) {
	e := newEnv(t, envOptions{})
	tokens := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	e.Backend.SetReply(tokens...)
	e.Backend.Hold()
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "letters").Ask.Answer.ID

	first := e.dial("graphql-transport-ws")
	first.init(e.token("alice"))
	first.send(subscribeMsg("1", id, 0))
	second := e.dial("graphql-transport-ws")
	second.init(e.token("alice"))
	second.send(subscribeMsg("2", id, 0))

	// Both subscribers get the first token before the rest flow.
	e.Backend.Release(1)
	seen := []answerEvent{first.next("1")}
	secondFirst := second.next("2")
	for len(seen) < 3 {
		e.Backend.Release(1)
		seen = append(seen, first.next("1"))
	}
	first.conn.Close() // the tab closes
	e.Backend.Unhold()

	all, errs := second.events("2")
	if errs != nil {
		t.Fatal(errs)
	}
	all = append([]answerEvent{secondFirst}, all...)
	want := strings.Join(tokens, "")
	if joined(all) != want {
		t.Errorf("second subscriber saw %q, want %q", joined(all), want)
	}
	// The answer was saved whole although its first subscriber left.
	if m := all[len(all)-1].Message; m.Content != want || m.Status != "COMPLETE" {
		t.Errorf("saved %+v", m)
	}
	// Reconnecting with after = the last seq seen gives exactly the rest.
	again := e.dial("graphql-transport-ws")
	again.init(e.token("alice"))
	again.send(subscribeMsg("3", id, seen[2].Seq))
	rest, _ := again.events("3")
	if joined(seen)+joined(rest) != want {
		t.Errorf("resumed text %q, want %q", joined(seen)+joined(rest), want)
	}
	// A finished answer yields its final event at once.
	again.send(subscribeMsg("4", id, 0))
	final, _ := again.events("4")
	if len(final) != 1 || !final[0].Done || final[0].Message.Content != want {
		t.Errorf("finished answer gave %+v", final)
	}
}

func TestAnswerOverServerSentEvents(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.Backend.SetReply("over ", "SSE")
	// One token through, the rest held until the stream is open, so that
	// the answer is still streaming when the subscription starts.
	e.Backend.Hold()
	e.Backend.Release(1)
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "q").Ask.Answer.ID

	body, _ := json.Marshal(map[string]any{"query": answerSubscription, "variables": map[string]any{"id": id}})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+e.token("alice"))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("status %d, content type %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	var events []answerEvent
	var event string
	completed := false
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() && !completed {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
			completed = event == "complete"
		case strings.HasPrefix(line, "data: ") && event == "next":
			var p struct {
				Data   struct{ Answer answerEvent }
				Errors []gqlError
			}
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &p); err != nil || len(p.Errors) > 0 {
				t.Fatalf("event %q: %v %+v", line, err, p.Errors)
			}
			events = append(events, p.Data.Answer)
			if len(events) == 1 {
				// Subscribed: let the rest of the answer come.
				e.Backend.Unhold()
			}
		}
	}
	if !completed {
		t.Fatal("no complete event")
	}
	checkEvents(t, events, 0)
	if joined(events) != "over SSE" {
		t.Errorf("text %q; events %+v, last message %+v", joined(events), events, events[len(events)-1].Message)
	}

	// Without a token, SSE is refused like any HTTP request.
	req, _ = http.NewRequest(http.MethodPost, e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	res2, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != 401 {
		t.Errorf("SSE without a token: %d, want 401", res2.StatusCode)
	}
}

func TestAnswerOverLegacyGraphQLWS(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.Backend.SetReply("legacy ", "clients ", "too")
	e.Backend.Hold()
	e.Backend.Release(1)
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "q").Ask.Answer.ID

	c := e.dial("graphql-ws")
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + e.token("alice")}})
	for {
		msg := c.read()
		if msg["type"] == "connection_ack" {
			break
		}
		if msg["type"] != "ka" {
			t.Fatalf("before ack: %v", msg)
		}
	}
	c.send(map[string]any{"id": "1", "type": "start", "payload": map[string]any{"query": answerSubscription, "variables": map[string]any{"id": id}}})
	first := c.next("1")
	e.Backend.Unhold()
	events, errs := c.events("1")
	events = append([]answerEvent{first}, events...)
	if errs != nil {
		t.Fatal(errs)
	}
	checkEvents(t, events, 0)
	if joined(events) != "legacy clients too" {
		t.Errorf("text %q", joined(events))
	}
}

func TestWebSocketAuthentication(t *testing.T) {
	e := newEnv(t, envOptions{})
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "q").Ask.Answer.ID

	t.Run("bad token closes 4403", func(t *testing.T) {
		c := e.dial("graphql-transport-ws")
		c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer not-a-jwt"}})
		if code := c.closeCode(); code != 4403 {
			t.Errorf("close code %d, want 4403", code)
		}
	})
	t.Run("expired while connected closes 4403", func(t *testing.T) {
		tok, err := auth.Mint(e.Secret, auth.MintClaims{Subject: "alice", Scope: "read:chat", TTL: 1500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		c := e.dial("graphql-transport-ws")
		c.init(tok)
		if code := c.closeCode(); code != 4403 {
			t.Errorf("close code %d, want 4403", code)
		}
	})
	t.Run("another user's answer is NOT_FOUND", func(t *testing.T) {
		c := e.dial("graphql-transport-ws")
		c.init(e.token("bob"))
		c.send(subscribeMsg("1", id, 0))
		events, errs := c.events("1")
		if len(events) != 0 || len(errs) != 1 || errs[0].code() != "NOT_FOUND" {
			t.Errorf("bob got %d events and errors %+v", len(events), errs)
		}
	})
	t.Run("a token without read:chat is FORBIDDEN", func(t *testing.T) {
		c := e.dial("graphql-transport-ws")
		c.init(e.token("alice", auth.ScopeWrite))
		c.send(subscribeMsg("1", id, 0))
		events, errs := c.events("1")
		if len(events) != 0 || len(errs) != 1 || errs[0].code() != "FORBIDDEN" {
			t.Errorf("got %d events and errors %+v", len(events), errs)
		}
	})
	t.Run("a header on the upgrade request is accepted", func(t *testing.T) {
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
		h := http.Header{"Authorization": {"Bearer " + e.token("alice")}}
		conn, _, err := d.Dial("ws"+strings.TrimPrefix(e.URL, "http")+"/graphql", h)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := &wsClient{t: t, conn: conn}
		c.send(map[string]any{"type": "connection_init"})
		if msg := c.read(); msg["type"] != "connection_ack" {
			t.Fatalf("got %v", msg)
		}
		c.send(subscribeMsg("1", id, 0))
		if events, errs := c.events("1"); errs != nil || len(events) == 0 {
			t.Errorf("events %d, errors %+v", len(events), errs)
		}
	})
}

func TestAskMutations(t *testing.T) {
	e := newEnv(t, envOptions{})
	conv := e.startConversation("alice")

	t.Run("bad input is BAD_USER_INPUT and stores nothing", func(t *testing.T) {
		cases := []struct {
			name string
			vars map[string]any
		}{
			{"empty question", map[string]any{"c": conv, "q": "   "}},
			{"question over 16 000 characters", map[string]any{"c": conv, "q": strings.Repeat("x", 16001)}},
			{"control characters", map[string]any{"c": conv, "q": "a\x00b"}},
			{"empty idempotency key", map[string]any{"c": conv, "q": "q", "k": ""}},
			{"idempotency key over 128", map[string]any{"c": conv, "q": "q", "k": strings.Repeat("k", 129)}},
		}
		before := e.Store.Calls()
		for _, tc := range cases {
			r := e.post("Bearer "+e.token("alice"), askMutation, tc.vars)
			if codes := r.codes(); len(codes) != 1 || codes[0] != "BAD_USER_INPUT" {
				t.Errorf("%s: codes %v", tc.name, codes)
			}
		}
		if e.Store.Calls() != before || e.Backend.Requests() != 0 {
			t.Errorf("refused asks made %d store calls and %d backend calls", e.Store.Calls()-before, e.Backend.Requests())
		}
	})
	t.Run("unknown model is BAD_USER_INPUT", func(t *testing.T) {
		r := e.post("Bearer "+e.token("alice"), `mutation($c: ID!) { ask(input: {conversationId: $c, question: "q", model: "gpt-nope"}) { answer { id } } }`, map[string]any{"c": conv})
		if codes := r.codes(); len(codes) != 1 || codes[0] != "BAD_USER_INPUT" {
			t.Errorf("codes %v", codes)
		}
	})
	t.Run("a read-only token cannot ask", func(t *testing.T) {
		r := e.post("Bearer "+e.token("alice", auth.ScopeRead), askMutation, map[string]any{"c": conv, "q": "q"})
		if codes := r.codes(); len(codes) != 1 || codes[0] != "FORBIDDEN" {
			t.Errorf("codes %v", codes)
		}
	})
	t.Run("another user's conversation is NOT_FOUND", func(t *testing.T) {
		r := e.post("Bearer "+e.token("bob"), askMutation, map[string]any{"c": conv, "q": "q"})
		if codes := r.codes(); len(codes) != 1 || codes[0] != "NOT_FOUND" {
			t.Errorf("codes %v", codes)
		}
		if e.Backend.Requests() != 0 {
			t.Error("the backend was called")
		}
	})
	t.Run("the same idempotency key twice: one pair, one backend call", func(t *testing.T) {
		var a, b askResult
		vars := map[string]any{"c": conv, "q": "once", "k": "retry-me"}
		e.do("alice", askMutation, vars, &a)
		e.do("alice", askMutation, vars, &b)
		if a.Ask.Question.ID != b.Ask.Question.ID || a.Ask.Answer.ID != b.Ask.Answer.ID {
			t.Errorf("two pairs: %+v %+v", a.Ask, b.Ask)
		}
		var count struct {
			Conversation struct{ Messages struct{ TotalCount int } }
		}
		e.do("alice", `query($c: ID!) { conversation(id: $c) { messages { totalCount } } }`, map[string]any{"c": conv}, &count)
		if count.Conversation.Messages.TotalCount != 2 {
			t.Errorf("%d messages, want 2", count.Conversation.Messages.TotalCount)
		}
		waitFor(t, func() bool { return e.Answers.Running() == 0 })
		if n := e.Backend.Requests(); n != 1 {
			t.Errorf("%d backend calls, want 1", n)
		}
	})
	t.Run("cancelAnswer", func(t *testing.T) {
		e.Backend.Hold()
		defer e.Backend.Unhold()
		calls := e.Backend.Requests()
		id := e.ask("alice", conv, "long one").Ask.Answer.ID
		waitFor(t, func() bool { return e.Backend.Requests() == calls+1 }) // the upstream request is open
		r := e.post("Bearer "+e.token("bob"), `mutation($id: ID!) { cancelAnswer(messageId: $id) { id } }`, map[string]any{"id": id})
		if codes := r.codes(); len(codes) != 1 || codes[0] != "NOT_FOUND" {
			t.Errorf("bob's cancel: codes %v", codes)
		}
		var out struct {
			CancelAnswer struct{ Status, Content string }
		}
		e.do("alice", `mutation($id: ID!) { cancelAnswer(messageId: $id) { status content } }`, map[string]any{"id": id}, &out)
		if out.CancelAnswer.Status != "CANCELLED" {
			t.Errorf("status %s", out.CancelAnswer.Status)
		}
		select {
		case <-e.Backend.Aborted():
		case <-time.After(5 * time.Second):
			t.Error("the upstream request was not closed")
		}
	})
}

func TestStartConversationWithAQuestion(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.Backend.SetReply("Hi", "!")
	e.Backend.Hold()
	e.Backend.Release(1)
	var out struct {
		StartConversation struct {
			Conversation struct{ ID, Title string }
			Question     struct{ ID, Content string }
			Answer       struct{ ID, Status string }
		}
	}
	e.do("alice", `mutation { startConversation(input: {question: "Hello there, how are you today?"}) {
		conversation { id title } question { id content } answer { id status } } }`, nil, &out)
	sc := out.StartConversation
	if sc.Conversation.Title != "Hello there, how are you today?" || sc.Question.Content != "Hello there, how are you today?" || sc.Answer.Status != "STREAMING" {
		t.Fatalf("got %+v", sc)
	}
	c := e.dial("graphql-transport-ws")
	c.init(e.token("alice"))
	c.send(subscribeMsg("1", sc.Answer.ID, 0))
	first := c.next("1")
	e.Backend.Unhold()
	events, errs := c.events("1")
	if errs != nil || first.Delta+joined(events) != "Hi!" {
		t.Errorf("events %q, errors %+v", first.Delta+joined(events), errs)
	}
	// The second question sends the first question and answer along.
	e.Backend.SetReply("Fine.")
	next := e.ask("alice", sc.Conversation.ID, "And you?")
	c.send(subscribeMsg("2", next.Ask.Answer.ID, 0))
	c.events("2")
	got := e.Backend.LastRequest().Messages
	var roles []string
	for _, m := range got {
		roles = append(roles, m.Role+":"+m.Content)
	}
	want := []string{"user:Hello there, how are you today?", "assistant:Hi!", "user:And you?"}
	if fmt.Sprint(roles[len(roles)-3:]) != fmt.Sprint(want) {
		t.Errorf("prompt %v, want it to end with %v", roles, want)
	}
}

func TestModelsQuery(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.Backend.SetModels(chat.Model{ID: "small", OwnedBy: "acme"}, chat.Model{ID: "large"})
	var out struct {
		Models []struct {
			ID        string
			OwnedBy   *string
			IsDefault bool
		}
	}
	e.do("alice", `{ models { id ownedBy isDefault } }`, nil, &out)
	if len(out.Models) != 2 || out.Models[0].ID != "small" || !out.Models[0].IsDefault || out.Models[1].IsDefault {
		t.Errorf("models %+v", out.Models)
	}
}

func TestDeleteConversationStopsItsAnswer(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.Backend.Hold()
	defer e.Backend.Unhold()
	conv := e.startConversation("alice")
	e.ask("alice", conv, "q")
	waitFor(t, func() bool { return e.Backend.Requests() == 1 }) // the upstream request is open
	if e.Answers.Running() != 1 {
		t.Fatalf("%d running", e.Answers.Running())
	}
	e.do("alice", `mutation($id: ID!) { deleteConversation(id: $id) }`, map[string]any{"id": conv}, nil)
	if n := e.Answers.Running(); n != 0 {
		t.Errorf("%d generations still running after delete", n)
	}
	select {
	case <-e.Backend.Aborted():
	case <-time.After(5 * time.Second):
		t.Error("the upstream request was not closed")
	}
}

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
