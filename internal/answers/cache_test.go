package answers_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"askgate/internal/answercache"
	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/limits"
	"askgate/internal/llm"
	"askgate/internal/llm/llmtest"
	"askgate/internal/redistest"
)

// cachesOn returns the answer caches to test: in process, and on the test
// Redis under a prefix of the test's own.
func cachesOn(t *testing.T) map[string]func(t *testing.T) answercache.Cache {
	return map[string]func(*testing.T) answercache.Cache{
		"memory": func(t *testing.T) answercache.Cache {
			return answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour})
		},
		"redis": func(t *testing.T) answercache.Cache {
			rdb := redistest.Client(t, redis.Options{})
			return answercache.NewRedis(rdb, answercache.RedisOptions{TTL: time.Hour, Prefix: redistest.Prefix(t, rdb, "answers-cache")})
		},
	}
}

// cached is a Manager with an answer cache, a token quota and a
// concurrency cap of 1 on the fixture's store, log and backend.
type cached struct {
	*fixture
	M     *answers.Manager
	Quota limits.TokenQuota
}

func newCached(t *testing.T, cache answercache.Cache, opts answers.Options) *cached {
	t.Helper()
	f := newFixture(t, fixtureOptions{})
	opts.Store, opts.Log, opts.Cache = f.Store, f.Log, cache
	opts.LLM = must(llm.NewClient(f.Backend.URL(), llm.Options{Retries: 1, Backoff: time.Millisecond}))
	if opts.TokenQuota == nil {
		opts.TokenQuota = limits.NewLocalTokenQuota(1_000_000, limits.LocalOptions{})
	}
	if opts.Concurrency == nil {
		opts.Concurrency = limits.NewLocalConcurrency(1)
	}
	m := answers.New(opts)
	t.Cleanup(func() {
		f.Backend.Unhold()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	})
	return &cached{fixture: f, M: m, Quota: opts.TokenQuota}
}

// start starts a conversation of owner with question, as startConversation
// does, and returns the exchange once its answer has ended, with the
// events streamed.
func (c *cached) start(owner, question string, noCache bool) (*chat.Exchange, []*answers.Event) {
	c.t.Helper()
	ex := &chat.Exchange{
		Conversation: &chat.Conversation{OwnerID: owner, Title: "t"},
		NoCache:      noCache,
		Question:     &chat.Message{Content: question},
		Answer:       &chat.Message{},
	}
	return ex, c.run(owner, ex)
}

// askIn asks question in owner's conversation conv, as ask does.
func (c *cached) askIn(owner, conv, question string) (*chat.Exchange, []*answers.Event) {
	c.t.Helper()
	ex := &chat.Exchange{Question: &chat.Message{ConversationID: conv, Content: question}, Answer: &chat.Message{ConversationID: conv}}
	return ex, c.run(owner, ex)
}

func (c *cached) run(owner string, ex *chat.Exchange) []*answers.Event {
	c.t.Helper()
	if _, err := c.M.Ask(context.Background(), owner, ex, ""); err != nil {
		c.t.Fatalf("ask: %v", err)
	}
	events := collect(c.t, must(c.M.Watch(c.t.Context(), owner, ex.Answer.ID, 0)))
	waitFor(c.t, func() bool { return c.M.Running() == 0 })
	return events
}

// remaining returns what is left of owner's token quota today.
func (c *cached) remaining(owner string) int {
	c.t.Helper()
	ok, n, err := c.Quota.Reserve(context.Background(), owner, 0)
	if !ok || err != nil {
		c.t.Fatalf("token quota: %v, %v", ok, err)
	}
	return n
}

// final returns the answer of the terminal event.
func final(t *testing.T, events []*answers.Event) *chat.Message {
	t.Helper()
	if len(events) == 0 || !events[len(events)-1].Done || events[len(events)-1].Message == nil {
		t.Fatalf("no terminal event with the answer among %d events", len(events))
	}
	return events[len(events)-1].Message
}

