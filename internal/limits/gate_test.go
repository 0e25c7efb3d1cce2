package limits

import (
	"context"
	"testing"
	"time"

	"askgate/internal/redistest"
)

// TestGate is the conformance test of Gate: the key's rate, the global
// rate and the key's budget are checked together, and a request is counted
// by all of them or by none.
func TestGate(t *testing.T) {
	ctx := context.Background()
	admit := func(t *testing.T, g Gate, key string, countRate bool, cost int) Admission {
		t.Helper()
		a, err := g.Admit(ctx, key, countRate, cost)
		if err != nil {
			t.Fatalf("Admit(%q, %v, %d): %v", key, countRate, cost, err)
		}
		return a
	}
	bucket := Bucket{Size: 100, RestoreRate: 20}
	runImpls(t, map[string]func(*testing.T, impl, string){
		"RateThenRefusal": func(t *testing.T, im impl, key string) {
			g := im.gate(t, GateConfig{Rate: Rate{Events: 2, Per: time.Second, Burst: 3}})
			for i := range 3 {
				if a := admit(t, g, key, true, NoDebit); !a.Allowed() || a.Budgeted {
					t.Fatalf("request %d = %+v, want admitted, no budget", i+1, a)
				}
			}
			a := admit(t, g, key, true, NoDebit)
			if a.Refused != RefusedRate {
				t.Fatalf("request over the burst = %+v, want RefusedRate", a)
			}
			durationNear(t, "RetryAfter", a.RetryAfter, 500*time.Millisecond, im.slack)
			if a := admit(t, g, key+":other", true, NoDebit); !a.Allowed() {
				t.Fatalf("another key = %+v, want admitted", a)
			}
			if a := admit(t, g, key, false, NoDebit); !a.Allowed() {
				t.Fatalf("a request not counted by the rate = %+v, want admitted", a)
			}
		},
		"BudgetDebited": func(t *testing.T, im impl, key string) {
			g := im.gate(t, GateConfig{Rate: Rate{Events: 100, Per: time.Second}, Budget: bucket})
			a := admit(t, g, key, true, 70)
			if !a.Allowed() || !a.Budgeted || !a.Throttle.Allowed || a.Throttle.MaximumAvailable != 100 || a.Throttle.RestoreRate != 20 {
				t.Fatalf("Admit(70) = %+v, want admitted with the budget's state", a)
			}
			pointsNear(t, "available after 70", a.Throttle.CurrentlyAvailable, 30, 20, im.slack)
			a = admit(t, g, key, true, 50)
			if a.Refused != RefusedBudget || a.Throttle.Allowed {
				t.Fatalf("Admit(50) with 30 left = %+v, want RefusedBudget", a)
			}
			durationNear(t, "RetryAfter", a.RetryAfter, time.Second, im.slack)
			if a.Throttle.RetryAfter != a.RetryAfter {
				t.Errorf("Throttle.RetryAfter = %v, want the admission's %v", a.Throttle.RetryAfter, a.RetryAfter)
			}
			th, err := g.Refund(ctx, key, 60)
			if err != nil {
				t.Fatal(err)
			}
			pointsNear(t, "available after a refund of 60", th.CurrentlyAvailable, 90, 20, im.slack)
			if a := admit(t, g, key, false, 0); !a.Allowed() || !a.Budgeted {
				t.Fatalf("Admit(0) = %+v, want the state", a)
			} else {
				pointsNear(t, "state", a.Throttle.CurrentlyAvailable, 90, 20, im.slack)
			}
			if a := admit(t, g, key, true, NoDebit); !a.Allowed() || a.Budgeted {
				t.Fatalf("Admit(NoDebit) = %+v, want admitted without the budget", a)
			}
		},
		"NeverFits": func(t *testing.T, im impl, key string) {
			g := im.gate(t, GateConfig{Budget: bucket})
			a := admit(t, g, key, true, 101)
			if a.Refused != RefusedBudget || a.RetryAfter != 0 {
				t.Fatalf("Admit(101) of a bucket of 100 = %+v, want RefusedBudget, no RetryAfter", a)
			}
		},
		// A request the budget refuses is not counted by the rates, and
		// one the rate refuses debits nothing.
		"AllOrNothing": func(t *testing.T, im impl, key string) {
			g := im.gate(t, GateConfig{Rate: Rate{Events: 1, Per: time.Hour, Burst: 2}, Budget: bucket})
			for range 5 {
				if a := admit(t, g, key, true, 1000); a.Refused != RefusedBudget {
					t.Fatalf("Admit(1000) = %+v, want RefusedBudget", a)
				}
			}
			for i := range 2 {
				if a := admit(t, g, key, true, 10); !a.Allowed() {
					t.Fatalf("request %d after budget refusals = %+v, want admitted (refusals must not count)", i+1, a)
				}
			}
			a := admit(t, g, key, true, 10)
			if a.Refused != RefusedRate || !a.Budgeted || a.Throttle.Allowed {
				t.Fatalf("third request = %+v, want RefusedRate with the budget's state", a)
			}
			pointsNear(t, "available after a rate refusal", a.Throttle.CurrentlyAvailable, 80, 20, im.slack)
		},
		"Global": func(t *testing.T, im impl, key string) {
			g := im.gate(t, GateConfig{
				Rate:   Rate{Events: 1, Per: time.Hour, Burst: 2},
				Global: Rate{Events: 1, Per: time.Hour, Burst: 3},
				Budget: bucket,
			})
			admit(t, g, key+":a", true, 10)
			admit(t, g, key+":b", true, 10)
			admit(t, g, key+":c", true, 10)
			a := admit(t, g, key+":a", true, 10)
			if a.Refused != RefusedGlobal {
				t.Fatalf("fourth request of all keys = %+v, want RefusedGlobal", a)
			}
			durationNear(t, "RetryAfter", a.RetryAfter, time.Hour, im.slack)
			pointsNear(t, "key a's budget, not debited by the refusal", a.Throttle.CurrentlyAvailable, 90, 20, im.slack)
		},
	})
}

