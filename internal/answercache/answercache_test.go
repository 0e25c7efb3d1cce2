package answercache_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/answercache"
	"askgate/internal/chat"
	"askgate/internal/redistest"
)

// caches returns the caches to test, each with the given TTL: in process,
// and on the test Redis under a prefix of the test's own.
func caches(t *testing.T) map[string]func(t *testing.T, ttl time.Duration) answercache.Cache {
	return map[string]func(*testing.T, time.Duration) answercache.Cache{
		"memory": func(t *testing.T, ttl time.Duration) answercache.Cache {
			return answercache.NewMemory(answercache.MemoryOptions{TTL: ttl})
		},
		"redis": func(t *testing.T, ttl time.Duration) answercache.Cache {
			rdb := redistest.Client(t, redis.Options{})
			return answercache.NewRedis(rdb, answercache.RedisOptions{TTL: ttl, Prefix: redistest.Prefix(t, rdb, "answercache")})
		},
	}
}

func TestCache(t *testing.T) {
	for name, newCache := range caches(t) {
		t.Run(name, func(t *testing.T) {
			ctx := t.Context()
			c := newCache(t, time.Hour)
			key := answercache.Key(answercache.Question{Model: "m", Text: "Why is the sky blue?"})
			if e, err := c.Get(ctx, key); e != nil || err != nil {
				t.Fatalf("Get of a new key = %+v, %v; want nil, nil", e, err)
			}
			want := answercache.Entry{
				Content: "Rayleigh scattering: «blue» light scatters more.\n", Model: "m-2024",
				Usage:     &chat.TokenUsage{PromptTokens: 12, CompletionTokens: 9, TotalTokens: 21},
				CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC),
			}
			put := want
			if err := c.Put(ctx, key, &put); err != nil {
				t.Fatal(err)
			}
			put.Content = "changed after Put"
			got, err := c.Get(ctx, key)
			if err != nil || got == nil {
				t.Fatalf("Get after Put = %+v, %v", got, err)
			}
			checkEntry(t, got, &want)
			got.Content = "changed after Get"
			checkEntry(t, must(c.Get(ctx, key)), &want)

			// Put replaces; other keys are apart.
			want.Content = "Because of Rayleigh scattering."
			if err := c.Put(ctx, key, &want); err != nil {
				t.Fatal(err)
			}
			checkEntry(t, must(c.Get(ctx, key)), &want)
			other := answercache.Key(answercache.Question{Model: "m", Text: "Why is the sea blue?"})
			if e := must(c.Get(ctx, other)); e != nil {
				t.Errorf("Get of another key = %+v; want nil", e)
			}
		})
	}
}

