package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"askgate/internal/chat"
	"askgate/internal/users/userstest"
)

// lockedBuffer is a bytes.Buffer that run may write while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func envFunc(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// startServe runs "askgate serve" on a free port until the test ends, and
// returns its base URL and development token, as printed for the user.
func startServe(t *testing.T, vars map[string]string) (baseURL, token string, logs *lockedBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr := &lockedBuffer{}, &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, envFunc(vars), stdout, stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop within 10s of cancellation")
		}
	})
	urlRE := regexp.MustCompile(`GraphiQL: (http://\S+)/\n`)
	tokRE := regexp.MustCompile(`Token:\s+(\S+)`)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if m := urlRE.FindStringSubmatch(stdout.String()); m != nil {
			baseURL = m[1]
			if tm := tokRE.FindStringSubmatch(stdout.String()); tm != nil {
				token = tm[1]
			}
			break
		}
		select {
		case err := <-done:
			t.Fatalf("serve stopped: %v\n%s", err, stderr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if baseURL == "" {
		t.Fatalf("serve printed no URL:\n%s\n%s", stdout, stderr)
	}
	// Wait for /healthz, as a load balancer would.
	for time.Now().Before(deadline) {
		if res, err := http.Get(baseURL + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == 200 {
				return baseURL, token, stderr
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("/healthz never answered")
	return "", "", nil
}

func graphql(t *testing.T, baseURL, token, query string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req, _ := http.NewRequest(http.MethodPost, baseURL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 200 || out["errors"] != nil {
		t.Fatalf("%s: status %d, %v", query, res.StatusCode, out)
	}
	return out["data"].(map[string]any)
}

// TestServeDevelopment is what a newcomer does after "make run": open
// GraphiQL, which carries a working token, and run the README's first
// queries with it.
func TestServeDevelopment(t *testing.T) {
	dir := t.TempDir()
	base, token, _ := startServe(t, map[string]string{"ASKGATE_DATABASE_URL": "sqlite:" + filepath.Join(dir, "askgate.db")})
	if token == "" {
		t.Fatal("no development token printed")
	}

	res, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(page), token) {
		t.Fatalf("GraphiQL page: status %d, token present %v", res.StatusCode, strings.Contains(string(page), token))
	}

	// The README's queries, as printed there, in order.
	blocks := readmeQueries(t)
	if len(blocks) < 3 {
		t.Fatalf("found %d GraphQL blocks in README.md, want at least 3", len(blocks))
	}
	started := graphql(t, base, token, blocks[0])
	id := started["startConversation"].(map[string]any)["conversation"].(map[string]any)["id"].(string)
	data := graphql(t, base, token, blocks[1])
	viewer := data["viewer"].(map[string]any)
	if viewer["name"] != "Dev User" || viewer["email"] != "dev@example.com" {
		t.Errorf("viewer = %v, want the development user", viewer)
	}
	convs := data["conversations"].(map[string]any)
	nodes := convs["nodes"].([]any)
	if convs["totalCount"].(float64) != 1 || nodes[0].(map[string]any)["id"] != id {
		t.Errorf("conversations = %v, want the one just started", convs)
	}
	var answerID string
	for _, q := range blocks[2:] {
		if strings.HasPrefix(strings.TrimSpace(q), "subscription") {
			if answerID == "" {
				t.Fatal("the README subscribes before asking a question")
			}
			final := subscribeSSE(t, base, token, strings.ReplaceAll(q, "<answer id>", answerID))
			if final["status"] != "COMPLETE" || !strings.Contains(final["content"].(string), "demo") {
				t.Errorf("the README's answer ended %v, want COMPLETE from the demo backend", final)
			}
			continue
		}
		data := graphql(t, base, token, q)
		if sc, ok := data["startConversation"].(map[string]any); ok && sc["answer"] != nil {
			answerID = sc["answer"].(map[string]any)["id"].(string)
		}
	}
}

// subscribeSSE runs a subscription over server-sent events until it
// completes and returns the message of its last event.
func subscribeSSE(t *testing.T, base, token, query string) map[string]any {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req, _ := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var last map[string]any
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "event: complete" {
			break
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "" {
			continue
		}
		var ev struct {
			Data   map[string]map[string]any
			Errors []any
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil || len(ev.Errors) > 0 {
			t.Fatalf("event %s: %v %v", data, err, ev.Errors)
		}
		for _, v := range ev.Data {
			last = v
		}
	}
	if last == nil || last["done"] != true {
		t.Fatalf("the subscription ended without its last event: %v", last)
	}
	return last["message"].(map[string]any)
}

// readmeQueries returns the GraphQL blocks of README.md, in order.
func readmeQueries(t *testing.T) []string {
	t.Helper()
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile("(?s)```graphql\n(.*?)```").FindAllStringSubmatch(string(readme), -1) {
		out = append(out, m[1])
	}
	return out
}

// TestConfigErrorsNameTheVariable: bad configuration fails at start-up
// with one line that names the variable.
func TestConfigErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"ASKGATE_MODE": "staging"}, "ASKGATE_MODE"},
		{map[string]string{"ASKGATE_ADDR": "nonsense"}, "ASKGATE_ADDR"},
		{map[string]string{"ASKGATE_USER_SERVICE_URL": "ftp://users"}, "ASKGATE_USER_SERVICE_URL"},
		{map[string]string{"ASKGATE_USER_SERVICE_TIMEOUT": "soon"}, "ASKGATE_USER_SERVICE_TIMEOUT"},
		{map[string]string{"ASKGATE_JWT_SECRET": "short"}, "ASKGATE_JWT_SECRET"},
		{map[string]string{"ASKGATE_JWT_JWKS_URL": "not a url"}, "ASKGATE_JWT_JWKS_URL"},
		{map[string]string{"ASKGATE_LOG_LEVEL": "loud"}, "ASKGATE_LOG_LEVEL"},
		{map[string]string{"ASKGATE_DATABASE_URL": "mysql://db"}, "ASKGATE_DATABASE_URL"},
		{map[string]string{"ASKGATE_MODE": "production"}, "ASKGATE_JWT_SECRET"},
		{map[string]string{"ASKGATE_MODE": "production", "ASKGATE_JWT_SECRET": devSecret}, "ASKGATE_JWT_SECRET"},
		{map[string]string{"ASKGATE_RATE_LIMIT": "600"}, "ASKGATE_RATE_LIMIT"},
		{map[string]string{"ASKGATE_RATE_LIMIT": "600/day"}, "ASKGATE_RATE_LIMIT"},
		{map[string]string{"ASKGATE_RATE_LIMIT": "0/m"}, "ASKGATE_RATE_LIMIT"},
		{map[string]string{"ASKGATE_GLOBAL_RATE_LIMIT": "lots"}, "ASKGATE_GLOBAL_RATE_LIMIT"},
		{map[string]string{"ASKGATE_COST_BUDGET": "2000"}, "ASKGATE_COST_BUDGET"},
		{map[string]string{"ASKGATE_COST_BUDGET": "2000/0"}, "ASKGATE_COST_BUDGET"},
		{map[string]string{"ASKGATE_USER_CACHE_TTL": "soon"}, "ASKGATE_USER_CACHE_TTL"},
		{map[string]string{"ASKGATE_USER_CACHE_STALE": "-1s"}, "ASKGATE_USER_CACHE_STALE"},
		{map[string]string{"ASKGATE_ANSWER_CACHE_TTL": "a day"}, "ASKGATE_ANSWER_CACHE_TTL"},
	}
	for _, tc := range cases {
		if tc.vars["ASKGATE_DATABASE_URL"] == "" {
			tc.vars["ASKGATE_DATABASE_URL"] = filepath.Join(t.TempDir(), "db")
		}
		if tc.vars["ASKGATE_ADDR"] == "" {
			tc.vars["ASKGATE_ADDR"] = "127.0.0.1:0"
		}
		// A configuration wrongly accepted would serve until the deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var stderr bytes.Buffer
		err := run(ctx, []string{"serve"}, envFunc(tc.vars), io.Discard, &stderr)
		cancel()
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %v, want one line naming %s", tc.vars, err, tc.want)
		}
	}
}

