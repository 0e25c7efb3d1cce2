//go:build unix

package main

// The tests in this file run several askgate processes as one cluster —
// one PostgreSQL schema, one Redis database, one language model backend —
// and check the promises of running many instances: an answer asked on
// one instance streams, whole and in order, to subscribers on any other;
// an instance killed in the middle of an answer has it finished by
// another, with every token a subscriber saw; cancelAnswer works on any
// instance; and the subscribers of an instance that stops resume on
// another.

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"askgate/internal/chat"
	"askgate/internal/llm/llmtest"
	"askgate/internal/store/postgres/pgtest"
)

// clusterLeaseTTL is the ASKGATE_LEASE_TTL of the instances: short, so
// that an instance that dies is noticed quickly.
const clusterLeaseTTL = time.Second

// testCluster is the shared state of the instances of one test.
type testCluster struct {
	t       *testing.T
	backend *llmtest.Server
	vars    map[string]string
	rdb     *redis.Client
	ids     []string // the local ids of the answers asked, for the clean-up
}

// newCluster makes a PostgreSQL schema, picks a Redis database and starts
// a backend for the instances of t. The Redis keys of the answers asked
// through the cluster are deleted when the test ends, after the
// instances are gone.
func newCluster(t *testing.T) *testCluster {
	t.Helper()
	addr := os.Getenv("ASKGATE_TEST_REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	// A logical database of its own keeps the fixed key prefixes of
	// askgate apart from other tests' (pub/sub is shared by all the
	// databases, but cancel requests name answers, which are unique).
	db := 1 + rand.IntN(15)
	rdb := redis.NewClient(&redis.Options{Addr: addr, DB: db})
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		rdb.Close()
		t.Fatalf("Redis at %s, database %d (make test starts it): %v", addr, db, err)
	}
	c := &testCluster{t: t, backend: llmtest.New(t), rdb: rdb}
	t.Cleanup(c.cleanup)
	c.vars = map[string]string{
		"ASKGATE_DATABASE_URL": pgtest.NewSchema(t),
		"ASKGATE_REDIS_URL":    "redis://" + addr + "/" + strconv.Itoa(db),
		"ASKGATE_LLM_BASE_URL": c.backend.URL(),
		"ASKGATE_LEASE_TTL":    clusterLeaseTTL.String(),
	}
	t.Logf("Redis database %d", db)
	return c
}

// cleanup deletes the keys of the answers asked (token logs, leases,
// claims), and only those: another test may share the database.
func (c *testCluster) cleanup() {
	defer c.rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range c.ids {
		iter := c.rdb.Scan(ctx, 0, "askgate:*{"+id+"}*", 100).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			c.t.Errorf("scanning the Redis keys of answer %s: %v", id, err)
			continue
		}
		if len(keys) > 0 {
			if err := c.rdb.Del(ctx, keys...).Err(); err != nil {
				c.t.Errorf("deleting %v: %v", keys, err)
			}
		}
	}
}

// start starts an instance of the cluster with the extra variables vars.
func (c *testCluster) start(vars map[string]string) *process {
	c.t.Helper()
	all := make(map[string]string, len(c.vars)+len(vars))
	for k, v := range c.vars {
		all[k] = v
	}
	for k, v := range vars {
		all[k] = v
	}
	return startAskgate(c.t, all)
}

// ask asks question on p and returns the answer's global id.
func (c *testCluster) ask(p *process, token, question string) string {
	c.t.Helper()
	gid := p.ask(token, question)
	id, err := chat.DecodeNodeIDOf(chat.KindMessage, gid)
	if err != nil {
		c.t.Fatal(err)
	}
	c.ids = append(c.ids, id)
	return gid
}

// waitDone waits until the subscription has completed or its connection
// has ended, and returns its events. Any other message (an error) fails
// the test.
func (w *watcher) waitDone(timeout time.Duration) []lifecycleEvent {
	w.t.Helper()
	waitUntil(w.t, timeout, func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.complete || w.endErr != nil || len(w.other) > 0
	}, func() string { evs, _ := w.seen(); return fmt.Sprintf("events %+v", evs) })
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.other) > 0 {
		w.t.Fatalf("unexpected messages: %v", w.other)
	}
	if !w.complete {
		w.t.Fatalf("the connection ended (%v) before the subscription completed; events %+v", w.endErr, w.events)
	}
	return append([]lifecycleEvent(nil), w.events...)
}

