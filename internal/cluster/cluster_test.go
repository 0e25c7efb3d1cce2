package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"askgate/internal/chat"
	"askgate/internal/cluster"
	"askgate/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"))
}

// redisClient returns a client of the test Redis and a key prefix of its
// own, whose keys are deleted after the test.
func redisClient(t *testing.T) (*redis.Client, string) {
	t.Helper()
	rdb := redistest.Client(t, redis.Options{})
	return rdb, redistest.Prefix(t, rdb, "cluster")
}

// pair returns two instances of one cluster.
type pair func(t *testing.T) (a, b chat.Cluster)

func implementations() map[string]pair {
	return map[string]pair{
		"Local": func(t *testing.T) (chat.Cluster, chat.Cluster) {
			l := &cluster.Local{}
			return l, l
		},
		"Redis": func(t *testing.T) (chat.Cluster, chat.Cluster) {
			rdb, prefix := redisClient(t)
			return cluster.NewRedis(rdb, prefix), cluster.NewRedis(rdb, prefix)
		},
	}
}

func TestLeases(t *testing.T) {
	for name, newPair := range implementations() {
		t.Run(name, func(t *testing.T) {
			a, b := newPair(t)
			ctx := t.Context()
			if err := a.Renew(ctx, []string{"x", "y"}, 300*time.Millisecond); err != nil {
				t.Fatal(err)
			}
			alive, err := b.Alive(ctx, []string{"x", "y", "z"})
			if err != nil || !alive["x"] || !alive["y"] || alive["z"] {
				t.Fatalf("alive %v, %v; want x and y", alive, err)
			}
			if err := a.Release(ctx, "y"); err != nil {
				t.Fatal(err)
			}
			if alive, _ := b.Alive(ctx, []string{"y"}); alive["y"] {
				t.Error("a released lease is alive")
			}
			// Without renewal a lease expires.
			deadline := time.Now().Add(3 * time.Second)
			for {
				alive, _ := b.Alive(ctx, []string{"x"})
				if !alive["x"] {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("the lease did not expire")
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

func TestClaimIsExclusive(t *testing.T) {
	for name, newPair := range implementations() {
		t.Run(name, func(t *testing.T) {
			a, b := newPair(t)
			ok1, err1 := a.Claim(t.Context(), "x", time.Minute)
			ok2, err2 := b.Claim(t.Context(), "x", time.Minute)
			if err1 != nil || err2 != nil || !ok1 || ok2 {
				t.Errorf("claims %v %v (%v %v), want exactly the first", ok1, ok2, err1, err2)
			}
			if ok, _ := b.Claim(t.Context(), "other", time.Minute); !ok {
				t.Error("a claim on another answer was refused")
			}
		})
	}
}

func TestCancelReachesEveryInstance(t *testing.T) {
	for name, newPair := range implementations() {
		t.Run(name, func(t *testing.T) {
			a, b := newPair(t)
			ctx, cancel := context.WithCancel(t.Context())
			ch, err := a.Cancels(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Cancel(t.Context(), "answer-1"); err != nil {
				t.Fatal(err)
			}
			select {
			case id := <-ch:
				if id != "answer-1" {
					t.Errorf("got %q", id)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the cancel request did not arrive")
			}
			cancel()
			for range ch { // closed once ctx ends
			}
		})
	}
}

func TestShared(t *testing.T) {
	rdb, prefix := redisClient(t)
	if (&cluster.Local{}).Shared() || !cluster.NewRedis(rdb, prefix).Shared() {
		t.Error("Local must not be shared and Redis must be")
	}
}
