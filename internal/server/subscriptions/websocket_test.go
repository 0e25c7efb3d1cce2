package subscriptions

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestTransportWSSubscription(t *testing.T) {
	h := newHarness(t, nil)
	c := h.connect(t)

	c.send(subscribeMsg("s1", "subscription { name }"))
	ctx := h.opContext(t, 0)
	for i := range 3 {
		h.gql.SendNextSubscriptionMessage()
		m := c.expect("next", "s1")
		if got, want := string(m.Payload), firstWithCost(i); got != want {
			t.Errorf("next payload %s, want %s", got, want)
		}
	}
	h.gql.SendCompleteSubscriptionMessage()
	c.expect("complete", "s1")
	waitDone(t, ctx, "completed subscription")
	if got := h.vws[0]; got != "good" {
		t.Errorf("the operation ran as viewer %q, want the authenticated one", got)
	}
}

func TestTransportWSQueryAndMutation(t *testing.T) {
	h := newHarness(t, nil)
	c := h.connect(t)

	c.send(subscribeMsg("q", "query { name }"))
	if got, want := string(c.expect("next", "q").Payload), firstWithCost(0); got != want {
		t.Errorf("query result %s, want %s", got, want)
	}
	c.expect("complete", "q")

	// The test schema refuses mutations with a resolver error: a result,
	// not a refusal.
	c.send(subscribeMsg("m", "mutation { name }"))
	m := c.expect("next", "m")
	if !strings.Contains(string(m.Payload), "mutations are not supported") {
		t.Errorf("mutation result %s", m.Payload)
	}
	c.expect("complete", "m")
}

func TestLegacySubscription(t *testing.T) {
	h := newHarness(t, nil)
	c := h.connectLegacy(t)

	c.send(map[string]any{"type": "start", "id": "1", "payload": map[string]any{"query": "subscription { name }"}})
	ctx := h.opContext(t, 0)
	for i := range 3 {
		h.gql.SendNextSubscriptionMessage()
		m := c.expectSkippingKA("data", "1")
		if got, want := string(m.Payload), firstWithCost(i); got != want {
			t.Errorf("data payload %s, want %s", got, want)
		}
	}
	h.gql.SendCompleteSubscriptionMessage()
	c.expectSkippingKA("complete", "1")
	waitDone(t, ctx, "completed subscription")

	// stop ends a running subscription, and the server confirms.
	c.send(map[string]any{"type": "start", "id": "2", "payload": map[string]any{"query": "subscription { name }"}})
	ctx = h.opContext(t, 1)
	c.send(map[string]any{"type": "stop", "id": "2"})
	c.expectSkippingKA("complete", "2")
	waitDone(t, ctx, "stopped subscription")

	// connection_terminate closes normally.
	c.send(map[string]any{"type": "connection_terminate"})
	c.expectClose(websocket.CloseNormalClosure)
}

func TestLegacyKeepAlive(t *testing.T) {
	h := newHarness(t, func(ws *WebSocket) { ws.PingInterval = 30 * time.Millisecond })
	c := h.connectLegacy(t)
	for range 3 {
		c.expect("ka", "")
	}
}

