package limits

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// impl is one implementation of the limits, as the conformance tests see
// it.
type impl struct {
	name string
	// clock is the time the implementation sees; a fakeClock for the
	// in-process limits (whose tests are exact), real time for Redis
	// (whose tests allow for the time that passes between calls).
	clock testClock
	// slack is how far a time-dependent figure may be off: zero with a
	// fake clock.
	slack time.Duration

	rate   func(Rate) RateLimiter
	budget func(Bucket) Budget
	conc   func(max int) Concurrency
	// gate returns a Gate of its own: its global key is not shared
	// with any other test's.
	gate func(t *testing.T, c GateConfig) Gate
	// tokens gets a clock of its own: days are the client's, so a fake
	// clock works for Redis too.
	tokens func(limit int, now func() time.Time) TokenQuota
}

// impls returns the implementations under test: in process and on Redis.
func impls(t *testing.T) []impl {
	t.Helper()
	clock := newFakeClock()
	local := LocalOptions{Now: clock.Now}
	client := redisTestClient(t)
	opts := RedisOptions{Prefix: redisTestPrefix(t, client)}
	return []impl{
		{
			name:   "Local",
			clock:  clock,
			rate:   func(r Rate) RateLimiter { return NewLocalRate(r, local) },
			budget: func(b Bucket) Budget { return NewLocalBudget(b, local) },
			conc:   func(max int) Concurrency { return NewLocalConcurrency(max) },
			gate:   func(_ *testing.T, c GateConfig) Gate { return NewLocalGate(c, local) },
			tokens: func(limit int, now func() time.Time) TokenQuota {
				return NewLocalTokenQuota(limit, LocalOptions{Now: now})
			},
		},
		{
			name:   "Redis",
			clock:  realClock{},
			slack:  200 * time.Millisecond,
			rate:   func(r Rate) RateLimiter { return NewRedisRate(client, r, opts) },
			budget: func(b Bucket) Budget { return NewRedisBudget(client, b, opts) },
			conc:   func(max int) Concurrency { return NewRedisConcurrency(client, max, opts) },
			gate: func(t *testing.T, c GateConfig) Gate {
				return NewRedisGate(client, c, RedisOptions{Prefix: redisTestPrefix(t, client)})
			},
			tokens: func(limit int, now func() time.Time) TokenQuota {
				o := opts
				o.Now = now
				return NewRedisTokenQuota(client, limit, o)
			},
		},
	}
}

// runImpls runs tests against every implementation, each test in a
// parallel subtest with keys of its own.
func runImpls(t *testing.T, tests map[string]func(t *testing.T, im impl, key string)) {
	for _, im := range impls(t) {
		t.Run(im.name, func(t *testing.T) {
			for name, fn := range tests {
				t.Run(name, func(t *testing.T) {
					if im.slack > 0 {
						t.Parallel() // real time: the waits overlap
					}
					fn(t, im, "user:"+name)
				})
			}
		})
	}
}

// durationNear checks that got is want, or, with slack, at most slack less
// (time passes between calls, and a wait only shortens) or a millisecond
// more (Redis's float arithmetic).
func durationNear(t *testing.T, what string, got, want, slack time.Duration) {
	t.Helper()
	over := time.Duration(0)
	if slack > 0 {
		over = time.Millisecond
	}
	if got > want+over || got < want-slack {
		t.Errorf("%s = %v, want %v (-%v)", what, got, want, slack)
	}
}

// pointsNear checks that got is want, or, with slack, at most what restores
// at rate in slack more (a bucket only fills as time passes).
func pointsNear(t *testing.T, what string, got, want, rate int, slack time.Duration) {
	t.Helper()
	extra := int(slack.Seconds()*float64(rate)) + 1
	if slack == 0 {
		extra = 0
	}
	if got < want || got > want+extra {
		t.Errorf("%s = %d, want %d (+%d)", what, got, want, extra)
	}
}