func TestCacheExpires(t *testing.T) {
	for name, newCache := range caches(t) {
		t.Run(name, func(t *testing.T) {
			c := newCache(t, 200*time.Millisecond)
			if err := c.Put(t.Context(), "k", &answercache.Entry{Content: "x"}); err != nil {
				t.Fatal(err)
			}
			if e := must(c.Get(t.Context(), "k")); e == nil {
				t.Fatal("entry missing at once")
			}
			deadline := time.Now().Add(5 * time.Second)
			for must(c.Get(t.Context(), "k")) != nil {
				if time.Now().After(deadline) {
					t.Fatal("entry still served 5s after a TTL of 200ms")
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

func TestMemoryIsBounded(t *testing.T) {
	ctx := t.Context()
	c := answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour, MaxBytes: 4 << 10})
	text := strings.Repeat("x", 1000)
	for _, k := range []string{"a", "b", "c"} {
		must(0, c.Put(ctx, k, &answercache.Entry{Content: text}))
	}
	must(c.Get(ctx, "a")) // a is now the most recently used
	must(0, c.Put(ctx, "d", &answercache.Entry{Content: text}))
	must(0, c.Put(ctx, "e", &answercache.Entry{Content: text}))
	for k, want := range map[string]bool{"a": true, "b": false, "c": false, "d": true, "e": true} {
		if got := must(c.Get(ctx, k)) != nil; got != want {
			t.Errorf("entry %s held: %v; want %v", k, got, want)
		}
	}
	// An entry larger than the whole cache is not kept.
	must(0, c.Put(ctx, "huge", &answercache.Entry{Content: strings.Repeat("x", 5<<10)}))
	if must(c.Get(ctx, "huge")) != nil || c.Len() != 3 {
		t.Errorf("a 5 KiB entry in a 4 KiB cache: held %d entries", c.Len())
	}
}

func TestRedisKeys(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, rdb, "answercache")
	c := answercache.NewRedis(rdb, answercache.RedisOptions{TTL: time.Minute, Prefix: prefix})
	must(0, c.Put(t.Context(), "k", &answercache.Entry{Content: "x"}))
	ttl := rdb.PTTL(t.Context(), prefix+"k").Val()
	if ttl <= 50*time.Second || ttl > time.Minute {
		t.Errorf("key %sk expires in %v; want the TTL, 1m", prefix, ttl)
	}
	if !strings.HasSuffix(answercache.DefaultPrefix, ":"+answercache.Version+":") || !strings.HasPrefix(answercache.DefaultPrefix, "askgate:") {
		t.Errorf("DefaultPrefix %q: want it namespaced and versioned", answercache.DefaultPrefix)
	}
	// An entry that is not one is an error, which callers treat as a
	// miss.
	rdb.Set(t.Context(), prefix+"bad", "not json", time.Minute)
	if e, err := c.Get(t.Context(), "bad"); e != nil || err == nil {
		t.Errorf("Get of a corrupt entry = %+v, %v; want an error", e, err)
	}
}

func TestRedisUnreachable(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c := answercache.NewRedis(rdb, answercache.RedisOptions{TTL: time.Minute, Timeout: 100 * time.Millisecond})
	start := time.Now()
	if e, err := c.Get(context.Background(), "k"); e != nil || err == nil {
		t.Errorf("Get with Redis down = %+v, %v; want an error", e, err)
	}
	if err := c.Put(context.Background(), "k", &answercache.Entry{Content: "x"}); err == nil {
		t.Error("Put with Redis down: no error")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("two calls with Redis down took %v", d)
	}
}

func TestKey(t *testing.T) {
	base := answercache.Question{Model: "m", SystemPrompt: "Be brief.", Text: "What is  the capital\nof France?"}
	same := []string{"What is the capital of France?", "  What is the capital of France?\n", "What\tis the capital  of\r\nFrance?"}
	for _, text := range same {
		q := base
		q.Text = text
		if answercache.Key(q) != answercache.Key(base) {
			t.Errorf("Key(%q) differs from Key(%q)", text, base.Text)
		}
	}
	differ := map[string]func(q *answercache.Question){
		"case":          func(q *answercache.Question) { q.Text = "what is the capital of France?" },
		"punctuation":   func(q *answercache.Question) { q.Text = "What is the capital of France" },
		"model":         func(q *answercache.Question) { q.Model = "m2" },
		"system prompt": func(q *answercache.Question) { q.SystemPrompt = "Be verbose." },
		"no prompt":     func(q *answercache.Question) { q.SystemPrompt = "" },
		"max tokens":    func(q *answercache.Question) { q.MaxTokens = 100 },
		// The fields cannot run into each other.
		"shifted": func(q *answercache.Question) { q.Model, q.SystemPrompt = "mBe brief.", "" },
	}
	for name, change := range differ {
		q := base
		change(&q)
		if answercache.Key(q) == answercache.Key(base) {
			t.Errorf("%s: the same key as the base question", name)
		}
	}
	if k := answercache.Key(base); len(k) != 64 || strings.Trim(k, "0123456789abcdef") != "" {
		t.Errorf("Key = %q; want 64 hex digits", k)
	}
}

func checkEntry(t *testing.T, got, want *answercache.Entry) {
	t.Helper()
	if got == nil {
		t.Fatal("entry missing")
	}
	if got.Content != want.Content || got.Model != want.Model || !got.CreatedAt.Equal(want.CreatedAt) ||
		(got.Usage == nil) != (want.Usage == nil) || (got.Usage != nil && *got.Usage != *want.Usage) {
		t.Errorf("entry %+v; want %+v", got, want)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
