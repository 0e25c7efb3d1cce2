package protect

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// screenData returns the data of screenQuery with convs conversations of
// msgs messages each.
func screenData(convs, msgs int) []byte {
	nodes := make([]any, convs)
	for i := range nodes {
		messages := make([]any, msgs)
		for j := range messages {
			messages[j] = map[string]any{"id": fmt.Sprint(j), "role": "USER", "content": "hi", "createdAt": "x", "author": map[string]any{"name": "Ada"}}
		}
		nodes[i] = map[string]any{
			"id": fmt.Sprint(i), "title": "t", "updatedAt": "x",
			"owner":    map[string]any{"name": "Ada", "avatarUrl": nil},
			"messages": map[string]any{"totalCount": msgs, "nodes": messages},
		}
	}
	b, err := json.Marshal(map[string]any{"conversations": map[string]any{"totalCount": convs, "nodes": nodes}})
	if err != nil {
		panic(err)
	}
	return b
}

func TestActualCost(t *testing.T) {
	schema := loadRealSchema(t)
	doc, op := validQuery(t, schema, screenQuery)
	tests := []struct {
		name string
		data []byte
		want int
	}{
		{"full pages cost what was requested", screenData(20, 10), 461},
		{"3 conversations of 2 messages", screenData(3, 2), 1 + 3*(1+1+(1+2*(1+1)))},
		{"no conversations", screenData(0, 0), 1},
		{"data null: nothing refunded", []byte(`null`), 461},
		{"no data: nothing refunded", nil, 461},
	}
	for _, tt := range tests {
		if got := ActualCost(schema, doc, op, nil, tt.data); got != tt.want {
			t.Errorf("%s: ActualCost = %d, want %d", tt.name, got, tt.want)
		}
	}

	for _, tt := range []struct {
		name, query, data string
		vars              map[string]any
		want, requested   int
	}{
		{name: "a null object costs its weight only",
			query: `{ conversation(id: "x") { title owner { name } } }`,
			data:  `{"conversation": null}`, want: 1, requested: 2},
		{name: "an object costs its selection",
			query: `{ conversation(id: "x") { title owner { name } } }`,
			data:  `{"conversation": {"title": "t", "owner": {"name": "Ada"}}}`, want: 2, requested: 2},
		{name: "a skipped field costs nothing",
			query: `query($s: Boolean!) { viewer @skip(if: $s) { name } conversation(id: "x") { id } }`,
			vars:  map[string]any{"s": true}, data: `{"conversation": {"id": "x"}}`, want: 1, requested: 1},
		{name: "edges count as they came, pageInfo once, a null owner its weight",
			query: `{ conversations(first: 5) { pageInfo { hasNextPage } edges { cursor node { owner { name } } } } }`,
			data:  `{"conversations": {"pageInfo": {"hasNextPage": false}, "edges": [{"cursor": "a", "node": {"owner": {"name": "A"}}}, {"cursor": "b", "node": {"owner": null}}]}}`,
			want:  1 + 1 + 2*(1+1+1), requested: 1 + 1 + 5*(1+1+1)},
		{name: "a fragment's field merged differently where it is spread",
			query: `fragment F on Conversation { messages(first: 5) { totalCount } }
				{ a: conversation(id: "x") { ...F } b: conversation(id: "y") { ...F messages(first: 5) { nodes { id author { name } } } } }`,
			data: `{"a": {"messages": {"totalCount": 0}}, "b": {"messages": {"totalCount": 5, "nodes": [` +
				strings.Repeat(`{"id": "m", "author": {"name": "A"}},`, 4) + `{"id": "m", "author": {"name": "A"}}]}}}`,
			want: 2 + 1 + 1 + 5*(1+1), requested: 2 + 1 + 1 + 5*(1+1)},
		{name: "an alias named __typename says nothing of the type",
			query: `{ node(id: "x") { ... on Conversation { __typename: title messages(first: 3) { nodes { id } } } } }`,
			data:  `{"node": {"__typename": "User", "messages": {"nodes": [{"id": "a"}, {"id": "b"}, {"id": "c"}]}}}`,
			want:  1 + 1 + 3, requested: 1 + 1 + 3},
		{name: "the real __typename gives the type",
			query: `{ node(id: "x") { __typename ... on Conversation { messages(first: 3) { nodes { id } } } } }`,
			data:  `{"node": {"__typename": "Message"}}`,
			want:  1, requested: 1 + 1 + 3},
		{name: "a mutation that returned null keeps its weight",
			query: `mutation { renameConversation(input: {id: "x", title: "t"}) { id } }`,
			data:  `{"renameConversation": null}`, want: 10, requested: 10},
	} {
		doc, op := validQuery(t, schema, tt.query)
		if got := Cost(schema, doc, op, tt.vars); got != tt.requested {
			t.Errorf("%s: Cost = %d, want %d", tt.name, got, tt.requested)
		}
		if got := ActualCost(schema, doc, op, tt.vars, []byte(tt.data)); got != tt.want {
			t.Errorf("%s: ActualCost = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// BenchmarkActualCost is the work of an actualQueryCost: decoding the
// response and walking it, for the screen query's full 58 kB-class page.
func BenchmarkActualCost(b *testing.B) {
	schema := loadRealSchema(b)
	doc, op := validQuery(b, schema, screenQuery)
	data := screenData(20, 10)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		ActualCost(schema, doc, op, nil, data)
	}
}
