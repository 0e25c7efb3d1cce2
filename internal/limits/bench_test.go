package limits

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// The limit checks of one request: a rate and a budget debit per user.
// Run with -bench Limits to get the figures of issue 5.

func BenchmarkLocalRate(b *testing.B) {
	l := NewLocalRate(Rate{Events: 1 << 20, Per: time.Second}, LocalOptions{})
	benchUsers(b, func(ctx context.Context, user string) { l.Allow(ctx, user) })
}

func BenchmarkLocalBudget(b *testing.B) {
	l := NewLocalBudget(Bucket{Size: 1 << 30, RestoreRate: 1 << 20}, LocalOptions{})
	benchUsers(b, func(ctx context.Context, user string) { l.Debit(ctx, user, 1) })
}

func BenchmarkRedisRate(b *testing.B) {
	client := redisTestClient(b)
	l := NewRedisRate(client, Rate{Events: 1 << 20, Per: time.Second}, RedisOptions{Prefix: redisTestPrefix(b, client)})
	benchUsers(b, func(ctx context.Context, user string) { l.Allow(ctx, user) })
}

func BenchmarkRedisBudget(b *testing.B) {
	client := redisTestClient(b)
	l := NewRedisBudget(client, Bucket{Size: 1 << 30, RestoreRate: 1 << 20}, RedisOptions{Prefix: redisTestPrefix(b, client)})
	benchUsers(b, func(ctx context.Context, user string) { l.Debit(ctx, user, 1) })
}

// benchGate is the configuration of the Gate benchmarks: a request rate per
// user, a global rate and a cost budget, none of which refuses.
var benchGate = GateConfig{
	Rate:   Rate{Events: 1 << 20, Per: time.Second},
	Global: Rate{Events: 1 << 30, Per: time.Second},
	Budget: Bucket{Size: 1 << 30, RestoreRate: 1 << 20},
}

// BenchmarkLocalGate is the limit check of one request in process: both
// rates and the budget.
func BenchmarkLocalGate(b *testing.B) {
	g := NewLocalGate(benchGate, LocalOptions{})
	benchUsers(b, func(ctx context.Context, user string) { g.Admit(ctx, user, true, 10) })
}

// BenchmarkRedisGate is the limit check of one request on Redis: both
// rates and the budget in one script call.
func BenchmarkRedisGate(b *testing.B) {
	client := redisTestClient(b)
	g := NewRedisGate(client, benchGate, RedisOptions{Prefix: redisTestPrefix(b, client)})
	benchUsers(b, func(ctx context.Context, user string) { g.Admit(ctx, user, true, 10) })
}

// BenchmarkFallbackGate is BenchmarkRedisGate through a Fallback, as the
// gateway runs it.
func BenchmarkFallbackGate(b *testing.B) {
	client := redisTestClient(b)
	f := NewFallback(FallbackOptions{})
	defer f.Close()
	g := f.Gate(NewRedisGate(client, benchGate, RedisOptions{Prefix: redisTestPrefix(b, client)}), NewLocalGate(benchGate, LocalOptions{}))
	benchUsers(b, func(ctx context.Context, user string) { g.Admit(ctx, user, true, 10) })
}

// BenchmarkFallbackRate measures what the Fallback adds to RedisRate while
// Redis answers (a goroutine and a timer per call).
func BenchmarkFallbackRate(b *testing.B) {
	client := redisTestClient(b)
	rate := Rate{Events: 1 << 20, Per: time.Second}
	f := NewFallback(FallbackOptions{})
	defer f.Close()
	l := f.Rate(NewRedisRate(client, rate, RedisOptions{Prefix: redisTestPrefix(b, client)}), NewLocalRate(rate, LocalOptions{}))
	benchUsers(b, func(ctx context.Context, user string) { l.Allow(ctx, user) })
}

// benchUsers runs check in parallel for 1000 users in turn.
func benchUsers(b *testing.B, check func(ctx context.Context, user string)) {
	users := make([]string, 1000)
	for i := range users {
		users[i] = "user:" + strconv.Itoa(i)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			check(ctx, users[i%len(users)])
			i++
		}
	})
}
