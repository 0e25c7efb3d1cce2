package answers_test

import (
	"context"
	"testing"
	"time"

	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/llm"
	"askgate/internal/store/sqlite"
	"askgate/internal/stream"
)

// claimedElsewhere is a shared cluster in which the answer's instance has
// died (no lease) and another instance has claimed the answer and is
// finishing it (it is in takeOver's logText, or its save is slow).
type claimedElsewhere struct{}

func (claimedElsewhere) Renew(context.Context, []string, time.Duration) error { return nil }
func (claimedElsewhere) Release(context.Context, string) error                { return nil }
func (claimedElsewhere) Alive(context.Context, []string) (map[string]bool, error) {
	return map[string]bool{}, nil
}
func (claimedElsewhere) Claim(context.Context, string, time.Duration) (bool, error) {
	return false, nil
}
func (claimedElsewhere) Cancel(context.Context, string) error { return nil }
func (claimedElsewhere) Cancels(ctx context.Context) (<-chan string, error) {
	ch := make(chan string)
	go func() { <-ctx.Done(); close(ch) }()
	return ch, nil
}
func (claimedElsewhere) Shared() bool { return true }

func TestCancelWhileAnotherInstanceTakesOver(t *testing.T) {
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
	m := answers.New(answers.Options{Store: st, LLM: llm.NewDemo(llm.DemoOptions{}), Log: log,
		Cluster: claimedElsewhere{}, LeaseTTL: 300 * time.Millisecond})
	defer m.Shutdown(context.Background())

	// An answer another (dead) instance was generating.
	ex := &chat.Exchange{
		Conversation: &chat.Conversation{OwnerID: "alice", Title: "t"},
		Question:     &chat.Message{Role: chat.RoleUser, Status: chat.StatusComplete, AuthorID: "alice", Content: "q"},
		Answer:       &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming},
	}
	if _, err := st.AddExchange(context.Background(), "alice", ex); err != nil {
		t.Fatal(err)
	}
	// The claimant saves the end a moment later.
	go func() {
		time.Sleep(500 * time.Millisecond)
		a := *ex.Answer
		now := chat.Now()
		a.Status, a.Error, a.CompletedAt = chat.StatusFailed, answers.ErrMessageInterrupted, &now
		st.UpdateAnswer(context.Background(), "alice", &a)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := m.Cancel(ctx, "alice", ex.Answer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status == chat.StatusStreaming {
		t.Errorf("Cancel returned the answer still %s", got.Status)
	}
	t.Logf("Cancel returned %s", got.Status)
}