var longReply = []string{"The", " capital", " of", " France", " is", " Paris", ", on", " the", " Seine", ";", " it", " has", " been", " so", " for", " centuries", "."}

func TestAnswerCache(t *testing.T) {
	for name, newCache := range cachesOn(t) {
		t.Run(name, func(t *testing.T) {
			c := newCached(t, newCache(t), answers.Options{SystemPrompt: "Be brief."})
			c.Backend.SetReply(longReply...)
			c.Backend.SetUsage(&chat.TokenUsage{PromptTokens: 20, CompletionTokens: 17, TotalTokens: 37})
			want := strings.Join(longReply, "")
			before := c.remaining("alice")

			first, events := c.start("alice", "What is the capital of France?", false)
			a := final(t, events)
			if a.Content != want || a.Status != chat.StatusComplete || a.Cached || first.Answer.Cached {
				t.Fatalf("first answer: saved %s %q cached %v", a.Status, a.Content, a.Cached)
			}
			charged := before - c.remaining("alice")
			if charged != 37 {
				t.Errorf("the first answer charged %d tokens, want the backend's 37", charged)
			}

			// The same first question, in another conversation, by
			// another user too, written with other white space: one
			// backend call in all, the same text streamed in several
			// deltas, the answer marked cached and charged nothing.
			for _, ask := range []struct{ owner, question string }{
				{"alice", "What is the capital of France?"},
				{"alice", "  What is the capital\n of France?  "},
				{"bob", "What is the capital of France?"},
			} {
				before := c.remaining(ask.owner)
				ex, events := c.start(ask.owner, ask.question, false)
				if ex.Answer.Status != chat.StatusStreaming || !ex.Answer.Cached {
					t.Errorf("%s: ask returned the answer %s, cached %v; want STREAMING and cached", ask.owner, ex.Answer.Status, ex.Answer.Cached)
				}
				checkSeqs(t, events, 0)
				if text(events) != want || len(events) < 3 {
					t.Errorf("%s: streamed %q in %d events; want %q in several", ask.owner, text(events), len(events), want)
				}
				got := final(t, events)
				if got.Status != chat.StatusComplete || got.Content != want || !got.Cached || got.Model != llmtest.DefaultModel ||
					got.Usage == nil || *got.Usage != (chat.TokenUsage{}) || got.CompletedAt == nil {
					t.Errorf("%s: cached answer saved as %+v (usage %+v)", ask.owner, got, got.Usage)
				}
				if stored := must(c.Store.MessagesByID(t.Context(), ask.owner, []string{ex.Answer.ID})); len(stored) != 1 || !stored[0].Cached {
					t.Errorf("%s: the stored answer is not marked cached", ask.owner)
				}
				if n := before - c.remaining(ask.owner); n != 0 {
					t.Errorf("%s: the cached answer charged %d tokens, want 0", ask.owner, n)
				}
			}
			// A first question asked in an empty conversation is one too.
			_, events = c.askIn("alice", c.conv.ID, "What is the capital of France?")
			if got := final(t, events); !got.Cached || got.Content != want {
				t.Errorf("first question of an empty conversation: cached %v, %q", got.Cached, got.Content)
			}
			if n := c.Backend.Requests(); n != 1 {
				t.Errorf("backend called %d times, want 1", n)
			}
			if c.stored(first.Answer.ID).Cached {
				t.Error("the generated answer became cached")
			}
		})
	}
}

