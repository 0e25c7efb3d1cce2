package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/demo"
	"askgate/internal/limits"
	"askgate/internal/redistest"
	"askgate/internal/server"
)

// countQuery reads the store, so that a refused request shows it did not.
const countQuery = `{ conversations(first: 1) { totalCount } }`

// redisLimits returns request limits on the test Redis, under a key
// prefix of the test's own: every call with the same prefix shares them,
// as instances on one Redis do.
func redisLimits(t *testing.T, rdb *redis.Client, prefix string, c server.RequestLimitsConfig) server.RequestLimits {
	t.Helper()
	c.Redis, c.Prefix = rdb, prefix
	return server.NewRequestLimits(c, slog.New(slog.DiscardHandler))
}

// retryAfter returns the Retry-After header of r in seconds, failing the
// test when it is missing or not positive.
func retryAfter(t *testing.T, r *response) int {
	t.Helper()
	n, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || n <= 0 {
		t.Fatalf("Retry-After %q, want whole seconds > 0 (%s)", r.Header.Get("Retry-After"), r.Body)
	}
	return n
}

// checkRateLimited fails the test unless r is a RATE_LIMITED refusal
// with 429 and Retry-After, and returns the Retry-After.
func checkRateLimited(t *testing.T, r *response) int {
	t.Helper()
	if r.Status != http.StatusTooManyRequests || len(r.Errors) != 1 || r.Errors[0].code() != "RATE_LIMITED" || r.Data != nil {
		t.Fatalf("status %d, body %s: want 429 with RATE_LIMITED and no data", r.Status, r.Body)
	}
	return retryAfter(t, r)
}

// TestRequestRateSharedThroughRedis: over the request rate a user gets 429,
// Retry-After and RATE_LIMITED with nothing executed; another user is not
// affected; two instances on one Redis share the limit.
func TestRequestRateSharedThroughRedis(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, rdb, "server-limits")
	cfg := server.RequestLimitsConfig{Rate: limits.Rate{Events: 3, Per: time.Minute}}
	a := newEnv(t, envOptions{limits: redisLimits(t, rdb, prefix, cfg)})
	b := newEnv(t, envOptions{limits: redisLimits(t, rdb, prefix, cfg)})

	alice := "Bearer " + a.token("alice")
	for i, e := range []*env{a, b, a} {
		if r := e.post(alice, countQuery, nil); r.Status != http.StatusOK || len(r.Errors) > 0 {
			t.Fatalf("request %d: status %d, %s", i+1, r.Status, r.Body)
		}
	}
	for _, e := range []*env{b, a} {
		calls := e.Store.Calls()
		r := e.post(alice, countQuery, nil)
		if n := checkRateLimited(t, r); n > 20 {
			t.Errorf("Retry-After %d, want about 20 s at 3/m", n)
		}
		if e.Store.Calls() != calls {
			t.Errorf("a refused request called the store %d times", e.Store.Calls()-calls)
		}
	}
	// Under application/graphql-response+json too.
	req, _ := http.NewRequest(http.MethodPost, b.URL+"/graphql", jsonBody(map[string]any{"query": countQuery}))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json")
	req.Header.Set("Authorization", alice)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Errorf("graphql-response+json: status %d, Retry-After %q, want 429 with it", res.StatusCode, res.Header.Get("Retry-After"))
	}

	bobAuth := "Bearer " + a.token("bob")
	for _, e := range []*env{a, b} {
		if r := e.post(bobAuth, countQuery, nil); r.Status != http.StatusOK || len(r.Errors) > 0 {
			t.Errorf("bob: status %d, %s, want him unaffected", r.Status, r.Body)
		}
	}
}

// TestGlobalRateLimit: the global ceiling counts every user's requests.
func TestGlobalRateLimit(t *testing.T) {
	e := newEnv(t, envOptions{limits: server.NewRequestLimits(server.RequestLimitsConfig{
		Rate:   limits.Rate{Events: 10, Per: time.Minute},
		Global: limits.Rate{Events: 2, Per: time.Minute},
	}, nil)})
	for _, user := range []string{"alice", "bob"} {
		e.do(user, countQuery, nil, nil)
	}
	checkRateLimited(t, e.post("Bearer "+e.token("carol"), countQuery, nil))
}