// disconnect closes the subscriber's connection, as a network failure
// would, and returns the events it had received.
func (w *watcher) disconnect() []lifecycleEvent {
	w.t.Helper()
	w.conn.Close()
	select {
	case <-w.ended:
	case <-time.After(10 * time.Second):
		w.t.Fatal("reading did not stop after the connection was closed")
	}
	events, _ := w.seen()
	return events
}

// lastSeq returns the seq of the last event, or 0.
func lastSeq(events []lifecycleEvent) int {
	if len(events) == 0 {
		return 0
	}
	return events[len(events)-1].Seq
}

// checkResumed checks the events of a subscriber whose connection was cut
// after first and who subscribed again with after = lastSeq(first) and got
// rest: together they are one stream (see checkTerminal) whose deltas add
// up to the final content, each event once. When first already ended with
// the terminal event, rest must be that final event again, alone. It
// returns the final message.
func checkResumed(t *testing.T, first, rest []lifecycleEvent, wantStatus string) *savedAnswer {
	t.Helper()
	if n := len(first); n > 0 && first[n-1].Done {
		m := checkTerminal(t, first, wantStatus, true)
		if len(rest) != 1 || !rest[0].Done || rest[0].Delta != "" || rest[0].Message == nil ||
			rest[0].Message.Status != m.Status || rest[0].Message.Content != m.Content {
			t.Errorf("resumed after the terminal event, got %+v, want the final event alone", rest)
		}
		return m
	}
	if len(rest) == 0 {
		t.Fatal("the resumed subscription received no event")
	}
	if rest[0].Seq <= lastSeq(first) {
		t.Errorf("the resumed subscription starts at seq %d, after %d", rest[0].Seq, lastSeq(first))
	}
	return checkTerminal(t, append(append([]lifecycleEvent(nil), first...), rest...), wantStatus, true)
}

// TestClusterOneStream: an answer asked on A streams to subscribers on B
// and C, and to one on A that loses its connection and resumes with
// after: each sees the whole text once, in order, and the backend is
// asked once.
func TestClusterOneStream(t *testing.T) {
	c := newCluster(t)
	tokens, full := numberedReply(30)
	c.backend.SetReply(tokens...)
	c.backend.Pace(30 * time.Millisecond)
	// The first tokens are held until the subscriber on A has seen them
	// and gone, so that it leaves while the answer streams.
	const before = 5
	c.backend.Hold()
	c.backend.Release(before)
	t.Cleanup(c.backend.Unhold)
	a, b, cc := c.start(nil), c.start(nil), c.start(nil)
	tok := lifecycleToken(t, "alice")

	id := c.ask(a, tok, "Count to thirty.")
	wa := a.subscribe(tok, id, 0)
	wb := b.subscribe(tok, id, 0)
	wc := cc.subscribe(tok, id, 0)
	wa.waitText(func(s string) bool { return s == strings.Join(tokens[:before], "") })
	first := wa.disconnect()
	wa2 := a.subscribe(tok, id, lastSeq(first))
	c.backend.Unhold()

	rest := wa2.waitDone(15 * time.Second)
	for name, m := range map[string]*savedAnswer{
		"B":              checkTerminal(t, wb.waitDone(15*time.Second), "COMPLETE", true),
		"C":              checkTerminal(t, wc.waitDone(15*time.Second), "COMPLETE", true),
		"A, with resume": checkResumed(t, first, rest, "COMPLETE"),
	} {
		if m.Content != full {
			t.Errorf("the subscriber on %s ended with %q, want %q", name, m.Content, full)
		}
	}
	if got := cc.answer(tok, id); got.Status != "COMPLETE" || got.Content != full {
		t.Errorf("saved answer, read on C: %+v, want COMPLETE %q", got, full)
	}
	if n := c.backend.Requests(); n != 1 {
		t.Errorf("the backend got %d calls, want 1", n)
	}
}