// TestTokenCommand: askgate token mints a token the server accepts.
func TestTokenCommand(t *testing.T) {
	vars := map[string]string{
		"ASKGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "db"),
		"ASKGATE_JWT_SECRET":   "a-secret-of-at-least-thirty-two-bytes!!",
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--sub", "carol", "--name", "Carol", "--scope", "read:chat"}, envFunc(vars), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	base, _, _ := startServe(t, vars)
	data := graphql(t, base, tok, `{ viewer { name } }`)
	if got := data["viewer"].(map[string]any)["name"]; got != "Carol" {
		t.Errorf("viewer name = %v, want Carol", got)
	}
	if err := run(context.Background(), []string{"token"}, envFunc(vars), io.Discard, io.Discard); err == nil {
		t.Error("token without --sub succeeded")
	}
}

// TestMigrateAndSeed: askgate migrate and askgate seed work on a new file.
func TestMigrateAndSeed(t *testing.T) {
	vars := map[string]string{"ASKGATE_DATABASE_URL": filepath.Join(t.TempDir(), "sub", "askgate.db")}
	if err := run(context.Background(), []string{"migrate"}, envFunc(vars), io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"seed", "--sub", "dev-user", "--conversations", "3", "--pairs", "2"}, envFunc(vars), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	base, token, _ := startServe(t, vars)
	data := graphql(t, base, token, `{ conversations { totalCount nodes { messages { totalCount } } } }`)
	convs := data["conversations"].(map[string]any)
	if convs["totalCount"].(float64) != 3 {
		t.Errorf("totalCount = %v, want 3", convs["totalCount"])
	}
	if n := convs["nodes"].([]any)[0].(map[string]any)["messages"].(map[string]any)["totalCount"]; n.(float64) != 4 {
		t.Errorf("messages per conversation = %v, want 4", n)
	}
}

// TestServeRequestLimits: ASKGATE_RATE_LIMIT and ASKGATE_COST_BUDGET are in
// force in the served gateway (in process, without ASKGATE_REDIS_URL).
func TestServeRequestLimits(t *testing.T) {
	base, token, _ := startServe(t, map[string]string{
		"ASKGATE_DATABASE_URL": "sqlite:" + filepath.Join(t.TempDir(), "askgate.db"),
		"ASKGATE_RATE_LIMIT":   "2/m",
		"ASKGATE_COST_BUDGET":  "1000/10",
	})
	post := func() (*http.Response, map[string]any) {
		body, _ := json.Marshal(map[string]any{"query": `{ viewer { id } }`})
		req, _ := http.NewRequest(http.MethodPost, base+"/graphql", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out map[string]any
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return res, out
	}
	for range 2 {
		res, out := post()
		cost, _ := out["extensions"].(map[string]any)["cost"].(map[string]any)
		if res.StatusCode != http.StatusOK || cost["throttleStatus"] == nil {
			t.Fatalf("status %d, %v: want 200 with extensions.cost.throttleStatus", res.StatusCode, out)
		}
	}
	if res, out := post(); res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" {
		t.Fatalf("third request at 2/m: status %d, Retry-After %q, %v", res.StatusCode, res.Header.Get("Retry-After"), out)
	}
}

// TestServeCachesUsers: with a user service, askgate serve keeps profiles
// for ASKGATE_USER_CACHE_TTL (two viewer queries, one call), and
// ASKGATE_USER_CACHE_TTL=0 turns the cache off.
func TestServeCachesUsers(t *testing.T) {
	for _, tc := range []struct {
		ttl   string
		calls int
	}{{"", 1}, {"0", 2}} {
		us := userstest.NewServer(t, chat.User{ID: devUser, Name: "From the user service"})
		base, token, _ := startServe(t, map[string]string{
			"ASKGATE_DATABASE_URL":     "sqlite:" + filepath.Join(t.TempDir(), "db"),
			"ASKGATE_USER_SERVICE_URL": us.URL,
			"ASKGATE_USER_CACHE_TTL":   tc.ttl,
		})
		for range 2 {
			data := graphql(t, base, token, "{ viewer { name } }")
			if got := data["viewer"].(map[string]any)["name"]; got != "From the user service" {
				t.Errorf("TTL %q: viewer name = %v", tc.ttl, got)
			}
		}
		if got := us.Calls(); got != tc.calls {
			t.Errorf("TTL %q: %d user service calls, want %d", tc.ttl, got, tc.calls)
		}
	}
}
