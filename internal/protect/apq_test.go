package protect

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

const (
	pqQueryHello  = "query Hello { hello }"
	pqQueryViewer = "query Viewer { viewer { id name } }"
)

// apqRequest returns the parameters of an APQ request: the hash, and the
// query when it is not empty, as askgate's HTTP transport decodes them
// (numbers as json.Number).
func apqRequest(hash, query string) *graphql.RawParams {
	return &graphql.RawParams{
		Query: query,
		Extensions: map[string]any{
			"persistedQuery": map[string]any{"version": json.Number("1"), "sha256Hash": hash},
		},
	}
}

// newMemoryAPQStore returns an in-process store with the default bounds.
func newMemoryAPQStore(t *testing.T) APQStore {
	t.Helper()
	s, err := NewAPQMemoryStore(APQMemoryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newRedisAPQStore returns a Redis store on the test Redis under a key
// prefix of its own, removed when the test ends.
func newRedisAPQStore(t *testing.T) APQStore {
	t.Helper()
	return NewAPQRedisStore(pqTestRedisClient(t), APQRedisOptions{KeyPrefix: pqTestRedisPrefix(t)})
}

// pqTestRedisClient returns a client of the Redis on 127.0.0.1:6379, closed
// when the test ends. The test fails when Redis is not reachable: `make
// test` starts it.
func pqTestRedisClient(t *testing.T) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		t.Fatalf("Redis on 127.0.0.1:6379 is not reachable (make services starts it): %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// pqTestRedisPrefix returns a key prefix of the test's own,
// "askgate:test:<random>:", and deletes every key under it when the test
// ends (only those: never FLUSHDB).
func pqTestRedisPrefix(t *testing.T) string {
	t.Helper()
	prefix := "askgate:test:" + rand.Text() + ":"
	client := pqTestRedisClient(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := client.Scan(ctx, 0, prefix+"*", 100).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			t.Errorf("scanning test keys: %v", err)
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("deleting test keys: %v", err)
			}
		}
	})
	return prefix
}

// pqOperationContext returns a context with an operation context, as gqlgen's
// executor gives operation parameter mutators.
func pqOperationContext() context.Context {
	return graphql.WithOperationContext(context.Background(), &graphql.OperationContext{})
}

// pqCode returns the extensions.code of err, or "" for nil.
func pqCode(err *gqlerror.Error) string {
	if err == nil {
		return ""
	}
	code, _ := err.Extensions["code"].(string)
	return code
}

