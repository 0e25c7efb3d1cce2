package users_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"askgate/internal/chat"
	"askgate/internal/users"
	"askgate/internal/users/userstest"
)

// clock is a settable time for a Cache's TTLs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// gate holds every call to its source until it is opened.
type gate struct {
	src  chat.UserDirectory
	open chan struct{}
}

func newGate(src chat.UserDirectory) *gate { return &gate{src: src, open: make(chan struct{})} }

func (g *gate) Open() { close(g.open) }

func (g *gate) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return g.src.UsersByID(ctx, ids)
}

const (
	testTTL   = 30 * time.Second
	testStale = 5 * time.Minute
)

// cacheEnv is a Cache in front of a Client of a fake user service.
type cacheEnv struct {
	srv   *userstest.Server
	clock *clock
	cache *users.Cache
	logs  *syncLog
}

// newCacheEnv returns a Cache (TTL 30s, stale 5m, on a test clock) of the
// user service srv, through wrap when it is not nil.
func newCacheEnv(t *testing.T, srv *userstest.Server, wrap func(chat.UserDirectory) chat.UserDirectory) *cacheEnv {
	t.Helper()
	return newCacheEnvOptions(t, srv, users.Options{}, wrap)
}

// newCacheEnvOptions is newCacheEnv with a Client configured by opts.
func newCacheEnvOptions(t *testing.T, srv *userstest.Server, opts users.Options, wrap func(chat.UserDirectory) chat.UserDirectory) *cacheEnv {
	t.Helper()
	var src chat.UserDirectory = newClient(t, srv.URL, opts)
	if wrap != nil {
		src = wrap(src)
	}
	e := &cacheEnv{srv: srv, clock: newClock(), logs: &syncLog{}}
	c, err := users.NewCache(src, users.CacheOptions{
		TTL: testTTL, Stale: testStale, Now: e.clock.Now,
		Logger: slog.New(slog.NewTextHandler(e.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.cache = c
	return e
}

// get reads ids through the cache; it fails t if that takes more than 10s
// (a read that waits for a held call).
func (e *cacheEnv) get(t *testing.T, ids ...string) ([]*chat.User, error) {
	t.Helper()
	type result struct {
		us  []*chat.User
		err error
	}
	done := make(chan result, 1)
	go func() {
		us, err := e.cache.UsersByID(t.Context(), ids)
		done <- result{us, err}
	}()
	select {
	case r := <-done:
		return r.us, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("UsersByID(%q) did not return", ids)
		return nil, nil
	}
}

// names reads ids through the cache and returns "id=name" for each user
// found, sorted.
func (e *cacheEnv) names(t *testing.T, ids ...string) []string {
	t.Helper()
	us, err := e.get(t, ids...)
	if err != nil {
		t.Fatalf("UsersByID(%q): %v", ids, err)
	}
	var out []string
	for _, u := range us {
		out = append(out, u.ID+"="+u.Name)
	}
	slices.Sort(out)
	return out
}

func (e *cacheEnv) wantCalls(t *testing.T, want int) {
	t.Helper()
	if got := e.srv.Calls(); got != want {
		t.Errorf("user service calls = %d, want %d", got, want)
	}
}

func wantNames(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("users = %q, want %q", got, want)
	}
}

// syncLog is a log buffer written by the cache while the test reads it.
type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *syncLog) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// lookups returns the cache's lookup counters by result.
func lookups(t *testing.T, c *users.Cache) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "askgate_user_cache_lookups_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

func TestCacheServesFreshProfilesFromMemory(t *testing.T) {
	e := newCacheEnv(t, userstest.NewServer(t, people(3)...), nil)
	wantNames(t, e.names(t, "u1", "u2"), "u1=Name u1", "u2=Name u2")
	e.wantCalls(t, 1)

	e.clock.Advance(testTTL - time.Nanosecond)
	wantNames(t, e.names(t, "u2", "u1"), "u1=Name u1", "u2=Name u2")
	e.wantCalls(t, 1)
	if got := lookups(t, e.cache); got["hit"] != 2 || got["miss"] != 2 || got["stale"] != 0 {
		t.Errorf("lookups = %v, want 2 hits, 2 misses", got)
	}

	// What a caller does with a profile does not change the cache's.
	us, _ := e.get(t, "u1")
	us[0].Name = "changed"
	wantNames(t, e.names(t, "u1"), "u1=Name u1")
}

func TestCacheServesStaleWhileOneRefreshRuns(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	var g *gate
	e := newCacheEnv(t, srv, func(src chat.UserDirectory) chat.UserDirectory { g = newGate(src); return g })
	g.Open()
	wantNames(t, e.names(t, "u1", "u2"), "u1=Name u1", "u2=Name u2")
	e.wantCalls(t, 1)

	srv.Add(chat.User{ID: "u1", Name: "Renamed"})
	e.cache.Settle()
	g.open = make(chan struct{}) // hold the refresh
	e.clock.Advance(testTTL)
	// Stale profiles come at once, however often they are read, while one
	// refresh is held.
	for range 3 {
		wantNames(t, e.names(t, "u1", "u2"), "u1=Name u1", "u2=Name u2")
	}
	e.wantCalls(t, 1)
	g.Open()
	e.cache.Settle()
	e.wantCalls(t, 2)
	if got := e.srv.LastRequest().IDs; !slices.Equal(sorted(got), []string{"u1", "u2"}) {
		t.Errorf("refresh asked for %q, want u1 and u2 in one call", got)
	}

	wantNames(t, e.names(t, "u1", "u2"), "u1=Renamed", "u2=Name u2")
	e.wantCalls(t, 2)
	if got := lookups(t, e.cache); got["stale"] != 6 || got["hit"] != 2 {
		t.Errorf("lookups = %v, want 6 stale, 2 hits", got)
	}
}

func TestCacheFetchesExpiredProfilesBeforeServing(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	e := newCacheEnv(t, srv, nil)
	wantNames(t, e.names(t, "u1"), "u1=Name u1")

	srv.Add(chat.User{ID: "u1", Name: "Renamed"})
	e.clock.Advance(testTTL + testStale)
	wantNames(t, e.names(t, "u1"), "u1=Renamed")
	e.wantCalls(t, 2)
	e.cache.Settle()
	e.wantCalls(t, 2) // no refresh besides
}

func TestCacheFetchesOnlyMissingIDs(t *testing.T) {
	srv := userstest.NewServer(t, people(5)...)
	e := newCacheEnv(t, srv, nil)
	e.names(t, "u1", "u2")
	wantNames(t, e.names(t, "u1", "u3", "u2", "u4", "u3"), "u1=Name u1", "u2=Name u2", "u3=Name u3", "u4=Name u4")
	e.wantCalls(t, 2)
	if got := srv.LastRequest().IDs; !slices.Equal(got, []string{"u3", "u4"}) {
		t.Errorf("second call asked for %q, want [u3 u4]", got)
	}
}

func TestCacheRemembersUnknownIDsBriefly(t *testing.T) {
	srv := userstest.NewServer(t, people(1)...)
	e := newCacheEnv(t, srv, nil)
	wantNames(t, e.names(t, "u1", "ghost"), "u1=Name u1")
	e.clock.Advance(users.DefaultNegativeTTL - time.Nanosecond)
	wantNames(t, e.names(t, "u1", "ghost"), "u1=Name u1")
	e.wantCalls(t, 1)

	// The id now exists: after NegativeTTL, it is refreshed (the unknown
	// served stale meanwhile), the known u1 is not.
	srv.Add(chat.User{ID: "ghost", Name: "Casper"})
	e.clock.Advance(time.Nanosecond)
	wantNames(t, e.names(t, "u1", "ghost"), "u1=Name u1")
	e.cache.Settle()
	e.wantCalls(t, 2)
	if got := srv.LastRequest().IDs; !slices.Equal(got, []string{"ghost"}) {
		t.Errorf("refresh asked for %q, want [ghost]", got)
	}
	wantNames(t, e.names(t, "u1", "ghost"), "ghost=Casper", "u1=Name u1")
}

func TestCacheServesStaleWhenTheUserServiceIsDown(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	// A breaker that stays closed, so that each failure reaches the service.
	e := newCacheEnvOptions(t, srv, users.Options{BreakerFailures: 100}, nil)
	wantNames(t, e.names(t, "u1"), "u1=Name u1")

	srv.SetFailure(http.StatusServiceUnavailable)
	e.clock.Advance(testTTL)
	for range 3 { // three failed refreshes, one warning
		wantNames(t, e.names(t, "u1"), "u1=Name u1")
		e.cache.Settle()
		// Within a few seconds of a failed refresh, no other is tried.
		wantNames(t, e.names(t, "u1"), "u1=Name u1")
		e.cache.Settle()
		e.clock.Advance(10 * time.Second)
	}
	e.wantCalls(t, 4)
	if n := e.logs.count("refreshing cached profiles failed"); n != 1 {
		t.Errorf("%d warnings of failed refreshes, want 1:\n%s", n, e.logs)
	}

	// A profile never fetched fails as without the cache.
	_, err := e.get(t, "u1", "u2")
	checkUnavailable(t, err)

	// After the stale window, so does a cached one.
	e.clock.Advance(testStale)
	_, err = e.get(t, "u1")
	checkUnavailable(t, err)

	// Back up: fetched again, and the recovery is logged.
	srv.SetFailure(0)
	wantNames(t, e.names(t, "u1", "u2"), "u1=Name u1", "u2=Name u2")
	e.clock.Advance(testTTL)
	e.names(t, "u1")
	e.cache.Settle()
	if n := e.logs.count("refreshing cached profiles works again"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, e.logs)
	}
}

func TestCacheCoalescesConcurrentMisses(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	var g *gate
	e := newCacheEnv(t, srv, func(src chat.UserDirectory) chat.UserDirectory { g = newGate(src); return g })

	const readers = 8
	var wg sync.WaitGroup
	results := make([][]string, readers)
	errs := make([]error, readers)
	for i := range readers {
		wg.Go(func() {
			us, err := e.cache.UsersByID(t.Context(), []string{"u1", "u2"})
			errs[i] = err
			for _, u := range us {
				results[i] = append(results[i], u.ID)
			}
			slices.Sort(results[i])
		})
	}
	// Every reader has missed both ids (and so joined or started the call)
	// before the call may go through.
	deadline := time.Now().Add(10 * time.Second)
	for lookups(t, e.cache)["miss"] < 2*readers {
		if time.Now().After(deadline) {
			t.Fatalf("lookups = %v, want %d misses", lookups(t, e.cache), 2*readers)
		}
		runtime.Gosched()
	}
	g.Open()
	wg.Wait()
	for i := range readers {
		if errs[i] != nil || !slices.Equal(results[i], []string{"u1", "u2"}) {
			t.Errorf("reader %d: %q, %v", i, results[i], errs[i])
		}
	}
	e.wantCalls(t, 1)
}

func TestCacheCallerLeavingDoesNotFailOthers(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	var g *gate
	e := newCacheEnv(t, srv, func(src chat.UserDirectory) chat.UserDirectory { g = newGate(src); return g })

	ctx, cancel := context.WithCancel(t.Context())
	first := make(chan error, 1)
	go func() {
		_, err := e.cache.UsersByID(ctx, []string{"u1"})
		first <- err
	}()
	for lookups(t, e.cache)["miss"] < 1 {
		runtime.Gosched()
	}
	cancel()
	err := <-first
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled caller: %v, want context.Canceled", err)
	}
	checkUnavailable(t, err)
	g.Open()
	wantNames(t, e.names(t, "u1"), "u1=Name u1")
	e.cache.Settle()
	e.wantCalls(t, 1)
}

