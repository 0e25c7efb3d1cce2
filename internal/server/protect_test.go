package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"askgate/internal/protect"
	"askgate/resolvers"
)

// nest returns a selection nested n conversation/messages levels deep.
func nest(n int) string {
	q := "id"
	for range n {
		q = "conversation { messages { nodes { " + q + " } } }"
	}
	return "{ conversations { nodes { messages { nodes { " + q + " } } } } }"
}

func repeat(s string, n int, sep string) string {
	parts := make([]string, n)
	for i := range parts {
		parts[i] = strings.ReplaceAll(s, "#", itoa(i))
	}
	return strings.Join(parts, sep)
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

// TestBadOperationsAreRefusedBeforeExecution: every abusive or malformed
// document and request gets its status and code, no resolver and no
// upstream runs for any of them, and the server answers normally after.
func TestBadOperationsAreRefusedBeforeExecution(t *testing.T) {
	e := newEnv(t, envOptions{})
	type req struct{ method, target, contentType, body string }
	gql := func(query string) req {
		b, _ := json.Marshal(map[string]any{"query": query})
		return req{"POST", "/graphql", "application/json", string(b)}
	}
	withVars := func(query string, vars any) req {
		b, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
		return req{"POST", "/graphql", "application/json", string(b)}
	}
	cases := []struct {
		name   string
		req    req
		status int
		codes  []string
	}{
		{"depth bomb", gql(nest(5)), 400, []string{"MAX_DEPTH_LIMIT"}},
		{"alias bomb", gql("{ " + repeat("a#: viewer { id }", 20, " ") + " }"), 400, []string{"MAX_ALIASES_LIMIT", "MAX_ROOT_FIELDS_LIMIT"}},
		{"too many root fields", gql("{ " + repeat("r#: viewer { id }", 11, " ") + " }"), 400, []string{"MAX_ROOT_FIELDS_LIMIT"}},
		{"too many directives", gql("{ viewer { " + repeat("id @include(if: true)", 60, " ") + " } }"), 400, []string{"MAX_DIRECTIVES_LIMIT"}},
		{"depth and aliases together", gql("{ " + repeat("x#: viewer { id }", 16, " ") + " " + strings.TrimSuffix(strings.TrimPrefix(nest(5), "{ "), " }") + " }"), 400, []string{"MAX_DEPTH_LIMIT", "MAX_ALIASES_LIMIT", "MAX_ROOT_FIELDS_LIMIT"}},
		{"5 000 duplicated fields", gql("{ viewer { " + strings.Repeat("name ", 5000) + "} }"), 400, []string{"MAX_TOKENS_LIMIT"}},
		{"5 000 directives", gql("{ viewer " + strings.Repeat("@include(if: true) ", 5000) + "{ id } }"), 400, []string{"MAX_TOKENS_LIMIT"}},
		{"oversized document", gql(`{ conversation(id: "` + strings.Repeat("x", 150<<10) + `") { id } }`), 400, []string{"MAX_DOCUMENT_SIZE_LIMIT"}},
		{"nested connections 100×100", gql("{ conversations(first: 100) { nodes { messages(first: 100) { nodes { id } } } } }"), 400, []string{"COST_LIMIT"}},
		{"introspection depth bomb", gql("{ __schema { types { " + strings.Repeat("fields { type { ", 6) + "name" + strings.Repeat(" } }", 6) + " } } }"), 400, []string{"GRAPHQL_VALIDATION_FAILED"}},
		{"fragment cycle", gql("{ viewer { ...A } } fragment A on User { ...B } fragment B on User { ...A }"), 400, []string{"MAX_DEPTH_LIMIT", "MAX_FIELDS_LIMIT"}},
		// Under the token limit, but pairwise validation of 4 990 fields
		// would take a second: refused before validation.
		{"4 990 duplicated fields", gql("{ viewer { " + strings.Repeat("name ", 4990) + "} }"), 400, []string{"MAX_FIELDS_LIMIT"}},
		{"1 200 repeated root fields", gql("{ " + strings.Repeat("viewer { name } ", 1200) + "}"), 400, []string{"MAX_FIELDS_LIMIT"}},
		{"parse error", gql("{ viewer { "), 400, []string{"GRAPHQL_PARSE_FAILED"}},
		{"unknown field", gql("{ viewer { password } }"), 400, []string{"GRAPHQL_VALIDATION_FAILED"}},
		{"wrong variable type", withVars("query($n: Int) { conversations(first: $n) { totalCount } }", map[string]any{"n": "ten"}), 400, []string{"GRAPHQL_VALIDATION_FAILED"}},
		{"missing required variable", withVars("query($id: ID!) { conversation(id: $id) { id } }", map[string]any{}), 400, []string{"GRAPHQL_VALIDATION_FAILED"}},
		{"variables not an object", req{"POST", "/graphql", "application/json", `{"query":"{ viewer { id } }","variables":"x"}`}, 400, []string{"BAD_REQUEST"}},
		{"two operations, no name", gql("query A { viewer { id } } query B { viewer { name } }"), 400, []string{"GRAPHQL_VALIDATION_FAILED"}},
		{"unknown operation name", req{"POST", "/graphql", "application/json", `{"query":"query A { viewer { id } }","operationName":"B"}`}, 400, []string{"GRAPHQL_VALIDATION_FAILED"}},
		{"hash/body mismatch", req{"POST", "/graphql", "application/json", `{"query":"{ viewer { id } }","extensions":{"persistedQuery":{"version":1,"sha256Hash":"` + sha("other") + `"}}}`}, 400, []string{"PERSISTED_QUERY_HASH_MISMATCH"}},
		{"APQ version 2", req{"POST", "/graphql", "application/json", `{"extensions":{"persistedQuery":{"version":2,"sha256Hash":"` + sha("x") + `"}}}`}, 400, []string{"BAD_REQUEST"}},
		{"oversized body", req{"POST", "/graphql", "application/json", `{"query":"{ viewer { id } }","pad":"` + strings.Repeat("p", 3<<20) + `"}`}, 413, []string{"BAD_REQUEST"}},
		{"ask bomb", gql("mutation { " + repeat(`a#: ask(input: {conversationId: "x", question: "q"}) { answer { id } }`, 6, " ") + " }"), 400, []string{"COST_LIMIT"}},
		{"array batch", req{"POST", "/graphql", "application/json", `[{"query":"{ viewer { id } }"}]`}, 400, []string{"BAD_REQUEST"}},
		{"GET mutation", req{"GET", "/graphql?query=" + url.QueryEscape(`mutation { deleteConversation(id: "x") }`), "", ""}, 405, []string{"BAD_REQUEST"}},
		{"text/plain POST", req{"POST", "/graphql", "text/plain", `{"query":"{ viewer { id } }"}`}, 415, []string{"BAD_REQUEST"}},
		{"form POST", req{"POST", "/graphql", "application/x-www-form-urlencoded", `query=%7B+viewer+%7B+id+%7D+%7D`}, 415, []string{"BAD_REQUEST"}},
		{"bad JSON", req{"POST", "/graphql", "application/json", `{"query": "{ viewer { id } }"`}, 400, []string{"BAD_REQUEST"}},
		{"no query", req{"POST", "/graphql", "application/json", `{}`}, 400, []string{"BAD_REQUEST"}},
	}
	if len(cases) < 25 {
		t.Fatalf("%d cases; the acceptance list asks for at least 25", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store, users, llm := e.Store.Calls(), e.Users.Calls(), e.Backend.Requests()+e.Backend.ModelsRequests()
			hr, _ := http.NewRequest(tc.req.method, e.URL+tc.req.target, strings.NewReader(tc.req.body))
			hr.Header.Set("Authorization", "Bearer "+e.token("alice"))
			hr.Header.Set("Accept", "application/graphql-response+json")
			if tc.req.contentType != "" {
				hr.Header.Set("Content-Type", tc.req.contentType)
			}
			res, err := http.DefaultClient.Do(hr)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body struct {
				Data   json.RawMessage
				Errors []gqlError
			}
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
				t.Fatalf("status %d, body is not JSON: %v", res.StatusCode, err)
			}
			var codes []string
			for _, e := range body.Errors {
				codes = append(codes, e.code())
			}
			if res.StatusCode != tc.status || strings.Join(codes, ",") != strings.Join(tc.codes, ",") {
				t.Errorf("status %d, codes %v; want %d, %v (%+v)", res.StatusCode, codes, tc.status, tc.codes, body.Errors)
			}
			if body.Data != nil {
				t.Errorf("data = %s, want none", body.Data)
			}
			if e.Store.Calls() != store || e.Users.Calls() != users || e.Backend.Requests()+e.Backend.ModelsRequests() != llm {
				t.Errorf("the request reached the store (%d calls), the user service (%d) or the LLM backend (%d)",
					e.Store.Calls()-store, e.Users.Calls()-users, e.Backend.Requests()+e.Backend.ModelsRequests()-llm)
			}
		})
	}
	// The server answers normally after all that.
	var screen screenData
	e.do("alice", screenQuery, map[string]any{"first": 20}, &screen)
}