func TestLegacyErrors(t *testing.T) {
	t.Run("bad token", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t, nil, SubprotocolLegacyWS)
		c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer bad"}})
		_, before := c.expectClose(CloseForbidden)
		if len(before) != 1 || before[0].Type != "connection_error" {
			t.Errorf("messages before the close: %+v, want one connection_error", before)
		}
	})
	t.Run("unparsable message keeps the connection", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.connectLegacy(t)
		c.sendRaw("{not json")
		c.expectSkippingKA("connection_error", "")
		c.send(map[string]any{"type": "start", "id": "q", "payload": map[string]any{"query": "{ name }"}})
		c.expectSkippingKA("data", "q")
		c.expectSkippingKA("complete", "q")
	})
	t.Run("refused operation", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.connectLegacy(t)
		c.send(map[string]any{"type": "start", "id": "v", "payload": map[string]any{"query": "{ nope }"}})
		m := c.expectSkippingKA("error", "v")
		var e struct {
			Message    string         `json:"message"`
			Extensions map[string]any `json:"extensions"`
		}
		if err := json.Unmarshal(m.Payload, &e); err != nil || e.Extensions["code"] != "GRAPHQL_VALIDATION_FAILED" {
			t.Errorf("error payload %s: want one error object with code GRAPHQL_VALIDATION_FAILED (%v)", m.Payload, err)
		}
	})
	t.Run("start before init", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.dial(t, nil, SubprotocolLegacyWS)
		c.send(map[string]any{"type": "start", "id": "1", "payload": map[string]any{"query": "{ name }"}})
		m := c.expect("error", "1")
		if !strings.Contains(string(m.Payload), "UNAUTHENTICATED") {
			t.Errorf("error payload %s, want code UNAUTHENTICATED", m.Payload)
		}
	})
	t.Run("a start with a running id replaces it", func(t *testing.T) {
		h := newHarness(t, nil)
		c := h.connectLegacy(t)
		c.send(map[string]any{"type": "start", "id": "1", "payload": map[string]any{"query": "subscription { name }"}})
		first := h.opContext(t, 0)
		c.send(map[string]any{"type": "start", "id": "1", "payload": map[string]any{"query": "subscription { name }"}})
		waitDone(t, first, "replaced subscription")
		h.opContext(t, 1)
		h.gql.SendNextSubscriptionMessage()
		c.expectSkippingKA("data", "1")
	})
}

func TestCloseCodes(t *testing.T) {
	init := map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer good"}}
	tests := []struct {
		name      string
		configure func(*WebSocket)
		protocols []string
		header    http.Header
		send      []any // strings go raw
		ack       bool  // connection_ack comes before the close
		code      int
		reason    string
	}{
		{name: "invalid JSON", send: []any{init, "{not json"}, ack: true, code: CloseBadRequest},
		{name: "not an object", send: []any{init, `["subscribe"]`}, ack: true, code: CloseBadRequest},
		{name: "unknown type", send: []any{init, map[string]any{"type": "start", "id": "1"}}, ack: true, code: CloseBadRequest, reason: `Invalid message type "start"`},
		{name: "no type", send: []any{init, map[string]any{"id": "1"}}, ack: true, code: CloseBadRequest},
		{name: "subscribe without id", send: []any{init, map[string]any{"type": "subscribe", "payload": map[string]any{"query": "{ name }"}}}, ack: true, code: CloseBadRequest},
		{name: "subscribe with a number id", send: []any{init, map[string]any{"type": "subscribe", "id": 1, "payload": map[string]any{"query": "{ name }"}}}, ack: true, code: CloseBadRequest},
		{name: "subscribe without query", send: []any{init, map[string]any{"type": "subscribe", "id": "1", "payload": map[string]any{}}}, ack: true, code: CloseBadRequest},
		{name: "server message type", send: []any{init, map[string]any{"type": "next", "id": "1", "payload": map[string]any{}}}, ack: true, code: CloseBadRequest},
		{name: "complete without id", send: []any{init, map[string]any{"type": "complete"}}, ack: true, code: CloseBadRequest},
		{name: "init payload not an object", send: []any{map[string]any{"type": "connection_init", "payload": "token"}}, code: CloseBadRequest},
		{name: "subscribe before init", send: []any{subscribeMsg("1", "{ name }")}, code: CloseUnauthorized, reason: "Unauthorized"},
		{name: "bad token", send: []any{map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer bad"}}}, code: CloseForbidden, reason: "Forbidden"},
		{name: "no token", send: []any{map[string]any{"type": "connection_init"}}, code: CloseForbidden},
		{name: "token expires", send: []any{map[string]any{"type": "connection_init", "payload": map[string]any{"Authorization": "Bearer expiring"}}}, ack: true, code: CloseForbidden},
		{name: "unsupported subprotocol", protocols: []string{"graphql-sse"}, code: CloseSubprotocol, reason: "Subprotocol not acceptable"},
		{name: "no subprotocol", code: CloseSubprotocol},
		{name: "init timeout", configure: func(ws *WebSocket) { ws.InitTimeout = 50 * time.Millisecond }, code: CloseInitTimeout, reason: "Connection initialisation timeout"},
		{name: "duplicate subscriber", send: []any{init, subscribeMsg("s", "subscription { name }"), subscribeMsg("s", "subscription { name }")}, ack: true, code: CloseSubscriberExists, reason: "Subscriber for s already exists"},
		{name: "second init", send: []any{init, init}, ack: true, code: CloseTooManyInitRequests, reason: "Too many initialisation requests"},
		{name: "message too big", configure: func(ws *WebSocket) { ws.MaxMessageBytes = 1024 }, send: []any{init, `{"type":"ping","payload":{"pad":"` + strings.Repeat("x", 2048) + `"}}`}, ack: true, code: websocket.CloseMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.configure)
			protocols := tt.protocols
			if protocols == nil && tt.name != "no subprotocol" {
				protocols = []string{SubprotocolTransportWS}
			}
			c := h.dial(t, tt.header, protocols...)
			for _, m := range tt.send {
				if s, ok := m.(string); ok {
					c.sendRaw(s)
				} else {
					c.send(m)
				}
			}
			reason, before := c.expectClose(tt.code)
			if tt.reason != "" && reason != tt.reason {
				t.Errorf("close reason %q, want %q", reason, tt.reason)
			}
			acked := len(before) > 0 && before[0].Type == "connection_ack"
			if acked != tt.ack {
				t.Errorf("messages before the close: %+v (acknowledged: %v, want %v)", before, acked, tt.ack)
			}
		})
	}
}

