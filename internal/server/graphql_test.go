package server_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"askgate/internal/chat"
	"askgate/internal/demo"
)

// seedAlice gives alice a conversation with a question and an answer.
func seedAlice(t *testing.T, e *env) (conv *chat.Conversation, msgs []*chat.Message) {
	t.Helper()
	convs, err := demo.Seed(context.Background(), e.Store, "alice", 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	page, err := e.Store.ListMessages(context.Background(), "alice", []string{convs[0].ID}, chat.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	return convs[0], page[0].Messages
}

// TestAnotherUsersObjectsAreNotFound: for every query, node lookup and
// mutation, bob naming alice's objects gets null and NOT_FOUND, exactly as
// for an id that does not exist, and nothing of alice's changes.
func TestAnotherUsersObjectsAreNotFound(t *testing.T) {
	e := newEnv(t, envOptions{})
	conv, msgs := seedAlice(t, e)
	convID, msgID, userID := conv.NodeID(), msgs[0].NodeID(), chat.EncodeNodeID(chat.KindUser, "alice")
	missing := chat.EncodeNodeID(chat.KindConversation, "no-such-conversation")

	cases := []struct {
		name, op string
		vars     map[string]any
	}{
		{"conversation", `query($id: ID!) { conversation(id: $id) { id title } }`, map[string]any{"id": convID}},
		{"node conversation", `query($id: ID!) { node(id: $id) { id ... on Conversation { title } } }`, map[string]any{"id": convID}},
		{"node message", `query($id: ID!) { node(id: $id) { id ... on Message { content } } }`, map[string]any{"id": msgID}},
		{"node message's conversation", `query($id: ID!) { node(id: $id) { ... on Message { conversation { title } } } }`, map[string]any{"id": msgID}},
		{"node user", `query($id: ID!) { node(id: $id) { id ... on User { name email } } }`, map[string]any{"id": userID}},
		{"rename", `mutation($id: ID!) { renameConversation(input: {id: $id, title: "pwned"}) { id } }`, map[string]any{"id": convID}},
		{"delete", `mutation($id: ID!) { deleteConversation(id: $id) }`, map[string]any{"id": convID}},
		{"ask", `mutation($id: ID!) { ask(input: {conversationId: $id, question: "pwned"}) { answer { id } } }`, map[string]any{"id": convID}},
		{"cancelAnswer", `mutation($id: ID!) { cancelAnswer(messageId: $id) { id status } }`, map[string]any{"id": msgID}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post("Bearer "+e.token("bob"), tc.op, tc.vars)
			if got := r.codes(); len(got) != 1 || got[0] != "NOT_FOUND" {
				t.Fatalf("codes = %v, want [NOT_FOUND]", got)
			}
			if strings.Contains(string(r.Data), "alice") || strings.Contains(string(r.Data), conv.Title) {
				t.Errorf("data %s reveals alice's object", r.Data)
			}
			// The same operation on an id that does not exist reads the same.
			vars := map[string]any{"id": missing}
			if tc.vars["id"] == msgID {
				vars["id"] = chat.EncodeNodeID(chat.KindMessage, "no-such-message")
			} else if tc.vars["id"] == userID {
				vars["id"] = chat.EncodeNodeID(chat.KindUser, "nobody")
			}
			m := e.post("Bearer "+e.token("bob"), tc.op, vars)
			if string(m.Data) != string(r.Data) || m.Errors[0].Message != r.Errors[0].Message {
				t.Errorf("another user's object %s %q differs from a missing one %s %q", r.Data, r.Errors[0].Message, m.Data, m.Errors[0].Message)
			}
		})
	}

	var list struct{ Conversations struct{ TotalCount int } }
	e.do("bob", `{ conversations { totalCount } }`, nil, &list)
	if list.Conversations.TotalCount != 0 {
		t.Errorf("bob's conversations count %d, want 0", list.Conversations.TotalCount)
	}
	var mine struct {
		Conversation struct {
			Title    string
			Messages struct{ TotalCount int }
		}
	}
	e.do("alice", `query($id: ID!) { conversation(id: $id) { title messages { totalCount } } }`, map[string]any{"id": convID}, &mine)
	if mine.Conversation.Title != conv.Title || mine.Conversation.Messages.TotalCount != 2 {
		t.Errorf("alice's conversation after bob's attempts = %+v, want it unchanged", mine.Conversation)
	}
}

// TestBadUserInput: out-of-range page sizes, forged cursors and bad titles
// get BAD_USER_INPUT, and nothing is created.
func TestBadUserInput(t *testing.T) {
	e := newEnv(t, envOptions{})
	conv, _ := seedAlice(t, e)
	forged := "Zm9yZ2Vk" // base64 of "forged"
	msgCursor := (&chat.Message{ID: "x", CreatedAt: time.Now()}).Cursor().Encode(chat.KindMessage)
	cases := []struct {
		name, op string
		vars     map[string]any
	}{
		{"first 101", `{ conversations(first: 101) { totalCount } }`, nil},
		{"first -1", `{ conversations(first: -1) { totalCount } }`, nil},
		{"first 0", `{ conversations(first: 0) { totalCount } }`, nil},
		{"last 101", `{ conversations(last: 101) { totalCount } }`, nil},
		{"first and last", `{ conversations(first: 1, last: 1) { totalCount } }`, nil},
		{"forged cursor", `query($c: String) { conversations(after: $c) { totalCount } }`, map[string]any{"c": forged}},
		{"message cursor on conversations", `query($c: String) { conversations(before: $c) { totalCount } }`, map[string]any{"c": msgCursor}},
		{"nested first 101", `query($id: ID!) { conversation(id: $id) { messages(first: 101) { totalCount } } }`, map[string]any{"id": conv.NodeID()}},
		{"nested forged cursor", `query($id: ID!) { conversation(id: $id) { messages(after: "!!!") { totalCount } } }`, map[string]any{"id": conv.NodeID()}},
		{"empty title", `mutation { startConversation(input: {title: "  "}) { conversation { id } } }`, nil},
		{"10 kB title", `mutation($t: String) { startConversation(input: {title: $t}) { conversation { id } } }`, map[string]any{"t": strings.Repeat("x", 10<<10)}},
		{"rename to empty", `mutation($id: ID!) { renameConversation(input: {id: $id, title: ""}) { id } }`, map[string]any{"id": conv.NodeID()}},
		{"rename to 10 kB", `mutation($id: ID!, $t: String!) { renameConversation(input: {id: $id, title: $t}) { id } }`, map[string]any{"id": conv.NodeID(), "t": strings.Repeat("y", 10<<10)}},
		{"control characters", `mutation { startConversation(input: {title: "a\u0000b"}) { conversation { id } } }`, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.post("Bearer "+e.token("alice"), tc.op, tc.vars)
			if got := r.codes(); len(got) != 1 || got[0] != "BAD_USER_INPUT" {
				t.Errorf("codes = %v (%+v), want [BAD_USER_INPUT]", got, r.Errors)
			}
		})
	}
	var list struct {
		Conversations struct {
			TotalCount int
			Nodes      []struct{ Title string }
		}
	}
	e.do("alice", `{ conversations { totalCount nodes { title } } }`, nil, &list)
	if list.Conversations.TotalCount != 1 || list.Conversations.Nodes[0].Title != conv.Title {
		t.Errorf("after refused input: %+v, want only the seeded conversation, unchanged", list.Conversations)
	}
}