// costResponse is the extensions.cost of a response.
type costResponse struct {
	Extensions struct {
		Cost struct {
			RequestedQueryCost int
			ActualQueryCost    *int
			ThrottleStatus     *struct{ MaximumAvailable, CurrentlyAvailable, RestoreRate int }
		}
	}
}

// TestCostBudget: every response reports the budget; currentlyAvailable
// falls by each query's actual cost — what it asked for is debited, what
// it did not use is refunded — and restores at the configured rate; a
// query that does not fit is refused with 429, Retry-After and
// RATE_LIMITED, before it executes.
func TestCostBudget(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, rdb, "server-limits")
	const size, restore = 50, 10
	e := newEnv(t, envOptions{limits: redisLimits(t, rdb, prefix, server.RequestLimitsConfig{Budget: limits.Bucket{Size: size, RestoreRate: restore}})})
	if _, err := demo.Seed(context.Background(), e.Store, "alice", 3, 1); err != nil {
		t.Fatal(err)
	}
	authz := "Bearer " + e.token("alice")
	costOf := func(r *response, requested int) costResponse {
		t.Helper()
		var c costResponse
		if err := json.Unmarshal(r.Body, &c); err != nil {
			t.Fatal(err)
		}
		ts := c.Extensions.Cost.ThrottleStatus
		if ts == nil || ts.MaximumAvailable != size || ts.RestoreRate != restore || c.Extensions.Cost.RequestedQueryCost != requested {
			t.Fatalf("extensions.cost of %s: want requestedQueryCost %d and throttleStatus of %d/%d", r.Body, requested, size, restore)
		}
		return c
	}
	// available checks currentlyAvailable against want, give or take what
	// restores while the test runs.
	available := func(what string, got, want int) {
		t.Helper()
		if got < want || got > want+3 {
			t.Fatalf("%s: currentlyAvailable %d, want %d", what, got, want)
		}
	}

	// Asked for 20 conversations (1 + 20 × 1), got 3: charged 1 + 3.
	const query, requested, actual = `{ conversations(first: 20) { nodes { id } } }`, 21, 4
	r := e.post(authz, query, nil)
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("query: status %d, %s", r.Status, r.Body)
	}
	c := costOf(r, requested)
	if got := c.Extensions.Cost.ActualQueryCost; got == nil || *got != actual {
		t.Fatalf("actualQueryCost of %s, want %d", r.Body, actual)
	}
	left := c.Extensions.Cost.ThrottleStatus.CurrentlyAvailable
	available("after the query, refunded", left, size-actual)

	// Writes use what they ask for: 10 + 1 for the conversation.
	const rename, renameCost = `mutation($id: ID!) { renameConversation(input: {id: $id, title: "x"}) { id owner { id } } }`, 11
	var convs struct {
		Conversations struct{ Nodes []struct{ ID string } }
	}
	e.do("alice", `{ conversations(first: 1) { nodes { id } } }`, nil, &convs)
	left = costOf(e.post(authz, query, nil), requested).Extensions.Cost.ThrottleStatus.CurrentlyAvailable
	for i := 0; left >= renameCost; i++ {
		r := e.post(authz, rename, map[string]any{"id": convs.Conversations.Nodes[0].ID})
		if r.Status != http.StatusOK || len(r.Errors) > 0 {
			t.Fatalf("rename %d: status %d, %s", i+1, r.Status, r.Body)
		}
		c := costOf(r, renameCost)
		if got := c.Extensions.Cost.ActualQueryCost; got == nil || *got != renameCost {
			t.Fatalf("actualQueryCost of %s, want %d", r.Body, renameCost)
		}
		got := c.Extensions.Cost.ThrottleStatus.CurrentlyAvailable
		available("after a rename", got, left-renameCost)
		left = got
	}

	calls := e.Store.Calls()
	r = e.post(authz, query, nil)
	n := checkRateLimited(t, r)
	if want := (requested - left + restore - 1) / restore; n < 1 || n > want {
		t.Errorf("Retry-After %d, want at most %d s at %d points a second", n, want, restore)
	}
	c = costOf(r, requested)
	if ts := c.Extensions.Cost.ThrottleStatus; ts.CurrentlyAvailable >= requested {
		t.Errorf("refused with %d points available", ts.CurrentlyAvailable)
	}
	if c.Extensions.Cost.ActualQueryCost != nil {
		t.Errorf("a refused query's actualQueryCost is %d, want null", *c.Extensions.Cost.ActualQueryCost)
	}
	if e.Store.Calls() != calls {
		t.Errorf("a refused query called the store %d times", e.Store.Calls()-calls)
	}
	// Another user has a budget of his own.
	e.do("bob", query, nil, nil)
	// A query larger than the whole bucket never fits: no Retry-After.
	r = e.post("Bearer "+e.token("bob"), `{ conversations(first: 60) { nodes { id } } }`, nil)
	if r.Status != http.StatusTooManyRequests || len(r.Errors) != 1 || r.Errors[0].code() != "RATE_LIMITED" || r.Header.Get("Retry-After") != "" {
		t.Errorf("a query over the bucket's size: status %d, Retry-After %q, %s; want 429, RATE_LIMITED and no Retry-After", r.Status, r.Header.Get("Retry-After"), r.Body)
	}

	time.Sleep(time.Duration(n)*time.Second + 200*time.Millisecond)
	r = e.post(authz, query, nil)
	if r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("after Retry-After: status %d, %s, want the points restored", r.Status, r.Body)
	}
}