// TestRateLimiter is the conformance test of RateLimiter: 2 requests per
// second with a burst of 3, so 500ms between requests once the burst is
// spent.
func TestRateLimiter(t *testing.T) {
	ctx := context.Background()
	rate := Rate{Events: 2, Per: time.Second, Burst: 3}
	allow := func(t *testing.T, l RateLimiter, key string) Decision {
		t.Helper()
		d, err := l.Allow(ctx, key)
		if err != nil {
			t.Fatalf("Allow(%q): %v", key, err)
		}
		return d
	}
	runImpls(t, map[string]func(*testing.T, impl, string){
		"BurstThenRefusal": func(t *testing.T, im impl, key string) {
			l := im.rate(rate)
			for i, want := range []int{2, 1, 0} {
				d := allow(t, l, key)
				if !d.Allowed || d.Remaining != want || d.RetryAfter != 0 {
					t.Fatalf("request %d = %+v, want allowed, %d remaining, no RetryAfter", i+1, d, want)
				}
			}
			d := allow(t, l, key)
			if d.Allowed || d.Remaining != 0 {
				t.Fatalf("request over the burst = %+v, want refused, 0 remaining", d)
			}
			durationNear(t, "RetryAfter", d.RetryAfter, 500*time.Millisecond, im.slack)
			durationNear(t, "ResetAfter", d.ResetAfter, 1500*time.Millisecond, im.slack)
		},
		"RefusalNotCounted": func(t *testing.T, im impl, key string) {
			l := im.rate(rate)
			for range 3 {
				allow(t, l, key)
			}
			var last Decision
			for range 5 {
				if last = allow(t, l, key); last.Allowed {
					t.Fatal("a request over the burst was allowed")
				}
			}
			im.clock.Advance(last.RetryAfter + im.slack/4)
			if d := allow(t, l, key); !d.Allowed {
				t.Fatalf("after RetryAfter: %+v, want allowed (refusals must not count)", d)
			}
			if d := allow(t, l, key); d.Allowed {
				t.Fatalf("second request after RetryAfter: %+v, want refused", d)
			}
		},
		"RestoresOverTime": func(t *testing.T, im impl, key string) {
			l := im.rate(rate)
			var last Decision
			for range 3 {
				last = allow(t, l, key)
			}
			im.clock.Advance(last.ResetAfter + im.slack/4)
			for i := range 3 {
				if d := allow(t, l, key); !d.Allowed {
					t.Fatalf("request %d after ResetAfter: %+v, want a full burst again", i+1, d)
				}
			}
		},
		"KeysIsolated": func(t *testing.T, im impl, key string) {
			l := im.rate(rate)
			for range 4 {
				allow(t, l, key+":a")
			}
			if d := allow(t, l, key+":b"); !d.Allowed || d.Remaining != 2 {
				t.Fatalf("another key = %+v, want allowed with 2 remaining", d)
			}
		},
		"Concurrent": func(t *testing.T, im impl, key string) {
			testConcurrentAllows(t, im.rate(Rate{Events: 1, Per: time.Hour, Burst: 5}), key)
		},
	})
}

