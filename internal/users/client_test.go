package users_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"askgate/internal/chat"
	"askgate/internal/users"
	"askgate/internal/users/userstest"
)

// people returns n users u1…un.
func people(n int) []chat.User {
	us := make([]chat.User, n)
	for i := range us {
		id := fmt.Sprintf("u%d", i+1)
		us[i] = chat.User{ID: id, Name: "Name " + id, Email: id + "@example.com", AvatarURL: "https://img.example/" + id}
	}
	return us
}

func idsOf(us []chat.User) []string {
	ids := make([]string, len(us))
	for i, u := range us {
		ids[i] = u.ID
	}
	return ids
}

func newClient(t testing.TB, baseURL string, opts users.Options) *users.Client {
	t.Helper()
	c, err := users.NewClient(baseURL, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// sortedIDs returns the ids of us, sorted.
func sortedIDs(us []*chat.User) []string {
	ids := make([]string, len(us))
	for i, u := range us {
		ids[i] = u.ID
	}
	sort.Strings(ids)
	return ids
}

func sorted(ids []string) []string {
	ids = slices.Clone(ids)
	sort.Strings(ids)
	return ids
}

// checkUnavailable fails t unless err is an UPSTREAM_UNAVAILABLE *chat.Error
// whose client message reveals nothing.
func checkUnavailable(t *testing.T, err error) {
	t.Helper()
	var ce *chat.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *chat.Error", err, err)
	}
	if ce.Code != chat.CodeUpstreamUnavailable {
		t.Errorf("code = %s, want %s", ce.Code, chat.CodeUpstreamUnavailable)
	}
	if ce.Message != "user service unavailable" {
		t.Errorf("message = %q, want %q", ce.Message, "user service unavailable")
	}
	if ce.Err == nil {
		t.Errorf("no cause; want the detail for the log")
	}
}

func TestClientUsersByID(t *testing.T) {
	all := people(250)
	srv := userstest.NewServer(t, all...)

	tests := []struct {
		name      string
		maxBatch  int
		ids       []string
		wantCalls [][]string // the ids of each call, in order sent (batches may run in any order)
		wantUsers []string
	}{
		{"20 ids, one call", 0, idsOf(all[:20]), [][]string{idsOf(all[:20])}, idsOf(all[:20])},
		{"one id", 0, []string{"u7"}, [][]string{{"u7"}}, []string{"u7"}},
		{"duplicates and empty ids", 0, []string{"u1", "u2", "u1", "", "u2", "u3"}, [][]string{{"u1", "u2", "u3"}}, []string{"u1", "u2", "u3"}},
		{"unknown ids are absent", 0, []string{"u1", "nobody", "u2", "ghost"}, [][]string{{"u1", "nobody", "u2", "ghost"}}, []string{"u1", "u2"}},
		{"only unknown ids", 0, []string{"nobody"}, [][]string{{"nobody"}}, []string{}},
		{"exactly MaxBatch, one call", 10, idsOf(all[:10]), [][]string{idsOf(all[:10])}, idsOf(all[:10])},
		{"split over MaxBatch", 10, idsOf(all[:25]), [][]string{idsOf(all[:10]), idsOf(all[10:20]), idsOf(all[20:25])}, idsOf(all[:25])},
		{"250 ids, default MaxBatch", 0, idsOf(all), [][]string{idsOf(all[:100]), idsOf(all[100:200]), idsOf(all[200:])}, idsOf(all)},
		{"no ids, no call", 0, nil, nil, []string{}},
		{"only empty ids, no call", 0, []string{"", ""}, nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, srv.URL, users.Options{MaxBatch: tt.maxBatch})
			before := len(srv.Requests())

			got, err := c.UsersByID(t.Context(), tt.ids)
			if err != nil {
				t.Fatalf("UsersByID: %v", err)
			}
			if g, w := sortedIDs(got), sorted(tt.wantUsers); !slices.Equal(g, w) {
				t.Errorf("users = %v, want %v", g, w)
			}
			calls := srv.Requests()[before:]
			var gotCalls, wantCalls []string
			for _, r := range calls {
				gotCalls = append(gotCalls, strings.Join(r.IDs, ","))
			}
			for _, ids := range tt.wantCalls {
				wantCalls = append(wantCalls, strings.Join(ids, ","))
			}
			if !slices.Equal(sorted(gotCalls), sorted(wantCalls)) {
				t.Errorf("calls = %q, want %q", gotCalls, wantCalls)
			}
		})
	}
}