// TestRateLimitOverWebSocket: a refused operation gets an error message
// with RATE_LIMITED; the connection stays and works.
func TestRateLimitOverWebSocket(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, rdb, "server-limits")
	e := newEnv(t, envOptions{limits: redisLimits(t, rdb, prefix, server.RequestLimitsConfig{
		Rate:   limits.Rate{Events: 2, Per: time.Minute},
		Budget: limits.Bucket{Size: 100, RestoreRate: 1},
	})})
	c := e.dial("graphql-transport-ws")
	c.init(e.token("alice"))
	subscribe := func(id string) map[string]any {
		c.send(map[string]any{"id": id, "type": "subscribe", "payload": map[string]any{"query": countQuery}})
		return c.read()
	}
	for _, id := range []string{"1", "2"} {
		msg := subscribe(id)
		if msg["type"] != "next" {
			t.Fatalf("operation %s: %v", id, msg)
		}
		raw, _ := json.Marshal(msg["payload"])
		var cr costResponse
		json.Unmarshal(raw, &cr)
		if ts := cr.Extensions.Cost.ThrottleStatus; ts == nil || ts.MaximumAvailable != 100 {
			t.Errorf("operation %s: no throttleStatus in %s", id, raw)
		}
		if msg := c.read(); msg["type"] != "complete" {
			t.Fatalf("operation %s: %v, want complete", id, msg)
		}
	}
	calls := e.Store.Calls()
	msg := subscribe("3")
	raw, _ := json.Marshal(msg["payload"])
	var errs []gqlError
	json.Unmarshal(raw, &errs)
	if msg["type"] != "error" || msg["id"] != "3" || len(errs) != 1 || errs[0].code() != "RATE_LIMITED" {
		t.Fatalf("operation over the rate: %v, want an error message with RATE_LIMITED", msg)
	}
	if ra, _ := errs[0].Extensions["retryAfter"].(float64); ra < 1 {
		t.Errorf("extensions.retryAfter %v, want whole seconds > 0", errs[0].Extensions["retryAfter"])
	}
	if e.Store.Calls() != calls {
		t.Errorf("a refused operation called the store %d times", e.Store.Calls()-calls)
	}
	c.send(map[string]any{"type": "ping"})
	if msg := c.read(); msg["type"] != "pong" {
		t.Fatalf("after the refusal: %v, want the connection to answer pong", msg)
	}
	// Another user's connection is not affected.
	d := e.dial("graphql-transport-ws")
	d.init(e.token("bob"))
	d.send(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{"query": countQuery}})
	if msg := d.read(); msg["type"] != "next" {
		t.Fatalf("bob: %v", msg)
	}
}