func TestAnswerCacheOnlyFirstQuestions(t *testing.T) {
	for name, newCache := range cachesOn(t) {
		t.Run(name, func(t *testing.T) {
			c := newCached(t, newCache(t), answers.Options{})
			first, _ := c.start("alice", "Hello?", false)
			conv := first.Conversation.ID
			// A question with history is neither served from the cache…
			_, events := c.askIn("alice", conv, "Hello?")
			if got := final(t, events); got.Cached || c.Backend.Requests() != 2 {
				t.Errorf("a question with history: cached %v, %d backend calls; want a generated answer", got.Cached, c.Backend.Requests())
			}
			// …nor stored there.
			c.askIn("alice", conv, "And then?")
			_, events = c.start("alice", "And then?", false)
			if got := final(t, events); got.Cached || c.Backend.Requests() != 4 {
				t.Errorf("the first question of a conversation, earlier asked with history: cached %v, %d backend calls; want 4", got.Cached, c.Backend.Requests())
			}
		})
	}
}

func TestAnswerCacheOnlyCompleteAnswers(t *testing.T) {
	for name, newCache := range cachesOn(t) {
		t.Run(name, func(t *testing.T) {
			c := newCached(t, newCache(t), answers.Options{})
			c.Backend.ErrorAfter(2)
			_, events := c.start("alice", "q", false)
			if got := final(t, events); got.Status != chat.StatusFailed || got.Content == "" {
				t.Fatalf("answer %s %q; want FAILED with partial content", got.Status, got.Content)
			}
			c.Backend.SetFault(llmtest.Fault{})
			_, events = c.start("alice", "q", false)
			if got := final(t, events); got.Cached || got.Status != chat.StatusComplete || c.Backend.Requests() != 2 {
				t.Fatalf("after a FAILED answer: %s, cached %v, %d backend calls; want a generated answer", got.Status, got.Cached, c.Backend.Requests())
			}
			// A cancelled answer is not stored either.
			c.Backend.Hold()
			ex := &chat.Exchange{Conversation: &chat.Conversation{OwnerID: "alice"}, Question: &chat.Message{Content: "cancel me"}, Answer: &chat.Message{}}
			must(c.M.Ask(t.Context(), "alice", ex, ""))
			c.Backend.Release(1)
			waitFor(t, func() bool { return c.Backend.Requests() == 3 })
			if a := must(c.M.Cancel(t.Context(), "alice", ex.Answer.ID)); a.Status != chat.StatusCancelled {
				t.Fatalf("cancelled answer is %s", a.Status)
			}
			c.Backend.Unhold()
			_, events = c.start("alice", "cancel me", false)
			if got := final(t, events); got.Cached || c.Backend.Requests() != 4 {
				t.Errorf("after a CANCELLED answer: cached %v, %d backend calls; want a generated answer", got.Cached, c.Backend.Requests())
			}
			// The complete one is.
			_, events = c.start("alice", "q", false)
			if got := final(t, events); !got.Cached || c.Backend.Requests() != 4 {
				t.Errorf("after a COMPLETE answer: cached %v, %d backend calls; want it from the cache", got.Cached, c.Backend.Requests())
			}
		})
	}
}

func TestAnswerCacheOffPerRequest(t *testing.T) {
	c := newCached(t, answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour}), answers.Options{})
	c.start("alice", "q", false)
	// Off for one ask: the backend answers…
	_, events := c.start("alice", "q", true)
	if got := final(t, events); got.Cached || c.Backend.Requests() != 2 {
		t.Errorf("an ask with NoCache: cached %v, %d backend calls; want a generated answer", got.Cached, c.Backend.Requests())
	}
	// …and what it answers is not stored.
	c.start("alice", "other", true)
	_, events = c.start("alice", "other", false)
	if got := final(t, events); got.Cached || c.Backend.Requests() != 4 {
		t.Errorf("after an ask with NoCache: cached %v, %d backend calls; want a generated answer", got.Cached, c.Backend.Requests())
	}
}

func TestAnswerCacheOff(t *testing.T) {
	c := newCached(t, nil, answers.Options{})
	for i := 1; i <= 2; i++ {
		_, events := c.start("alice", "q", false)
		if got := final(t, events); got.Cached || c.Backend.Requests() != i {
			t.Errorf("ask %d without a cache: cached %v, %d backend calls", i, got.Cached, c.Backend.Requests())
		}
	}
}

