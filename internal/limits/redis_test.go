package limits

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisInstancesShare checks that two instances (limits of their own,
// on clients of their own) on one Redis share every limit.
func TestRedisInstancesShare(t *testing.T) {
	ctx := context.Background()
	a, b := redisTestClient(t), redisTestClient(t)
	opts := RedisOptions{Prefix: redisTestPrefix(t, a)}
	t.Run("Rate", func(t *testing.T) {
		rate := Rate{Events: 1, Per: time.Hour, Burst: 3}
		la, lb := NewRedisRate(a, rate, opts), NewRedisRate(b, rate, opts)
		var got []bool
		for _, l := range []RateLimiter{la, lb, la, lb, la} {
			d, err := l.Allow(ctx, "user:1")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, d.Allowed)
		}
		if want := []bool{true, true, true, false, false}; !equal(got, want) {
			t.Errorf("allowed alternately on two instances = %v, want %v", got, want)
		}
	})
	t.Run("Budget", func(t *testing.T) {
		bucket := Bucket{Size: 100, RestoreRate: 1}
		ba, bb := NewRedisBudget(a, bucket, opts), NewRedisBudget(b, bucket, opts)
		if th, err := ba.Debit(ctx, "user:1", 70); err != nil || !th.Allowed {
			t.Fatalf("Debit(70) on A = %+v, %v", th, err)
		}
		th, err := bb.Debit(ctx, "user:1", 70)
		if err != nil || th.Allowed || th.CurrentlyAvailable != 30 {
			t.Fatalf("Debit(70) on B after A's = %+v, %v, want refused with 30 left", th, err)
		}
		if th, err := bb.Refund(ctx, "user:1", 50); err != nil || th.CurrentlyAvailable != 80 {
			t.Fatalf("Refund(50) on B = %+v, %v, want 80 left", th, err)
		}
		if th, err := ba.Debit(ctx, "user:1", 0); err != nil || th.CurrentlyAvailable != 80 {
			t.Fatalf("state on A after B's refund = %+v, %v, want 80 left", th, err)
		}
	})
	t.Run("Concurrency", func(t *testing.T) {
		ca, cb := NewRedisConcurrency(a, 2, opts), NewRedisConcurrency(b, 2, opts)
		release, ok, err := ca.Acquire(ctx, "user:1")
		if err != nil || !ok {
			t.Fatalf("Acquire on A = %v, %v", ok, err)
		}
		if _, ok, err := cb.Acquire(ctx, "user:1"); err != nil || !ok {
			t.Fatalf("Acquire on B = %v, %v", ok, err)
		}
		if _, ok, err := ca.Acquire(ctx, "user:1"); err != nil || ok {
			t.Fatalf("third Acquire on A = %v, %v, want refused", ok, err)
		}
		release()
		if _, ok, err := cb.Acquire(ctx, "user:1"); err != nil || !ok {
			t.Fatalf("Acquire on B after A's release = %v, %v, want a slot", ok, err)
		}
	})
	t.Run("TokenQuota", func(t *testing.T) {
		qa, qb := NewRedisTokenQuota(a, 1000, opts), NewRedisTokenQuota(b, 1000, opts)
		if ok, _, err := qa.Reserve(ctx, "user:1", 700); err != nil || !ok {
			t.Fatalf("Reserve(700) on A = %v, %v", ok, err)
		}
		if ok, remaining, err := qb.Reserve(ctx, "user:1", 700); err != nil || ok || remaining != 300 {
			t.Fatalf("Reserve(700) on B = %v, %d, %v, want refused, 300 left", ok, remaining, err)
		}
		if err := qa.Reconcile(ctx, "user:1", 700, 200); err != nil {
			t.Fatal(err)
		}
		if ok, remaining, err := qb.Reserve(ctx, "user:1", 700); err != nil || !ok || remaining != 100 {
			t.Fatalf("Reserve(700) on B after A's reconcile = %v, %d, %v, want ok, 100 left", ok, remaining, err)
		}
	})
}

