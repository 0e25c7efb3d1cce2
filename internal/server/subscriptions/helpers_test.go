package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/testserver"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if runBenchClient() {
		return
	}
	goleak.VerifyTestMain(m)
}

// quiet is a logger that discards.
var quiet = slog.New(slog.DiscardHandler)

// testAuth accepts "Bearer good" and "Bearer expiring" (valid for 200 ms),
// from the init payload's authorization or Authorization key or from the
// upgrade request's header.
func testAuth(ctx context.Context, r *http.Request, payload map[string]any) (context.Context, time.Time, error) {
	tok, _ := payload["authorization"].(string)
	if tok == "" {
		tok, _ = payload["Authorization"].(string)
	}
	if tok == "" {
		tok = r.Header.Get("Authorization")
	}
	switch tok {
	case "Bearer good":
		return context.WithValue(ctx, viewerKey{}, "good"), time.Time{}, nil
	case "Bearer expiring":
		return context.WithValue(ctx, viewerKey{}, "expiring"), time.Now().Add(200 * time.Millisecond), nil
	}
	return nil, time.Time{}, errors.New("bad token")
}

type viewerKey struct{}

// testOps refuses in Prepare a query containing "#prepare-refuses" and in
// Guard an operation named Expensive, as askgate's limits and cost checks
// do.
type testOps struct{}

func (testOps) Refused(context.Context) {}

func (testOps) Prepare(ctx context.Context, p *graphql.RawParams) (context.Context, gqlerror.List) {
	if strings.Contains(p.Query, "#prepare-refuses") {
		return ctx, gqlerror.List{codedError("MAX_DEPTH_LIMIT", "the operation is too deep")}
	}
	return ctx, nil
}

// guards counts the operations testOps.Guard saw (charged, in askgate).
var guards atomic.Int64

func (testOps) Guard(_ context.Context, oc *graphql.OperationContext) (int, gqlerror.List) {
	guards.Add(1)
	if oc.Operation != nil && oc.Operation.Name == "Expensive" {
		return 1000, gqlerror.List{codedError("COST_LIMIT", "the operation costs 1000, over the limit of 100")}
	}
	return 1, nil
}

// harness is a gqlgen test server with the transports under test behind
// an httptest.Server.
type harness struct {
	gql  *testserver.TestServer
	http *httptest.Server
	ws   *WebSocket
	sse  *SSE
	url  string // ws://…/graphql

	mu  sync.Mutex
	ops []context.Context // contexts of the operations started, in order
	vws []string          // the viewer seen by each operation
}

// newHarness starts gqlgen's test server; configure adjusts the WebSocket
// transport before use.
func newHarness(t testing.TB, configure func(*WebSocket)) *harness {
	t.Helper()
	gql := testserver.New()
	h := newHarnessWith(t, gql.Server, configure)
	h.gql = gql
	return h
}

// newBigHarness starts a server whose subscriptions produce 64 KiB results
// as fast as they are taken, until their context ends.
func newBigHarness(t testing.TB, configure func(*WebSocket)) *harness {
	t.Helper()
	schema := gqlparser.MustLoadSchema(&ast.Source{Input: `
		type Query { name: String! }
		type Subscription { name: String! }
	`})
	big := json.RawMessage(`{"name":"` + strings.Repeat("x", 64<<10) + `"}`)
	srv := handler.New(&graphql.ExecutableSchemaMock{
		ExecFunc: func(ctx context.Context) graphql.ResponseHandler {
			if graphql.GetOperationContext(ctx).Operation.Operation != ast.Subscription {
				return graphql.OneShot(&graphql.Response{Data: json.RawMessage(`{"name":"x"}`)})
			}
			return func(context.Context) *graphql.Response {
				if ctx.Err() != nil {
					return nil
				}
				return &graphql.Response{Data: big}
			}
		},
		SchemaFunc: func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 1, true
		},
	})
	return newHarnessWith(t, srv, configure)
}

func newHarnessWith(t testing.TB, srv *handler.Server, configure func(*WebSocket)) *harness {
	t.Helper()
	h := &harness{
		ws:  &WebSocket{Authenticate: testAuth, Ops: testOps{}, Logger: quiet},
		sse: &SSE{Ops: testOps{}, Logger: quiet},
	}
	if configure != nil {
		configure(h.ws)
	}
	srv.AddTransport(h.ws)
	srv.AddTransport(h.sse)
	srv.AroundOperations(func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		v, _ := ctx.Value(viewerKey{}).(string)
		h.mu.Lock()
		h.ops = append(h.ops, ctx)
		h.vws = append(h.vws, v)
		h.mu.Unlock()
		return next(ctx)
	})
	mux := http.NewServeMux()
	mux.Handle("/graphql", srv)
	h.http = httptest.NewServer(mux)
	h.url = "ws" + strings.TrimPrefix(h.http.URL, "http") + "/graphql"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.ws.Shutdown(ctx); err != nil {
			t.Errorf("WebSocket.Shutdown: %v", err)
		}
		if err := h.sse.Shutdown(ctx); err != nil {
			t.Errorf("SSE.Shutdown: %v", err)
		}
		h.http.Close()
	})
	return h
}

