package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"askgate/internal/demo"
	"askgate/internal/store/postgres"
	"askgate/internal/store/postgres/pgtest"
	"askgate/internal/users"
)

// screenQuery is the chat screen's query (shared/bench/README.md) with the
// page size as a variable.
const screenQuery = `query Screen($first: Int) {
  conversations(first: $first) { totalCount nodes { id title updatedAt owner { name avatarUrl }
    messages(last: 10) { totalCount nodes { id role content createdAt author { name } } } } } }`

type screenData struct {
	Conversations struct {
		TotalCount int
		Nodes      []struct {
			ID, Title string
			Owner     *struct{ Name string }
			Messages  struct {
				TotalCount int
				Nodes      []struct {
					Role, Content string
					Author        *struct{ Name string }
				}
			}
		}
	}
}

// TestScreenQueryCost: the chat screen costs one user service call and at
// most four SQL statements, whether it shows 5 conversations or 20.
func TestScreenQueryCost(t *testing.T) {
	var sql pgtest.StatementCounter
	e := newEnv(t, envOptions{store: pgtest.NewStore(t, postgres.WithTracer(&sql))})
	if _, err := demo.Seed(context.Background(), e.Store, "alice", 25, 6); err != nil {
		t.Fatal(err)
	}
	for _, first := range []int{5, 20} {
		sql.Reset()
		calls := e.Users.Calls()
		var got screenData
		e.do("alice", screenQuery, map[string]any{"first": first}, &got)

		if n := e.Users.Calls() - calls; n != 1 {
			t.Errorf("first %d: %d user service calls, want 1", first, n)
		}
		if n := sql.Count(); n > 4 {
			t.Errorf("first %d: %d SQL statements, want at most 4:\n%q", first, n, sql.Statements())
		}
		c := got.Conversations
		if c.TotalCount != 25 || len(c.Nodes) != first {
			t.Fatalf("first %d: totalCount %d, %d nodes", first, c.TotalCount, len(c.Nodes))
		}
		for _, n := range c.Nodes {
			if n.Owner == nil || n.Owner.Name != "Alice" || n.Messages.TotalCount != 12 || len(n.Messages.Nodes) != 10 {
				t.Fatalf("first %d: conversation %+v", first, n)
			}
			for _, m := range n.Messages.Nodes {
				if (m.Role == "USER") != (m.Author != nil) || (m.Author != nil && m.Author.Name != "Alice") {
					t.Fatalf("first %d: message %+v has the wrong author", first, m)
				}
			}
		}
	}
}

// TestScreenQueryUserCache: with the user cache, two consecutive chat
// screens cost one user service call in all, and /metrics counts the
// cache's hits.
func TestScreenQueryUserCache(t *testing.T) {
	e := newEnv(t, envOptions{userCache: &users.CacheOptions{TTL: time.Hour}})
	if _, err := demo.Seed(context.Background(), e.Store, "alice", 5, 2); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		var got screenData
		e.do("alice", screenQuery, map[string]any{"first": 5}, &got)
		if n := len(got.Conversations.Nodes); n != 5 || got.Conversations.Nodes[0].Owner == nil || got.Conversations.Nodes[0].Owner.Name != "Alice" {
			t.Fatalf("screen %d: %+v", i+1, got.Conversations)
		}
	}
	if n := e.Users.Calls(); n != 1 {
		t.Errorf("%d user service calls for two screens, want 1", n)
	}
	res, err := http.Get(e.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if want := `askgate_user_cache_lookups_total{result="hit"} 1`; !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %s", want)
	}
}

// BenchmarkScreenQuery serves the chat screen (20 conversations, their
// owners and last 10 messages with authors) through the HTTP handler, from
// PostgreSQL, with the user service reached over HTTP.
func BenchmarkScreenQuery(b *testing.B) {
	e := newEnv(b, envOptions{store: pgtest.Open(b, pgtest.NewSchema(b)+"&pool_max_conns=16", true)})
	if _, err := demo.Seed(context.Background(), e.Store, "alice", 25, 6); err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]any{"query": screenQuery, "variables": map[string]any{"first": 20}})
	authz := "Bearer " + e.token("alice")
	serve := func() int {
		req := httptest.NewRequest(http.MethodPost, "/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", authz)
		rec := httptest.NewRecorder()
		e.Handler.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || bytes.Contains(rec.Body.Bytes(), []byte(`"errors"`)) {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
		return rec.Body.Len()
	}
	b.SetBytes(int64(serve()))
	b.ReportAllocs()
	b.Run("serial", func(b *testing.B) {
		for b.Loop() {
			serve()
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serve()
			}
		})
	})
}
