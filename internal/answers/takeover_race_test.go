package answers_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/llm"
	"askgate/internal/store/sqlite"
	"askgate/internal/stream"
)

// deadCluster is a shared cluster in which the answer's instance has
// lost its lease and this instance wins the claim.
type deadCluster struct{ claimedElsewhere }

func (deadCluster) Claim(context.Context, string, time.Duration) (bool, error) { return true, nil }

// slowEnd is a store whose final saves take a moment, as on a loaded
// database.
type slowEnd struct{ chat.Store }

func (s slowEnd) UpdateAnswer(ctx context.Context, owner string, a *chat.Message) (bool, error) {
	if a.Status != chat.StatusStreaming {
		time.Sleep(100 * time.Millisecond)
	}
	return s.Store.UpdateAnswer(ctx, owner, a)
}

// TestTakeOverKeepsEveryTokenSubscribersSaw: a takeover of an answer whose
// generator is in fact still alive (its lease lapsed) saves every token a
// subscriber received: the generator cannot append once the takeover
// began.
func TestTakeOverKeepsEveryTokenSubscribersSaw(t *testing.T) {
	st, err := sqlite.Open(t.TempDir() + "/askgate.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	log := stream.NewMemory(stream.MemoryOptions{})
	defer log.Close()
	m := answers.New(answers.Options{Store: slowEnd{st}, LLM: llm.NewDemo(llm.DemoOptions{}), Log: log,
		Cluster: deadCluster{}, LeaseTTL: time.Hour})
	defer m.Shutdown(context.Background())
	ex := &chat.Exchange{
		Conversation: &chat.Conversation{OwnerID: "alice", Title: "t"},
		Question:     &chat.Message{Role: chat.RoleUser, Status: chat.StatusComplete, AuthorID: "alice", Content: "q"},
		Answer:       &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming},
	}
	ctx := context.Background()
	if _, err := st.AddExchange(ctx, "alice", ex); err != nil {
		t.Fatal(err)
	}
	id := ex.Answer.ID
	if err := log.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	events, err := m.Watch(ctx, "alice", id, 0)
	if err != nil {
		t.Fatal(err)
	}
	writerDone := make(chan struct{})
	go func() { // the other instance's generator: alive, its lease lapsed
		defer close(writerDone)
		log.Append(ctx, id, "a")
		log.Append(ctx, id, "b")
		time.Sleep(250 * time.Millisecond) // the model pauses
		for {
			if _, err := log.Append(ctx, id, "X"); errors.Is(err, chat.ErrLogClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := m.Cancel(ctx, "alice", id); err != nil { // cancelRemote takes over
		t.Fatal(err)
	}
	var seen strings.Builder
	var final *chat.Message
	for e := range events {
		seen.WriteString(e.Delta)
		if e.Done {
			final = e.Message
		}
	}
	<-writerDone
	if final == nil {
		t.Fatal("no terminal event")
	}
	if final.Status != chat.StatusCancelled || !strings.HasPrefix(final.Content, seen.String()) {
		t.Errorf("subscriber saw %q, saved %s %q", seen.String(), final.Status, final.Content)
	}
}

// TestEndedAnswerWithAnUnfinishedLog: an instance that stopped between
// saving an answer's end and finishing its log leaves the log open; its
// subscribers still get the terminal event within a lease period, not
// when the log expires.
func TestEndedAnswerWithAnUnfinishedLog(t *testing.T) {
	st, err := sqlite.Open(t.TempDir() + "/askgate.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	log := stream.NewMemory(stream.MemoryOptions{})
	defer log.Close()
	m := answers.New(answers.Options{Store: st, LLM: llm.NewDemo(llm.DemoOptions{}), Log: log, LeaseTTL: 300 * time.Millisecond})
	defer m.Shutdown(ctx)
	ex := &chat.Exchange{
		Conversation: &chat.Conversation{OwnerID: "alice", Title: "t"},
		Question:     &chat.Message{Role: chat.RoleUser, Status: chat.StatusComplete, AuthorID: "alice", Content: "q"},
		Answer:       &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming},
	}
	if _, err := st.AddExchange(ctx, "alice", ex); err != nil {
		t.Fatal(err)
	}
	id := ex.Answer.ID
	if err := log.Open(ctx, id); err != nil {
		t.Fatal(err)
	}
	log.Append(ctx, id, "partial")
	first := must(m.Watch(ctx, "alice", id, 0))  // through the answer's hub
	second := must(m.Watch(ctx, "alice", id, 5)) // on its own reader
	now := chat.Now()
	ex.Answer.Content, ex.Answer.Status, ex.Answer.CompletedAt = "partial", chat.StatusComplete, &now
	if ok, err := st.UpdateAnswer(ctx, "alice", ex.Answer); !ok || err != nil {
		t.Fatal(ok, err)
	}
	for name, events := range map[string]<-chan *answers.Event{"hub": first, "own reader": second} {
		got := collect(t, events)
		last := got[len(got)-1]
		if !last.Done || last.Message == nil || last.Message.Status != chat.StatusComplete {
			t.Errorf("%s: last event %+v", name, last)
		}
	}
}
