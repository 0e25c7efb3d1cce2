// Package redistest gives tests the Redis that `make test` starts (on
// 127.0.0.1:6379, or ASKGATE_TEST_REDIS_ADDR): clients that close when the
// test ends, and key prefixes of each test's own whose keys are deleted
// then — never FLUSHDB, which would touch other tests' keys.
package redistest

import (
	"context"
	"crypto/rand"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultAddr is the Redis the tests use unless ASKGATE_TEST_REDIS_ADDR
// names another.
const DefaultAddr = "127.0.0.1:6379"

// Addr returns the address of the test Redis.
func Addr() string {
	if a := os.Getenv("ASKGATE_TEST_REDIS_ADDR"); a != "" {
		return a
	}
	return DefaultAddr
}

// Client returns a client of the test Redis with opts (Addr is set),
// closed when the test ends. The test fails when Redis is not reachable.
func Client(t testing.TB, opts redis.Options) *redis.Client {
	t.Helper()
	opts.Addr = Addr()
	client := redis.NewClient(&opts)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		t.Fatalf("Redis on %s is not reachable (scripts/services.sh starts it): %v", opts.Addr, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// Prefix returns a key prefix of the test's own, "askgate:test:<area>:<random>:",
// and deletes every key under it through client when the test ends.
func Prefix(t testing.TB, client *redis.Client, area string) string {
	t.Helper()
	prefix := "askgate:test:" + area + ":" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := Keys(ctx, client, prefix)
		if err == nil && len(keys) > 0 {
			err = client.Unlink(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("deleting the test's keys under %q: %v", prefix, err)
		}
	})
	return prefix
}

// Keys returns the keys under prefix.
func Keys(ctx context.Context, client *redis.Client, prefix string) ([]string, error) {
	var keys []string
	iter := client.Scan(ctx, 0, prefix+"*", 200).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// Commands counts the commands a client sends, pipelined or not: add it
// with client.AddHook, read it with N.
type Commands struct{ n atomic.Int64 }

// N returns the number of commands sent so far.
func (c *Commands) N() int64 { return c.n.Load() }

// DialHook implements redis.Hook: dials are not commands.
func (c *Commands) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook implements redis.Hook: it counts one command.
func (c *Commands) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.n.Add(1)
		return next(ctx, cmd)
	}
}

// ProcessPipelineHook implements redis.Hook: it counts every command
// of the pipeline.
func (c *Commands) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}
