package answers_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/cluster"
	"askgate/internal/llm"
	"askgate/internal/llm/llmtest"
	"askgate/internal/redistest"
	"askgate/internal/stream"
)

// instance is one gateway instance's Manager in a cluster test: its own
// backend, token log client and cluster client, on the shared store and
// Redis.
type instance struct {
	M       *answers.Manager
	Backend *llmtest.Server
	// dead makes the instance stop renewing its leases, as if it had
	// died (its generations go on, as a partitioned instance's would).
	dead *atomic.Bool
	name string
	rdb  *redis.Client
}

// connections counts the instance's connections to Redis.
func (in *instance) connections(t *testing.T) int {
	t.Helper()
	list, err := in.rdb.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		if strings.Contains(line, " name="+in.name+" ") {
			n++
		}
	}
	return n
}

// dyingCluster stops renewing leases once dead is set.
type dyingCluster struct {
	chat.Cluster
	dead *atomic.Bool
}

func (c dyingCluster) Renew(ctx context.Context, ids []string, ttl time.Duration) error {
	if c.dead.Load() {
		return nil
	}
	return c.Cluster.Renew(ctx, ids, ttl)
}

// newInstances starts n instances sharing f's store and one Redis.
func newInstances(t *testing.T, f *fixture, n int) []*instance {
	t.Helper()
	rdb := redistest.Client(t, redis.Options{})
	prefix := redistest.Prefix(t, rdb, "answers")
	var out []*instance
	for i := range n {
		// Each instance has its own Redis clients, named for counting.
		irdb := redistest.Client(t, redis.Options{ClientName: prefix + fmt.Sprint(i), PoolSize: 10})
		backend := llmtest.New(t)
		client := must(llm.NewClient(backend.URL(), llm.Options{Retries: -1}))
		log := stream.NewRedis(irdb, stream.RedisOptions{Prefix: prefix + "stream:", MaxBlockingConns: 16})
		dead := &atomic.Bool{}
		m := answers.New(answers.Options{
			Store: f.Store, LLM: client, Log: log,
			Cluster:  dyingCluster{cluster.NewRedis(irdb, prefix+"cluster:"), dead},
			LeaseTTL: 300 * time.Millisecond, CheckpointInterval: time.Nanosecond,
		})
		t.Cleanup(func() {
			backend.Unhold()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			m.Shutdown(ctx)
			log.Close()
			backend.Close()
		})
		out = append(out, &instance{M: m, Backend: backend, dead: dead, name: prefix + fmt.Sprint(i), rdb: rdb})
	}
	return out
}

func askOn(t *testing.T, m *answers.Manager, conv *chat.Conversation, question string) *chat.Exchange {
	t.Helper()
	ex := &chat.Exchange{
		Question: &chat.Message{ConversationID: conv.ID, Content: question},
		Answer:   &chat.Message{ConversationID: conv.ID},
	}
	if _, err := m.Ask(t.Context(), "alice", ex, ""); err != nil {
		t.Fatal(err)
	}
	return ex
}

