package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"askgate/internal/answers"
	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/llm"
	"askgate/internal/llm/llmtest"
	"askgate/internal/protect"
	"askgate/internal/redistest"
	"askgate/internal/server"
	"askgate/internal/store/sqlite"
	"askgate/internal/stream"
	"askgate/internal/users"
	"askgate/internal/users/userstest"
)

// testSecret signs the tests' HS256 tokens.
var testSecret = []byte("a-test-secret-that-is-long-enough-for-hs256")

// Users the fake user service knows.
var (
	alice = chat.User{ID: "alice", Name: "Alice", Email: "alice@example.com", AvatarURL: "https://img.example/alice.png"}
	bob   = chat.User{ID: "bob", Name: "Bob", Email: "bob@example.com"}
)

// env is a running gateway on a real store, with a fake user service.
type env struct {
	t       testing.TB
	Handler http.Handler
	URL     string
	Store   *countingStore
	Users   *userstest.Server
	Logs    *syncBuffer
	Secret  []byte
	// Backend is the fake LLM backend; Answers generates through it.
	Backend *llmtest.Server
	Answers *answers.Manager
	Server  *server.Server
}

type envOptions struct {
	store      chat.Store   // default: a fresh SQLite store
	authConfig *auth.Config // default: HS256 with testSecret
	userOpts   users.Options
	production bool
	timeout    time.Duration
	apq        protect.APQStore
	trusted    *protect.Trusted
	live       server.SubscriptionOptions
	llm        llm.Options
	// limits are the request rates and cost budget (none when zero).
	limits server.RequestLimits
	// userCache, when set, puts a users.Cache with these options in front
	// of the user service client, as serve does.
	userCache *users.CacheOptions
	// redisTokens keeps the answers' token logs in Redis (with a key
	// prefix of the test's own), as several instances do.
	redisTokens bool
	// answers sets the Manager's answer cache, its pace, the concurrent
	// answers cap and the token quota (the Manager's other options are
	// the env's own).
	answers answers.Options
}

