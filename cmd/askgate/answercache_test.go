package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/answercache"
	"askgate/internal/llm/llmtest"
	"askgate/internal/redistest"
)

// TestServeAnswerCache: ASKGATE_ANSWER_CACHE_TTL turns the answer cache on
// (in process, or in Redis with ASKGATE_REDIS_URL); unset or 0, it is off
// and the same first question twice calls the backend twice.
func TestServeAnswerCache(t *testing.T) {
	for _, tc := range []struct {
		name       string
		ttl        string // "" = unset
		redis      bool
		wantCalls  int
		wantCached bool
	}{
		{"unset", "", false, 2, false},
		{"0", "0", false, 2, false},
		{"1h", "1h", false, 1, true},
		{"1h on Redis", "1h", true, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend := llmtest.New(t)
			vars := map[string]string{
				"ASKGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "askgate.db"),
				"ASKGATE_LLM_BASE_URL": backend.URL(),
			}
			if tc.ttl != "" {
				vars["ASKGATE_ANSWER_CACHE_TTL"] = tc.ttl
			}
			// A question of the test's own, so that no other run's entry
			// answers it.
			question := "What is " + rand.Text() + "?"
			if tc.redis {
				rdb := redistest.Client(t, redis.Options{})
				vars["ASKGATE_REDIS_URL"] = "redis://" + redistest.Addr() + "/0"
				key := answercache.DefaultPrefix + answercache.Key(answercache.Question{
					Model: llmtest.DefaultModel, SystemPrompt: defaultSystemPrompt, Text: question,
				})
				t.Cleanup(func() { rdb.Del(context.Background(), key) })
			}
			base, token, _ := startServe(t, vars)
			var cached []bool
			for range 2 {
				data := graphql(t, base, token, fmt.Sprintf(`mutation { startConversation(input: {question: %q}) { answer { id cached } } }`, question))
				answer := data["startConversation"].(map[string]any)["answer"].(map[string]any)
				id := answer["id"].(string)
				deadline := time.Now().Add(10 * time.Second)
				for {
					node := graphql(t, base, token, fmt.Sprintf(`{ node(id: %q) { ... on Message { status cached } } }`, id))["node"].(map[string]any)
					if node["status"] != "STREAMING" {
						if node["status"] != "COMPLETE" || node["cached"] != answer["cached"] {
							t.Fatalf("answer ended %v, cached %v; startConversation said cached %v", node["status"], node["cached"], answer["cached"])
						}
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the answer did not end within 10s")
					}
					time.Sleep(20 * time.Millisecond)
				}
				cached = append(cached, answer["cached"].(bool))
			}
			if cached[0] || cached[1] != tc.wantCached || backend.Requests() != tc.wantCalls {
				t.Errorf("cached %v, %d backend calls; want [false %v] and %d", cached, backend.Requests(), tc.wantCached, tc.wantCalls)
			}
			// /metrics counts the lookups when the cache is on.
			res, err := http.Get(base + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			for _, series := range []string{`askgate_answer_cache_lookups_total{result="hit"} 1`, `askgate_answer_cache_lookups_total{result="miss"} 1`, `askgate_answer_cache_stores_total{result="ok"} 1`} {
				if got := strings.Contains(string(body), series); got != tc.wantCached {
					t.Errorf("/metrics has %s: %v, want %v", series, got, tc.wantCached)
				}
			}
		})
	}
}