// pqLogBuffer is a concurrency-safe log destination.
type pqLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *pqLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *pqLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// pqTestLogger returns a logger that writes text lines to the returned
// buffer.
func pqTestLogger() (*slog.Logger, *pqLogBuffer) {
	b := &pqLogBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

// apqTestStores are the store implementations every APQ test runs against.
var apqTestStores = []struct {
	name string
	new  func(t *testing.T) APQStore
}{
	{"memory", newMemoryAPQStore},
	{"redis", newRedisAPQStore},
}

func TestAPQStoreConformance(t *testing.T) {
	for _, st := range apqTestStores {
		t.Run(st.name, func(t *testing.T) {
			ctx := context.Background()
			s := st.new(t)
			hash := persistedQueryHash(pqQueryHello)

			if q, ok, err := s.Get(ctx, hash); err != nil || ok || q != "" {
				t.Fatalf("Get on an empty store = %q, %v, %v; want a miss", q, ok, err)
			}
			if err := s.Put(ctx, hash, pqQueryHello); err != nil {
				t.Fatalf("Put: %v", err)
			}
			if err := s.Put(ctx, hash, pqQueryHello); err != nil {
				t.Fatalf("Put again: %v", err)
			}
			if q, ok, err := s.Get(ctx, hash); err != nil || !ok || q != pqQueryHello {
				t.Fatalf("Get = %q, %v, %v; want %q", q, ok, err, pqQueryHello)
			}

			big := "query Big { hello }" + strings.Repeat(" ", DefaultAPQMaxQueryBytes)
			bigHash := persistedQueryHash(big)
			if err := s.Put(ctx, bigHash, big); !errors.Is(err, ErrAPQQueryTooLarge) {
				t.Fatalf("Put of %d bytes = %v; want ErrAPQQueryTooLarge", len(big), err)
			}
			if _, ok, _ := s.Get(ctx, bigHash); ok {
				t.Fatal("a document over the size cap was stored")
			}
		})
	}
}

func TestAPQProtocol(t *testing.T) {
	helloHash := persistedQueryHash(pqQueryHello)
	viewerHash := persistedQueryHash(pqQueryViewer)
	// Each case runs its steps in order against a fresh store.
	type step struct {
		params    *graphql.RawParams
		wantCode  string // "" = accepted
		wantMsg   string // checked when not ""
		wantQuery string // the query after the extension, when accepted
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"miss, register, then hit", []step{
			{params: apqRequest(helloHash, ""), wantCode: CodePersistedQueryNotFound, wantMsg: "PersistedQueryNotFound"},
			{params: apqRequest(helloHash, pqQueryHello), wantQuery: pqQueryHello},
			{params: apqRequest(helloHash, ""), wantQuery: pqQueryHello},
		}},
		{"upper-case hash is the same hash", []step{
			{params: apqRequest(strings.ToUpper(helloHash), pqQueryHello), wantQuery: pqQueryHello},
			{params: apqRequest(helloHash, ""), wantQuery: pqQueryHello},
		}},
		{"mismatch refused and not stored", []step{
			{params: apqRequest(helloHash, pqQueryViewer), wantCode: CodePersistedQueryHashMismatch},
			{params: apqRequest(helloHash, ""), wantCode: CodePersistedQueryNotFound},
			{params: apqRequest(viewerHash, ""), wantCode: CodePersistedQueryNotFound},
		}},
		{"without the extension nothing happens", []step{
			{params: &graphql.RawParams{Query: pqQueryHello}, wantQuery: pqQueryHello},
			{params: &graphql.RawParams{Query: pqQueryHello, Extensions: map[string]any{"persistedQuery": nil}}, wantQuery: pqQueryHello},
		}},
		{"version as float64 (WebSocket transport)", []step{
			{params: &graphql.RawParams{Query: pqQueryHello, Extensions: map[string]any{
				"persistedQuery": map[string]any{"version": float64(1), "sha256Hash": helloHash}}}, wantQuery: pqQueryHello},
		}},
		{"unsupported version", []step{
			{params: &graphql.RawParams{Query: pqQueryHello, Extensions: map[string]any{
				"persistedQuery": map[string]any{"version": json.Number("2"), "sha256Hash": helloHash}}},
				wantCode: "BAD_REQUEST", wantMsg: "unsupported persisted query version: only version 1 is supported"},
			{params: apqRequest(helloHash, ""), wantCode: CodePersistedQueryNotFound},
		}},
		{"missing version", []step{
			{params: &graphql.RawParams{Extensions: map[string]any{
				"persistedQuery": map[string]any{"sha256Hash": helloHash}}}, wantCode: "BAD_REQUEST"},
		}},
		{"extension not an object", []step{
			{params: &graphql.RawParams{Extensions: map[string]any{"persistedQuery": "yes"}}, wantCode: "BAD_REQUEST"},
		}},
		{"hash missing", []step{
			{params: &graphql.RawParams{Extensions: map[string]any{
				"persistedQuery": map[string]any{"version": json.Number("1")}}}, wantCode: "BAD_REQUEST"},
		}},
		{"hash not a string", []step{
			{params: &graphql.RawParams{Extensions: map[string]any{
				"persistedQuery": map[string]any{"version": json.Number("1"), "sha256Hash": json.Number("12")}}}, wantCode: "BAD_REQUEST"},
		}},
		{"hash not hex", []step{
			{params: apqRequest(strings.Repeat("z", 64), ""), wantCode: "BAD_REQUEST"},
			{params: apqRequest("abc", pqQueryHello), wantCode: "BAD_REQUEST"},
		}},
		{"hash far too long", []step{
			{params: apqRequest(strings.Repeat("a", 10_000), ""), wantCode: "BAD_REQUEST"},
		}},
	}
	for _, st := range apqTestStores {
		for _, tt := range tests {
			t.Run(st.name+"/"+tt.name, func(t *testing.T) {
				apq := NewAPQ(st.new(t), nil)
				for i, s := range tt.steps {
					err := apq.MutateOperationParameters(pqOperationContext(), s.params)
					if got := pqCode(err); got != s.wantCode {
						t.Fatalf("step %d: code %q (%v); want %q", i, got, err, s.wantCode)
					}
					if err != nil && s.wantMsg != "" && err.Message != s.wantMsg {
						t.Errorf("step %d: message %q; want %q", i, err.Message, s.wantMsg)
					}
					if err != nil && err.Err != nil {
						t.Errorf("step %d: the error has a cause (%v): the presenter would mask it", i, err.Err)
					}
					if err == nil && s.params.Query != s.wantQuery {
						t.Errorf("step %d: query %q; want %q", i, s.params.Query, s.wantQuery)
					}
				}
			})
		}
	}
}