// TestCostIsReported: every executed operation reports its requested cost;
// the chat screen's is what protect's formula gives (see cost_test.go).
func TestCostIsReported(t *testing.T) {
	e := newEnv(t, envOptions{})
	for query, want := range map[string]float64{
		`{ conversations(first:20){ totalCount nodes{ id title updatedAt owner{ name avatarUrl } messages(last:10){ totalCount nodes{ id role content createdAt author{ name } } } } } }`: 1 + 20*(1+1+(1+10*(1+1))),
		`{ viewer { name } }`: 1,
		// The mutation's weight stands in for its payload object's 1.
		`mutation { startConversation(input: {title: "x"}) { conversation { id } } }`: 10 + 1,
	} {
		raw, _ := json.Marshal(map[string]any{"query": query})
		r := e.rawRequest(http.MethodPost, "/graphql", string(raw), "")
		var ext struct {
			Extensions struct {
				Cost struct{ RequestedQueryCost float64 }
			}
		}
		if err := json.Unmarshal(r.Body, &ext); err != nil {
			t.Fatal(err)
		}
		if got := ext.Extensions.Cost.RequestedQueryCost; got != want || len(r.Errors) > 0 {
			t.Errorf("%s: requestedQueryCost %v, want %v (%s)", query, got, want, r.Body)
		}
	}
}