func TestTokenExpiryEndsSubscriptions(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t, nil, SubprotocolTransportWS)
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer expiring"}})
	c.expect("connection_ack", "")
	c.send(subscribeMsg("s", "subscription { name }"))
	ctx := h.opContext(t, 0)
	start := time.Now()
	reason, _ := c.expectClose(CloseForbidden)
	if !strings.Contains(reason, "expired") {
		t.Errorf("close reason %q, want it to say the credentials expired", reason)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed %v after subscribing, want about 200 ms", d)
	}
	waitDone(t, ctx, "subscription of an expired connection")
}

func TestAuthorizationHeader(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t, http.Header{"Authorization": {"Bearer good"}}, SubprotocolTransportWS)
	c.send(map[string]any{"type": "connection_init"})
	c.expect("connection_ack", "")
}

func TestSubprotocolPreference(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t, nil, SubprotocolLegacyWS, SubprotocolTransportWS)
	if got := c.conn.Subprotocol(); got != SubprotocolTransportWS {
		t.Errorf("negotiated %q, want %q when the client offers both", got, SubprotocolTransportWS)
	}
}

func TestPingPong(t *testing.T) {
	h := newHarness(t, nil)
	c := h.dial(t, nil, SubprotocolTransportWS)
	// Pings are answered before and after initialisation, with the
	// payload.
	c.send(map[string]any{"type": "ping", "payload": map[string]any{"n": 1}})
	if got := string(c.expect("pong", "").Payload); got != `{"n":1}` {
		t.Errorf("pong payload %s, want the ping's", got)
	}
	c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer good"}})
	c.expect("connection_ack", "")
	c.send(map[string]any{"type": "ping"})
	if m := c.expect("pong", ""); m.Payload != nil {
		t.Errorf("pong payload %s, want none", m.Payload)
	}
	// An unsolicited pong is fine.
	c.send(map[string]any{"type": "pong"})
	c.roundTrip()
}

