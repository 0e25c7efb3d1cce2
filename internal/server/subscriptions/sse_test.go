package subscriptions

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// sseEvent is one event of a stream; comment holds a comment line's text.
type sseEvent struct {
	event, data, comment string
}

// sseClient reads an event stream as a test client.
type sseClient struct {
	t    testing.TB
	resp *http.Response
	r    *bufio.Reader
}

// post sends an SSE request with a JSON body.
func (h *harness) post(t testing.TB, ctx context.Context, body string) *sseClient {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.http.URL+"/graphql", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	return h.do(t, req)
}

func (h *harness) do(t testing.TB, req *http.Request) *sseClient {
	t.Helper()
	resp, err := h.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return &sseClient{t: t, resp: resp, r: bufio.NewReader(resp.Body)}
}

// next reads the next event or comment.
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	var ev sseEvent
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading the stream: %v (so far %+v)", err, ev)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			return ev
		case strings.HasPrefix(line, ":"):
			ev.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event:"):
			ev.event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			ev.data = strings.TrimPrefix(line[len("data:"):], " ")
		}
	}
}

// expect reads the next event, skipping keep-alive comments.
func (c *sseClient) expect(event string) sseEvent {
	c.t.Helper()
	for {
		ev := c.next()
		if ev.comment != "" && ev.event == "" {
			continue
		}
		if ev.event != event {
			c.t.Fatalf("got event %+v, want %q", ev, event)
		}
		return ev
	}
}

// expectEnd checks the stream ends after the events read.
func (c *sseClient) expectEnd() {
	c.t.Helper()
	rest, err := io.ReadAll(c.r)
	if err != nil || len(rest) != 0 {
		c.t.Fatalf("after the last event: %q, %v; want the end of the stream", rest, err)
	}
}

func TestSSESubscription(t *testing.T) {
	h := newHarness(t, nil)
	c := h.post(t, context.Background(), `{"query":"subscription { name }"}`)
	if c.resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", c.resp.StatusCode)
	}
	for name, want := range map[string]string{"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"} {
		if got := c.resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	ctx := h.opContext(t, 0)
	for i := range 3 {
		h.gql.SendNextSubscriptionMessage()
		if got, want := c.expect("next").data, firstWithCost(i); got != want {
			t.Errorf("next data %s, want %s", got, want)
		}
	}
	h.gql.SendCompleteSubscriptionMessage()
	if ev := c.expect("complete"); ev.data != "" {
		t.Errorf("complete carries data %q", ev.data)
	}
	c.expectEnd()
	waitDone(t, ctx, "completed subscription")
}

func TestSSEGetAndQuery(t *testing.T) {
	h := newHarness(t, nil)
	req, _ := http.NewRequest(http.MethodGet, h.http.URL+"/graphql?query="+url.QueryEscape("query { name }"), nil)
	req.Header.Set("Accept", "text/event-stream")
	c := h.do(t, req)
	if got, want := c.expect("next").data, firstWithCost(0); got != want {
		t.Errorf("next data %s, want %s", got, want)
	}
	c.expect("complete")
	c.expectEnd()
}

// TestSSERefusedOperations: once the request is a well-formed GraphQL
// request, refusals come through the accepted stream (graphql-sse).
func TestSSERefusedOperations(t *testing.T) {
	tests := []struct {
		name, body, code string
	}{
		{"parse error", `{"query":"subscription {"}`, "GRAPHQL_PARSE_FAILED"},
		{"validation error", `{"query":"subscription { nope }"}`, "GRAPHQL_VALIDATION_FAILED"},
		{"Prepare refuses", `{"query":"subscription { name } #prepare-refuses"}`, "MAX_DEPTH_LIMIT"},
		{"Guard refuses", `{"query":"subscription Expensive { name }"}`, "COST_LIMIT"},
	}
	h := newHarness(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := h.post(t, context.Background(), tt.body)
			if c.resp.StatusCode != http.StatusOK || c.resp.Header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, %s; want 200 text/event-stream", c.resp.StatusCode, c.resp.Header.Get("Content-Type"))
			}
			var got struct {
				Errors []struct {
					Extensions map[string]any `json:"extensions"`
				} `json:"errors"`
			}
			data := c.expect("next").data
			if err := json.Unmarshal([]byte(data), &got); err != nil || len(got.Errors) == 0 || got.Errors[0].Extensions["code"] != tt.code {
				t.Errorf("next data %s, want errors with code %s", data, tt.code)
			}
			c.expect("complete")
			c.expectEnd()
		})
	}
}