func TestAPQStats(t *testing.T) {
	apq := NewAPQ(newMemoryAPQStore(t), nil)
	hash := persistedQueryHash(pqQueryHello)

	ctx := pqOperationContext()
	if err := apq.MutateOperationParameters(ctx, apqRequest(hash, pqQueryHello)); err != nil {
		t.Fatal(err)
	}
	got, want := PersistedQueryStatsFrom(ctx), &PersistedQueryStats{APQHash: hash, APQSentQuery: true}
	if got == nil || *got != *want {
		t.Errorf("stats after registering = %+v; want %+v", got, want)
	}

	ctx = pqOperationContext()
	if err := apq.MutateOperationParameters(ctx, apqRequest(hash, "")); err != nil {
		t.Fatal(err)
	}
	got, want = PersistedQueryStatsFrom(ctx), &PersistedQueryStats{APQHash: hash}
	if got == nil || *got != *want {
		t.Errorf("stats after a hit = %+v; want %+v", got, want)
	}

	ctx = pqOperationContext()
	if err := apq.MutateOperationParameters(ctx, &graphql.RawParams{Query: pqQueryHello}); err != nil {
		t.Fatal(err)
	}
	if got := PersistedQueryStatsFrom(ctx); got != nil {
		t.Errorf("stats of a plain request = %+v; want none", got)
	}
}

// TestAPQRedisSharedBetweenInstances: a document registered through one
// gateway instance is found by another one using the same Redis.
func TestAPQRedisSharedBetweenInstances(t *testing.T) {
	prefix := pqTestRedisPrefix(t)
	first := NewAPQ(NewAPQRedisStore(pqTestRedisClient(t), APQRedisOptions{KeyPrefix: prefix}), nil)
	second := NewAPQ(NewAPQRedisStore(pqTestRedisClient(t), APQRedisOptions{KeyPrefix: prefix}), nil)
	hash := persistedQueryHash(pqQueryViewer)

	if err := second.MutateOperationParameters(pqOperationContext(), apqRequest(hash, "")); pqCode(err) != CodePersistedQueryNotFound {
		t.Fatalf("second instance before registration: %v; want %s", err, CodePersistedQueryNotFound)
	}
	if err := first.MutateOperationParameters(pqOperationContext(), apqRequest(hash, pqQueryViewer)); err != nil {
		t.Fatalf("registration on the first instance: %v", err)
	}
	p := apqRequest(hash, "")
	if err := second.MutateOperationParameters(pqOperationContext(), p); err != nil {
		t.Fatalf("second instance after registration: %v", err)
	}
	if p.Query != pqQueryViewer {
		t.Errorf("second instance got %q; want %q", p.Query, pqQueryViewer)
	}
}

