package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestGraphQLOverHTTP: the transport's status codes, media types and
// refusals, per the GraphQL over HTTP specification. A refused request
// touches nothing.
func TestGraphQLOverHTTP(t *testing.T) {
	e := newEnv(t, envOptions{})
	authz := "Bearer " + e.token("alice")
	query := func(q string) string { return "/graphql?query=" + url.QueryEscape(q) }
	post := func(body string) string { return body }
	cases := []struct {
		name, method, target, contentType, accept, body string
		wantStatus                                      int
		wantMedia, wantCode                             string
		wantData                                        bool
	}{
		{"GET query", "GET", query(`{ conversations { totalCount } }`), "", "", "", 200, "application/json", "", true},
		{"GET mutation", "GET", query(`mutation { startConversation(input: {}) { conversation { id } } }`), "", "", "", 405, "application/json", "BAD_REQUEST", false},
		{"POST query", "POST", "/graphql", "application/json", "", post(`{"query":"{ conversations { totalCount } }"}`), 200, "application/json", "", true},
		{"graphql-response+json", "POST", "/graphql", "application/json", "application/graphql-response+json", post(`{"query":"{ conversations { totalCount } }"}`), 200, "application/graphql-response+json", "", true},
		{"parse error, graphql-response+json", "POST", "/graphql", "application/json", "application/graphql-response+json", post(`{"query":"{ conversations {"}`), 400, "application/graphql-response+json", "GRAPHQL_PARSE_FAILED", false},
		{"validation error, graphql-response+json", "POST", "/graphql", "application/json", "application/graphql-response+json", post(`{"query":"{ nope }"}`), 400, "application/graphql-response+json", "GRAPHQL_VALIDATION_FAILED", false},
		{"validation error, json", "POST", "/graphql", "application/json", "application/json", post(`{"query":"{ nope }"}`), 200, "application/json", "GRAPHQL_VALIDATION_FAILED", false},
		{"wrong variable type", "POST", "/graphql", "application/json", "application/graphql-response+json", post(`{"query":"query($n: Int) { conversations(first: $n) { totalCount } }","variables":{"n":"ten"}}`), 400, "application/graphql-response+json", "GRAPHQL_VALIDATION_FAILED", false},
		{"text/plain body", "POST", "/graphql", "text/plain", "", post(`{"query":"{ conversations { totalCount } }"}`), 415, "application/json", "BAD_REQUEST", false},
		{"array batch", "POST", "/graphql", "application/json", "", post(`[{"query":"{ conversations { totalCount } }"}]`), 400, "application/json", "BAD_REQUEST", false},
		{"no query", "POST", "/graphql", "application/json", "", post(`{"qeury":"{ conversations { totalCount } }"}`), 400, "application/json", "BAD_REQUEST", false},
		{"bad JSON", "POST", "/graphql", "application/json", "", post(`{"query":`), 400, "application/json", "BAD_REQUEST", false},
		{"3 MB body", "POST", "/graphql", "application/json", "", post(`{"query":"{ conversations { totalCount } }","x":"` + strings.Repeat("x", 3<<20) + `"}`), 413, "application/json", "BAD_REQUEST", false},
		{"PUT", "PUT", "/graphql", "application/json", "", post(`{"query":"{ conversations { totalCount } }"}`), 405, "application/json", "BAD_REQUEST", false},
		{"unacceptable Accept", "POST", "/graphql", "application/json", "text/html", post(`{"query":"{ conversations { totalCount } }"}`), 406, "application/json", "BAD_REQUEST", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			storeBefore := e.Store.Calls()
			req, _ := http.NewRequest(tc.method, e.URL+tc.target, bytes.NewReader([]byte(tc.body)))
			req.Header.Set("Authorization", authz)
			if tc.contentType != "" {
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			raw, _ := io.ReadAll(res.Body)
			if res.StatusCode != tc.wantStatus {
				t.Errorf("status = %d, want %d (%s)", res.StatusCode, tc.wantStatus, raw)
			}
			if got := res.Header.Get("Content-Type"); !strings.HasPrefix(got, tc.wantMedia) {
				t.Errorf("Content-Type = %q, want %s", got, tc.wantMedia)
			}
			var body struct {
				Data   json.RawMessage
				Errors []gqlError
			}
			if err := json.Unmarshal(raw, &body); err != nil {
				t.Fatalf("body %q is not JSON: %v", raw, err)
			}
			if got := body.Data != nil; got != tc.wantData {
				t.Errorf("data present = %v, want %v (%s)", got, tc.wantData, raw)
			}
			var code string
			if len(body.Errors) > 0 {
				code = body.Errors[0].code()
			}
			if code != tc.wantCode {
				t.Errorf("code = %q, want %q", code, tc.wantCode)
			}
			if want := map[string]string{"GET": "POST", "PUT": "GET, POST"}[tc.method]; tc.wantStatus == 405 && res.Header.Get("Allow") != want {
				t.Errorf("Allow = %q, want %q", res.Header.Get("Allow"), want)
			}
			if !tc.wantData && e.Store.Calls() != storeBefore {
				t.Errorf("a refused request made %d store calls", e.Store.Calls()-storeBefore)
			}
		})
	}
	// Nothing was created by the refused GET mutation.
	var list struct{ Conversations struct{ TotalCount int } }
	e.do("alice", `{ conversations { totalCount } }`, nil, &list)
	if list.Conversations.TotalCount != 0 {
		t.Errorf("totalCount = %d after refused requests, want 0", list.Conversations.TotalCount)
	}
}