func TestAnswerCacheKey(t *testing.T) {
	cache := answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour})
	c := newCached(t, cache, answers.Options{SystemPrompt: "Be brief."})
	c.Backend.SetModels(chat.Model{ID: "small"}, chat.Model{ID: "large"})
	c.start("alice", "q", false)
	// Another model, or another system prompt, is another question.
	ex := &chat.Exchange{Conversation: &chat.Conversation{OwnerID: "alice"}, Question: &chat.Message{Content: "q"}, Answer: &chat.Message{}}
	must(c.M.Ask(t.Context(), "alice", ex, "large"))
	if got := final(t, collect(t, must(c.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)))); got.Cached {
		t.Error("another model's answer came from the cache")
	}
	other := answers.New(answers.Options{Store: c.Store, Log: c.Log, Cache: cache, SystemPrompt: "Be verbose.",
		LLM: must(llm.NewClient(c.Backend.URL(), llm.Options{}))})
	defer other.Shutdown(t.Context())
	ex = &chat.Exchange{Conversation: &chat.Conversation{OwnerID: "alice"}, Question: &chat.Message{Content: "q"}, Answer: &chat.Message{}}
	must(other.Ask(t.Context(), "alice", ex, ""))
	if got := final(t, collect(t, must(other.Watch(t.Context(), "alice", ex.Answer.ID, 0)))); got.Cached {
		t.Error("an answer to another system prompt came from the cache")
	}
	if n := c.Backend.Requests(); n != 3 {
		t.Errorf("backend called %d times, want 3", n)
	}
}

// TestAnswerCacheTakesNoLimits: an answer from the cache needs neither a
// generation slot nor tokens, so a user at the cap or out of tokens still
// gets it, and the slot of a running answer is not taken.
func TestAnswerCacheTakesNoLimits(t *testing.T) {
	for name, on := range limitsOn(t) {
		t.Run(name, func(t *testing.T) {
			slots, quota := on(1, 3000)
			c := newCached(t, answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour}),
				answers.Options{Concurrency: slots, TokenQuota: quota})
			c.Backend.SetUsage(&chat.TokenUsage{PromptTokens: 10, CompletionTokens: 1490, TotalTokens: 1500})
			c.start("alice", "q", false)
			// alice's one slot is taken by an answer being generated,
			// and her tokens are spent.
			c.Backend.Hold()
			busy := &chat.Exchange{Conversation: &chat.Conversation{OwnerID: "alice"}, Question: &chat.Message{Content: "busy"}, Answer: &chat.Message{}}
			if _, err := c.M.Ask(t.Context(), "alice", busy, ""); err != nil {
				t.Fatalf("busy: %v", err)
			}
			if n := c.remaining("alice"); n >= answers.CompletionEstimate {
				t.Fatalf("%d tokens left; want fewer than an ask reserves", n)
			}
			for _, q := range []string{"another", "q"} {
				ex := &chat.Exchange{Conversation: &chat.Conversation{OwnerID: "alice"}, Question: &chat.Message{Content: q}, Answer: &chat.Message{}}
				_, err := c.M.Ask(t.Context(), "alice", ex, "")
				if q == "another" {
					if chat.ErrorCode(err) != chat.CodeRateLimited {
						t.Fatalf("a new question at the cap: %v; want RATE_LIMITED", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("a cached question at the cap: %v", err)
				}
				if got := final(t, collect(t, must(c.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)))); !got.Cached || got.Status != chat.StatusComplete {
					t.Errorf("a cached answer at the cap: %s, cached %v", got.Status, got.Cached)
				}
			}
			if n := c.Backend.Requests(); n != 2 {
				t.Errorf("backend called %d times, want 2", n)
			}
			c.Backend.Unhold()
		})
	}
}

// failingCache fails every call, as a Redis that is down.
type failingCache struct{ gets, puts int }

func (f *failingCache) Get(context.Context, string) (*answercache.Entry, error) {
	f.gets++
	return nil, errors.New("redis: connection refused")
}

