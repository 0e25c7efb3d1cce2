package stream

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/chat"
	"askgate/internal/redistest"
	"askgate/internal/stream/streamtest"
)

// redisTestAddr is the Redis the tests use; `make test` starts it.
var redisTestAddr = redistest.Addr()

// redisTestClient returns a client of the test Redis with opts.
func redisTestClient(t testing.TB, opts redis.Options) *redis.Client {
	t.Helper()
	return redistest.Client(t, opts)
}

// redisTestPrefix returns a key prefix of the test's own, whose keys are
// deleted when the test ends.
func redisTestPrefix(t testing.TB, client *redis.Client) string {
	t.Helper()
	return redistest.Prefix(t, client, "stream")
}

// redisKeys returns the keys under prefix.
func redisKeys(ctx context.Context, client *redis.Client, prefix string) ([]string, error) {
	return redistest.Keys(ctx, client, prefix)
}

// newTestRedis returns a Redis on client under a prefix of the test's own
// (opts.Prefix is set), closed when the test ends.
func newTestRedis(t testing.TB, client *redis.Client, opts RedisOptions) *Redis {
	t.Helper()
	opts.Prefix = redisTestPrefix(t, client)
	r := NewRedis(client, opts)
	t.Cleanup(func() { r.Close() })
	return r
}

func TestRedisConformance(t *testing.T) {
	client := redisTestClient(t, redis.Options{})
	streamtest.Run(t, func(t *testing.T) chat.TokenLog {
		return newTestRedis(t, client, RedisOptions{})
	})
}

// TestRedisConformanceConstrained runs the suite with a hub buffer of 4
// events, merges of at most 8 bytes and a single blocking connection, so
// that readers fall behind their hub and read from Redis, and hubs poll.
func TestRedisConformanceConstrained(t *testing.T) {
	client := redisTestClient(t, redis.Options{})
	streamtest.Run(t, func(t *testing.T) chat.TokenLog {
		return newTestRedis(t, client, RedisOptions{HubBuffer: 4, MaxMerge: 8, MaxBlockingConns: 1})
	})
}

// redisText reads r to io.EOF and returns the text of its events, failing
// the test on any other error or on a gap in the seqs. It uses t.Errorf
// only, so it may run in any goroutine.
func redisText(t *testing.T, ctx context.Context, r chat.TokenReader, after int) (string, bool) {
	var b strings.Builder
	prev := after
	for {
		ev, err := r.Next(ctx)
		if err == io.EOF {
			return b.String(), true
		}
		if err != nil {
			t.Errorf("Next after seq %d: %v", prev, err)
			return b.String(), false
		}
		if ev.Seq <= prev {
			t.Errorf("event seq %d after seq %d", ev.Seq, prev)
			return b.String(), false
		}
		prev = ev.Seq
		b.WriteString(ev.Delta)
	}
}

// redisTestDeltas returns n numbered deltas and their text.
func redisTestDeltas(n int) ([]string, string) {
	ds := make([]string, n)
	for i := range ds {
		ds[i] = fmt.Sprintf("w%d ", i+1)
	}
	return ds, strings.Join(ds, "")
}