func newEnv(t testing.TB, opts envOptions) *env {
	t.Helper()
	st := opts.store
	if st == nil {
		st = newSQLiteStore(t)
	}
	us := userstest.NewServer(t, alice, bob)
	uopts := opts.userOpts
	if uopts.Timeout == 0 {
		uopts.Timeout = 500 * time.Millisecond
	}
	client, err := users.NewClient(us.URL, uopts)
	if err != nil {
		t.Fatal(err)
	}
	var dir chat.UserDirectory = client
	var collectors []prometheus.Collector
	if opts.userCache != nil {
		cache, err := users.NewCache(client, *opts.userCache)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cache.Close() })
		dir, collectors = cache, append(collectors, cache)
	}
	acfg := auth.Config{Secret: testSecret}
	if opts.authConfig != nil {
		acfg = *opts.authConfig
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	verifier, err := auth.New(ctx, acfg)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	cs := &countingStore{Store: st}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.NeverSample())))
	backend := llmtest.New(t)
	lopts := opts.llm
	if lopts.Backoff == 0 {
		lopts.Backoff = time.Millisecond
	}
	llmClient, err := llm.NewClient(backend.URL(), lopts)
	if err != nil {
		t.Fatal(err)
	}
	var tokens interface {
		chat.TokenLog
		Close() error
	} = stream.NewMemory(stream.MemoryOptions{})
	if opts.redisTokens {
		rdb := redistest.Client(t, redis.Options{})
		tokens = stream.NewRedis(rdb, stream.RedisOptions{Prefix: redistest.Prefix(t, rdb, "server")})
	}
	mgr := answers.New(answers.Options{Store: cs, LLM: llmClient, Log: tokens, Logger: slog.New(slog.NewJSONHandler(logs, nil)),
		Cache: opts.answers.Cache, ReplayPace: opts.answers.ReplayPace, Concurrency: opts.answers.Concurrency, TokenQuota: opts.answers.TokenQuota})
	t.Cleanup(func() {
		backend.Unhold()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		mgr.Shutdown(ctx)
		tokens.Close()
	})
	h := server.NewServer(server.Deps{
		Store:       cs,
		Users:       dir,
		Auth:        verifier,
		Logger:      slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Tracer:      tp.Tracer("test"),
		Development: !opts.production,

		RequestTimeout: opts.timeout,
		APQ:            opts.apq,
		Trusted:        opts.trusted,
		Answers:        mgr,
		Subscriptions:  opts.live,
		RequestLimits:  opts.limits,
		Collectors:     collectors,
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.MaxHeaderBytes = 2 << 20
	srv.Start()
	t.Cleanup(srv.Close)
	return &env{t: t, Handler: h, URL: srv.URL, Store: cs, Users: us, Logs: logs, Secret: testSecret, Backend: backend, Answers: mgr, Server: h}
}

func newSQLiteStore(t testing.TB) chat.Store {
	t.Helper()
	st, err := sqlite.Open(t.TempDir() + "/askgate.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// token mints a token for sub with the given scopes (both when none).
func (e *env) token(sub string, scopes ...string) string {
	e.t.Helper()
	if len(scopes) == 0 {
		scopes = []string{auth.ScopeRead, auth.ScopeWrite}
	}
	tok, err := auth.Mint(e.Secret, auth.MintClaims{Subject: sub, Scope: strings.Join(scopes, " "), TTL: time.Hour})
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// gqlError is one error of a GraphQL response.
type gqlError struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

func (e gqlError) code() string { c, _ := e.Extensions["code"].(string); return c }

// response is a GraphQL response.
type response struct {
	Status int
	Header http.Header
	Body   []byte
	Data   json.RawMessage `json:"data"`
	Errors []gqlError      `json:"errors"`
}

// codes returns the errors' codes.
func (r *response) codes() []string {
	var out []string
	for _, e := range r.Errors {
		out = append(out, e.code())
	}
	return out
}

// decode unmarshals the response's data into v.
func (r *response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decoding data %s: %v", r.Data, err)
	}
}

// post sends a GraphQL operation with an Authorization header (none when
// authz is "").
func (e *env) post(authz, query string, vars map[string]any) *response {
	e.t.Helper()
	return e.postHeaders(map[string]string{"Authorization": authz}, query, vars)
}

func (e *env) postHeaders(headers map[string]string, query string, vars map[string]any) *response {
	e.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, e.URL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := &response{Status: res.StatusCode, Header: res.Header, Body: raw}
	if err := json.Unmarshal(raw, r); err != nil {
		e.t.Fatalf("response %d %q is not JSON: %v", res.StatusCode, raw, err)
	}
	return r
}

// do is post with a bearer token for sub holding both scopes, and fails
// the test on any error.
func (e *env) do(sub, query string, vars map[string]any, into any) {
	e.t.Helper()
	r := e.post("Bearer "+e.token(sub), query, vars)
	if len(r.Errors) > 0 || r.Status != http.StatusOK {
		e.t.Fatalf("%s: status %d, errors %+v", query, r.Status, r.Errors)
	}
	if into != nil {
		r.decode(e.t, into)
	}
}

// countingStore counts calls into the store, to show that an operation
// refused before execution touched nothing.
type countingStore struct {
	chat.Store
	calls atomic.Int64
}

func (s *countingStore) Calls() int64 { return s.calls.Load() }

func (s *countingStore) UpsertUser(ctx context.Context, u *chat.User) error {
	s.calls.Add(1)
	return s.Store.UpsertUser(ctx, u)
}
func (s *countingStore) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	s.calls.Add(1)
	return s.Store.UsersByID(ctx, ids)
}
func (s *countingStore) CreateConversation(ctx context.Context, c *chat.Conversation) error {
	s.calls.Add(1)
	return s.Store.CreateConversation(ctx, c)
}
func (s *countingStore) ConversationsByID(ctx context.Context, owner string, ids []string) ([]*chat.Conversation, error) {
	s.calls.Add(1)
	return s.Store.ConversationsByID(ctx, owner, ids)
}
func (s *countingStore) ListConversations(ctx context.Context, owner string, p chat.Page) (*chat.ConversationPage, error) {
	s.calls.Add(1)
	return s.Store.ListConversations(ctx, owner, p)
}
func (s *countingStore) CountConversations(ctx context.Context, owner string) (int, error) {
	s.calls.Add(1)
	return s.Store.CountConversations(ctx, owner)
}
func (s *countingStore) RenameConversation(ctx context.Context, owner, id, title string) (*chat.Conversation, error) {
	s.calls.Add(1)
	return s.Store.RenameConversation(ctx, owner, id, title)
}
func (s *countingStore) DeleteConversation(ctx context.Context, owner, id string) error {
	s.calls.Add(1)
	return s.Store.DeleteConversation(ctx, owner, id)
}
func (s *countingStore) AddMessages(ctx context.Context, owner string, msgs ...*chat.Message) error {
	s.calls.Add(1)
	return s.Store.AddMessages(ctx, owner, msgs...)
}
func (s *countingStore) MessagesByID(ctx context.Context, owner string, ids []string) ([]*chat.Message, error) {
	s.calls.Add(1)
	return s.Store.MessagesByID(ctx, owner, ids)
}
func (s *countingStore) ListMessages(ctx context.Context, owner string, ids []string, p chat.Page) ([]*chat.MessagePage, error) {
	s.calls.Add(1)
	return s.Store.ListMessages(ctx, owner, ids, p)
}
func (s *countingStore) CountMessages(ctx context.Context, owner string, ids []string) (map[string]int, error) {
	s.calls.Add(1)
	return s.Store.CountMessages(ctx, owner, ids)
}

func (s *countingStore) AddExchange(ctx context.Context, owner string, ex *chat.Exchange) (bool, error) {
	s.calls.Add(1)
	return s.Store.AddExchange(ctx, owner, ex)
}
func (s *countingStore) UpdateAnswer(ctx context.Context, owner string, a *chat.Message) (bool, error) {
	s.calls.Add(1)
	return s.Store.UpdateAnswer(ctx, owner, a)
}
func (s *countingStore) InterruptAnswers(ctx context.Context, msg string) (int, error) {
	s.calls.Add(1)
	return s.Store.InterruptAnswers(ctx, msg)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for logs.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the JSON log lines whose msg is msg.
func (b *syncBuffer) lines(msg string) []map[string]any {
	var out []map[string]any
	for _, l := range strings.Split(b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// rawRequest sends a request as alice (with both scopes), with a JSON body
// when body is not "", and decodes the response.
func (e *env) rawRequest(method, target, body, accept string) *response {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.URL+target, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token("alice"))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	r := &response{Status: res.StatusCode, Header: res.Header, Body: raw}
	if err := json.Unmarshal(raw, r); err != nil {
		e.t.Fatalf("response %d %q is not JSON: %v", res.StatusCode, raw, err)
	}
	return r
}