// TestProductionMode: no introspection, no "did you mean" suggestions and
// no GraphiQL in production; development has all three.
func TestProductionMode(t *testing.T) {
	for _, production := range []bool{false, true} {
		e := newEnv(t, envOptions{production: production})
		authz := "Bearer " + e.token("alice")

		r := e.post(authz, `{ __schema { queryType { name } } }`, nil)
		if introspected := len(r.Errors) == 0; introspected == production {
			t.Errorf("production %v: introspection answered %v (%s)", production, introspected, r.Body)
		}
		if production && (r.Status != 400 || r.codes()[0] != "GRAPHQL_VALIDATION_FAILED" || r.Data != nil) {
			t.Errorf("production introspection: %d %s, want 400 GRAPHQL_VALIDATION_FAILED before execution", r.Status, r.Body)
		}
		for _, typo := range []string{
			`{ conversation { titel } }`,
			`{ conversations(frist: 1) { totalCount } }`,
			`mutation { startConversation(input: {titel: "x"}) { conversation { id } } }`,
		} {
			r = e.post(authz, typo, nil)
			if suggested := strings.Contains(string(r.Body), "Did you mean"); suggested == production {
				t.Errorf("production %v: %s: suggestions shown %v (%s)", production, typo, suggested, r.Body)
			}
		}
		res, err := http.Get(e.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if served := res.StatusCode == 200 && strings.Contains(string(page), "graphiql"); served == production {
			t.Errorf("production %v: GraphiQL served %v (status %d)", production, served, res.StatusCode)
		}
	}
}

// TestSubscriptionOverPlainHTTPIsRefused: a subscription needs WebSocket or
// SSE; a plain POST is refused before anything runs (its shared event
// renderings must never be handed to a plain HTTP response either).
func TestSubscriptionOverPlainHTTPIsRefused(t *testing.T) {
	e := newEnv(t, envOptions{})
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "q").Ask.Answer.ID
	// The answer is generated and saved in the background: once it is
	// done, only the subscription could call the store.
	waitFor(t, func() bool { return e.Answers.Running() == 0 })
	before := e.Store.Calls()
	r := e.post("Bearer "+e.token("alice"), answerSubscription, map[string]any{"id": id})
	if r.Status != 400 || len(r.codes()) != 1 || r.codes()[0] != "BAD_REQUEST" || r.Data != nil {
		t.Errorf("status %d, body %s; want 400 BAD_REQUEST without data", r.Status, r.Body)
	}
	if e.Store.Calls() != before {
		t.Error("the refused subscription reached the store")
	}
}