// TestClusterInstanceKilled: the instance generating an answer is killed
// (SIGKILL). Within the lease timeout and a sweep, another instance has
// finished the answer as FAILED (interrupted) with every token a
// subscriber saw, its subscribers get the terminal event, a subscriber of
// the dead instance resumes there, and a new one gets the end at once.
func TestClusterInstanceKilled(t *testing.T) {
	c := newCluster(t)
	tokens, full := numberedReply(60)
	c.backend.SetReply(tokens...)
	c.backend.Pace(50 * time.Millisecond) // 3 s in all
	a, b := c.start(nil), c.start(nil)
	tok := lifecycleToken(t, "alice")

	id := c.ask(a, tok, "Count to sixty, slowly.")
	wa := a.subscribe(tok, id, 0)
	wb := b.subscribe(tok, id, 0)
	atLeast := func(n int) func(string) bool {
		return func(s string) bool { return strings.Count(s, " ") >= n }
	}
	wa.waitText(atLeast(5))
	wb.waitText(atLeast(5))

	a.kill()
	killed := time.Now()
	select {
	case <-wa.ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the subscriber of the killed instance is still connected")
	}
	firstA, seenA := wa.seen()
	if !strings.HasPrefix(full, seenA) || seenA == full {
		t.Fatalf("the subscriber on A saw %q, want a part of %q", seenA, full)
	}
	select {
	case <-c.backend.Aborted():
	case <-time.After(10 * time.Second):
		t.Error("the backend did not see its stream closed by the dead instance")
	}

	var got savedAnswer
	deadline := killed.Add(10 * time.Second)
	for {
		if got = b.answer(tok, id); got.Status != "STREAMING" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the answer is still STREAMING 10s after its instance was killed: %+v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("answer finished by B %v after the kill (lease TTL %v)", time.Since(killed).Round(time.Millisecond), clusterLeaseTTL)
	if got.Status != "FAILED" || !strings.HasPrefix(deref(got.Error), "interrupted") || got.CompletedAt == nil {
		t.Fatalf("the answer ended %+v (error %s), want FAILED, interrupted", got, deref(got.Error))
	}
	if !strings.HasPrefix(full, got.Content) {
		t.Errorf("saved content %q is not a part of the reply %q", got.Content, full)
	}
	if !strings.HasPrefix(got.Content, seenA) {
		t.Errorf("saved content %q lacks tokens the subscriber on A saw: %q", got.Content, seenA)
	}

	// B's subscriber saw the whole log, up to the terminal event.
	eventsB := wb.waitDone(10 * time.Second)
	m := checkTerminal(t, eventsB, "FAILED", true)
	if m.Content != got.Content || !strings.HasPrefix(deref(m.Error), "interrupted") {
		t.Errorf("B's terminal event has %+v (error %s), want the saved answer %q", m, deref(m.Error), got.Content)
	}

	// The subscriber of A reconnects to B and gets the rest.
	wa2 := b.subscribe(tok, id, lastSeq(firstA))
	if m := checkResumed(t, firstA, wa2.waitDone(10*time.Second), "FAILED"); m.Content != got.Content {
		t.Errorf("A's subscriber, resumed on B, ended with %q, want %q", m.Content, got.Content)
	}

	// A new subscriber gets the final event at once.
	start := time.Now()
	late := b.subscribe(tok, id, 0).waitDone(10 * time.Second)
	t.Logf("a new subscriber got the end after %v", time.Since(start).Round(time.Millisecond))
	if len(late) != 1 {
		t.Fatalf("a new subscriber got %+v, want the final event alone", late)
	}
	if m := checkTerminal(t, late, "FAILED", false); m.Content != got.Content {
		t.Errorf("a new subscriber's final event has %q, want %q", m.Content, got.Content)
	}
	if n := c.backend.Requests(); n != 1 {
		t.Errorf("the backend got %d calls, want 1", n)
	}
}

// TestClusterCancelAnywhere: cancelAnswer on B stops an answer generated
// on A at once: the upstream stream is closed, the answer is CANCELLED
// with its text so far, and A's subscriber gets the terminal event.
func TestClusterCancelAnywhere(t *testing.T) {
	c := newCluster(t)
	tokens, _ := numberedReply(10)
	c.backend.SetReply(tokens...)
	c.backend.Hold()
	c.backend.Release(3)
	t.Cleanup(c.backend.Unhold)
	sofar := strings.Join(tokens[:3], "")
	a, b := c.start(nil), c.start(nil)
	tok := lifecycleToken(t, "alice")

	id := c.ask(a, tok, "Count to ten.")
	wa := a.subscribe(tok, id, 0)
	wa.waitText(func(s string) bool { return s == sofar })

	var out struct{ CancelAnswer savedAnswer }
	start := time.Now()
	b.do(tok, `mutation($id: ID!) { cancelAnswer(messageId: $id) { status content error completedAt } }`,
		map[string]any{"id": id}, &out)
	took := time.Since(start)
	t.Logf("cancelAnswer on B returned after %v", took.Round(time.Millisecond))
	if got := out.CancelAnswer; got.Status != "CANCELLED" || got.Content != sofar || got.CompletedAt == nil {
		t.Errorf("cancelAnswer returned %+v, want CANCELLED %q", got, sofar)
	}
	if took > 2*time.Second {
		t.Errorf("cancelAnswer took %v, want less than 2s (lease TTL %v)", took, clusterLeaseTTL)
	}
	select {
	case <-c.backend.Aborted():
	case <-time.After(5 * time.Second):
		t.Error("the backend did not see the upstream stream closed")
	}
	if m := checkTerminal(t, wa.waitDone(10*time.Second), "CANCELLED", true); m.Content != sofar {
		t.Errorf("A's subscriber ended with %q, want %q", m.Content, sofar)
	}
	if got := a.answer(tok, id); got.Status != "CANCELLED" || got.Content != sofar {
		t.Errorf("saved answer, read on A: %+v, want CANCELLED %q", got, sofar)
	}
}

// TestClusterHandoff: an instance stopped with SIGTERM finishes its
// answer and closes its WebSockets with 1001; its subscriber reconnects to
// another instance and resumes with after, losing and repeating nothing.
// A subscriber that resumes from where it was at the signal, while the
// answer still streams on the stopping instance, gets the rest live.
func TestClusterHandoff(t *testing.T) {
	c := newCluster(t)
	tokens, full := numberedReply(30)
	c.backend.SetReply(tokens...)
	c.backend.Pace(50 * time.Millisecond) // 1.5 s in all
	const timeout = 10 * time.Second
	a := c.start(map[string]string{"ASKGATE_SHUTDOWN_TIMEOUT": timeout.String()})
	b := c.start(nil)
	tok := lifecycleToken(t, "alice")

	id := c.ask(a, tok, "Count to thirty.")
	wa := a.subscribe(tok, id, 0)
	wa.waitText(func(s string) bool { return strings.Count(s, " ") >= 3 })

	a.signal(syscall.SIGTERM)
	atSignal, seen := wa.seen()
	if seen == full {
		t.Fatal("the answer was complete before SIGTERM: nothing was tested")
	}
	// This one resumes on B at once, while A still generates.
	live := b.subscribe(tok, id, lastSeq(atSignal))

	events, _, err := wa.end(timeout + 5*time.Second)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("A's WebSocket ended with %v, want a close frame 1001", err)
	}
	if err := a.wait(timeout + 5*time.Second); err != nil {
		t.Errorf("A exited with %v, want 0", err)
	}
	if n := len(events); n > 0 && events[n-1].Done {
		t.Logf("A's subscriber got the terminal event before the close")
	} else {
		t.Logf("A's subscriber was closed after %d events, without the terminal event", n)
	}

	resumed := b.subscribe(tok, id, lastSeq(events))
	if m := checkResumed(t, events, resumed.waitDone(10*time.Second), "COMPLETE"); m.Content != full {
		t.Errorf("resumed on B after the close: %q, want %q", m.Content, full)
	}
	if m := checkResumed(t, atSignal, live.waitDone(10*time.Second), "COMPLETE"); m.Content != full {
		t.Errorf("resumed on B at the signal: %q, want %q", m.Content, full)
	}
	if got := b.answer(tok, id); got.Status != "COMPLETE" || got.Content != full {
		t.Errorf("saved answer, read on B: %+v, want COMPLETE %q", got, full)
	}
	if n, aborts := c.backend.Requests(), c.backend.Aborts(); n != 1 || aborts != 0 {
		t.Errorf("the backend got %d calls and %d early closes, want 1 and 0", n, aborts)
	}
}