// equal reports whether a and b hold the same values.
func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestRedisKeys checks the keys of the Redis limits: namespaced under the
// prefix, one Cluster hash tag per user, every one with a TTL that matches
// what it holds.
func TestRedisKeys(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t)
	prefix := redisTestPrefix(t, client)
	opts := RedisOptions{Prefix: prefix, Lease: time.Minute}
	if _, err := NewRedisRate(client, Rate{Events: 60, Per: time.Minute}, opts).Allow(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, err := NewRedisBudget(client, Bucket{Size: 1000, RestoreRate: 50}, opts).Debit(ctx, "u1", 500); err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewRedisConcurrency(client, 3, opts).Acquire(ctx, "u1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := NewRedisTokenQuota(client, 1000, opts).Reserve(ctx, "u1", 10); err != nil {
		t.Fatal(err)
	}
	// TTL ranges: the rate key until the burst is back (1s), the
	// budget until full (10s) + 1s, the slots their lease, the tokens
	// until the end of the day + 1h.
	today := time.Now().UTC()
	endOfDay := time.Date(today.Year(), today.Month(), today.Day()+1, 0, 0, 0, 0, time.UTC)
	wantTTL := map[string][2]time.Duration{
		prefix + "rate:{u1}":                 {0, time.Second},
		prefix + "budget:{u1}":               {10 * time.Second, 11 * time.Second},
		prefix + "answers:{u1}":              {59 * time.Second, time.Minute},
		prefix + "tokens:{u1}:" + day(today): {time.Until(endOfDay) + 59*time.Minute, time.Until(endOfDay) + time.Hour + time.Second},
	}
	keys, err := redisKeys(ctx, client, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != len(wantTTL) {
		t.Errorf("keys = %v, want %d keys", keys, len(wantTTL))
	}
	for _, k := range keys {
		want, ok := wantTTL[k]
		if !ok {
			t.Errorf("unexpected key %q", k)
			continue
		}
		ttl, err := client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= want[0] || ttl > want[1] {
			t.Errorf("TTL of %q = %v, want in (%v, %v]", k, ttl, want[0], want[1])
		}
	}
	// A budget refunded to full is no key at all.
	if _, err := NewRedisBudget(client, Bucket{Size: 1000, RestoreRate: 50}, opts).Refund(ctx, "u1", 500); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Exists(ctx, prefix+"budget:{u1}").Result(); err != nil || n != 0 {
		t.Errorf("a full bucket's key exists (%d, %v), want deleted", n, err)
	}
}

// TestRedisLeaseExpires checks that a slot never released (its instance
// crashed) frees itself when its lease ends.
func TestRedisLeaseExpires(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t)
	c := NewRedisConcurrency(client, 1, RedisOptions{Prefix: redisTestPrefix(t, client), Lease: 300 * time.Millisecond})
	if _, ok, err := c.Acquire(ctx, "u1"); err != nil || !ok {
		t.Fatalf("Acquire = %v, %v", ok, err)
	}
	if _, ok, _ := c.Acquire(ctx, "u1"); ok {
		t.Fatal("a second slot was given with a cap of 1")
	}
	time.Sleep(350 * time.Millisecond)
	if _, ok, err := c.Acquire(ctx, "u1"); err != nil || !ok {
		t.Fatalf("Acquire after the lease ended = %v, %v, want a slot", ok, err)
	}
}

// TestRedisErrors checks that the Redis limits return an error, and
// nothing else, when Redis is not there.
func TestRedisErrors(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialerRetries: 1})
	defer client.Close()
	ctx := context.Background()
	opts := RedisOptions{}
	if _, err := NewRedisRate(client, Rate{Events: 1, Per: time.Second}, opts).Allow(ctx, "u"); err == nil || !strings.Contains(err.Error(), "limits: rate") {
		t.Errorf("RedisRate.Allow with Redis down: %v, want an error", err)
	}
	if _, err := NewRedisBudget(client, Bucket{Size: 1, RestoreRate: 1}, opts).Debit(ctx, "u", 1); err == nil {
		t.Error("RedisBudget.Debit with Redis down: no error")
	}
	if _, _, err := NewRedisConcurrency(client, 1, opts).Acquire(ctx, "u"); err == nil {
		t.Error("RedisConcurrency.Acquire with Redis down: no error")
	}
	if _, _, err := NewRedisTokenQuota(client, 1, opts).Reserve(ctx, "u", 1); err == nil {
		t.Error("RedisTokenQuota.Reserve with Redis down: no error")
	}
	if err := NewRedisTokenQuota(client, 1, opts).Reconcile(ctx, "u", 1, 2); err == nil {
		t.Error("RedisTokenQuota.Reconcile with Redis down: no error")
	}
}
