package limits

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/redistest"
)

// closedAddr returns an address on which nothing listens.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// Log lines of a Fallback, as the tests look for them.
const (
	logDown = "Redis does not answer"
	logBack = "Redis answers again"
)

// newTestFallback returns a Fallback with a 50ms timeout, probing every
// 100ms, logging to the buffer it returns, closed when the test ends.
func newTestFallback(t *testing.T) (*Fallback, *logBuffer) {
	t.Helper()
	logger, logs := newTestLogger()
	f := NewFallback(FallbackOptions{Timeout: 50 * time.Millisecond, ProbeInterval: 100 * time.Millisecond, Logger: logger})
	t.Cleanup(f.Close)
	return f, logs
}

// quick fails the test when fn takes more than within.
func quick(t *testing.T, what string, within time.Duration, fn func()) {
	t.Helper()
	start := time.Now()
	fn()
	if d := time.Since(start); d > within {
		t.Errorf("%s took %v, want at most %v", what, d, within)
	}
}

// TestFallbackRedisUnreachable checks every limit with Redis on a closed
// port: the in-process limits decide, nothing fails or waits, the
// Fallback says it is degraded and logs it once.
func TestFallbackRedisUnreachable(t *testing.T) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
	defer client.Close()
	f, logs := newTestFallback(t)
	opts := RedisOptions{}
	if f.Degraded() {
		t.Fatal("a new Fallback is degraded")
	}
	rate := f.Rate(NewRedisRate(client, Rate{Events: 1, Per: time.Hour, Burst: 3}, opts),
		NewLocalRate(Rate{Events: 1, Per: time.Hour, Burst: 3}, LocalOptions{}))
	var got []bool
	quick(t, "6 requests", 300*time.Millisecond, func() {
		for range 6 {
			d, err := rate.Allow(ctx, "u")
			if err != nil {
				t.Fatalf("Allow with Redis down: %v", err)
			}
			got = append(got, d.Allowed)
		}
	})
	if want := []bool{true, true, true, false, false, false}; !equal(got, want) {
		t.Errorf("allowed with Redis down = %v, want %v (the local limit)", got, want)
	}
	if !f.Degraded() {
		t.Error("Degraded() = false with Redis down")
	}

	budget := f.Budget(NewRedisBudget(client, Bucket{Size: 10, RestoreRate: 1}, opts),
		NewLocalBudget(Bucket{Size: 10, RestoreRate: 1}, LocalOptions{}))
	conc := f.Concurrency(NewRedisConcurrency(client, 1, opts), NewLocalConcurrency(1))
	tokens := f.TokenQuota(NewRedisTokenQuota(client, 100, opts), NewLocalTokenQuota(100, LocalOptions{}))
	quick(t, "every other limit", 300*time.Millisecond, func() {
		if th, err := budget.Debit(ctx, "u", 8); err != nil || !th.Allowed || th.CurrentlyAvailable != 2 {
			t.Errorf("Debit(8) = %+v, %v, want allowed, 2 left", th, err)
		}
		if th, err := budget.Refund(ctx, "u", 3); err != nil || th.CurrentlyAvailable != 5 {
			t.Errorf("Refund(3) = %+v, %v, want 5 left", th, err)
		}
		release, ok, err := conc.Acquire(ctx, "u")
		if err != nil || !ok {
			t.Fatalf("Acquire = %v, %v", ok, err)
		}
		if _, ok, _ := conc.Acquire(ctx, "u"); ok {
			t.Error("second Acquire with a cap of 1 succeeded")
		}
		release()
		if _, ok, _ := conc.Acquire(ctx, "u"); !ok {
			t.Error("Acquire after release refused")
		}
		if ok, remaining, err := tokens.Reserve(ctx, "u", 60); err != nil || !ok || remaining != 40 {
			t.Errorf("Reserve(60) = %v, %d, %v, want ok, 40", ok, remaining, err)
		}
		if err := tokens.Reconcile(ctx, "u", 60, 10); err != nil {
			t.Errorf("Reconcile: %v", err)
		}
		if ok, remaining, _ := tokens.Reserve(ctx, "u", 90); !ok || remaining != 0 {
			t.Errorf("Reserve(90) after reconciling to 10 = %v, %d, want ok, 0", ok, remaining)
		}
	})
	time.Sleep(150 * time.Millisecond) // past a probe, which fails again
	rate.Allow(ctx, "u")
	if n := logs.count(logDown); n != 1 {
		t.Errorf("%d log lines about Redis down, want 1:\n%s", n, logs)
	}
}