// TestSSEBadRequests: a request that is not a GraphQL request is refused
// with a status and a JSON body.
func TestSSEBadRequests(t *testing.T) {
	tests := []struct {
		name, method, contentType, body, query string
		status                                 int
	}{
		{"body not JSON", http.MethodPost, "application/json", `{"query":`, "", http.StatusBadRequest},
		{"body an array", http.MethodPost, "application/json", `[{"query":"{ name }"}]`, "", http.StatusBadRequest},
		{"no query", http.MethodPost, "application/json", `{"variables":{}}`, "", http.StatusBadRequest},
		{"not JSON", http.MethodPost, "text/plain", `subscription { name }`, "", http.StatusUnsupportedMediaType},
		{"too large", http.MethodPost, "application/json", `{"query":"` + strings.Repeat(" ", maxBodyBytes) + `{ name }"}`, "", http.StatusRequestEntityTooLarge},
		{"variables not an object", http.MethodGet, "", "", "query=" + url.QueryEscape("{ name }") + "&variables=1", http.StatusBadRequest},
		{"mutation over GET", http.MethodGet, "", "", "query=" + url.QueryEscape("mutation { name }"), http.StatusMethodNotAllowed},
	}
	h := newHarness(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			guarded := guards.Load()
			defer func() {
				if n := guards.Load() - guarded; n != 0 {
					t.Errorf("a refused request was guarded (charged) %d times", n)
				}
			}()
			req, _ := http.NewRequest(tt.method, h.http.URL+"/graphql?"+tt.query, strings.NewReader(tt.body))
			req.Header.Set("Accept", "text/event-stream")
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			resp, err := h.http.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body struct {
				Errors []struct {
					Message string `json:"message"`
				} `json:"errors"`
			}
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || len(body.Errors) != 1 || body.Errors[0].Message == "" {
				t.Errorf("body: %+v, %v; want one error", body, err)
			}
		})
	}
}

func TestSSEClientDisconnect(t *testing.T) {
	h := newHarness(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	c := h.post(t, ctx, `{"query":"subscription { name }"}`)
	op := h.opContext(t, 0)
	h.gql.SendNextSubscriptionMessage()
	c.expect("next")
	cancel()
	waitDone(t, op, "subscription of a client that left")
}

func TestSSEKeepAlive(t *testing.T) {
	h := newHarness(t, nil)
	h.sse.PingInterval = 20 * time.Millisecond
	c := h.post(t, context.Background(), `{"query":"subscription { name }"}`)
	for range 3 {
		if ev := c.next(); ev.comment != "keep-alive" || ev.event != "" {
			t.Fatalf("got %+v, want a keep-alive comment", ev)
		}
	}
	h.gql.SendNextSubscriptionMessage()
	c.expect("next")
}

func TestSSEShutdown(t *testing.T) {
	h := newHarness(t, nil)
	c := h.post(t, context.Background(), `{"query":"subscription { name }"}`)
	op := h.opContext(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.sse.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitDone(t, op, "subscription at shutdown")
	c.expectEnd() // no complete: the client reconnects
	after := h.post(t, context.Background(), `{"query":"subscription { name }"}`)
	if after.resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status after shutdown %d, want 503", after.resp.StatusCode)
	}
}

func TestSSESupports(t *testing.T) {
	tests := []struct {
		method, accept, upgrade string
		want                    bool
	}{
		{http.MethodPost, "text/event-stream", "", true},
		{http.MethodGet, "text/event-stream", "", true},
		{http.MethodPost, "application/json, text/event-stream;q=0.9", "", true},
		{http.MethodPost, "text/event-stream;q=0", "", false},
		{http.MethodPost, "application/json", "", false},
		{http.MethodPost, "*/*", "", false},
		{http.MethodPut, "text/event-stream", "", false},
		{http.MethodGet, "text/event-stream", "websocket", false},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest(tt.method, "/graphql", nil)
		r.Header.Set("Accept", tt.accept)
		if tt.upgrade != "" {
			r.Header.Set("Upgrade", tt.upgrade)
		}
		if got := (&SSE{}).Supports(r); got != tt.want {
			t.Errorf("Supports(%s, Accept %q, Upgrade %q) = %v, want %v", tt.method, tt.accept, tt.upgrade, got, tt.want)
		}
	}
}

func TestWebSocketSupports(t *testing.T) {
	tests := []struct {
		upgrade string
		want    bool
	}{
		{"websocket", true},
		{"WebSocket", true},
		{"h2c", false},
		{"", false},
	}
	for _, tt := range tests {
		r, _ := http.NewRequest(http.MethodGet, "/graphql", nil)
		if tt.upgrade != "" {
			r.Header.Set("Upgrade", tt.upgrade)
		}
		if got := (&WebSocket{}).Supports(r); got != tt.want {
			t.Errorf("Supports(Upgrade %q) = %v, want %v", tt.upgrade, got, tt.want)
		}
	}
}