func TestServerPings(t *testing.T) {
	for _, proto := range []string{SubprotocolTransportWS, SubprotocolLegacyWS} {
		t.Run(proto, func(t *testing.T) {
			h := newHarness(t, func(ws *WebSocket) { ws.PingInterval = 20 * time.Millisecond })
			c := h.dial(t, nil, proto)
			pings := make(chan struct{}, 100)
			c.conn.SetPingHandler(func(data string) error {
				pings <- struct{}{}
				return c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
			})
			c.send(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer good"}})
			c.expect("connection_ack", "")
			// Reading runs the ping handler; the connection outlives many
			// pong timeouts' worth of pings.
			deadline := time.Now().Add(5 * time.Second)
			for len(pings) < 5 && time.Now().Before(deadline) {
				if proto == SubprotocolLegacyWS {
					c.expect("ka", "")
				} else {
					c.roundTrip()
					time.Sleep(10 * time.Millisecond)
				}
			}
			if len(pings) < 5 {
				t.Fatalf("%d pings received, want 5", len(pings))
			}
		})
	}
}

func TestDeadPeerIsDropped(t *testing.T) {
	h := newHarness(t, func(ws *WebSocket) {
		ws.PingInterval = 30 * time.Millisecond
		ws.PongTimeout = 30 * time.Millisecond
	})
	c := h.connect(t)
	c.send(subscribeMsg("s", "subscription { name }"))
	ctx := h.opContext(t, 0)
	// The client stops answering pings (and sends nothing else).
	c.conn.SetPingHandler(func(string) error { return nil })
	go func() {
		for {
			if _, _, err := c.conn.ReadMessage(); err != nil {
				return
			}
		}
	}()
	waitDone(t, ctx, "subscription of a dead peer")
}

func TestClientCompleteStopsSubscription(t *testing.T) {
	h := newHarness(t, nil)
	c := h.connect(t)
	c.send(subscribeMsg("s", "subscription { name }"))
	ctx := h.opContext(t, 0)
	h.gql.SendNextSubscriptionMessage()
	c.expect("next", "s")

	c.send(map[string]any{"type": "complete", "id": "s"})
	waitDone(t, ctx, "completed by the client")
	// No complete is echoed: the next message is the pong.
	c.roundTrip()
	// The id is free again.
	c.send(subscribeMsg("s", "subscription { name }"))
	h.opContext(t, 1)
	h.gql.SendNextSubscriptionMessage()
	c.expect("next", "s")
}

func TestMaxSubscriptions(t *testing.T) {
	h := newHarness(t, func(ws *WebSocket) { ws.MaxSubscriptions = 2 })
	c := h.connect(t)
	c.send(subscribeMsg("a", "subscription { name }"))
	h.opContext(t, 0)
	c.send(subscribeMsg("b", "subscription { name }"))
	h.opContext(t, 1)
	c.send(subscribeMsg("c", "subscription { name }"))
	errs := errorsOf(t, c.expect("error", "c").Payload)
	if len(errs) != 1 || codeOf(errs[0]) != codeRateLimited || !strings.Contains(errs[0].Message, "at most 2") {
		t.Errorf("errors %+v, want one RATE_LIMITED error that names the limit", errs)
	}
	c.roundTrip()
	// Once one ends, another may start.
	c.send(map[string]any{"type": "complete", "id": "a"})
	waitDone(t, h.opContext(t, 0), "completed by the client")
	c.send(subscribeMsg("c", "query { name }"))
	c.expect("next", "c")
	c.expect("complete", "c")
}

func TestRefusedOperations(t *testing.T) {
	tests := []struct {
		name    string
		payload map[string]any
		code    string
	}{
		{"parse error", map[string]any{"query": "subscription {"}, "GRAPHQL_PARSE_FAILED"},
		{"validation error", map[string]any{"query": "subscription { nope }"}, "GRAPHQL_VALIDATION_FAILED"},
		{"variable error", map[string]any{"query": "query($id: Int!) { find(id: $id) }", "variables": map[string]any{"id": "x"}}, "GRAPHQL_VALIDATION_FAILED"},
		{"Prepare refuses", map[string]any{"query": "subscription { name } #prepare-refuses"}, "MAX_DEPTH_LIMIT"},
		{"Guard refuses", map[string]any{"query": "subscription Expensive { name }"}, "COST_LIMIT"},
	}
	h := newHarness(t, nil)
	c := h.connect(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := "op" + itoa(i)
			c.t = t
			c.send(map[string]any{"type": "subscribe", "id": id, "payload": tt.payload})
			errs := errorsOf(t, c.expect("error", id).Payload)
			if len(errs) == 0 || codeOf(errs[0]) != tt.code {
				t.Errorf("errors %+v, want code %s", errs, tt.code)
			}
			// No complete follows, and the connection stays.
			c.roundTrip()
		})
	}
}