func TestAPQRedisKeyAndTTL(t *testing.T) {
	ctx := context.Background()
	client := pqTestRedisClient(t)
	prefix := pqTestRedisPrefix(t)
	s := NewAPQRedisStore(client, APQRedisOptions{KeyPrefix: prefix, TTL: time.Minute})
	hash := persistedQueryHash(pqQueryHello)
	key := prefix + hash

	if err := s.Put(ctx, hash, pqQueryHello); err != nil {
		t.Fatal(err)
	}
	if got, err := client.Get(ctx, key).Result(); err != nil || got != pqQueryHello {
		t.Fatalf("key %s holds %q, %v; want the document", key, got, err)
	}
	if ttl := client.TTL(ctx, key).Val(); ttl <= 50*time.Second || ttl > time.Minute {
		t.Fatalf("TTL after Put = %v; want about a minute", ttl)
	}

	// A hit renews the TTL.
	if err := client.Expire(ctx, key, 5*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Get(ctx, hash); !ok || err != nil {
		t.Fatalf("Get = %v, %v; want a hit", ok, err)
	}
	if ttl := client.TTL(ctx, key).Val(); ttl <= 50*time.Second {
		t.Errorf("TTL after a hit = %v; want it renewed to about a minute", ttl)
	}
}

// TestAPQRedisCorruptEntry: a stored value that is not the document of its
// hash is a miss, never run.
func TestAPQRedisCorruptEntry(t *testing.T) {
	ctx := context.Background()
	client := pqTestRedisClient(t)
	prefix := pqTestRedisPrefix(t)
	log, logs := pqTestLogger()
	apq := NewAPQ(NewAPQRedisStore(client, APQRedisOptions{KeyPrefix: prefix}), log)
	hash := persistedQueryHash(pqQueryHello)
	if err := client.Set(ctx, prefix+hash, "mutation Evil { deleteEverything }", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}

	p := apqRequest(hash, "")
	if err := apq.MutateOperationParameters(pqOperationContext(), p); pqCode(err) != CodePersistedQueryNotFound {
		t.Fatalf("got %v (query %q); want %s", err, p.Query, CodePersistedQueryNotFound)
	}
	if !strings.Contains(logs.String(), "does not match its hash") {
		t.Errorf("the corrupt entry was not logged; log:\n%s", logs)
	}
}

// TestAPQRedisDown: with Redis unreachable, a hash-only request is a miss
// and a request with its document runs; nothing about Redis reaches the
// client; the failure is logged, and then the store backs off instead of
// making every request wait for Redis.
func TestAPQRedisDown(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	t.Cleanup(func() { _ = client.Close() })
	log, logs := pqTestLogger()
	apq := NewAPQ(NewAPQRedisStore(client, APQRedisOptions{
		KeyPrefix: "askgate:test:down:",
		Timeout:   5 * time.Second,
		Backoff:   time.Minute,
	}), log)
	hash := persistedQueryHash(pqQueryHello)

	err := apq.MutateOperationParameters(pqOperationContext(), apqRequest(hash, ""))
	if pqCode(err) != CodePersistedQueryNotFound || err.Message != "PersistedQueryNotFound" {
		t.Fatalf("hash only: %v; want %s", err, CodePersistedQueryNotFound)
	}
	if err.Err != nil || len(err.Extensions) != 1 {
		t.Errorf("the client error carries more than its code: %#v", err)
	}
	if got := logs.String(); !strings.Contains(got, "level=WARN") || !strings.Contains(got, "persisted query lookup failed") || !strings.Contains(got, "redis GETEX") {
		t.Errorf("the failed lookup was not logged as a warning; log:\n%s", got)
	}

	start := time.Now()
	p := apqRequest(hash, pqQueryHello)
	if err := apq.MutateOperationParameters(pqOperationContext(), p); err != nil {
		t.Fatalf("hash and query: %v; want the request to proceed", err)
	}
	if p.Query != pqQueryHello {
		t.Errorf("query %q; want %q", p.Query, pqQueryHello)
	}
	if err := apq.MutateOperationParameters(pqOperationContext(), apqRequest(hash, "")); pqCode(err) != CodePersistedQueryNotFound {
		t.Fatalf("hash only while backing off: %v; want %s", err, CodePersistedQueryNotFound)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("requests while the store backs off took %v; want no wait for Redis", d)
	}
	if got := logs.String(); !strings.Contains(got, "persisted query not stored") || strings.Count(got, "level=WARN") != 1 {
		t.Errorf("want one warning, then the skipped Put at debug level; log:\n%s", got)
	}
}

func TestAPQRedisBackoff(t *testing.T) {
	ctx := context.Background()
	s := NewAPQRedisStore(pqTestRedisClient(t), APQRedisOptions{KeyPrefix: pqTestRedisPrefix(t)})
	hash := persistedQueryHash(pqQueryHello)
	if err := s.Put(ctx, hash, pqQueryHello); err != nil {
		t.Fatal(err)
	}

	s.downUntil.Store(time.Now().Add(time.Hour).UnixNano())
	if _, _, err := s.Get(ctx, hash); !errors.Is(err, ErrAPQStoreUnavailable) {
		t.Errorf("Get while backing off: %v; want ErrAPQStoreUnavailable", err)
	}
	if err := s.Put(ctx, hash, pqQueryHello); !errors.Is(err, ErrAPQStoreUnavailable) {
		t.Errorf("Put while backing off: %v; want ErrAPQStoreUnavailable", err)
	}

	s.downUntil.Store(time.Now().Add(-time.Millisecond).UnixNano())
	if q, ok, err := s.Get(ctx, hash); err != nil || !ok || q != pqQueryHello {
		t.Errorf("Get after the back-off = %q, %v, %v; want a hit", q, ok, err)
	}

	// A request that went away is no sign of trouble with Redis.
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.Get(cancelled, hash); err == nil {
		t.Fatal("Get with a cancelled context succeeded")
	}
	if s.backingOff() {
		t.Error("a cancelled request started a back-off")
	}
}

func TestAPQMemoryStoreBounds(t *testing.T) {
	ctx := context.Background()
	doc := func(i int) string { return "query Q" + strings.Repeat("x", i) + " { hello }" }

	t.Run("entries", func(t *testing.T) {
		s, err := NewAPQMemoryStore(APQMemoryOptions{MaxEntries: 3})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			if err := s.Put(ctx, persistedQueryHash(doc(i)), doc(i)); err != nil {
				t.Fatal(err)
			}
			if i == 2 {
				// Use the oldest, so that the next ones evict doc(1) and doc(2).
				if _, ok, _ := s.Get(ctx, persistedQueryHash(doc(0))); !ok {
					t.Fatal("doc 0 missing")
				}
			}
		}
		if got := s.Len(); got != 3 {
			t.Errorf("Len = %d; want 3", got)
		}
		for i, want := range []bool{true, false, false, true, true} {
			if _, ok, _ := s.Get(ctx, persistedQueryHash(doc(i))); ok != want {
				t.Errorf("doc %d present = %v; want %v", i, ok, want)
			}
		}
	})

	t.Run("bytes", func(t *testing.T) {
		const maxBytes = 1000
		s, err := NewAPQMemoryStore(APQMemoryOptions{MaxEntries: 1000, MaxBytes: maxBytes, MaxQueryBytes: 500})
		if err != nil {
			t.Fatal(err)
		}
		var total int64
		for i := range 40 {
			d := doc(i * 10)
			err := s.Put(ctx, persistedQueryHash(d), d)
			if len(d) > 500 {
				if !errors.Is(err, ErrAPQQueryTooLarge) {
					t.Fatalf("Put of %d bytes = %v; want ErrAPQQueryTooLarge", len(d), err)
				}
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			total += int64(64 + len(d))
			if b := s.Bytes(); b > maxBytes {
				t.Fatalf("after %d puts the store holds %d bytes; bound %d", i+1, b, maxBytes)
			}
		}
		if b := s.Bytes(); b == 0 || b >= total {
			t.Errorf("Bytes = %d; want evictions (%d put in all)", b, total)
		}
		// The last document stored is kept: eviction takes the oldest.
		last := doc(390)
		if _, ok, _ := s.Get(ctx, persistedQueryHash(last)); !ok {
			t.Error("the most recent document was evicted")
		}
		// Accounting survives removing everything.
		for s.Len() > 0 {
			s.mu.Lock()
			s.lru.RemoveOldest()
			s.mu.Unlock()
		}
		if b := s.Bytes(); b != 0 {
			t.Errorf("empty store accounts %d bytes", b)
		}
	})

	t.Run("options", func(t *testing.T) {
		for _, opts := range []APQMemoryOptions{
			{MaxEntries: -1},
			{MaxBytes: -1},
			{MaxBytes: 100, MaxQueryBytes: 200},
		} {
			if _, err := NewAPQMemoryStore(opts); err == nil {
				t.Errorf("NewAPQMemoryStore(%+v) accepted", opts)
			}
		}
		s, err := NewAPQMemoryStore(APQMemoryOptions{MaxBytes: 1000})
		if err != nil {
			t.Fatalf("a small MaxBytes with the default MaxQueryBytes: %v", err)
		}
		if s.maxQueryBytes != 1000 {
			t.Errorf("maxQueryBytes = %d; want it lowered to MaxBytes", s.maxQueryBytes)
		}
	})
}

func TestAPQMemoryStoreConcurrent(t *testing.T) {
	s, err := NewAPQMemoryStore(APQMemoryOptions{MaxEntries: 50, MaxBytes: 4000})
	if err != nil {
		t.Fatal(err)
	}
	apq := NewAPQ(s, nil)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				q := "query Q" + strings.Repeat("x", (g*200+i)%97) + " { hello }"
				h := persistedQueryHash(q)
				if err := apq.MutateOperationParameters(pqOperationContext(), apqRequest(h, q)); err != nil {
					t.Error(err)
					return
				}
				_ = apq.MutateOperationParameters(pqOperationContext(), apqRequest(h, ""))
			}
		})
	}
	wg.Wait()
	if s.Len() > 50 || s.Bytes() > 4000 {
		t.Errorf("Len %d, Bytes %d; bounds 50 and 4000", s.Len(), s.Bytes())
	}
}

func TestAPQValidate(t *testing.T) {
	if err := NewAPQ(nil, nil).Validate(nil); err == nil {
		t.Error("an APQ without a store validated")
	}
	if err := NewAPQ(newMemoryAPQStore(t), nil).Validate(nil); err != nil {
		t.Error(err)
	}
}