// testConcurrentAllows checks that 50 concurrent requests of a key limited
// to a burst of 5 per hour get exactly 5 allowed.
func testConcurrentAllows(t *testing.T, l RateLimiter, key string) {
	t.Helper()
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			d, err := l.Allow(context.Background(), key)
			if err != nil {
				t.Error(err)
			}
			if d.Allowed {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 5 {
		t.Errorf("%d of 50 concurrent requests allowed, want 5", got)
	}
}

// TestBudget is the conformance test of Budget: a bucket of 100 points
// restoring 20 per second (one point per 50ms).
func TestBudget(t *testing.T) {
	ctx := context.Background()
	bucket := Bucket{Size: 100, RestoreRate: 20}
	debit := func(t *testing.T, b Budget, key string, cost int) Throttle {
		t.Helper()
		th, err := b.Debit(ctx, key, cost)
		if err != nil {
			t.Fatalf("Debit(%q, %d): %v", key, cost, err)
		}
		if th.MaximumAvailable != 100 || th.RestoreRate != 20 {
			t.Fatalf("Debit(%q, %d) = %+v, want MaximumAvailable 100, RestoreRate 20", key, cost, th)
		}
		return th
	}
	refund := func(t *testing.T, b Budget, key string, amount int) Throttle {
		t.Helper()
		th, err := b.Refund(ctx, key, amount)
		if err != nil {
			t.Fatalf("Refund(%q, %d): %v", key, amount, err)
		}
		if !th.Allowed || th.RetryAfter != 0 {
			t.Fatalf("Refund(%q, %d) = %+v, want allowed, no RetryAfter", key, amount, th)
		}
		return th
	}
	runImpls(t, map[string]func(*testing.T, impl, string){
		"StartsFull": func(t *testing.T, im impl, key string) {
			th := debit(t, im.budget(bucket), key, 0)
			if !th.Allowed || th.CurrentlyAvailable != 100 {
				t.Fatalf("Debit of 0 on a new key = %+v, want allowed, 100 available", th)
			}
		},
		"DebitsFallByCost": func(t *testing.T, im impl, key string) {
			b := im.budget(bucket)
			th := debit(t, b, key, 60)
			if !th.Allowed {
				t.Fatalf("Debit(60) = %+v, want allowed", th)
			}
			pointsNear(t, "available after 60", th.CurrentlyAvailable, 40, 20, im.slack)
			th = debit(t, b, key, 30)
			if !th.Allowed {
				t.Fatalf("Debit(30) = %+v, want allowed", th)
			}
			pointsNear(t, "available after 60+30", th.CurrentlyAvailable, 10, 20, im.slack)
		},
		"RefusedWithoutDebit": func(t *testing.T, im impl, key string) {
			b := im.budget(bucket)
			debit(t, b, key, 90)
			th := debit(t, b, key, 20)
			if th.Allowed {
				t.Fatalf("Debit(20) with 10 left = %+v, want refused", th)
			}
			pointsNear(t, "available after a refusal", th.CurrentlyAvailable, 10, 20, im.slack)
			// 10 points missing at 20 per second.
			durationNear(t, "RetryAfter", th.RetryAfter, 500*time.Millisecond, im.slack)
			if got := RetryAfterSeconds(th.RetryAfter); got != 1 {
				t.Errorf("RetryAfterSeconds(%v) = %d, want 1", th.RetryAfter, got)
			}
			// The refusal took nothing: 5 points fit.
			if th := debit(t, b, key, 5); !th.Allowed {
				t.Fatalf("Debit(5) after a refusal = %+v, want allowed", th)
			}
		},
		"RestoresAtRate": func(t *testing.T, im impl, key string) {
			b := im.budget(bucket)
			debit(t, b, key, 100)
			im.clock.Advance(300 * time.Millisecond)
			th := debit(t, b, key, 0)
			pointsNear(t, "available 300ms after emptying", th.CurrentlyAvailable, 6, 20, im.slack)
			th = debit(t, b, key, 20)
			if th.Allowed {
				t.Fatalf("Debit(20) with about 6 available = %+v, want refused", th)
			}
			im.clock.Advance(th.RetryAfter)
			if th := debit(t, b, key, 20); !th.Allowed {
				t.Fatalf("Debit(20) after RetryAfter = %+v, want allowed", th)
			}
		},
		"RestoresUpToSize": func(t *testing.T, im impl, key string) {
			b := im.budget(Bucket{Size: 10, RestoreRate: 20})
			if th, _ := b.Debit(ctx, key, 10); !th.Allowed || th.CurrentlyAvailable != 0 {
				t.Fatalf("Debit(10) of 10 = %+v, want allowed, 0 left", th)
			}
			im.clock.Advance(time.Second) // restores 20
			if th, _ := b.Debit(ctx, key, 0); th.CurrentlyAvailable != 10 {
				t.Fatalf("available a second later = %d, want 10 (never over the size)", th.CurrentlyAvailable)
			}
		},
		"Refunds": func(t *testing.T, im impl, key string) {
			b := im.budget(bucket)
			debit(t, b, key, 80)
			th := refund(t, b, key, 50)
			pointsNear(t, "available after a refund of 50", th.CurrentlyAvailable, 70, 20, im.slack)
			th = refund(t, b, key, 1000)
			if th.CurrentlyAvailable != 100 {
				t.Fatalf("available after a large refund = %d, want 100 (the size)", th.CurrentlyAvailable)
			}
			th = refund(t, b, key+":new", 10)
			if th.CurrentlyAvailable != 100 {
				t.Fatalf("refund to a new key = %+v, want 100 available", th)
			}
		},
		"CostOverSize": func(t *testing.T, im impl, key string) {
			th := debit(t, im.budget(bucket), key, 101)
			if th.Allowed || th.RetryAfter != 0 || th.CurrentlyAvailable != 100 {
				t.Fatalf("Debit(101) of a bucket of 100 = %+v, want refused, no RetryAfter, 100 left", th)
			}
		},
		"KeysIsolated": func(t *testing.T, im impl, key string) {
			b := im.budget(bucket)
			debit(t, b, key+":a", 100)
			if th := debit(t, b, key+":b", 100); !th.Allowed {
				t.Fatalf("Debit(100) on another key = %+v, want allowed", th)
			}
		},
	})
}

// TestConcurrency is the conformance test of Concurrency, with 2 slots per
// user.
func TestConcurrency(t *testing.T) {
	ctx := context.Background()
	acquire := func(t *testing.T, c Concurrency, user string) (func(), bool) {
		t.Helper()
		release, ok, err := c.Acquire(ctx, user)
		if err != nil {
			t.Fatalf("Acquire(%q): %v", user, err)
		}
		if ok != (release != nil) {
			t.Fatalf("Acquire(%q): ok %v with release %v", user, ok, release != nil)
		}
		return release, ok
	}
	runImpls(t, map[string]func(*testing.T, impl, string){
		"CapAndRelease": func(t *testing.T, im impl, user string) {
			c := im.conc(2)
			r1, ok1 := acquire(t, c, user)
			_, ok2 := acquire(t, c, user)
			if !ok1 || !ok2 {
				t.Fatal("the first two slots were refused")
			}
			if _, ok := acquire(t, c, user); ok {
				t.Fatal("a third slot was given with a cap of 2")
			}
			r1()
			r3, ok := acquire(t, c, user)
			if !ok {
				t.Fatal("a slot was refused after a release")
			}
			defer r3()
		},
		"ReleaseIdempotent": func(t *testing.T, im impl, user string) {
			c := im.conc(2)
			r1, _ := acquire(t, c, user)
			acquire(t, c, user)
			r1()
			r1()
			acquire(t, c, user)
			if _, ok := acquire(t, c, user); ok {
				t.Fatal("releasing one slot twice freed two")
			}
		},
		"UsersIsolated": func(t *testing.T, im impl, user string) {
			c := im.conc(2)
			acquire(t, c, user+":a")
			acquire(t, c, user+":a")
			if _, ok := acquire(t, c, user+":b"); !ok {
				t.Fatal("another user's slot was refused")
			}
		},
		"Concurrent": func(t *testing.T, im impl, user string) {
			c := im.conc(2)
			var got atomic.Int32
			var wg sync.WaitGroup
			for range 20 {
				wg.Go(func() {
					if _, ok, err := c.Acquire(ctx, user); err != nil {
						t.Error(err)
					} else if ok {
						got.Add(1)
					}
				})
			}
			wg.Wait()
			if got.Load() != 2 {
				t.Errorf("%d of 20 concurrent Acquires succeeded, want 2", got.Load())
			}
		},
	})
}

// TestTokenQuota is the conformance test of TokenQuota, with 1000 tokens a
// day and a fake clock for both implementations (days are the caller's).
func TestTokenQuota(t *testing.T) {
	ctx := context.Background()
	type step struct {
		reserve       int  // Reserve(reserve) when not reconciling
		reconcile     bool // Reconcile(reserve, actual) instead
		actual        int
		nextDay       bool // move the clock a day first
		wantOK        bool
		wantRemaining int
	}
	tests := map[string][]step{
		"ReserveUntilSpent": {
			{reserve: 600, wantOK: true, wantRemaining: 400},
			{reserve: 500, wantOK: false, wantRemaining: 400},
			{reserve: 400, wantOK: true, wantRemaining: 0},
			{reserve: 1, wantOK: false, wantRemaining: 0},
			{reserve: 0, wantOK: true, wantRemaining: 0},
		},
		"ReconcileDown": {
			{reserve: 800, wantOK: true, wantRemaining: 200},
			{reserve: 800, reconcile: true, actual: 300},
			{reserve: 700, wantOK: true, wantRemaining: 0},
		},
		"ReconcileUp": {
			{reserve: 100, wantOK: true, wantRemaining: 900},
			{reserve: 100, reconcile: true, actual: 900},
			{reserve: 101, wantOK: false, wantRemaining: 100},
			{reserve: 100, wantOK: true, wantRemaining: 0},
		},
		"ReconcileNeverBelowZero": {
			{reserve: 100, wantOK: true, wantRemaining: 900},
			{reserve: 500, reconcile: true, actual: 0},
			{reserve: 1001, wantOK: false, wantRemaining: 1000},
			{reserve: 1000, wantOK: true, wantRemaining: 0},
		},
		"NewDay": {
			{reserve: 1000, wantOK: true, wantRemaining: 0},
			{reserve: 1, nextDay: true, wantOK: true, wantRemaining: 999},
		},
	}
	for _, im := range impls(t) {
		t.Run(im.name, func(t *testing.T) {
			for name, steps := range tests {
				t.Run(name, func(t *testing.T) {
					clock := newFakeClock()
					q := im.tokens(1000, clock.Now)
					user := "user:" + name
					for i, s := range steps {
						if s.nextDay {
							clock.Advance(24 * time.Hour)
						}
						if s.reconcile {
							if err := q.Reconcile(ctx, user, s.reserve, s.actual); err != nil {
								t.Fatalf("step %d: Reconcile: %v", i, err)
							}
							continue
						}
						ok, remaining, err := q.Reserve(ctx, user, s.reserve)
						if err != nil {
							t.Fatalf("step %d: Reserve(%d): %v", i, s.reserve, err)
						}
						if ok != s.wantOK || remaining != s.wantRemaining {
							t.Fatalf("step %d: Reserve(%d) = %v, %d, want %v, %d", i, s.reserve, ok, remaining, s.wantOK, s.wantRemaining)
						}
					}
				})
			}
			t.Run("UsersIsolated", func(t *testing.T) {
				clock := newFakeClock()
				q := im.tokens(1000, clock.Now)
				if ok, _, _ := q.Reserve(ctx, "user:a", 1000); !ok {
					t.Fatal("Reserve(1000) refused")
				}
				if ok, remaining, _ := q.Reserve(ctx, "user:b", 10); !ok || remaining != 990 {
					t.Fatalf("another user's Reserve(10) = %v, %d, want true, 990", ok, remaining)
				}
			})
		})
	}
}

// ExampleParseRate shows the rates ParseRate reads.
func ExampleParseRate() {
	for _, s := range []string{"600/m", "10/s", "5000/h", "600/min", "0/s"} {
		r, err := ParseRate(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(r)
	}
	// Output:
	// 600/m (burst 600)
	// 10/s (burst 10)
	// 5000/h (burst 5000)
	// rate "600/min": unit "min": want s, m or h, such as 600/m
	// rate "0/s": want <count>/<s|m|h> with a positive count, such as 600/m
}