// TestLimitsWithRedisUnreachable: with Redis down, requests are served
// under the in-process limits and /readyz reports the limits degraded.
func TestLimitsWithRedisUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 100 * time.Millisecond, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	logs := &syncBuffer{}
	rl := server.NewRequestLimits(server.RequestLimitsConfig{
		Rate:   limits.Rate{Events: 2, Per: time.Minute},
		Budget: limits.Bucket{Size: 100, RestoreRate: 1},
		Redis:  rdb,
	}, slog.New(slog.NewJSONHandler(logs, nil)))
	e := newEnv(t, envOptions{limits: rl})

	readyz := func() (int, map[string]any) {
		res, err := http.Get(e.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct{ Checks map[string]any }
		json.NewDecoder(res.Body).Decode(&body)
		return res.StatusCode, body.Checks
	}
	if _, checks := readyz(); checks["limits"] != "ok" {
		t.Errorf("/readyz before any request: limits %v, want ok", checks["limits"])
	}
	authz := "Bearer " + e.token("alice")
	for i := range 2 {
		start := time.Now()
		r := e.post(authz, countQuery, nil)
		if r.Status != http.StatusOK || len(r.Errors) > 0 {
			t.Fatalf("request %d with Redis down: status %d, %s", i+1, r.Status, r.Body)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("request %d took %v with Redis down", i+1, d)
		}
		var cr costResponse
		json.Unmarshal(r.Body, &cr)
		if ts := cr.Extensions.Cost.ThrottleStatus; ts == nil || ts.MaximumAvailable != 100 {
			t.Errorf("request %d: no throttleStatus from the local budget: %s", i+1, r.Body)
		}
	}
	checkRateLimited(t, e.post(authz, countQuery, nil))
	status, checks := readyz()
	if checks["limits"] != "degraded" || status != http.StatusOK {
		t.Errorf("/readyz with Redis down: %d, checks %v, want 200 with limits degraded", status, checks)
	}
}