// hashTag returns the part of key that Redis Cluster hashes: the text
// between its first '{' and the next '}' when not empty, else the key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func TestRedisKeysHashTagAndTTL(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t, redis.Options{})
	const retention, idle = 7 * time.Second, 90 * time.Second
	r := newTestRedis(t, client, RedisOptions{Retention: retention, MaxIdle: idle})
	id := "answer:" + rand.Text()

	if err := r.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "b"} {
		if _, err := r.Append(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
	keys, err := redisKeys(ctx, client, r.opts.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 {
		t.Fatalf("keys of one answer = %q, want 2 (log and meta)", keys)
	}
	for _, k := range keys {
		if got := hashTag(k); got != id {
			t.Errorf("hash tag of %q = %q, want the answer id %q", k, got, id)
		}
		ttl, err := client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= idle-5*time.Second || ttl > idle {
			t.Errorf("TTL of %q while open = %v, want about MaxIdle %v", k, ttl, idle)
		}
	}

	if _, err := r.Finish(ctx, id); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		ttl, err := client.PTTL(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		if ttl <= retention-5*time.Second || ttl > retention {
			t.Errorf("TTL of %q after Finish = %v, want about Retention %v", k, ttl, retention)
		}
	}

	// A finished log expires: Read then reports it missing.
	short := newTestRedis(t, client, RedisOptions{Retention: 100 * time.Millisecond})
	if err := short.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := short.Finish(ctx, id); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, err := short.Read(ctx, id, 0); !errors.Is(err, chat.ErrLogNotFound) {
		t.Fatalf("Read after the retention = %v, want ErrLogNotFound", err)
	}
	if err := short.Open(ctx, id); err != nil {
		t.Fatalf("Open after the retention = %v, want nil", err)
	}
}

// TestRedisTwoInstances writes on one Redis and reads live on another on
// the same keys, as two gateway instances do.
func TestRedisTwoInstances(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := redisTestClient(t, redis.Options{})
	prefix := redisTestPrefix(t, client)
	a := NewRedis(client, RedisOptions{Prefix: prefix})
	defer a.Close()
	b := NewRedis(redisTestClient(t, redis.Options{}), RedisOptions{Prefix: prefix})
	defer b.Close()

	ds, _ := redisTestDeltas(300)
	ds[len(ds)-1] = "from b" // appended on the other instance
	id := rand.Text()
	if err := a.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := b.Open(ctx, id); !errors.Is(err, chat.ErrLogExists) {
		t.Fatalf("Open on the other instance = %v, want ErrLogExists", err)
	}
	var wg sync.WaitGroup
	for i, after := range []int{0, 0, 0, 5} {
		r, err := b.Read(ctx, id, after)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer r.Close()
			got, ok := redisText(t, ctx, r, after)
			if wantAfter := strings.Join(ds[after:], ""); ok && got != wantAfter {
				t.Errorf("reader %d on the other instance: text = %q, want %q", i, got, wantAfter)
			}
		})
	}
	for i, d := range ds[:len(ds)-1] {
		if _, err := a.Append(ctx, id, d); err != nil {
			t.Fatal(err)
		}
		if i%30 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	// Appends from either instance land in the same log.
	if seq, err := b.Append(ctx, id, ds[len(ds)-1]); err != nil || seq != len(ds) {
		t.Fatalf("Append on the other instance = %d, %v; want %d", seq, err, len(ds))
	}
	if _, err := a.Finish(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Finish(ctx, id); !errors.Is(err, chat.ErrLogClosed) {
		t.Fatalf("Finish on the other instance after Finish = %v, want ErrLogClosed", err)
	}
	wg.Wait()
	if s := b.Stats(); s.Hubs != 0 || s.BlockingConns != 0 {
		t.Errorf("stats after every reader ended = %+v, want no hub", s)
	}
}

// redisClientConns returns the number of connections of the Redis server
// whose client name is name.
func redisClientConns(ctx context.Context, admin *redis.Client, name string) (int, error) {
	list, err := admin.ClientList(ctx).Result()
	if err != nil {
		return 0, err
	}
	return strings.Count(list, " name="+name+" "), nil
}

// TestRedisBoundedConnections reads 10 answers with 1000 readers on one
// instance: they share one blocking connection per answer, so the
// instance's connections stay bounded, and every reader gets the text.
func TestRedisBoundedConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const (
		answers  = 10
		readers  = 1000
		poolSize = 8
	)
	name := "askgate-test-" + rand.Text()
	client := redisTestClient(t, redis.Options{ClientName: name, PoolSize: poolSize})
	admin := redisTestClient(t, redis.Options{})
	r := newTestRedis(t, client, RedisOptions{})

	ds, want := redisTestDeltas(200)
	ids := make([]string, answers)
	for i := range ids {
		ids[i] = fmt.Sprint("a", i, "-", rand.Text())
		if err := r.Open(ctx, ids[i]); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	var started, finished atomic.Int64
	for i := range readers {
		rd, err := r.Read(ctx, ids[i%answers], 0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer rd.Close()
			defer finished.Add(1)
			started.Add(1)
			if got, ok := redisText(t, ctx, rd, 0); ok && got != want {
				t.Errorf("reader %d: text = %q, want %q", i, got, want)
			}
		})
	}

	// Sample the connections while the readers wait and read.
	var maxConns, maxHubs atomic.Int64
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			if n, err := redisClientConns(ctx, admin, name); err == nil && int64(n) > maxConns.Load() {
				maxConns.Store(int64(n))
			}
			if h := int64(r.Stats().Hubs); h > maxHubs.Load() {
				maxHubs.Store(h)
			}
			select {
			case <-stopSampling:
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	var writers sync.WaitGroup
	for _, id := range ids {
		writers.Go(func() {
			for i, d := range ds {
				if _, err := r.Append(ctx, id, d); err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				if i%20 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
			if _, err := r.Finish(ctx, id); err != nil {
				t.Errorf("Finish: %v", err)
			}
		})
	}
	writers.Wait()
	wg.Wait()
	close(stopSampling)
	<-sampled

	// The command pool plus one blocking connection per answer.
	if limit := int64(poolSize + answers); maxConns.Load() > limit {
		t.Errorf("%d readers used up to %d connections, want at most %d", readers, maxConns.Load(), limit)
	}
	if maxConns.Load() == 0 {
		t.Errorf("no connection named %q seen: the sampling is broken", name)
	}
	if maxHubs.Load() > answers {
		t.Errorf("up to %d hubs for %d answers", maxHubs.Load(), answers)
	}
	t.Logf("%d readers of %d answers: up to %d connections, %d hubs", readers, answers, maxConns.Load(), maxHubs.Load())
}

// TestRedisHubStopsWithLastReader checks that a hub blocked in a long
// XREAD stops at once when its last reader closes (CLIENT UNBLOCK).
func TestRedisHubStopsWithLastReader(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t, redis.Options{})
	r := newTestRedis(t, client, RedisOptions{BlockTimeout: time.Minute})
	id := rand.Text()
	if err := r.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	var rs []chat.TokenReader
	for range 3 {
		rd, err := r.Read(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		_, err = rd.Next(short)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next on an empty log = %v, want DeadlineExceeded", err)
		}
		rs = append(rs, rd)
	}
	if s := r.Stats(); s.Hubs != 1 || s.BlockingConns != 1 {
		t.Fatalf("stats with 3 readers of one answer = %+v, want 1 hub on 1 connection", s)
	}
	for _, rd := range rs {
		rd.Close()
	}
	start := time.Now()
	for r.Stats() != (RedisStats{}) {
		if time.Since(start) > 2*time.Second {
			t.Fatalf("stats 2s after the last reader closed = %+v, want none", r.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	closed := time.Now()
	r.Close()
	if d := time.Since(closed); d > time.Second {
		t.Errorf("Close took %v", d)
	}
}

// TestRedisCloseWakesReaders checks that Close ends the waits of live
// readers at once.
func TestRedisCloseWakesReaders(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := redisTestClient(t, redis.Options{})
	r := newTestRedis(t, client, RedisOptions{BlockTimeout: time.Minute})
	id := rand.Text()
	if err := r.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	rd, err := r.Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := make(chan error, 1)
	go func() {
		_, err := rd.Next(ctx)
		got <- err
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	r.Close()
	if err := <-got; !errors.Is(err, ErrRedisClosed) {
		t.Fatalf("Next when the Redis closes = %v, want ErrRedisClosed", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close and Next took %v", d)
	}
}

// TestRedisLaggingReader reads with a hub that keeps 8 events: a reader far
// behind catches up from Redis, with merged events, never a gap.
func TestRedisLaggingReader(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := redisTestClient(t, redis.Options{})
	const maxMerge = 64
	r := newTestRedis(t, client, RedisOptions{HubBuffer: 8, MaxMerge: maxMerge})
	id := rand.Text()
	ds, want := redisTestDeltas(2000)
	if err := r.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	fast, err := r.Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fast.Close()
	slow, err := r.Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		if got, ok := redisText(t, ctx, fast, 0); ok && got != want {
			t.Errorf("fast reader: text differs (%d bytes, want %d)", len(got), len(want))
		}
	})
	wg.Go(func() {
		var b strings.Builder
		events := 0
		for {
			ev, err := slow.Next(ctx)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Errorf("slow reader: %v", err)
				return
			}
			if len(ev.Delta) > maxMerge {
				t.Errorf("event of %d bytes, want at most MaxMerge %d", len(ev.Delta), maxMerge)
			}
			b.WriteString(ev.Delta)
			events++
			if events < 20 {
				time.Sleep(20 * time.Millisecond) // fall behind the hub's buffer
			}
		}
		if b.String() != want {
			t.Errorf("slow reader: text = %q, want %q", b.String(), want)
		}
		if events >= len(ds) {
			t.Errorf("slow reader got %d events for %d deltas, want merged events", events, len(ds))
		}
	})
	for _, d := range ds {
		if _, err := r.Append(ctx, id, d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Finish(ctx, id); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
}

// TestRedisManyAnswersFewConnections reads 5 answers live with a single
// blocking connection: the hubs without one poll, and every reader gets
// the text.
func TestRedisManyAnswersFewConnections(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client := redisTestClient(t, redis.Options{})
	r := newTestRedis(t, client, RedisOptions{MaxBlockingConns: 1})
	ds, want := redisTestDeltas(100)
	var wg sync.WaitGroup
	var ids []string
	for range 5 {
		id := rand.Text()
		ids = append(ids, id)
		if err := r.Open(ctx, id); err != nil {
			t.Fatal(err)
		}
		rd, err := r.Read(ctx, id, 0)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer rd.Close()
			if got, ok := redisText(t, ctx, rd, 0); ok && got != want {
				t.Errorf("text = %q, want %q", got, want)
			}
		})
	}
	for _, d := range ds {
		for _, id := range ids {
			if _, err := r.Append(ctx, id, d); err != nil {
				t.Fatal(err)
			}
		}
		if s := r.Stats(); s.BlockingConns > 1 {
			t.Fatalf("stats = %+v, want at most 1 blocking connection", s)
		}
	}
	for _, id := range ids {
		if _, err := r.Finish(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

func TestRedisFull(t *testing.T) {
	ctx := context.Background()
	client := redisTestClient(t, redis.Options{})
	for _, tt := range []struct {
		name string
		opts RedisOptions
		fits int // deltas of 4 bytes that fit
	}{
		{"MaxLen", RedisOptions{MaxLen: 3}, 3},
		{"MaxLogBytes", RedisOptions{MaxLogBytes: 2 * (4 + eventOverhead)}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newTestRedis(t, client, tt.opts)
			id := rand.Text()
			if err := r.Open(ctx, id); err != nil {
				t.Fatal(err)
			}
			for i := range tt.fits {
				if _, err := r.Append(ctx, id, "abcd"); err != nil {
					t.Fatalf("Append #%d: %v", i+1, err)
				}
			}
			if _, err := r.Append(ctx, id, "abcd"); !errors.Is(err, chat.ErrLogFull) {
				t.Fatalf("Append beyond the bound = %v, want ErrLogFull", err)
			}
			if seq, err := r.Finish(ctx, id); err != nil || seq != tt.fits+1 {
				t.Fatalf("Finish of a full log = %d, %v; want %d, nil", seq, err, tt.fits+1)
			}
		})
	}
}

func TestRedisEmptyDelta(t *testing.T) {
	ctx := context.Background()
	r := newTestRedis(t, redisTestClient(t, redis.Options{}), RedisOptions{})
	id := rand.Text()
	if err := r.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Append(ctx, id, ""); err == nil {
		t.Fatal("Append of an empty delta succeeded")
	}
}

// TestRedisAbandonedLogExpires checks that an unfinished log expires
// MaxIdle after its last Append, and that a live reader then gets an error
// wrapping chat.ErrLogNotFound after the events it had not read.
func TestRedisAbandonedLogExpires(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := redisTestClient(t, redis.Options{})
	r := newTestRedis(t, client, RedisOptions{MaxIdle: 300 * time.Millisecond, BlockTimeout: 50 * time.Millisecond})
	id := rand.Text()
	if err := r.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	rd, err := r.Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if _, err := r.Append(ctx, id, "a"); err != nil {
		t.Fatal(err)
	}
	if ev, err := rd.Next(ctx); err != nil || ev != (chat.TokenEvent{Seq: 1, Delta: "a"}) {
		t.Fatalf("Next = %+v, %v; want seq 1", ev, err)
	}
	start := time.Now()
	if _, err := rd.Next(ctx); !errors.Is(err, chat.ErrLogNotFound) {
		t.Fatalf("Next on an abandoned log = %v, want ErrLogNotFound", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the reader learnt of the expiry after %v", d)
	}
	if _, err := r.Append(ctx, id, "b"); !errors.Is(err, chat.ErrLogClosed) {
		t.Errorf("Append to an expired log = %v, want ErrLogClosed", err)
	}
	if _, err := r.Read(ctx, id, 0); !errors.Is(err, chat.ErrLogNotFound) {
		t.Errorf("Read of an expired log = %v, want ErrLogNotFound", err)
	}
}

// TestRedisUnreachable checks that every call fails promptly, with an
// error, when Redis does not answer: within the client's own retries, and
// within the caller's deadline whatever they are.
func TestRedisUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	for _, tt := range []struct {
		name     string
		opts     redis.Options
		deadline time.Duration // of the calls' context
		within   time.Duration
	}{
		{"NoRetries", redis.Options{MaxRetries: -1}, 10 * time.Second, time.Second},
		{"DefaultRetriesDeadline", redis.Options{}, 300 * time.Millisecond, time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Addr = addr
			client := redis.NewClient(&tt.opts)
			defer client.Close()
			r := NewRedis(client, RedisOptions{})
			defer r.Close()
			calls := []struct {
				name string
				call func(ctx context.Context) error
			}{
				{"Open", func(ctx context.Context) error { return r.Open(ctx, "a") }},
				{"Append", func(ctx context.Context) error { _, err := r.Append(ctx, "a", "x"); return err }},
				{"Finish", func(ctx context.Context) error { _, err := r.Finish(ctx, "a"); return err }},
				{"Read", func(ctx context.Context) error { _, err := r.Read(ctx, "a", 0); return err }},
			}
			for _, c := range calls {
				ctx, cancel := context.WithTimeout(context.Background(), tt.deadline)
				start := time.Now()
				err := c.call(ctx)
				d := time.Since(start)
				cancel()
				if err == nil || errors.Is(err, chat.ErrLogNotFound) || errors.Is(err, chat.ErrLogClosed) {
					t.Errorf("%s with Redis unreachable = %v, want a connection error", c.name, err)
				}
				if d > tt.within {
					t.Errorf("%s took %v, want at most %v", c.name, d, tt.within)
				}
			}
		})
	}
}

// TestRedisConnectionLost cuts the connections to Redis while a reader
// waits for the live tail: its Next returns an error at once, and so does
// Append.
func TestRedisConnectionLost(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	proxy := redistest.StartProxy(t, redisTestAddr)
	client := redis.NewClient(&redis.Options{Addr: proxy.Addr(), DialTimeout: time.Second, MaxRetries: -1})
	defer client.Close()
	cleaner := redisTestClient(t, redis.Options{})
	r := NewRedis(client, RedisOptions{Prefix: redisTestPrefix(t, cleaner), BlockTimeout: time.Minute})
	defer r.Close()
	id := rand.Text()
	if err := r.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	rd, err := r.Read(ctx, id, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	got := make(chan error, 1)
	go func() {
		_, err := rd.Next(ctx)
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	proxy.SetDown(true)
	select {
	case err := <-got:
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Next when Redis is lost = %v, want a connection error", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Next still waiting 3s after the connection to Redis was lost")
	}
	if _, err := r.Append(ctx, id, "x"); err == nil {
		t.Fatal("Append with Redis lost succeeded")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("errors took %v", d)
	}
}

// TestRedisClusterConformance runs the suite on a Redis Cluster of three
// masters: one stream per answer, on the slot of its hash tag, and the
// blocking reads on the client of that slot's master.
func TestRedisClusterConformance(t *testing.T) {
	client := redistest.Cluster(t)
	streamtest.Run(t, func(t *testing.T) chat.TokenLog {
		r := NewRedis(client, RedisOptions{Prefix: "askgate:test:" + rand.Text() + ":"})
		t.Cleanup(func() { r.Close() })
		return r
	})
}