// TestFallbackHungRedis checks that a Redis that accepts connections and
// never answers costs a request the timeout, whatever the client's own
// timeouts.
func TestFallbackHungRedis(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held, never answered
			mu.Unlock()
		}
	})
	defer func() {
		l.Close()
		wg.Wait()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	}()
	client := redis.NewClient(&redis.Options{Addr: l.Addr().String(), MaxRetries: -1, ReadTimeout: time.Second})
	defer client.Close()
	f, _ := newTestFallback(t)
	defer f.Close() // waits for the calls still stuck in the client
	rate := f.Rate(NewRedisRate(client, Rate{Events: 1, Per: time.Hour}, RedisOptions{}),
		NewLocalRate(Rate{Events: 1, Per: time.Hour}, LocalOptions{}))
	quick(t, "Allow with Redis hung", 150*time.Millisecond, func() {
		d, err := rate.Allow(context.Background(), "u")
		if err != nil || !d.Allowed {
			t.Errorf("Allow = %+v, %v, want allowed by the local limit", d, err)
		}
	})
	if !f.Degraded() {
		t.Error("Degraded() = false with Redis hung")
	}
}

// TestFallbackRecovers cuts Redis off an instance, then brings it back: the
// instance uses its local limit while Redis is gone, and shares the limit
// with another instance again once Redis returns.
func TestFallbackRecovers(t *testing.T) {
	ctx := context.Background()
	direct := redisTestClient(t)
	prefix := redisTestPrefix(t, direct)
	proxy := redistest.StartProxy(t, redisTestAddr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer client.Close()
	rate := Rate{Events: 1, Per: time.Hour, Burst: 3}
	opts := RedisOptions{Prefix: prefix}
	f, logs := newTestFallback(t)
	a := f.Rate(NewRedisRate(client, rate, opts), NewLocalRate(rate, LocalOptions{}))
	b := NewRedisRate(direct, rate, opts) // another instance
	allow := func(l RateLimiter) Decision {
		t.Helper()
		var d Decision
		quick(t, "Allow", 200*time.Millisecond, func() {
			var err error
			if d, err = l.Allow(ctx, "u"); err != nil {
				t.Fatalf("Allow: %v", err)
			}
		})
		return d
	}

	if d := allow(a); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("A's first request = %+v, want allowed, 2 remaining", d)
	}
	if d := allow(b); !d.Allowed || d.Remaining != 1 {
		t.Fatalf("B's first request = %+v, want allowed, 1 remaining (shared with A)", d)
	}

	proxy.SetDown(true)
	if d := allow(a); !d.Allowed || d.Remaining != 2 {
		t.Fatalf("A's request with Redis gone = %+v, want allowed by a fresh local limit (2 remaining)", d)
	}
	if !f.Degraded() {
		t.Fatal("Degraded() = false with Redis gone")
	}
	for range 3 {
		allow(a)
	}
	time.Sleep(150 * time.Millisecond) // a probe, which fails
	allow(a)
	if !f.Degraded() {
		t.Fatal("Degraded() = false after a failed probe")
	}

	proxy.SetDown(false)
	time.Sleep(150 * time.Millisecond) // past the next probe time
	if d := allow(a); !d.Allowed || d.Remaining != 0 {
		t.Fatalf("A's request with Redis back = %+v, want allowed by Redis, 0 remaining", d)
	}
	if f.Degraded() {
		t.Fatal("Degraded() = true with Redis back")
	}
	if d := allow(b); d.Allowed {
		t.Fatalf("B's request = %+v, want refused: the limit is shared again", d)
	}
	if d := allow(a); d.Allowed {
		t.Fatalf("A's request = %+v, want refused by Redis", d)
	}
	if n, m := logs.count(logDown), logs.count(logBack); n != 1 || m != 1 {
		t.Errorf("%d lines about Redis down and %d about it back, want 1 each:\n%s", n, m, logs)
	}
}