func TestOrigin(t *testing.T) {
	tests := []struct {
		name    string
		allowed []string
		origin  func(h *harness) string
		status  int // of a refusal; 0 when allowed
	}{
		{"no origin", nil, func(*harness) string { return "" }, 0},
		{"same origin", nil, func(h *harness) string { return h.http.URL }, 0},
		{"other origin", nil, func(*harness) string { return "https://evil.example" }, http.StatusForbidden},
		{"allowed origin", []string{"https://app.example"}, func(*harness) string { return "https://app.example" }, 0},
		{"origin not in the list", []string{"https://app.example"}, func(*harness) string { return "https://app.example.evil" }, http.StatusForbidden},
		{"same origin not in the list", []string{"https://app.example"}, func(h *harness) string { return h.http.URL }, http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(ws *WebSocket) { ws.AllowedOrigins = tt.allowed })
			header := http.Header{}
			if o := tt.origin(h); o != "" {
				header.Set("Origin", o)
			}
			conn, resp, err := h.tryDial(header, SubprotocolTransportWS)
			if conn != nil {
				conn.Close()
			}
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				return
			}
			if err == nil || resp == nil || resp.StatusCode != tt.status {
				t.Fatalf("dial: %v, %v; want status %d", err, resp, tt.status)
			}
		})
	}
}

func TestShutdown(t *testing.T) {
	h := newHarness(t, nil)
	c := h.connect(t)
	c.send(subscribeMsg("s", "subscription { name }"))
	ctx := h.opContext(t, 0)
	legacy := h.connectLegacy(t)

	done := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- h.ws.Shutdown(sctx)
	}()
	c.expectClose(websocket.CloseGoingAway)
	legacy.expectClose(websocket.CloseGoingAway)
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	waitDone(t, ctx, "subscription at shutdown")

	_, resp, err := h.tryDial(nil, SubprotocolTransportWS)
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v, %v; want 503", err, resp)
	}
}

// TestSlowClient checks that a client that stops reading cannot hold the
// producers: its connection is dropped after WriteTimeout.
func TestSlowClient(t *testing.T) {
	h := newBigHarness(t, func(ws *WebSocket) { ws.WriteTimeout = 200 * time.Millisecond })
	c := h.connect(t)
	c.send(subscribeMsg("big", "subscription { name }"))
	c.send(subscribeMsg("other", "subscription { name }"))
	// The client reads nothing from now on.
	for i := range 2 {
		waitDone(t, h.opContext(t, i), "subscription of a slow client")
	}
}

func TestNoGoroutineOutlivesItsConnection(t *testing.T) {
	h := newHarness(t, nil)
	var clients []*client
	for range 5 {
		c := h.connect(t)
		c.send(subscribeMsg("s", "subscription { name }"))
		clients = append(clients, c)
	}
	l := h.connectLegacy(t)
	l.send(map[string]any{"type": "start", "id": "1", "payload": map[string]any{"query": "subscription { name }"}})
	for i := range 6 {
		h.opContext(t, i)
	}
	for _, c := range clients {
		_ = c.conn.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
		c.conn.Close()
	}
	l.conn.Close() // abruptly
	for i := range 6 {
		waitDone(t, h.opContext(t, i), "subscription of a closed connection")
	}
	// Every connection's goroutines end without Shutdown (goleak checks
	// the rest when the tests end).
	deadline := time.Now().Add(5 * time.Second)
	for {
		h.ws.mu.Lock()
		n := len(h.ws.conns)
		h.ws.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections still open", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	done := make(chan struct{})
	go func() { h.ws.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("connection goroutines still running")
	}
}
