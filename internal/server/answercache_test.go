package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/answercache"
	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/limits"
	"askgate/internal/redistest"
)

const cachedAnswerSubscription = `subscription($id: ID!) {
  answer(messageId: $id) {
    messageId seq delta done
    message { id status content cached usage { promptTokens completionTokens totalTokens } }
  }
}`

// cachedEvent is an answer event with the message's cached flag.
type cachedEvent struct {
	Seq     int
	Delta   string
	Done    bool
	Message *struct {
		Status, Content string
		Cached          bool
		Usage           *struct{ PromptTokens, CompletionTokens, TotalTokens int }
	}
}

// TestAnswerCacheEndToEnd: the same first question twice through
// startConversation gets one backend call, the same text streamed over
// the subscription, and the second answer marked cached and charged no
// tokens; with cache: false the backend answers again.
func TestAnswerCacheEndToEnd(t *testing.T) {
	for name, redisState := range map[string]bool{"in-process": false, "redis": true} {
		t.Run(name, func(t *testing.T) {
			var cache answercache.Cache = answercache.NewMemory(answercache.MemoryOptions{TTL: time.Hour})
			var quota limits.TokenQuota = limits.NewLocalTokenQuota(100_000, limits.LocalOptions{})
			if redisState {
				rdb := redistest.Client(t, redis.Options{})
				prefix := redistest.Prefix(t, rdb, "server-cache")
				cache = answercache.NewRedis(rdb, answercache.RedisOptions{TTL: time.Hour, Prefix: prefix})
				quota = limits.NewRedisTokenQuota(rdb, 100_000, limits.RedisOptions{Prefix: prefix})
			}
			e := newEnv(t, envOptions{redisTokens: redisState, answers: answers.Options{
				Cache: cache, TokenQuota: quota,
				// Slow enough for the subscription below to start
				// before the replay ends, even under -race.
				ReplayPace: 50 * time.Millisecond,
			}})
			reply := []string{"Paris", " is", " the", " capital", " of", " France", ",", " and", " its", " largest", " city", " by", " far", "."}
			e.Backend.SetReply(reply...)
			e.Backend.SetUsage(&chat.TokenUsage{PromptTokens: 30, CompletionTokens: 14, TotalTokens: 44})
			c := e.dial("graphql-transport-ws")
			c.init(e.token("alice"))
			used := func() int {
				_, left, err := quota.Reserve(t.Context(), "alice", 0)
				if err != nil {
					t.Fatal(err)
				}
				return 100_000 - left
			}

			start := func(subID string, cacheArg *bool) (answer struct {
				ID, Status string
				Cached     bool
			}, events []cachedEvent) {
				t.Helper()
				var out struct {
					StartConversation struct {
						Answer struct {
							ID, Status string
							Cached     bool
						}
					}
				}
				vars := map[string]any{"q": "What is the capital of France?"}
				if cacheArg != nil {
					vars["cache"] = *cacheArg
				}
				e.do("alice", `mutation($q: String!, $cache: Boolean) {
					startConversation(input: {question: $q, cache: $cache}) { answer { id status cached } } }`, vars, &out)
				a := out.StartConversation.Answer
				c.send(map[string]any{"id": subID, "type": "subscribe", "payload": map[string]any{
					"query": cachedAnswerSubscription, "variables": map[string]any{"id": a.ID},
				}})
				for {
					ev := c.next(subID)
					events = append(events, cachedEvent{Seq: ev.Seq, Delta: ev.Delta, Done: ev.Done})
					if ev.Done {
						break
					}
				}
				// The final event again, with its message, from the store.
				var msg struct {
					Node *struct {
						Status, Content string
						Cached          bool
						Usage           *struct{ PromptTokens, CompletionTokens, TotalTokens int }
					}
				}
				e.do("alice", `query($id: ID!) { node(id: $id) { ... on Message { status content cached usage { promptTokens completionTokens totalTokens } } } }`,
					map[string]any{"id": a.ID}, &msg)
				events[len(events)-1].Message = msg.Node
				waitFor(t, func() bool { return e.Answers.Running() == 0 })
				return a, events
			}

			// The first answer: generated, streamed while it is (slowly
			// enough for the subscription to start first).
			e.Backend.Pace(30 * time.Millisecond)
			first, firstEvents := start("1", nil)
			e.Backend.Pace(0)
			want := strings.Join(reply, "")
			if first.Cached || first.Status != "STREAMING" || joinedCached(firstEvents) != want {
				t.Fatalf("first answer %+v streamed %q", first, joinedCached(firstEvents))
			}
			if m := firstEvents[len(firstEvents)-1].Message; m == nil || m.Cached || m.Usage == nil || m.Usage.TotalTokens != 44 {
				t.Fatalf("first answer saved as %+v", m)
			}
			if n := used(); n != 44 {
				t.Errorf("%d tokens charged for the first answer, want 44", n)
			}

			// The same first question again: from the cache.
			second, events := start("2", nil)
			if second.Status != "STREAMING" || !second.Cached {
				t.Errorf("second startConversation returned the answer %+v; want STREAMING and cached", second)
			}
			if got := joinedCached(events); got != want || len(events) < 3 {
				t.Errorf("second answer streamed %q in %d events; want %q in several", got, len(events), want)
			}
			m := events[len(events)-1].Message
			if m == nil || m.Status != "COMPLETE" || !m.Cached || m.Content != want || m.Usage == nil || *m.Usage != (struct{ PromptTokens, CompletionTokens, TotalTokens int }{}) {
				t.Errorf("second answer saved as %+v", m)
			}
			if n := e.Backend.Requests(); n != 1 {
				t.Errorf("backend called %d times, want 1", n)
			}
			if n := used(); n != 44 {
				t.Errorf("%d tokens charged after the cached answer, want still 44", n)
			}

			// cache: false asks the backend.
			off := false
			third, events := start("3", &off)
			if third.Cached || events[len(events)-1].Message.Cached || e.Backend.Requests() != 2 {
				t.Errorf("with cache: false: cached %v, %d backend calls; want a generated answer", third.Cached, e.Backend.Requests())
			}
		})
	}
}

func joinedCached(events []cachedEvent) string {
	var b strings.Builder
	for _, ev := range events {
		b.WriteString(ev.Delta)
	}
	return b.String()
}