type pageJSON struct {
	Conversations struct {
		TotalCount int
		Edges      []struct {
			Cursor string
			Node   struct{ ID, Title string }
		}
		PageInfo struct {
			HasNextPage, HasPreviousPage bool
			StartCursor, EndCursor       *string
		}
	}
}

// TestConversationPaging: 25 conversations paged forward by 10 and backward
// by 5 come out whole, in order, with the right pageInfo and totalCount,
// and conversations started between pages do not shift the next page.
func TestConversationPaging(t *testing.T) {
	e := newEnv(t, envOptions{})
	if _, err := demo.Seed(context.Background(), e.Store, "alice", 25, 0); err != nil {
		t.Fatal(err)
	}
	const q = `query($first: Int, $after: String, $last: Int, $before: String) {
	  conversations(first: $first, after: $after, last: $last, before: $before) {
	    totalCount edges { cursor node { id title } }
	    pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`
	page := func(vars map[string]any) pageJSON {
		var p pageJSON
		e.do("alice", q, vars, &p)
		return p
	}
	newest := func(i int) string { return fmt.Sprintf("conversation %d", 24-i) } // most recently updated first

	var seen []string
	var after any
	for i, want := range []struct {
		n          int
		next, prev bool
	}{{10, true, false}, {10, true, true}, {5, false, true}} {
		p := page(map[string]any{"first": 10, "after": after})
		c := p.Conversations
		if c.TotalCount != 25+i {
			t.Errorf("forward page %d: totalCount %d, want %d", i, c.TotalCount, 25+i)
		}
		if len(c.Edges) != want.n || c.PageInfo.HasNextPage != want.next || c.PageInfo.HasPreviousPage != want.prev {
			t.Fatalf("forward page %d: %d edges, next %v, prev %v; want %d, %v, %v",
				i, len(c.Edges), c.PageInfo.HasNextPage, c.PageInfo.HasPreviousPage, want.n, want.next, want.prev)
		}
		if *c.PageInfo.StartCursor != c.Edges[0].Cursor || *c.PageInfo.EndCursor != c.Edges[len(c.Edges)-1].Cursor {
			t.Errorf("forward page %d: start/end cursors do not match the edges", i)
		}
		for _, ed := range c.Edges {
			seen = append(seen, ed.Node.Title)
		}
		after = *c.PageInfo.EndCursor
		// A conversation started between pages goes to the top and must
		// not shift the next page.
		e.do("alice", `mutation { startConversation(input: {title: "inserted"}) { conversation { id } } }`, nil, nil)
	}
	for i, title := range seen {
		if title != newest(i) {
			t.Fatalf("forward paging: item %d is %q, want %q (all: %v)", i, title, newest(i), seen)
		}
	}

	// Backward by 5 from the end of the list: the oldest 25 are the seeded
	// ones, whatever was inserted at the top.
	var back []string
	var before any
	for i := 0; i < 5; i++ {
		p := page(map[string]any{"last": 5, "before": before})
		c := p.Conversations
		if len(c.Edges) != 5 || !c.PageInfo.HasPreviousPage || c.PageInfo.HasNextPage != (i > 0) {
			t.Fatalf("backward page %d: %d edges, prev %v, next %v", i, len(c.Edges), c.PageInfo.HasPreviousPage, c.PageInfo.HasNextPage)
		}
		titles := make([]string, len(c.Edges))
		for j, ed := range c.Edges {
			titles[j] = ed.Node.Title
		}
		back = append(titles, back...)
		before = *c.PageInfo.StartCursor
	}
	for i, title := range back {
		if title != newest(i) {
			t.Fatalf("backward paging: item %d is %q, want %q (all: %v)", i, title, newest(i), back)
		}
	}
	// One more step backward reaches the three inserted conversations.
	p := page(map[string]any{"last": 5, "before": before})
	if n := len(p.Conversations.Edges); n != 3 || p.Conversations.PageInfo.HasPreviousPage {
		t.Errorf("last backward page: %d edges, hasPreviousPage %v; want 3, false", n, p.Conversations.PageInfo.HasPreviousPage)
	}
}