func (f *failingCache) Put(context.Context, string, *answercache.Entry) error {
	f.puts++
	return errors.New("redis: connection refused")
}

func TestAnswerCacheDown(t *testing.T) {
	fc := &failingCache{}
	c := newCached(t, fc, answers.Options{})
	for i := 1; i <= 2; i++ {
		_, events := c.start("alice", "q", false)
		if got := final(t, events); got.Status != chat.StatusComplete || got.Cached || c.Backend.Requests() != i {
			t.Errorf("ask %d with the cache down: %s, cached %v, %d backend calls", i, got.Status, got.Cached, c.Backend.Requests())
		}
	}
	if fc.gets != 2 || fc.puts != 2 {
		t.Errorf("the cache was asked %d times and given %d answers; want 2 and 2", fc.gets, fc.puts)
	}
	// And on a real Redis that does not answer.
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, ContextTimeoutEnabled: true})
	defer rdb.Close()
	c = newCached(t, answercache.NewRedis(rdb, answercache.RedisOptions{TTL: time.Hour}), answers.Options{})
	_, events := c.start("alice", "q", false)
	if got := final(t, events); got.Status != chat.StatusComplete || c.Backend.Requests() != 1 {
		t.Errorf("ask with Redis down: %s, %d backend calls", got.Status, c.Backend.Requests())
	}
}

// TestAnswerCacheReplay: a long cached text, in several scripts, streams
// back exactly, in valid UTF-8 deltas, about 50 at most.
func TestAnswerCacheReplay(t *testing.T) {
	cache := answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour})
	c := newCached(t, cache, answers.Options{ReplayPace: time.Millisecond})
	var b strings.Builder
	for i := range 400 {
		b.WriteString([]string{"naïve ", "日本語のテキスト", "emoji 🙂\n", "  tabs\tand  spaces ", "Ελληνικά. "}[i%5])
	}
	content := b.String()
	key := answercache.Key(answercache.Question{Model: llmtest.DefaultModel, Text: "long"})
	must(0, cache.Put(t.Context(), key, &answercache.Entry{Content: content, Model: "original-model"}))
	ex, events := c.start("alice", "long", false)
	if !ex.Answer.Cached || text(events) != content {
		t.Fatalf("cached %v, streamed %d bytes; want the %d cached", ex.Answer.Cached, len(text(events)), len(content))
	}
	for i, ev := range events {
		if !utf8.ValidString(ev.Delta) {
			t.Errorf("event %d: invalid UTF-8 %q", i, ev.Delta)
		}
	}
	if n := len(events); n < 10 || n > 70 {
		t.Errorf("%d events; want about 50", n)
	}
	if got := final(t, events); got.Content != content || got.Model != "original-model" || c.Backend.Requests() != 0 {
		t.Errorf("saved %d bytes by %q, %d backend calls", len(got.Content), got.Model, c.Backend.Requests())
	}
}

// TestCancelACachedAnswer: an answer served from the cache is cancelled
// like any other, keeping what was streamed.
func TestCancelACachedAnswer(t *testing.T) {
	c := newCached(t, answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour}), answers.Options{ReplayPace: time.Hour})
	c.Backend.SetReply(longReply...)
	c.start("alice", "q", false)
	ex := &chat.Exchange{Conversation: &chat.Conversation{OwnerID: "alice"}, Question: &chat.Message{Content: "q"}, Answer: &chat.Message{}}
	must(c.M.Ask(t.Context(), "alice", ex, ""))
	events := must(c.M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	a := must(c.M.Cancel(t.Context(), "alice", ex.Answer.ID))
	if a.Status != chat.StatusCancelled || !a.Cached || a.Content != "" {
		t.Errorf("cancelled cached answer: %s, cached %v, %q", a.Status, a.Cached, a.Content)
	}
	if got := collect(t, events); !got[len(got)-1].Done {
		t.Error("no terminal event")
	}
}