// opContext waits for the context of the i-th operation started.
func (h *harness) opContext(t testing.TB, i int) context.Context {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		if len(h.ops) > i {
			ctx := h.ops[i]
			h.mu.Unlock()
			return ctx
		}
		h.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("operation %d never started", i)
	return nil
}

// waitDone fails unless ctx ends within a few seconds.
func waitDone(t testing.TB, ctx context.Context, what string) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: the operation's context did not end", what)
	}
}

// client is a test WebSocket client.
type client struct {
	t    testing.TB
	conn *websocket.Conn
}

// dial connects with the given subprotocols (none when empty).
func (h *harness) dial(t testing.TB, header http.Header, protocols ...string) *client {
	t.Helper()
	c, resp, err := h.tryDial(header, protocols...)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial: %v (status %d)", err, status)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, conn: c}
}

func (h *harness) tryDial(header http.Header, protocols ...string) (*websocket.Conn, *http.Response, error) {
	d := websocket.Dialer{Subprotocols: protocols, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(h.url, header)
	if resp != nil && resp.Body != nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return c, resp, err
}

// connect dials graphql-transport-ws and completes initialisation.
func (h *harness) connect(t testing.TB) *client {
	t.Helper()
	c := h.dial(t, nil, SubprotocolTransportWS)
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer good"}})
	c.expect("connection_ack", "")
	return c
}

// connectLegacy dials graphql-ws and completes initialisation.
func (h *harness) connectLegacy(t testing.TB) *client {
	t.Helper()
	c := h.dial(t, nil, SubprotocolLegacyWS)
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer good"}})
	c.expect("connection_ack", "")
	c.expect("ka", "")
	return c
}

func (c *client) send(v any) {
	c.t.Helper()
	if err := c.conn.WriteJSON(v); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	if err := c.conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// message is a server message as the tests read it.
type message struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Payload json.RawMessage `json:"payload"`
}

// read returns the next message, skipping legacy keep-alives unless
// wanted.
func (c *client) read() message {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, data, err := c.conn.ReadMessage()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	var m message
	if err := json.Unmarshal(data, &m); err != nil {
		c.t.Fatalf("read: %s is not a message: %v", data, err)
	}
	return m
}

// expect reads the next message and checks its type and id.
func (c *client) expect(typ, id string) message {
	c.t.Helper()
	m := c.read()
	if m.Type != typ || m.ID != id {
		c.t.Fatalf("got message %+v (payload %s), want type %q id %q", m, m.Payload, typ, id)
	}
	return m
}

// expectSkippingKA is expect skipping legacy "ka" messages.
func (c *client) expectSkippingKA(typ, id string) message {
	c.t.Helper()
	for {
		m := c.read()
		if m.Type == "ka" {
			continue
		}
		if m.Type != typ || m.ID != id {
			c.t.Fatalf("got message %+v (payload %s), want type %q id %q", m, m.Payload, typ, id)
		}
		return m
	}
}

// expectClose reads until the server's close frame and checks its code;
// it returns the reason. Messages before it are returned too.
func (c *client) expectClose(code int) (reason string, before []message) {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				c.t.Fatalf("want close %d, got %v", code, err)
			}
			if ce.Code != code {
				c.t.Fatalf("close code %d (%q), want %d", ce.Code, ce.Text, code)
			}
			if ce.Text == "" {
				c.t.Errorf("close %d carries no reason", code)
			}
			return ce.Text, before
		}
		var m message
		_ = json.Unmarshal(data, &m)
		before = append(before, m)
	}
}

// roundTrip checks the connection still works: ping → pong.
func (c *client) roundTrip() {
	c.t.Helper()
	c.send(map[string]any{"type": "ping", "payload": map[string]any{"check": true}})
	c.expect("pong", "")
}

// errorsOf decodes an error payload (an array of GraphQL errors).
func errorsOf(t testing.TB, payload json.RawMessage) []gqlerror.Error {
	t.Helper()
	var errs []gqlerror.Error
	if err := json.Unmarshal(payload, &errs); err != nil {
		t.Fatalf("error payload %s: %v", payload, err)
	}
	return errs
}

func codeOf(e gqlerror.Error) any { return e.Extensions["code"] }

func subscribeMsg(id, query string) map[string]any {
	return map[string]any{"type": "subscribe", "id": id, "payload": map[string]any{"query": query}}
}

// firstWithCost is the test schema's i-th result: the first reports the
// operation's cost (1 with testOps).
func firstWithCost(i int) string {
	if i == 0 {
		return `{"data":{"name":"test"},"extensions":{"cost":{"requestedQueryCost":1}}}`
	}
	return `{"data":{"name":"test"}}`
}