// TestUserServiceDown: when the user service fails or is too slow, the
// conversations still arrive, with owner null and UPSTREAM_UNAVAILABLE on
// each owner field, and the service's body never reaches the client. Once
// the breaker is open, no call is made at all.
func TestUserServiceDown(t *testing.T) {
	for _, fault := range []string{"500", "slow"} {
		t.Run(fault, func(t *testing.T) {
			e := newEnv(t, envOptions{})
			if _, err := demo.Seed(context.Background(), e.Store, "alice", 3, 1); err != nil {
				t.Fatal(err)
			}
			if fault == "500" {
				e.Users.SetFailure(http.StatusInternalServerError)
			} else {
				e.Users.SetDelay(2 * time.Second) // the client's timeout is 500ms
			}
			const q = `{ conversations { nodes { title owner { name } messages { nodes { content author { name } } } } } }`
			r := e.post("Bearer "+e.token("alice"), q, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("status %d, want 200", r.Status)
			}
			var data struct {
				Conversations struct {
					Nodes []struct {
						Title string
						Owner *struct{ Name string }
					}
				}
			}
			r.decode(t, &data)
			if len(data.Conversations.Nodes) != 3 {
				t.Fatalf("%d conversations, want 3", len(data.Conversations.Nodes))
			}
			for _, n := range data.Conversations.Nodes {
				if n.Title == "" || n.Owner != nil {
					t.Errorf("conversation %+v: want a title and a null owner", n)
				}
			}
			if len(r.Errors) == 0 {
				t.Fatal("no errors, want UPSTREAM_UNAVAILABLE on the owners")
			}
			for _, err := range r.Errors {
				if err.code() != "UPSTREAM_UNAVAILABLE" {
					t.Errorf("error %+v, want code UPSTREAM_UNAVAILABLE", err)
				}
			}
			if strings.Contains(string(r.Body), "SELECT") || strings.Contains(string(r.Body), "password") {
				t.Errorf("the user service's body leaked: %s", r.Body)
			}
		})
	}

	t.Run("breaker open", func(t *testing.T) {
		e := newEnv(t, envOptions{})
		if _, err := demo.Seed(context.Background(), e.Store, "alice", 1, 0); err != nil {
			t.Fatal(err)
		}
		e.Users.SetFailure(http.StatusServiceUnavailable)
		const q = `{ conversations { nodes { owner { name } } } }`
		for i := 0; i < 10; i++ {
			e.post("Bearer "+e.token("alice"), q, nil)
		}
		calls := e.Users.Calls()
		r := e.post("Bearer "+e.token("alice"), q, nil)
		if got := r.codes(); len(got) != 1 || got[0] != "UPSTREAM_UNAVAILABLE" {
			t.Errorf("codes = %v, want [UPSTREAM_UNAVAILABLE]", got)
		}
		if e.Users.Calls() != calls {
			t.Errorf("the user service was called with the breaker open (%d → %d calls)", calls, e.Users.Calls())
		}
	})
}