func TestClusterStreamsEverywhere(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	in := newInstances(t, f, 3)
	tokens := []string{"one ", "two ", "three ", "four"}
	in[0].Backend.SetReply(tokens...)
	in[0].Backend.Hold()
	ex := askOn(t, in[0].M, f.conv, "count")
	b := must(in[1].M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	c := must(in[2].M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	in[0].Backend.Release(1)
	first := <-b
	in[0].Backend.Unhold()
	want := strings.Join(tokens, "")
	gotB := append([]*answers.Event{first}, collect(t, b)...)
	gotC := collect(t, c)
	for name, got := range map[string][]*answers.Event{"B": gotB, "C": gotC} {
		checkSeqs(t, got, 0)
		if text(got) != want || got[len(got)-1].Message.Content != want {
			t.Errorf("%s saw %q, want %q", name, text(got), want)
		}
	}
	// A reconnect on the first instance resumes after the first event.
	rest := collect(t, must(in[0].M.Watch(t.Context(), "alice", ex.Answer.ID, first.Seq)))
	if first.Delta+text(rest) != want {
		t.Errorf("resumed %q + %q, want %q", first.Delta, text(rest), want)
	}
}

func TestClusterFinishesTheAnswersOfADeadInstance(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	in := newInstances(t, f, 2)
	in[0].Backend.SetReply(append([]string{"never ", "lost "}, strings.Split(strings.Repeat("more ", 30), " ")...)...)
	in[0].Backend.Pace(10 * time.Millisecond)
	in[0].Backend.Hold()
	ex := askOn(t, in[0].M, f.conv, "q")
	watch := must(in[1].M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	in[0].Backend.Release(2)
	seen := []*answers.Event{<-watch}
	for text(seen) != "never lost " {
		seen = append(seen, <-watch)
	}
	in[0].dead.Store(true) // A stops renewing: to the cluster, it died

	got := collect(t, watch)
	last := got[len(got)-1]
	if !last.Done || last.Message.Status != chat.StatusFailed || !strings.HasPrefix(last.Message.Error, "interrupted") {
		t.Fatalf("terminal event %+v %+v, want FAILED interrupted", last, last.Message)
	}
	if saved := last.Message.Content; !strings.HasPrefix(saved, text(seen)+text(got)) || saved == "" {
		t.Errorf("saved %q lacks tokens a subscriber saw (%q)", saved, text(seen)+text(got))
	}
	// The old generator stops at its next checkpoint, which finds the
	// answer ended, and its late end changes nothing.
	in[0].Backend.Unhold()
	select {
	case <-in[0].Backend.Aborted():
	case <-time.After(5 * time.Second):
		t.Error("the old generator went on generating")
	}
	waitFor(t, func() bool { return in[0].M.Running() == 0 })
	if s := f.stored(ex.Answer.ID); s.Status != chat.StatusFailed || s.Content != last.Message.Content {
		t.Errorf("after the old generator ended: %s %q", s.Status, s.Content)
	}
}

func TestClusterCancelOnAnotherInstance(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	in := newInstances(t, f, 2)
	in[0].Backend.SetReply("a", "b", "c")
	in[0].Backend.Hold()
	ex := askOn(t, in[0].M, f.conv, "q")
	watch := must(in[0].M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	in[0].Backend.Release(1)
	<-watch
	start := time.Now()
	got, err := in[1].M.Cancel(t.Context(), "alice", ex.Answer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != chat.StatusCancelled || got.Content != "a" {
		t.Errorf("cancelled on B: %s %q", got.Status, got.Content)
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("the cancel took %v, more than a lease (300ms)", d)
	}
	select {
	case <-in[0].Backend.Aborted():
	case <-time.After(5 * time.Second):
		t.Fatal("A's upstream request was not closed")
	}
	if ev := collect(t, watch); !ev[len(ev)-1].Done || ev[len(ev)-1].Message.Status != chat.StatusCancelled {
		t.Errorf("A's subscriber got %+v", ev[len(ev)-1])
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClusterManySubscribersFewConnections: 1 000 subscribers over two
// instances on 10 answers generated by one of them: every subscriber gets
// the whole text, and each instance uses a bounded number of Redis
// connections however many subscribers it has.
func TestClusterManySubscribersFewConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("1 000 subscribers")
	}
	f := newFixture(t, fixtureOptions{})
	in := newInstances(t, f, 2)
	tokens := make([]string, 20)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("t%d ", i)
	}
	want := strings.Join(tokens, "")
	in[0].Backend.SetReply(tokens...)
	in[0].Backend.Hold()
	var ids []string
	for range 10 {
		ids = append(ids, askOn(t, in[0].M, f.conv, "q").Answer.ID)
	}
	results := make(chan string, 1000)
	var started atomic.Int64
	for i := range 1000 {
		events := must(in[i%2].M.Watch(t.Context(), "alice", ids[i%10], 0))
		go func() {
			var b strings.Builder
			for ev := range events {
				if b.Len() == 0 {
					started.Add(1)
				}
				b.WriteString(ev.Delta)
				if ev.Done {
					if ev.Message.Content != want {
						b.WriteString(" (final message differs)")
					}
				}
			}
			results <- b.String()
		}()
	}
	// Every subscriber is reading its answer's live tail: count now.
	deadline := time.Now().Add(20 * time.Second)
	for started.Load() < 1000 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 1000 subscribers got a first event", started.Load())
		}
		in[0].Backend.Release(1) // one more token for one of the answers
		time.Sleep(20 * time.Millisecond)
	}
	// A bounded number: the main pool (10) and at most one blocking
	// reader per active answer (10 ≤ MaxBlockingConns 16), never one per
	// subscriber.
	for i, inst := range in {
		if n := inst.connections(t); n == 0 || n > 10+16 {
			t.Errorf("instance %d holds %d Redis connections for 500 live subscribers", i, n)
		} else {
			t.Logf("instance %d: %d Redis connections for 500 live subscribers", i, n)
		}
	}
	in[0].Backend.Unhold()
	for i := range 1000 {
		select {
		case got := <-results:
			if got != want {
				t.Fatalf("subscriber got %q, want %q", got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of 1000 subscribers finished", i)
		}
	}
}
