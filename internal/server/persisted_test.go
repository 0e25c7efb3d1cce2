package server_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/redis/go-redis/v9"

	"askgate/internal/protect"
)

func sha(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func apqExt(hash string) map[string]any {
	return map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hash}}
}

// postExt sends a POST with extensions (and a query unless it is "").
func (e *env) postExt(query string, ext map[string]any, extra map[string]any) *response {
	e.t.Helper()
	body := map[string]any{"extensions": ext}
	if query != "" {
		body["query"] = query
	}
	for k, v := range extra {
		body[k] = v
	}
	return e.postBody(body)
}

func (e *env) postBody(body map[string]any) *response {
	e.t.Helper()
	raw, _ := json.Marshal(body)
	return e.rawRequest(http.MethodPost, "/graphql", string(raw), "application/graphql-response+json")
}

// getExt sends a GET with the query string's extensions (and query).
func (e *env) getExt(query string, ext map[string]any) *response {
	e.t.Helper()
	v := url.Values{}
	if query != "" {
		v.Set("query", query)
	}
	b, _ := json.Marshal(ext)
	v.Set("extensions", string(b))
	return e.rawRequest(http.MethodGet, "/graphql?"+v.Encode(), "", "application/graphql-response+json")
}

// TestAutomaticPersistedQueries: the APQ round trip on POST and on GET.
func TestAutomaticPersistedQueries(t *testing.T) {
	e := newEnv(t, envOptions{})
	const q = `{ conversations { totalCount } }`
	for _, method := range []string{"POST", "GET"} {
		t.Run(method, func(t *testing.T) {
			q := q + " # " + method // a document of its own for each method
			send := e.postExt
			if method == "GET" {
				send = func(query string, ext map[string]any, _ map[string]any) *response { return e.getExt(query, ext) }
			}
			r := send("", apqExt(sha(q)), nil)
			if got := r.codes(); len(got) != 1 || got[0] != "PERSISTED_QUERY_NOT_FOUND" || r.Errors[0].Message != "PersistedQueryNotFound" {
				t.Fatalf("unknown hash: %d %s", r.Status, r.Body)
			}
			if r := send(q, apqExt(sha(q)), nil); r.Status != 200 || len(r.Errors) > 0 {
				t.Fatalf("hash with query: %d %s", r.Status, r.Body)
			}
			if r := send("", apqExt(sha(q)), nil); r.Status != 200 || len(r.Errors) > 0 || r.Data == nil {
				t.Fatalf("known hash: %d %s", r.Status, r.Body)
			}
			// A hash that is not the document's is refused and stores nothing.
			other := `{ viewer { name } } # ` + method
			if r := send(other, apqExt(sha("something else")), nil); r.Status != 400 || r.codes()[0] != "PERSISTED_QUERY_HASH_MISMATCH" {
				t.Errorf("mismatch: %d %s", r.Status, r.Body)
			}
			if r := send("", apqExt(sha("something else")), nil); r.codes()[0] != "PERSISTED_QUERY_NOT_FOUND" {
				t.Errorf("a mismatched query was stored: %s", r.Body)
			}
			// Documents that fail parsing, validation or a limit are not
			// stored either.
			for _, bad := range []string{"{ viewer { " + method, "{ nope " + method + " }", nest(5) + " # " + method} {
				if r := send(bad, apqExt(sha(bad)), nil); len(r.Errors) == 0 {
					t.Fatalf("%q was accepted", bad)
				}
				if r := send("", apqExt(sha(bad)), nil); r.codes()[0] != "PERSISTED_QUERY_NOT_FOUND" {
					t.Errorf("the refused document %q was stored: %s", bad, r.Body)
				}
			}
		})
	}
}

// TestAPQSharedThroughRedis: a hash registered on one gateway instance is
// found by a second one on the same Redis.
func TestAPQSharedThroughRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("Redis on 127.0.0.1:6379 (make services starts it): %v", err)
	}
	prefix := "askgate:test:" + rand.Text() + ":apq:"
	t.Cleanup(func() {
		ctx := context.Background() // t.Context() is already cancelled here
		keys, _ := rdb.Keys(ctx, prefix+"*").Result()
		if len(keys) > 0 {
			rdb.Del(ctx, keys...)
		}
	})
	newInstance := func() *env {
		return newEnv(t, envOptions{apq: protect.NewAPQRedisStore(rdb, protect.APQRedisOptions{KeyPrefix: prefix})})
	}
	a, b := newInstance(), newInstance()
	const q = `{ viewer { name } }`
	if r := a.postExt(q, apqExt(sha(q)), nil); len(r.Errors) > 0 {
		t.Fatalf("register on A: %s", r.Body)
	}
	if r := b.postExt("", apqExt(sha(q)), nil); len(r.Errors) > 0 || r.Data == nil {
		t.Fatalf("hash on B: %s", r.Body)
	}
}

// TestTrustedDocuments: in persisted-only mode, manifest operations run
// (by id or by their exact text) and anything else is refused before it
// executes.
func TestTrustedDocuments(t *testing.T) {
	const listed = `query Count { conversations { totalCount } }`
	dir := t.TempDir()
	path := filepath.Join(dir, "persisted-documents.json")
	manifest, _ := json.Marshal(map[string]string{sha(listed): listed})
	if err := os.WriteFile(path, manifest, 0o600); err != nil {
		t.Fatal(err)
	}
	trusted, err := protect.NewTrusted(path, true, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, envOptions{trusted: trusted})

	for name, r := range map[string]*response{
		"documentId":          e.postBody(map[string]any{"documentId": sha(listed)}),
		"APQ-style id":        e.postExt("", apqExt(sha(listed)), nil),
		"exact listed text":   e.postBody(map[string]any{"query": listed}),
		"GET with documentId": e.rawRequest(http.MethodGet, "/graphql?documentId="+sha(listed), "", ""),
	} {
		if r.Status != 200 || len(r.Errors) > 0 || r.Data == nil {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	before := e.Store.Calls()
	for name, r := range map[string]*response{
		"freeform":         e.postBody(map[string]any{"query": `{ viewer { name } }`}),
		"unknown id":       e.postBody(map[string]any{"documentId": sha("nope"), "query": `{ viewer { name } }`}),
		"APQ registration": e.postExt(`{ viewer { name } }`, apqExt(sha(`{ viewer { name } }`)), nil),
	} {
		if r.Status != 400 || len(r.codes()) != 1 || r.codes()[0] != "PERSISTED_QUERY_NOT_IN_LIST" || r.Data != nil {
			t.Errorf("%s: %d %s, want 400 PERSISTED_QUERY_NOT_IN_LIST", name, r.Status, r.Body)
		}
	}
	if e.Store.Calls() != before || e.Users.Calls() != 0 {
		t.Errorf("refused operations reached the store (%d calls) or the user service (%d)", e.Store.Calls()-before, e.Users.Calls())
	}
}