// internals matches what must never reach a client: SQL, Go stack traces,
// driver names, upstream bodies.
var internals = regexp.MustCompile(`(?i)select |insert |sqlite|pgx|postgres|goroutine|\.go:\d+|panic|password`)

// TestNoInternalsReachClients: a broken store and a failing user service
// produce masked INTERNAL_SERVER_ERROR and UPSTREAM_UNAVAILABLE errors; the
// details go to the log with the trace id.
func TestNoInternalsReachClients(t *testing.T) {
	st := newSQLiteStore(t)
	e := newEnv(t, envOptions{store: st})
	if _, err := demo.Seed(context.Background(), e.Store, "alice", 2, 1); err != nil {
		t.Fatal(err)
	}
	e.Users.SetFailure(http.StatusInternalServerError)
	r := e.post("Bearer "+e.token("alice"), `{ conversations { nodes { owner { name } } } }`, nil)
	if internals.Match(r.Body) {
		t.Errorf("user service failure leaked internals: %s", r.Body)
	}
	st.Close() // every SQL statement now fails
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r = e.postHeaders(map[string]string{"Authorization": "Bearer " + e.token("alice"), "traceparent": traceparent},
		`{ conversations { totalCount nodes { title } } }`, nil)
	if got := r.codes(); len(got) == 0 || got[0] != "INTERNAL_SERVER_ERROR" {
		t.Fatalf("codes = %v, want INTERNAL_SERVER_ERROR", got)
	}
	if internals.Match(r.Body) {
		t.Errorf("store failure leaked internals: %s", r.Body)
	}
	var logged bool
	for _, l := range e.Logs.lines("request error") {
		if l["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" && l["code"] == "INTERNAL_SERVER_ERROR" && internals.MatchString(l["error"].(string)) {
			logged = true
		}
	}
	if !logged {
		t.Errorf("the store error is not in the log with the trace id:\n%s", e.Logs)
	}
}

// TestOperationLogAndTracing: one log line per operation with its name,
// type, status, codes, user and trace id; the trace continues to the user
// service.
func TestOperationLogAndTracing(t *testing.T) {
	e := newEnv(t, envOptions{})
	seedAlice(t, e)
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	e.postHeaders(map[string]string{
		"Authorization": "Bearer " + e.token("alice"),
		"traceparent":   "00-" + traceID + "-b7ad6b7169203331-01",
	}, `query Screen { conversations { nodes { owner { name } } } }`, nil)
	e.post("Bearer "+e.token("alice"), `query Broken { conversations(first: 500) { totalCount } }`, nil)

	lines := e.Logs.lines("operation")
	if len(lines) != 2 {
		t.Fatalf("%d operation log lines, want 2:\n%s", len(lines), e.Logs)
	}
	first, second := lines[0], lines[1]
	for k, want := range map[string]any{"operation": "Screen", "type": "query", "status": 200.0, "user_id": "alice", "trace_id": traceID} {
		if first[k] != want {
			t.Errorf("first line %s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["duration_ms"].(float64); !ok {
		t.Errorf("first line has no duration_ms: %v", first)
	}
	if codes, _ := second["codes"].([]any); len(codes) != 1 || codes[0] != "BAD_USER_INPUT" {
		t.Errorf("second line codes = %v, want [BAD_USER_INPUT]", second["codes"])
	}
	if tid, _ := second["trace_id"].(string); len(tid) != 32 || tid == traceID {
		t.Errorf("second line trace_id = %q, want a new trace id", tid)
	}
	tp := e.Users.LastRequest().Header.Get("traceparent")
	if !strings.HasPrefix(tp, "00-"+traceID+"-") {
		t.Errorf("traceparent sent to the user service = %q, want trace %s", tp, traceID)
	}
}

// TestHealth: /healthz is always ok; /readyz follows the store.
func TestHealth(t *testing.T) {
	st := newSQLiteStore(t)
	e := newEnv(t, envOptions{store: st})
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200} {
		res, err := http.Get(e.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, res.StatusCode, want)
		}
	}
	st.Close()
	res, err := http.Get(e.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz with the store closed: %d, want 503", res.StatusCode)
	}
}