// slowBudget, slowConcurrency and slowTokenQuota are a Redis whose reply
// comes late: the operation is done at once, and its reply arrives after
// the delay — unless the context ends first, when the caller gets the
// context's error, as from a client that honours deadlines (go-redis with
// ContextTimeoutEnabled). What was done stays done in Redis.
type (
	slowBudget struct {
		Budget
		delay time.Duration
	}
	slowConcurrency struct {
		Concurrency
		delay time.Duration
	}
	slowTokenQuota struct {
		TokenQuota
		delay time.Duration
	}
)

// lateReply waits for the delay or the end of ctx.
func lateReply(ctx context.Context, delay time.Duration) error {
	select {
	case <-time.After(delay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Debit debits, then replies after the delay.
func (s slowBudget) Debit(ctx context.Context, key string, cost int) (Throttle, error) {
	th, err := s.Budget.Debit(context.WithoutCancel(ctx), key, cost)
	if werr := lateReply(ctx, s.delay); werr != nil {
		return Throttle{}, werr
	}
	return th, err
}

// Acquire acquires, then replies after the delay.
func (s slowConcurrency) Acquire(ctx context.Context, user string) (func(), bool, error) {
	release, ok, err := s.Concurrency.Acquire(context.WithoutCancel(ctx), user)
	if werr := lateReply(ctx, s.delay); werr != nil {
		return nil, false, werr
	}
	return release, ok, err
}

// Take reserves, then replies after the delay.
func (s slowTokenQuota) Take(ctx context.Context, user string, estimate int) (Settle, bool, int, error) {
	settle, ok, remaining, err := s.TokenQuota.Take(context.WithoutCancel(ctx), user, estimate)
	if werr := lateReply(ctx, s.delay); werr != nil {
		return nil, false, 0, werr
	}
	return settle, ok, remaining, err
}

// TestFallbackLateUndone checks that what Redis does after the Fallback
// gave up on it is undone: a debit refunded, a slot released, a
// reservation returned.
func TestFallbackLateUndone(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t)
	prefix := redisTestPrefix(t, client)
	opts := RedisOptions{Prefix: prefix}
	f, _ := newTestFallback(t)
	const delay = 100 * time.Millisecond
	budget := f.Budget(slowBudget{NewRedisBudget(client, Bucket{Size: 10, RestoreRate: 1}, opts), delay},
		NewLocalBudget(Bucket{Size: 10, RestoreRate: 1}, LocalOptions{}))
	conc := f.Concurrency(slowConcurrency{NewRedisConcurrency(client, 1, opts), delay}, NewLocalConcurrency(1))
	tokens := f.TokenQuota(slowTokenQuota{NewRedisTokenQuota(client, 100, opts), delay}, NewLocalTokenQuota(100, LocalOptions{}))
	quick(t, "three late calls", 3*delay, func() {
		if th, err := budget.Debit(ctx, "u", 5); err != nil || !th.Allowed {
			t.Errorf("Debit = %+v, %v, want allowed locally", th, err)
		}
		if _, ok, err := conc.Acquire(ctx, "u"); err != nil || !ok {
			t.Errorf("Acquire = %v, %v, want a local slot", ok, err)
		}
		if ok, _, err := tokens.Reserve(ctx, "u", 50); err != nil || !ok {
			t.Errorf("Reserve = %v, %v, want ok locally", ok, err)
		}
	})
	f.Close()
	keys, err := redisKeys(ctx, client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Errorf("keys left by late calls: %v, want none (all undone)", keys)
	}
}

// blockingRate is a RateLimiter that answers only when its context ends.
type blockingRate struct{}

// Allow waits for ctx.
func (blockingRate) Allow(ctx context.Context, _ string) (Decision, error) {
	<-ctx.Done()
	return Decision{}, ctx.Err()
}

// TestFallbackContextCanceled checks that a request that ends while Redis
// is asked gets its context's error, and does not count as Redis failing.
func TestFallbackContextCanceled(t *testing.T) {
	f := NewFallback(FallbackOptions{Timeout: 10 * time.Second})
	defer f.Close()
	rate := f.Rate(blockingRate{}, NewLocalRate(Rate{Events: 1, Per: time.Second}, LocalOptions{}))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := rate.Allow(ctx, "u"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Allow with its context ended = %v, want %v", err, context.DeadlineExceeded)
	}
	if f.Degraded() {
		t.Error("Degraded() = true after a request's own context ended")
	}
}

// TestFallbackSettlesWhereReserved: a reservation taken in process while
// Redis was down is settled in process once Redis is back, not in Redis,
// whose counter never had it.
func TestFallbackSettlesWhereReserved(t *testing.T) {
	ctx := context.Background()
	client, viaProxy, proxy, f, opts := cutOffRedis(t)
	shared := NewRedisTokenQuota(client, 1000, opts)
	local := NewLocalTokenQuota(1000, LocalOptions{})
	tokens := f.TokenQuota(NewRedisTokenQuota(viaProxy, 1000, opts), local)

	if ok, _, err := shared.Reserve(ctx, "u", 300); err != nil || !ok {
		t.Fatalf("Reserve(300) in Redis = %v, %v", ok, err)
	}
	proxy.SetDown(true)
	settle, ok, remaining, err := tokens.Take(ctx, "u", 500)
	if err != nil || !ok || remaining != 500 || !f.Degraded() {
		t.Fatalf("Take(500) with Redis down = %v, %d, %v (degraded %v), want ok in process with 500 left", ok, remaining, err, f.Degraded())
	}
	proxy.SetDown(false)
	time.Sleep(10 * time.Millisecond)
	if _, _, err := tokens.Reserve(ctx, "u", 0); err != nil || f.Degraded() {
		t.Fatalf("with Redis back: %v, degraded %v", err, f.Degraded())
	}
	if err := settle(ctx, 100); err != nil {
		t.Fatal(err)
	}
	// Redis still holds its own 300; the local quota holds the 100 used.
	if ok, remaining, err := shared.Reserve(ctx, "u", 0); err != nil || !ok || remaining != 700 {
		t.Errorf("Redis after the settle = %v, %d, %v, want 700 left: the local reservation was settled in Redis", ok, remaining, err)
	}
	if ok, remaining, err := local.Reserve(ctx, "u", 0); err != nil || !ok || remaining != 900 {
		t.Errorf("in process after the settle = %v, %d, %v, want 900 left", ok, remaining, err)
	}
}

// TestTokenQuotaSettlesOnItsDay: a reservation settled after midnight
// (UTC) changes nothing of the new day's quota.
func TestTokenQuotaSettlesOnItsDay(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t)
	for _, im := range []struct {
		name string
		q    func(now func() time.Time) TokenQuota
	}{
		{"Local", func(now func() time.Time) TokenQuota { return NewLocalTokenQuota(1000, LocalOptions{Now: now}) }},
		{"Redis", func(now func() time.Time) TokenQuota {
			return NewRedisTokenQuota(client, 1000, RedisOptions{Prefix: redisTestPrefix(t, client), Now: now})
		}},
	} {
		t.Run(im.name, func(t *testing.T) {
			clock := newFakeClock()
			clock.Advance(12*time.Hour - time.Minute) // a minute before midnight
			q := im.q(clock.Now)
			settle, ok, _, err := q.Take(ctx, "u", 600)
			if err != nil || !ok {
				t.Fatalf("Take(600) = %v, %v", ok, err)
			}
			clock.Advance(2 * time.Minute)
			if _, ok, _, err := q.Take(ctx, "u", 200); err != nil || !ok {
				t.Fatalf("Take(200) on the new day = %v, %v", ok, err)
			}
			if err := settle(ctx, 0); err != nil {
				t.Fatal(err)
			}
			if ok, remaining, err := q.Reserve(ctx, "u", 0); err != nil || !ok || remaining != 800 {
				t.Errorf("the new day after yesterday's settle = %v, %d, %v, want 800 left", ok, remaining, err)
			}
		})
	}
}

// TestFallbackGateRefundsWhereDebited: a request admitted in process while
// Redis was down has its refund given back in process once Redis is back,
// not to Redis's bucket, which never lost the points.
func TestFallbackGateRefundsWhereDebited(t *testing.T) {
	ctx := context.Background()
	client, viaProxy, proxy, f, opts := cutOffRedis(t)
	cfg := GateConfig{Budget: Bucket{Size: 100, RestoreRate: 1}}
	shared := NewRedisGate(client, cfg, opts)
	local := NewLocalGate(cfg, LocalOptions{})
	g := f.Gate(NewRedisGate(viaProxy, cfg, opts), local)

	if a, err := shared.Admit(ctx, "u", false, 30); err != nil || !a.Allowed() {
		t.Fatalf("Admit(30) in Redis = %+v, %v", a, err)
	}
	proxy.SetDown(true)
	a, err := g.Admit(ctx, "u", false, 50)
	if err != nil || !a.Allowed() || !f.Degraded() {
		t.Fatalf("Admit(50) with Redis down = %+v, %v (degraded %v), want admitted in process", a, err, f.Degraded())
	}
	proxy.SetDown(false)
	time.Sleep(10 * time.Millisecond)
	if _, err := g.Admit(ctx, "u", false, 0); err != nil || f.Degraded() {
		t.Fatalf("with Redis back: %v, degraded %v", err, f.Degraded())
	}
	if _, err := a.Refund(ctx, 40); err != nil {
		t.Fatal(err)
	}
	if a, err := shared.Admit(ctx, "u", false, 0); err != nil || a.Throttle.CurrentlyAvailable < 70 || a.Throttle.CurrentlyAvailable > 71 {
		t.Errorf("Redis after the refund = %+v, %v, want its own 70 left: the local debit was refunded to Redis", a.Throttle, err)
	}
	if a, err := local.Admit(ctx, "u", false, 0); err != nil || a.Throttle.CurrentlyAvailable < 90 || a.Throttle.CurrentlyAvailable > 91 {
		t.Errorf("in process after the refund = %+v, %v, want 90 left", a.Throttle, err)
	}
}

// cutOffRedis returns what a test of Redis coming and going needs: a
// client of the test Redis, a client of it through a proxy the test can
// cut, the proxy, a Fallback that probes Redis every millisecond and the
// options of the test's keys.
func cutOffRedis(t *testing.T) (client, viaProxy *redis.Client, proxy *redistest.Proxy, f *Fallback, opts RedisOptions) {
	t.Helper()
	client = redisTestClient(t)
	opts = RedisOptions{Prefix: redisTestPrefix(t, client)}
	proxy = redistest.StartProxy(t, redisTestAddr)
	viaProxy = redis.NewClient(&redis.Options{Addr: proxy.Addr(), DialTimeout: 100 * time.Millisecond, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { viaProxy.Close() })
	f = NewFallback(FallbackOptions{ProbeInterval: time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(f.Close)
	return client, viaProxy, proxy, f, opts
}