func TestClientReturnsProfiles(t *testing.T) {
	want := chat.User{ID: "u1", Name: "Ada Lovelace", Email: "ada@example.com", AvatarURL: "https://img.example/ada.png"}
	srv := userstest.NewServer(t, want)
	c := newClient(t, srv.URL, users.Options{})
	got, err := c.UsersByID(t.Context(), []string{"u1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || *got[0] != want {
		t.Errorf("users = %+v, want [%+v]", got, want)
	}
}

func TestClientEscapesIDs(t *testing.T) {
	odd := []chat.User{
		{ID: "a b/c?d&e=f%g+h", Name: "odd"},
		{ID: "ünï©ødé", Name: "unicode"},
		{ID: "x#y", Name: "hash"},
	}
	srv := userstest.NewServer(t, odd...)
	c := newClient(t, srv.URL+"/", users.Options{}) // a trailing slash is fine
	got, err := c.UsersByID(t.Context(), append(idsOf(odd), "has,comma"))
	if err != nil {
		t.Fatalf("UsersByID: %v", err)
	}
	if g, w := sortedIDs(got), sorted(idsOf(odd)); !slices.Equal(g, w) {
		t.Errorf("users = %q, want %q", g, w)
	}
	r := srv.LastRequest()
	if g, w := r.IDs, idsOf(odd); !slices.Equal(g, w) {
		t.Errorf("ids received = %q, want %q (raw query %q)", g, w, r.URL.RawQuery)
	}
	if r.URL.Path != "/users" {
		t.Errorf("path = %q, want /users", r.URL.Path)
	}
}

func TestClientForwardsTraceparent(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	c := newClient(t, srv.URL, users.Options{})

	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithSpanContext(t.Context(), sc)

	if _, err := c.UsersByID(ctx, []string{"u1", "u2"}); err != nil {
		t.Fatal(err)
	}
	h := srv.LastRequest().Header
	if got, want := h.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
	got := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(t.Context(), propagation.HeaderCarrier(h)))
	if got.TraceID() != traceID {
		t.Errorf("trace id received = %s, want %s", got.TraceID(), traceID)
	}

	// A span started by the OpenTelemetry SDK, as the server does.
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	spanCtx, span := tp.Tracer("test").Start(t.Context(), "resolve")
	defer span.End()
	if _, err := c.UsersByID(spanCtx, []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	got = trace.SpanContextFromContext(propagation.TraceContext{}.Extract(t.Context(), propagation.HeaderCarrier(srv.LastRequest().Header)))
	if want := span.SpanContext(); got.TraceID() != want.TraceID() || got.SpanID() != want.SpanID() {
		t.Errorf("span received = %s/%s, want %s/%s", got.TraceID(), got.SpanID(), want.TraceID(), want.SpanID())
	}

	// Without a span in the context there is nothing to forward.
	if _, err := c.UsersByID(t.Context(), []string{"u3"}); err != nil {
		t.Fatal(err)
	}
	if got := srv.LastRequest().Header.Get("traceparent"); got != "" {
		t.Errorf("traceparent = %q without a span, want none", got)
	}
}

func TestClientSlowServiceTimesOut(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	srv.SetDelay(2 * time.Second)
	c := newClient(t, srv.URL, users.Options{Timeout: 50 * time.Millisecond})

	start := time.Now()
	_, err := c.UsersByID(t.Context(), []string{"u1"})
	checkUnavailable(t, err)
	if d := time.Since(start); d > time.Second {
		t.Errorf("UsersByID took %v with a 50ms timeout", d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cause = %v, want a deadline exceeded", err)
	}
}

func TestClientFailureDoesNotLeak(t *testing.T) {
	for _, status := range []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadRequest, http.StatusNotFound} {
		t.Run(http.StatusText(status), func(t *testing.T) {
			srv := userstest.NewServer(t, people(3)...)
			srv.SetFailure(status)
			c := newClient(t, srv.URL, users.Options{})

			_, err := c.UsersByID(t.Context(), []string{"u1"})
			checkUnavailable(t, err)
			msg := chat.ErrorMessage(err)
			for _, secret := range []string{"pq:", "SELECT", "password", fmt.Sprint(status)} {
				if strings.Contains(msg, secret) {
					t.Errorf("client message %q contains %q", msg, secret)
				}
			}
			// The detail is kept for the log.
			if !strings.Contains(err.Error(), fmt.Sprintf("status %d", status)) || !strings.Contains(err.Error(), "SELECT password") {
				t.Errorf("error %q lacks the status and body snippet", err)
			}
		})
	}
}

func TestClientServiceDown(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	c := newClient(t, srv.URL, users.Options{})
	if _, err := c.UsersByID(t.Context(), []string{"u1"}); err != nil {
		t.Fatalf("UsersByID while up: %v", err)
	}
	srv.Close()
	_, err := c.UsersByID(t.Context(), []string{"u1"})
	checkUnavailable(t, err)
}

func TestClientBadResponses(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"bad JSON", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"users": [`)) }},
		{"HTML", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`<html>login</html>`)) }},
		{"wrong shape", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"users": {"id": "u1"}}`)) }},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"users": [], "padding": "`))
			w.Write([]byte(strings.Repeat("x", users.MaxResponseBytes)))
			w.Write([]byte(`"}`))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, users.Options{})
			_, err := c.UsersByID(t.Context(), []string{"u1"})
			checkUnavailable(t, err)
		})
	}

	t.Run("extra users ignored", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"users":[{"id":"u1","name":"A"},{"id":"u1","name":"A"},{"id":"intruder","name":"X"}]}`))
		}))
		t.Cleanup(srv.Close)
		c := newClient(t, srv.URL, users.Options{})
		got, err := c.UsersByID(t.Context(), []string{"u1"})
		if err != nil {
			t.Fatal(err)
		}
		if g := sortedIDs(got); !slices.Equal(g, []string{"u1"}) {
			t.Errorf("users = %q, want [u1]", g)
		}
	})
}

func TestClientBreaker(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	c := newClient(t, srv.URL, users.Options{BreakerFailures: 3, BreakerTimeout: time.Second})
	ctx := t.Context()

	srv.SetFailure(http.StatusInternalServerError)
	for i := range 3 {
		_, err := c.UsersByID(ctx, []string{"u1"})
		checkUnavailable(t, err)
		if got := srv.Calls(); got != i+1 {
			t.Fatalf("calls = %d after %d failures, want %d", got, i+1, i+1)
		}
	}

	// Open: calls fail at once, without reaching the service.
	for range 10 {
		_, err := c.UsersByID(ctx, []string{"u1"})
		checkUnavailable(t, err)
	}
	if got := srv.Calls(); got != 3 {
		t.Fatalf("calls = %d while the breaker is open, want still 3", got)
	}

	// Half-open after the timeout: a failed trial opens it again.
	time.Sleep(1100 * time.Millisecond)
	_, err := c.UsersByID(ctx, []string{"u1"})
	checkUnavailable(t, err)
	if got := srv.Calls(); got != 4 {
		t.Fatalf("calls = %d after the half-open trial, want 4", got)
	}
	_, err = c.UsersByID(ctx, []string{"u1"})
	checkUnavailable(t, err)
	if got := srv.Calls(); got != 4 {
		t.Fatalf("calls = %d after the failed trial, want still 4 (open again)", got)
	}

	// The service recovers: the next trial closes the breaker.
	srv.SetFailure(0)
	time.Sleep(1100 * time.Millisecond)
	for i := range 5 {
		got, err := c.UsersByID(ctx, []string{"u1"})
		if err != nil {
			t.Fatalf("UsersByID #%d after recovery: %v", i, err)
		}
		if len(got) != 1 {
			t.Fatalf("users = %v, want u1", got)
		}
	}
	if got := srv.Calls(); got != 9 {
		t.Errorf("calls = %d after recovery, want 9", got)
	}
}

func TestClientBreakerCallerDeadlineCounts(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	srv.SetDelay(time.Second)
	c := newClient(t, srv.URL, users.Options{BreakerFailures: 2, BreakerTimeout: time.Minute})
	for range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		_, err := c.UsersByID(ctx, []string{"u1"})
		cancel()
		checkUnavailable(t, err)
	}
	if got := srv.Calls(); got != 2 {
		t.Errorf("calls = %d, want 2: a service slower than the caller's deadline counts as failing", got)
	}
}

func TestClientBreakerTimeoutsCount(t *testing.T) {
	srv := userstest.NewServer(t, people(3)...)
	srv.SetDelay(time.Second)
	// The timeout leaves a loaded machine time to get each request to the
	// service, which counts it, well before the service answers.
	c := newClient(t, srv.URL, users.Options{Timeout: 300 * time.Millisecond, BreakerFailures: 2, BreakerTimeout: time.Minute})
	for range 5 {
		_, err := c.UsersByID(t.Context(), []string{"u1"})
		checkUnavailable(t, err)
	}
	if got := srv.Calls(); got != 2 {
		t.Errorf("calls = %d, want 2: timeouts count as failures", got)
	}
}

// TestClientBreakerIgnores checks that failures that say nothing about the
// service's health do not open the breaker.
func TestClientBreakerIgnores(t *testing.T) {
	t.Run("4xx", func(t *testing.T) {
		srv := userstest.NewServer(t, people(3)...)
		c := newClient(t, srv.URL, users.Options{BreakerFailures: 2, BreakerTimeout: time.Minute})
		srv.SetFailure(http.StatusBadRequest)
		for range 5 {
			_, err := c.UsersByID(t.Context(), []string{"u1"})
			checkUnavailable(t, err)
		}
		if got := srv.Calls(); got != 5 {
			t.Errorf("calls = %d, want 5: a 400 must not open the breaker", got)
		}
	})
	t.Run("429 counts", func(t *testing.T) {
		srv := userstest.NewServer(t, people(3)...)
		c := newClient(t, srv.URL, users.Options{BreakerFailures: 2, BreakerTimeout: time.Minute})
		srv.SetFailure(http.StatusTooManyRequests)
		for range 5 {
			_, err := c.UsersByID(t.Context(), []string{"u1"})
			checkUnavailable(t, err)
		}
		if got := srv.Calls(); got != 2 {
			t.Errorf("calls = %d, want 2: a 429 opens the breaker", got)
		}
	})
	t.Run("caller gave up", func(t *testing.T) {
		srv := userstest.NewServer(t, people(3)...)
		srv.SetDelay(time.Second)
		c := newClient(t, srv.URL, users.Options{BreakerFailures: 2, BreakerTimeout: time.Minute})
		for range 5 {
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(10*time.Millisecond, cancel)
			_, err := c.UsersByID(ctx, []string{"u1"})
			cancel()
			checkUnavailable(t, err)
		}
		srv.SetDelay(0)
		if _, err := c.UsersByID(t.Context(), []string{"u1"}); err != nil {
			t.Errorf("UsersByID after callers gave up: %v; the breaker must stay closed", err)
		}
	})
}

func TestClientConcurrent(t *testing.T) {
	all := people(50)
	srv := userstest.NewServer(t, all...)
	c := newClient(t, srv.URL, users.Options{MaxBatch: 7})
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			ids := idsOf(all[i : i+30])
			got, err := c.UsersByID(t.Context(), ids)
			if err != nil {
				t.Errorf("UsersByID: %v", err)
				return
			}
			if g, w := sortedIDs(got), sorted(ids); !slices.Equal(g, w) {
				t.Errorf("users = %v, want %v", g, w)
			}
		})
	}
	wg.Wait()
}

func TestNewClientRefusesBadURL(t *testing.T) {
	for _, u := range []string{"", "users.example", "ftp://users.example", "http://", "http://users.example/?x=1", "://bad"} {
		if _, err := users.NewClient(u, users.Options{}); err == nil {
			t.Errorf("NewClient(%q) succeeded, want an error", u)
		}
	}
	if _, err := users.NewClient("http://users.example", users.Options{MaxBatch: -1}); err == nil {
		t.Error("NewClient with a negative MaxBatch succeeded, want an error")
	}
}

func BenchmarkClientUsersByID(b *testing.B) {
	all := people(20)
	srv := userstest.NewServer(b, all...)
	c := newClient(b, srv.URL, users.Options{})
	ids := idsOf(all)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			got, err := c.UsersByID(context.Background(), ids)
			if err != nil {
				b.Error(err)
				return
			}
			if len(got) != len(ids) {
				b.Errorf("got %d users, want %d", len(got), len(ids))
				return
			}
		}
	})
}