// TestRedisGateAgreesWithRedisRate: the Gate's script stores a rate as
// go-redis/redis_rate does, so a RedisRate on the same keys sees the
// Gate's requests, and the other way round.
func TestRedisGateAgreesWithRedisRate(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t)
	opts := RedisOptions{Prefix: redisTestPrefix(t, client)}
	rate := Rate{Events: 1, Per: time.Hour, Burst: 4}
	g := NewRedisGate(client, GateConfig{Rate: rate}, opts)
	r := NewRedisRate(client, rate, opts)
	for i := range 2 {
		if a, err := g.Admit(ctx, "user:1", true, NoDebit); err != nil || !a.Allowed() {
			t.Fatalf("gate request %d = %+v, %v", i+1, a, err)
		}
	}
	d, err := r.Allow(ctx, "user:1")
	if err != nil || !d.Allowed || d.Remaining != 1 {
		t.Fatalf("RedisRate after two gate requests = %+v, %v, want allowed with 1 remaining", d, err)
	}
	if a, err := g.Admit(ctx, "user:1", true, NoDebit); err != nil || !a.Allowed() {
		t.Fatalf("gate's fourth request = %+v, %v", a, err)
	}
	if a, err := g.Admit(ctx, "user:1", true, NoDebit); err != nil || a.Refused != RefusedRate {
		t.Fatalf("gate's fifth request = %+v, %v, want RefusedRate", a, err)
	}
}

// TestRedisGateOneRoundTrip: the three limits of a request cost one
// command, the script's.
func TestRedisGateOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t)
	counter := &redistest.Commands{}
	client.AddHook(counter)
	g := NewRedisGate(client, GateConfig{
		Rate:   Rate{Events: 1000, Per: time.Second},
		Global: Rate{Events: 100000, Per: time.Second},
		Budget: Bucket{Size: 1000, RestoreRate: 100},
	}, RedisOptions{Prefix: redisTestPrefix(t, client)})
	// The first call may load the script (EVALSHA, then EVAL).
	if _, err := g.Admit(ctx, "user:1", true, 5); err != nil {
		t.Fatal(err)
	}
	before := counter.N()
	const requests = 20
	for range requests {
		if a, err := g.Admit(ctx, "user:1", true, 5); err != nil || !a.Allowed() {
			t.Fatalf("Admit = %+v, %v", a, err)
		}
	}
	if got := counter.N() - before; got != requests {
		t.Errorf("%d requests sent %d commands, want one each", requests, got)
	}
}

// TestRedisGateOnCluster: on a Redis Cluster the gate's script keeps to
// the key's slot and the global rate is checked apart; a request the
// global rate refuses gets its debit back.
func TestRedisGateOnCluster(t *testing.T) {
	ctx := context.Background()
	client := redistest.Cluster(t)
	g := NewRedisGate(client, GateConfig{
		Rate:   Rate{Events: 1, Per: time.Hour, Burst: 10},
		Global: Rate{Events: 1, Per: time.Hour, Burst: 3},
		Budget: Bucket{Size: 100, RestoreRate: 1},
	}, RedisOptions{Prefix: "askgate:test:cluster:"})
	for i, key := range []string{"user:a", "user:b", "user:c"} {
		a, err := g.Admit(ctx, key, true, 10)
		if err != nil || !a.Allowed() || !a.Budgeted || a.Throttle.CurrentlyAvailable != 90 {
			t.Fatalf("request %d = %+v, %v; want admitted with 90 points left", i+1, a, err)
		}
	}
	a, err := g.Admit(ctx, "user:a", true, 10)
	if err != nil || a.Refused != RefusedGlobal {
		t.Fatalf("fourth request = %+v, %v; want RefusedGlobal", a, err)
	}
	if a.Throttle.CurrentlyAvailable < 90 || a.Throttle.CurrentlyAvailable > 91 {
		t.Errorf("a's budget after the global refusal: %d points, want its 90 (the debit refunded)", a.Throttle.CurrentlyAvailable)
	}
	if th, err := g.Refund(ctx, "user:b", 10); err != nil || th.CurrentlyAvailable < 100 {
		t.Errorf("Refund on the cluster = %+v, %v", th, err)
	}
}
