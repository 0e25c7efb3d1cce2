package limits

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"askgate/internal/redistest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// redisTestAddr is the Redis the tests use; `make test` starts it.
var redisTestAddr = redistest.Addr()

// redisTestClient returns a client of the test Redis.
func redisTestClient(t testing.TB) *redis.Client {
	t.Helper()
	return redistest.Client(t, redis.Options{})
}

// redisTestPrefix returns a key prefix of the test's own, whose keys are
// deleted when the test ends.
func redisTestPrefix(t testing.TB, client *redis.Client) string {
	t.Helper()
	return redistest.Prefix(t, client, "limits")
}

// redisKeys returns the keys under prefix.
func redisKeys(ctx context.Context, client *redis.Client, prefix string) ([]string, error) {
	return redistest.Keys(ctx, client, prefix)
}

// testClock is the time of a conformance test: a fake clock for the
// in-process limits, real time for Redis.
type testClock interface {
	Now() time.Time
	Advance(d time.Duration)
}

// fakeClock is a testClock that moves only when told.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

// newFakeClock returns a fakeClock at noon UTC of an arbitrary day.
func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2025, 3, 14, 12, 0, 0, 0, time.UTC)}
}

// Now returns the clock's time.
func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock d forward.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// realClock is a testClock of real time.
type realClock struct{}

// Now returns time.Now().
func (realClock) Now() time.Time { return time.Now() }

// Advance sleeps d.
func (realClock) Advance(d time.Duration) { time.Sleep(d) }

// logBuffer is a concurrency-safe buffer for a test's slog output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// count returns the number of lines that contain s.
func (b *logBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

// String returns what was written.
func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newTestLogger returns a logger writing text lines to a buffer.
func newTestLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}