// tracked counts the calls to its source that are running.
type tracked struct {
	src     chat.UserDirectory
	running atomic.Int32
}

func (s *tracked) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	s.running.Add(1)
	defer s.running.Add(-1)
	return s.src.UsersByID(ctx, ids)
}

func TestCacheCloseStopsRefreshes(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	ignore := goleak.IgnoreCurrent()
	transport := &http.Transport{}
	clk := newClock()
	src := &tracked{src: newClient(t, srv.URL, users.Options{HTTPClient: &http.Client{Transport: transport}, Timeout: time.Hour})}
	c, err := users.NewCache(src, users.CacheOptions{TTL: testTTL, Stale: testStale, Now: clk.Now, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.UsersByID(t.Context(), []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	srv.SetDelay(time.Hour) // the refresh hangs
	clk.Advance(testTTL)
	if _, err := c.UsersByID(t.Context(), []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	for srv.Calls() < 2 {
		runtime.Gosched()
	}

	c.Close() // cancels the refresh, and waits for it
	if n := src.running.Load(); n != 0 {
		t.Errorf("%d calls to the source still running after Close", n)
	}
	c.Close()
	transport.CloseIdleConnections()
	goleak.VerifyNone(t, ignore)

	// A closed cache still answers, from the source.
	srv2 := userstest.NewServer(t, people(1)...)
	c2, _ := users.NewCache(newClient(t, srv2.URL, users.Options{}), users.CacheOptions{})
	c2.Close()
	if us, err := c2.UsersByID(t.Context(), []string{"u1"}); err != nil || len(us) != 1 {
		t.Errorf("after Close: %v, %v", us, err)
	}
}

func TestCacheIsBounded(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	c, err := users.NewCache(newClient(t, srv.URL, users.Options{}), users.CacheOptions{MaxEntries: 2, Now: newClock().Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	for _, ids := range [][]string{{"u1", "u2"}, {"u1"}, {"u3"}, {"u1"}, {"u2"}} {
		if _, err := c.UsersByID(t.Context(), ids); err != nil {
			t.Fatal(err)
		}
	}
	// u1, u2 fetched; u1 cached; u3 fetched (forgets u2); u1 cached; u2 fetched.
	if got := srv.Calls(); got != 3 {
		t.Errorf("user service calls = %d, want 3", got)
	}
}