// TestRepeatedDocumentIsParsedOnce: the second and later requests with a
// document find it parsed and validated in the cache.
func TestRepeatedDocumentIsParsedOnce(t *testing.T) {
	e := newEnv(t, envOptions{})
	for range 3 {
		e.do("alice", screenQuery, map[string]any{"first": 5}, nil)
	}
	res, err := http.Get(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	for _, want := range []string{
		`askgate_graphql_document_cache_lookups_total{result="miss"} 1`,
		`askgate_graphql_document_cache_lookups_total{result="hit"} 2`,
	} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// BenchmarkProtection measures what protecting an operation adds to the
// chat screen, to compare with BenchmarkScreenQuery: parsing and
// validating its document (as on a cache miss), then the operation limits
// and the cost.
func BenchmarkProtection(b *testing.B) {
	schema := resolvers.NewSchema(&resolvers.Resolver{}).Schema()
	limits := protect.Limits{}
	b.ReportAllocs()
	for b.Loop() {
		doc, errs := gqlparser.LoadQueryWithRules(schema, screenQuery, rules.NewDefaultRules())
		if errs != nil {
			b.Fatal(errs)
		}
		op := doc.Operations[0]
		vars := map[string]any{"first": 20}
		if errs := limits.Check(doc, op); errs != nil {
			b.Fatal(errs)
		}
		if err := protect.CheckCost(protect.Cost(schema, doc, op, vars), limits.MaxCost); err != nil {
			b.Fatal(err)
		}
	}
}

// TestCachedDocumentIsCheckedPerOperation: limits apply to the operation a
// request selects, also when its document is already in the cache because
// another of its operations ran.
func TestCachedDocumentIsCheckedPerOperation(t *testing.T) {
	e := newEnv(t, envOptions{})
	doc := "query A { viewer { id } } query B { " + repeat("a#: viewer { id }", 20, " ") + " }"
	send := func(op string) *response {
		body, _ := json.Marshal(map[string]any{"query": doc, "operationName": op})
		req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+e.token("alice"))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		r := &response{Status: res.StatusCode}
		json.NewDecoder(res.Body).Decode(r)
		return r
	}
	if r := send("A"); r.Status != 200 || len(r.Errors) != 0 {
		t.Fatalf("A: %d %+v", r.Status, r.Errors)
	}
	calls := e.Users.Calls()
	r := send("B")
	if r.Status != 400 || !slices.Contains(r.codes(), "MAX_ALIASES_LIMIT") {
		t.Errorf("B after A: %d %v, want 400 MAX_ALIASES_LIMIT", r.Status, r.codes())
	}
	if e.Users.Calls() != calls {
		t.Error("the refused operation called the user service")
	}
}

// TestLimitsOverWebSocket: operations over a WebSocket meet the same
// limits as over HTTP, before anything executes.
func TestLimitsOverWebSocket(t *testing.T) {
	e := newEnv(t, envOptions{})
	c := e.dial("graphql-transport-ws")
	c.init(e.token("alice"))
	before := e.Store.Calls()
	for i, tc := range []struct{ query, code string }{
		{nest(5), "MAX_DEPTH_LIMIT"},
		{"{ conversations(first: 100) { nodes { messages(first: 100) { nodes { id } } } } }", "COST_LIMIT"},
		{"{ viewer " + strings.Repeat("@include(if: true) ", 5000) + "{ id } }", "MAX_TOKENS_LIMIT"},
	} {
		id := fmt.Sprint(i)
		c.send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": tc.query}})
		msg := c.read()
		raw, _ := json.Marshal(msg["payload"])
		var errs []gqlError
		json.Unmarshal(raw, &errs)
		if msg["type"] != "error" || msg["id"] != id || len(errs) == 0 || !slices.Contains(codesOf(errs), tc.code) {
			t.Errorf("%s: got %v, want an error with %s", tc.code, msg, tc.code)
		}
	}
	if e.Store.Calls() != before {
		t.Errorf("refused operations made %d store calls", e.Store.Calls()-before)
	}
	// The connection is still usable.
	c.send(map[string]any{"id": "ok", "type": "subscribe", "payload": map[string]any{"query": "{ viewer { id } }"}})
	msg := c.read()
	cost, _ := msg["payload"].(map[string]any)["extensions"].(map[string]any)["cost"].(map[string]any)
	if msg["type"] != "next" || cost["requestedQueryCost"] != float64(1) {
		t.Errorf("after the refusals: %v, want a result with its cost (1)", msg)
	}
}

func codesOf(errs []gqlError) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.code())
	}
	return out
}