// jsonBody returns v encoded as a request body.
func jsonBody(v any) io.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// TestLimitsSharedAgainAfterRedisReturns: instance A loses Redis mid-test
// and keeps serving under its local limiter, which /readyz reports; once
// Redis is back, A and B count against the same limit again.
func TestLimitsSharedAgainAfterRedisReturns(t *testing.T) {
	direct := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, direct, "server-limits")
	proxy := redistest.StartProxy(t, redistest.Addr())
	viaProxy := redis.NewClient(&redis.Options{Addr: proxy.Addr(), DialTimeout: 100 * time.Millisecond, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { viaProxy.Close() })
	const burst = 6
	instance := func(rdb *redis.Client) *env {
		return newEnv(t, envOptions{limits: server.NewRequestLimits(server.RequestLimitsConfig{
			Rate:     limits.Rate{Events: burst, Per: time.Hour},
			Budget:   limits.Bucket{Size: 1000, RestoreRate: 1},
			Redis:    rdb,
			Prefix:   prefix,
			Fallback: limits.FallbackOptions{ProbeInterval: 100 * time.Millisecond},
		}, slog.New(slog.DiscardHandler))})
	}
	a, b := instance(viaProxy), instance(direct)
	limitsCheck := func(e *env) string {
		t.Helper()
		res, err := http.Get(e.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct{ Checks map[string]string }
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK {
			t.Errorf("/readyz: %d, want 200 (the limits work in process)", res.StatusCode)
		}
		return body.Checks["limits"]
	}
	authz := "Bearer " + a.token("alice")
	served := func(e *env, what string) bool {
		t.Helper()
		r := e.post(authz, countQuery, nil)
		switch {
		case r.Status == http.StatusOK && len(r.Errors) == 0:
			return true
		case r.Status == http.StatusTooManyRequests:
			return false
		}
		t.Fatalf("%s: status %d, %s", what, r.Status, r.Body)
		return false
	}

	proxy.SetDown(true)
	for i := range 3 {
		if !served(a, "A with Redis down") {
			t.Fatalf("request %d on A with Redis down was refused", i+1)
		}
	}
	if got := limitsCheck(a); got != "degraded" {
		t.Errorf("/readyz on A with Redis down: limits %q, want degraded", got)
	}
	if got := limitsCheck(b); got != "ok" {
		t.Errorf("/readyz on B: limits %q, want ok", got)
	}

	proxy.SetDown(false)
	time.Sleep(200 * time.Millisecond) // past A's probe interval
	if !served(a, "A with Redis back") {
		t.Fatal("A's first request with Redis back was refused")
	}
	if got := limitsCheck(a); got != "ok" {
		t.Fatalf("/readyz on A with Redis back: limits %q, want ok", got)
	}
	// A's request went to Redis: B has burst-1 left, then A has none.
	for i := range burst - 1 {
		if !served(b, "B") {
			t.Fatalf("request %d on B was refused; A's request with Redis back should be its only other one", i+1)
		}
	}
	if served(b, "B over the limit") {
		t.Error("B allowed more than the shared burst")
	}
	if served(a, "A over the limit") {
		t.Error("A allowed a request over the shared limit: the limits are not shared again")
	}
}

// TestAskRefusedByAnswerLimits: an ask over the concurrent answers cap or
// the token quota (on Redis) gets 429 and RATE_LIMITED like a request the
// request limits refuse — with Retry-After when the quota says when — and
// leaves no message behind.
func TestAskRefusedByAnswerLimits(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	opts := limits.RedisOptions{Prefix: redistest.Prefix(t, rdb, "server-limits")}
	e := newEnv(t, envOptions{answers: answers.Options{
		Concurrency: limits.NewRedisConcurrency(rdb, 1, opts),
		TokenQuota:  limits.NewRedisTokenQuota(rdb, 2000, opts),
	}})
	messages := func(owner, conv string) int {
		t.Helper()
		_, id, err := chat.DecodeNodeID(conv)
		if err != nil {
			t.Fatal(err)
		}
		n, err := e.Store.CountMessages(context.Background(), owner, []string{id})
		if err != nil {
			t.Fatal(err)
		}
		return n[id]
	}

	e.Backend.Hold()
	conv := e.startConversation("alice")
	e.ask("alice", conv, "the first question")
	r := e.post("Bearer "+e.token("alice"), askMutation, map[string]any{"c": conv, "q": "a second one at once"})
	if r.Status != http.StatusTooManyRequests || len(r.Errors) != 1 || r.Errors[0].code() != "RATE_LIMITED" || string(r.Data) != "null" {
		t.Fatalf("an ask over the cap: status %d, %s; want 429 RATE_LIMITED with null data", r.Status, r.Body)
	}
	if got := r.Header.Get("Retry-After"); got != "" {
		t.Errorf("Retry-After %q for a cap that frees when an answer ends, want none", got)
	}
	if n := messages("alice", conv); n != 2 {
		t.Errorf("alice's conversation holds %d messages, want the first pair only", n)
	}
	e.Backend.Unhold()

	// The quota of 2 000 tokens: the first answer uses 1 600, and the
	// estimate of the next (prompt + 1 000) no longer fits.
	e.Backend.SetUsage(&chat.TokenUsage{PromptTokens: 100, CompletionTokens: 1500, TotalTokens: 1600})
	conv = e.startConversation("bob")
	e.ask("bob", conv, "a question")
	waitFor(t, func() bool { return e.Answers.Running() == 0 })
	r = e.post("Bearer "+e.token("bob"), askMutation, map[string]any{"c": conv, "q": "and another"})
	if r.Status != http.StatusTooManyRequests || len(r.Errors) != 1 || r.Errors[0].code() != "RATE_LIMITED" {
		t.Fatalf("an ask over the token quota: status %d, %s; want 429 RATE_LIMITED", r.Status, r.Body)
	}
	if n := retryAfter(t, r); n < 1 || n > 24*60*60 {
		t.Errorf("Retry-After %d s, want the time until the next day (UTC)", n)
	}
	if n := messages("bob", conv); n != 2 {
		t.Errorf("bob's conversation holds %d messages, want the first pair only", n)
	}
}

// TestLimitsOneRoundTripPerRequest: with a request rate, a global rate and
// a cost budget on Redis, a request whose document the gateway has parsed
// before costs one Redis command for all of them (and a refund when it
// used less than it asked for).
func TestLimitsOneRoundTripPerRequest(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, rdb, "server-limits")
	commands := &redistest.Commands{}
	rdb.AddHook(commands)
	e := newEnv(t, envOptions{limits: redisLimits(t, rdb, prefix, server.RequestLimitsConfig{
		Rate:   limits.Rate{Events: 1000, Per: time.Minute},
		Global: limits.Rate{Events: 100000, Per: time.Minute},
		Budget: limits.Bucket{Size: 1000, RestoreRate: 10},
	})})
	authz := "Bearer " + e.token("alice")
	// The first request parses the document (its rates are counted
	// before, apart) and loads the script.
	for _, q := range []string{countQuery, `{ conversations(first: 20) { nodes { id } } }`} {
		e.post(authz, q, nil)
	}
	for _, tc := range []struct {
		query    string
		commands int64
	}{
		{countQuery, 1},
		{`{ conversations(first: 20) { nodes { id } } }`, 2}, // and the refund of 20 unused
	} {
		before := commands.N()
		if r := e.post(authz, tc.query, nil); r.Status != http.StatusOK || len(r.Errors) > 0 {
			t.Fatalf("%s: status %d, %s", tc.query, r.Status, r.Body)
		}
		if got := commands.N() - before; got != tc.commands {
			t.Errorf("%s: %d Redis commands, want %d", tc.query, got, tc.commands)
		}
	}
}

// TestRefusedOperationsCountAgainstTheRate: operations refused before
// they are costed — bad variables for a cached document, a mutation over
// GET, an unknown persisted query — count against the request rate like
// any other, so that a client cannot loop on them unlimited.
func TestRefusedOperationsCountAgainstTheRate(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, rdb, "server-limits")
	e := newEnv(t, envOptions{limits: redisLimits(t, rdb, prefix, server.RequestLimitsConfig{Rate: limits.Rate{Events: 4, Per: time.Hour}})})
	authz := "Bearer " + e.token("alice")
	const query = `query($n: Int!) { conversations(first: $n) { totalCount } }`
	if r := e.post(authz, query, map[string]any{"n": 1}); r.Status != http.StatusOK || len(r.Errors) > 0 {
		t.Fatalf("first request: %d %s", r.Status, r.Body)
	}
	// The document is cached now: each of these is refused after
	// prepare, before guard.
	if r := e.post(authz, query, map[string]any{"n": "one"}); len(r.Errors) == 0 || r.Errors[0].code() == "RATE_LIMITED" {
		t.Fatalf("bad variables: %d %s, want a variables error", r.Status, r.Body)
	}
	if r := e.rawRequest(http.MethodGet, "/graphql?query="+url.QueryEscape(`mutation { deleteConversation(id: "x") }`), "", ""); r.Status != http.StatusMethodNotAllowed {
		t.Fatalf("a mutation over GET: %d %s, want 405", r.Status, r.Body)
	}
	if r := e.postExt("", apqExt(sha("no such document")), nil); len(r.Errors) != 1 || r.Errors[0].code() != "PERSISTED_QUERY_NOT_FOUND" {
		t.Fatalf("an unknown persisted query: %d %s, want PERSISTED_QUERY_NOT_FOUND", r.Status, r.Body)
	}
	checkRateLimited(t, e.post(authz, query, map[string]any{"n": 1}))
}
