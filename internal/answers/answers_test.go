package answers_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/limits"
	"askgate/internal/llm"
	"askgate/internal/llm/llmtest"
	"askgate/internal/redistest"
	"askgate/internal/store/sqlite"
	"askgate/internal/stream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// The SQLite driver and net/http keep idle helpers of their own.
		goleak.IgnoreTopFunction("database/sql.(*DB).connectionOpener"),
		goleak.IgnoreTopFunction("internal/poll.runtime_pollWait"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

// fixture is a Manager on a real SQLite store, the in-process token log and
// a fake OpenAI-compatible backend.
type fixture struct {
	t       *testing.T
	M       *answers.Manager
	Store   chat.Store
	Log     *stream.Memory
	Backend *llmtest.Server
	conv    *chat.Conversation
}

type fixtureOptions struct {
	firstToken, idle time.Duration
	retries          int
	checkpoint       time.Duration
	systemPrompt     string
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	st, err := sqlite.Open(t.TempDir() + "/askgate.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	backend := llmtest.New(t)
	if o.retries == 0 {
		o.retries = 1
	}
	client, err := llm.NewClient(backend.URL(), llm.Options{
		Retries: o.retries, Backoff: time.Millisecond,
		FirstTokenTimeout: o.firstToken, IdleTimeout: o.idle,
	})
	if err != nil {
		t.Fatal(err)
	}
	log := stream.NewMemory(stream.MemoryOptions{})
	m := answers.New(answers.Options{
		Store: st, LLM: client, Log: log,
		SystemPrompt: o.systemPrompt, CheckpointInterval: o.checkpoint,
	})
	f := &fixture{t: t, M: m, Store: st, Log: log, Backend: backend}
	t.Cleanup(func() {
		// Release anything a test held so that generations can end.
		backend.Unhold()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		log.Close()
		backend.Close()
		st.Close()
	})
	f.conv = f.conversation("alice")
	return f
}

func (f *fixture) conversation(owner string) *chat.Conversation {
	f.t.Helper()
	c := &chat.Conversation{OwnerID: owner, Title: "test"}
	if err := f.Store.CreateConversation(context.Background(), c); err != nil {
		f.t.Fatal(err)
	}
	return c
}

// ask asks question in the fixture's conversation as alice.
func (f *fixture) ask(question, key string) *chat.Exchange {
	f.t.Helper()
	ex := &chat.Exchange{
		IdempotencyKey: key,
		Question:       &chat.Message{ConversationID: f.conv.ID, Content: question},
		Answer:         &chat.Message{ConversationID: f.conv.ID},
	}
	if _, err := f.M.Ask(context.Background(), "alice", ex, ""); err != nil {
		f.t.Fatalf("ask: %v", err)
	}
	return ex
}

// stored returns alice's message id as stored.
func (f *fixture) stored(id string) *chat.Message {
	f.t.Helper()
	msgs, err := f.Store.MessagesByID(context.Background(), "alice", []string{id})
	if err != nil || len(msgs) != 1 {
		f.t.Fatalf("message %s: %v (%d found)", id, err, len(msgs))
	}
	return msgs[0]
}

// collect reads events until the terminal one (or a timeout) and returns
// them.
func collect(t *testing.T, events <-chan *answers.Event) []*answers.Event {
	t.Helper()
	var out []*answers.Event
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				return out
			}
			out = append(out, ev)
			if ev.Done {
				return out
			}
		case <-timeout:
			t.Fatalf("no terminal event after 10s; got %d events", len(out))
		}
	}
}

func text(events []*answers.Event) string {
	var b strings.Builder
	for _, ev := range events {
		b.WriteString(ev.Delta)
	}
	return b.String()
}

// checkSeqs checks that seqs grow strictly, start after `after` and that
// only the last event is terminal.
func checkSeqs(t *testing.T, events []*answers.Event, after int) {
	t.Helper()
	prev := after
	for i, ev := range events {
		if ev.Seq <= prev {
			t.Errorf("event %d has seq %d after %d", i, ev.Seq, prev)
		}
		prev = ev.Seq
		if ev.Done != (i == len(events)-1) {
			t.Errorf("event %d of %d: done = %v", i, len(events), ev.Done)
		}
	}
}

func TestAskStreamsAndSaves(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.Backend.SetReply("Hello", ", ", "wor", "ld", "!")
	f.Backend.Hold()
	ex := f.ask("Say hello", "")

	// Ask returned before the backend sent a token.
	if got := f.stored(ex.Answer.ID); got.Status != chat.StatusStreaming || got.Content != "" {
		t.Fatalf("answer after ask: %s %q, want STREAMING and empty", got.Status, got.Content)
	}
	if q := f.stored(ex.Question.ID); q.Role != chat.RoleUser || q.Status != chat.StatusComplete || q.AuthorID != "alice" {
		t.Errorf("question stored as %+v", q)
	}
	events, err := f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Backend.Unhold()
	got := collect(t, events)
	checkSeqs(t, got, 0)
	if text(got) != "Hello, world!" {
		t.Errorf("streamed text %q", text(got))
	}
	last := got[len(got)-1]
	if last.Message == nil || last.Message.Status != chat.StatusComplete || last.Message.Content != "Hello, world!" {
		t.Fatalf("terminal event message %+v", last.Message)
	}
	if last.Message.Usage == nil || last.Message.Usage.TotalTokens == 0 || last.Message.CompletedAt == nil || last.Message.Model != llmtest.DefaultModel {
		t.Errorf("final message lacks usage, completedAt or model: %+v", last.Message)
	}
	if saved := f.stored(ex.Answer.ID); saved.Content != "Hello, world!" || saved.Status != chat.StatusComplete {
		t.Errorf("saved answer %s %q", saved.Status, saved.Content)
	}
}

func TestAnswerOutlivesItsSubscribers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tokens := []string{"one ", "two ", "three ", "four ", "five ", "six ", "seven"}
	f.Backend.SetReply(tokens...)
	f.Backend.Hold()
	ex := f.ask("count", "")

	// A subscriber reads 3 events and goes away.
	ctx, cancel := context.WithCancel(t.Context())
	events, err := f.M.Watch(ctx, "alice", ex.Answer.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A second subscriber stays to the end.
	other, err := f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	var first []*answers.Event
	for len(first) < 3 {
		f.Backend.Release(1)
		first = append(first, <-events)
	}
	cancel()
	for range events { // the channel closes once the watcher sees ctx end
	}
	f.Backend.Unhold()
	all := collect(t, other)
	want := strings.Join(tokens, "")
	if text(all) != want {
		t.Errorf("second subscriber got %q, want %q", text(all), want)
	}
	if saved := f.stored(ex.Answer.ID); saved.Content != want || saved.Status != chat.StatusComplete {
		t.Errorf("saved %s %q, want COMPLETE %q", saved.Status, saved.Content, want)
	}

	// Resubscribing after the third event delivers exactly the rest.
	n := first[len(first)-1].Seq
	rest, err := f.M.Watch(t.Context(), "alice", ex.Answer.ID, n)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, rest)
	checkSeqs(t, got, n)
	if text(first)+text(got) != want {
		t.Errorf("first 3 events %q + rest %q != %q", text(first), text(got), want)
	}

	// A finished answer yields its final event at once.
	final, err := f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	got = collect(t, final)
	if len(got) != 1 || !got[0].Done || got[0].Message.Content != want {
		t.Errorf("finished answer gave %d events, first %+v", len(got), got[0])
	}
	// So does one resumed at or past its last event.
	doneSeq := all[len(all)-1].Seq
	for _, after := range []int{doneSeq, doneSeq + 5} {
		got = collect(t, must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, after)))
		if len(got) != 1 || !got[0].Done || got[0].Message.Content != want || got[0].Seq <= after {
			t.Errorf("after %d: %d events, first %+v", after, len(got), got[0])
		}
	}
}

func TestAnswerLongerThanItsLog(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	small := stream.NewMemory(stream.MemoryOptions{MaxLogBytes: 100})
	defer small.Close()
	m := answers.New(answers.Options{Store: f.Store, LLM: must(llm.NewClient(f.Backend.URL(), llm.Options{})), Log: small})
	defer m.Shutdown(t.Context())
	tokens := make([]string, 50)
	for i := range tokens {
		tokens[i] = "token "
	}
	f.Backend.SetReply(tokens...)
	ex := &chat.Exchange{Question: &chat.Message{ConversationID: f.conv.ID, Content: "long"}, Answer: &chat.Message{ConversationID: f.conv.ID}}
	must(m.Ask(t.Context(), "alice", ex, ""))
	got := collect(t, must(m.Watch(t.Context(), "alice", ex.Answer.ID, 0)))
	want := strings.Join(tokens, "")
	last := got[len(got)-1]
	if !last.Done || last.Message.Status != chat.StatusComplete || last.Message.Content != want {
		t.Errorf("final event %+v %+v, want the whole answer COMPLETE", last, last.Message)
	}
	if !strings.HasPrefix(want, text(got)) || len(text(got)) >= len(want) {
		t.Errorf("streamed %d bytes, want a proper prefix of the %d-byte answer", len(text(got)), len(want))
	}
}

func TestFinishedAnswerWithoutLog(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	ex := f.ask("hi", "")
	collect(t, must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)))
	// A fresh token log, as after the retention period or on another
	// instance: the final event comes from the store.
	fresh := stream.NewMemory(stream.MemoryOptions{})
	defer fresh.Close()
	other := answers.New(answers.Options{Store: f.Store, LLM: llm.NewDemo(llm.DemoOptions{}), Log: fresh})
	defer other.Shutdown(t.Context())
	got := collect(t, must(other.Watch(t.Context(), "alice", ex.Answer.ID, 5)))
	if len(got) != 1 || !got[0].Done || got[0].Seq != 6 || got[0].Message.Status != chat.StatusComplete {
		t.Fatalf("got %d events, first %+v", len(got), got[0])
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestBackendFaults(t *testing.T) {
	cases := []struct {
		name       string
		setup      func(*llmtest.Server)
		opts       fixtureOptions
		wantStatus chat.Status
		wantText   string
		wantCalls  int
		wantError  string
	}{
		{
			name:       "500 then success is retried",
			setup:      func(s *llmtest.Server) { s.Fail(500, 1) },
			wantStatus: chat.StatusComplete, wantText: "a b c", wantCalls: 2,
		},
		{
			name:       "500 every time",
			setup:      func(s *llmtest.Server) { s.Fail(500, 100) },
			wantStatus: chat.StatusFailed, wantText: "", wantCalls: 2, wantError: "the language model is unavailable",
		},
		{
			name:       "cut mid-stream keeps the partial content",
			setup:      func(s *llmtest.Server) { s.CutAfter(2) },
			wantStatus: chat.StatusFailed, wantText: "a b", wantCalls: 1, wantError: "cut off",
		},
		{
			name:       "no first token in time",
			setup:      func(s *llmtest.Server) { s.DelayFirst(2 * time.Second) },
			opts:       fixtureOptions{firstToken: 150 * time.Millisecond},
			wantStatus: chat.StatusFailed, wantText: "", wantCalls: 1, wantError: "did not start answering in time",
		},
		{
			name:       "stall between tokens",
			setup:      func(s *llmtest.Server) { s.StallAfter(1, 2*time.Second) },
			opts:       fixtureOptions{idle: 150 * time.Millisecond},
			wantStatus: chat.StatusFailed, wantText: "a", wantCalls: 1, wantError: "stopped answering",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.opts)
			f.Backend.SetReply("a", " b", " c")
			tc.setup(f.Backend)
			ex := f.ask("q", "")
			got := collect(t, must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)))
			checkSeqs(t, got, 0)
			last := got[len(got)-1].Message
			// A subscriber that comes after the end gets the final event
			// alone; one that came before gets the text in deltas.
			streamed := text(got)
			if len(got) == 1 {
				streamed = last.Content
			}
			if last.Status != tc.wantStatus || last.Content != tc.wantText || streamed != tc.wantText {
				t.Errorf("final %s %q (streamed %q), want %s %q", last.Status, last.Content, text(got), tc.wantStatus, tc.wantText)
			}
			if !strings.Contains(last.Error, tc.wantError) || (tc.wantError == "") != (last.Error == "") {
				t.Errorf("error %q, want one containing %q", last.Error, tc.wantError)
			}
			if strings.Contains(last.Error, "hunter2") {
				t.Errorf("the upstream body leaked into the error: %q", last.Error)
			}
			if n := f.Backend.Requests(); n != tc.wantCalls {
				t.Errorf("backend called %d times, want %d", n, tc.wantCalls)
			}
			if saved := f.stored(ex.Answer.ID); saved.Status != tc.wantStatus || saved.Content != tc.wantText || saved.CompletedAt == nil {
				t.Errorf("saved %s %q completedAt %v", saved.Status, saved.Content, saved.CompletedAt)
			}
		})
	}
}

func TestCancelAnswer(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.Backend.SetReply("a", "b", "c", "d", "e")
	f.Backend.Hold()
	ex := f.ask("q", "")
	events := must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	f.Backend.Release(2)
	first := []*answers.Event{<-events}
	for text(first) != "ab" {
		first = append(first, <-events)
	}

	// Another user cannot cancel it, nor watch it.
	if _, err := f.M.Cancel(t.Context(), "bob", ex.Answer.ID); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("bob's cancel: %v, want NOT_FOUND", err)
	}
	if _, err := f.M.Watch(t.Context(), "bob", ex.Answer.ID, 0); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("bob's watch: %v, want NOT_FOUND", err)
	}

	got, err := f.M.Cancel(t.Context(), "alice", ex.Answer.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != chat.StatusCancelled || got.Content != "ab" || got.CompletedAt == nil {
		t.Errorf("cancelled answer %s %q", got.Status, got.Content)
	}
	select {
	case <-f.Backend.Aborted():
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not closed")
	}
	rest := collect(t, events)
	if len(rest) == 0 || !rest[len(rest)-1].Done || text(first)+text(rest) != "ab" {
		t.Errorf("after cancel the subscriber got %d events, text %q", len(rest), text(first)+text(rest))
	}
	// Nothing more is saved once cancelled.
	f.Backend.Unhold()
	time.Sleep(50 * time.Millisecond)
	if saved := f.stored(ex.Answer.ID); saved.Status != chat.StatusCancelled || saved.Content != "ab" {
		t.Errorf("saved after cancel: %s %q", saved.Status, saved.Content)
	}
	// Cancelling an ended answer returns it as it is.
	again, err := f.M.Cancel(t.Context(), "alice", ex.Answer.ID)
	if err != nil || again.Status != chat.StatusCancelled {
		t.Errorf("second cancel: %v %+v", err, again)
	}
	// A question is not an answer.
	if _, err := f.M.Cancel(t.Context(), "alice", ex.Question.ID); chat.ErrorCode(err) != chat.CodeBadUserInput {
		t.Errorf("cancelling a question: %v", err)
	}
}

func TestDeletingAConversationStopsItsAnswers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.Backend.Hold()
	ex := f.ask("q", "")
	events := must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	waitFor(t, func() bool { return f.Backend.Requests() == 1 }) // the upstream request is open
	if err := f.M.CancelConversation(t.Context(), "bob", f.conv.ID); err != nil || f.M.Running() != 1 {
		t.Fatalf("bob's cancel stopped alice's answer: %v, running %d", err, f.M.Running())
	}
	if err := f.M.CancelConversation(t.Context(), "alice", f.conv.ID); err != nil {
		t.Fatal(err)
	}
	if n := f.M.Running(); n != 0 {
		t.Errorf("%d generations still running", n)
	}
	if got := collect(t, events); !got[len(got)-1].Done {
		t.Error("no terminal event")
	}
	select {
	case <-f.Backend.Aborted():
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not closed")
	}
}

func TestIdempotencyKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	a := f.ask("q", "key-1")
	collect(t, must(f.M.Watch(t.Context(), "alice", a.Answer.ID, 0)))
	b := f.ask("q", "key-1")
	if a.Question.ID != b.Question.ID || a.Answer.ID != b.Answer.ID {
		t.Errorf("second ask stored a new pair: %s/%s vs %s/%s", a.Question.ID, a.Answer.ID, b.Question.ID, b.Answer.ID)
	}
	if b.Answer.Status != chat.StatusComplete {
		t.Errorf("the replayed answer is %s, want it as stored now (COMPLETE)", b.Answer.Status)
	}
	if n := f.Backend.Requests(); n != 1 {
		t.Errorf("backend called %d times, want 1", n)
	}
	pages, err := f.Store.ListMessages(t.Context(), "alice", []string{f.conv.ID}, chat.Page{Limit: 10})
	if err != nil || len(pages[0].Messages) != 2 {
		t.Errorf("conversation holds %d messages, want 2 (%v)", len(pages[0].Messages), err)
	}
}

func TestHistoryAndSystemPrompt(t *testing.T) {
	f := newFixture(t, fixtureOptions{systemPrompt: "Be brief."})
	f.Backend.SetReply("Paris", ".")
	first := f.ask("What is the capital of France?", "")
	collect(t, must(f.M.Watch(t.Context(), "alice", first.Answer.ID, 0)))
	f.Backend.SetReply("About 2 million.")
	second := f.ask("How many people live there?", "")
	collect(t, must(f.M.Watch(t.Context(), "alice", second.Answer.ID, 0)))

	got := f.Backend.LastRequest().Messages
	want := []chat.PromptMessage{
		{Role: "system", Content: "Be brief."},
		{Role: "user", Content: "What is the capital of France?"},
		{Role: "assistant", Content: "Paris."},
		{Role: "user", Content: "How many people live there?"},
	}
	if len(got) != len(want) {
		t.Fatalf("prompt %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("prompt[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestRecoverInterruptedAnswers(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	// An answer a dead process left STREAMING with a checkpoint.
	ex := &chat.Exchange{
		Question: &chat.Message{ConversationID: f.conv.ID, Role: chat.RoleUser, Status: chat.StatusComplete, AuthorID: "alice", Content: "q"},
		Answer:   &chat.Message{ConversationID: f.conv.ID, Role: chat.RoleAssistant, Status: chat.StatusStreaming},
	}
	if _, err := f.Store.AddExchange(t.Context(), "alice", ex); err != nil {
		t.Fatal(err)
	}
	ex.Answer.Content = "half an ans"
	if ok, err := f.Store.UpdateAnswer(t.Context(), "alice", ex.Answer); !ok || err != nil {
		t.Fatal(ok, err)
	}
	n, err := f.M.Recover(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("recovered %d, %v", n, err)
	}
	got := f.stored(ex.Answer.ID)
	if got.Status != chat.StatusFailed || got.Content != "half an ans" || got.Error != answers.ErrMessageInterrupted {
		t.Errorf("recovered answer %s %q %q", got.Status, got.Content, got.Error)
	}
}

func TestShutdown(t *testing.T) {
	t.Run("running answers finish within the grace period", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{})
		f.Backend.Pace(20 * time.Millisecond)
		ex := f.ask("q", "")
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := f.M.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		if got := f.stored(ex.Answer.ID); got.Status != chat.StatusComplete {
			t.Errorf("answer %s after shutdown, want COMPLETE", got.Status)
		}
	})
	t.Run("the rest are saved as interrupted", func(t *testing.T) {
		f := newFixture(t, fixtureOptions{checkpoint: time.Hour})
		f.Backend.SetReply("x", "y", "z")
		f.Backend.Hold()
		ex := f.ask("q", "")
		events := must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
		f.Backend.Release(1)
		<-events
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := f.M.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("shutdown: %v, want the deadline", err)
		}
		got := f.stored(ex.Answer.ID)
		if got.Status != chat.StatusFailed || got.Content != "x" || !strings.HasPrefix(got.Error, "interrupted") {
			t.Errorf("answer %s %q %q, want FAILED \"x\" interrupted", got.Status, got.Content, got.Error)
		}
		if last := collect(t, events); !last[len(last)-1].Done {
			t.Error("the subscriber got no terminal event")
		}
		// No new question is taken after shutdown.
		late := &chat.Exchange{Question: &chat.Message{ConversationID: f.conv.ID, Content: "late"}, Answer: &chat.Message{ConversationID: f.conv.ID}}
		if _, err := f.M.Ask(t.Context(), "alice", late, ""); chat.ErrorCode(err) != chat.CodeUpstreamUnavailable {
			t.Errorf("ask after shutdown: %v", err)
		}
	})
}

func TestCheckpoints(t *testing.T) {
	f := newFixture(t, fixtureOptions{checkpoint: time.Nanosecond})
	f.Backend.SetReply("a", "b", "c")
	f.Backend.Hold()
	ex := f.ask("q", "")
	events := must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0))
	f.Backend.Release(2)
	<-events
	deadline := time.Now().Add(5 * time.Second)
	for f.stored(ex.Answer.ID).Content != "ab" {
		if time.Now().After(deadline) {
			t.Fatalf("checkpoint never saved %q; saved %q", "ab", f.stored(ex.Answer.ID).Content)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := f.stored(ex.Answer.ID); got.Status != chat.StatusStreaming {
		t.Errorf("checkpointed answer is %s", got.Status)
	}
}

func TestModels(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.Backend.SetModels(chat.Model{ID: "m1"}, chat.Model{ID: "m2"})
	got, err := f.M.Models(t.Context())
	if err != nil || len(got) != 2 || got[0].ID != "m1" || !got[0].Default || got[1].Default {
		t.Fatalf("models %+v, %v", got, err)
	}
	ex := &chat.Exchange{Question: &chat.Message{ConversationID: f.conv.ID, Content: "q"}, Answer: &chat.Message{ConversationID: f.conv.ID}}
	if _, err := f.M.Ask(t.Context(), "alice", ex, "nope"); chat.ErrorCode(err) != chat.CodeBadUserInput {
		t.Errorf("unknown model: %v, want BAD_USER_INPUT", err)
	}
	if _, err := f.M.Ask(t.Context(), "alice", ex, ""); err != nil || ex.Answer.Model != "m1" {
		t.Errorf("default model %q, %v", ex.Answer.Model, err)
	}
	collect(t, must(f.M.Watch(t.Context(), "alice", ex.Answer.ID, 0)))
}

// limitsOn returns the answer limits to test: in process, and on the
// test Redis under a prefix of the test's own.
func limitsOn(t *testing.T) map[string]func(slots, tokens int) (limits.Concurrency, limits.TokenQuota) {
	return map[string]func(int, int) (limits.Concurrency, limits.TokenQuota){
		"local": func(slots, tokens int) (limits.Concurrency, limits.TokenQuota) {
			return limits.NewLocalConcurrency(slots), limits.NewLocalTokenQuota(tokens, limits.LocalOptions{})
		},
		"redis": func(slots, tokens int) (limits.Concurrency, limits.TokenQuota) {
			rdb := redistest.Client(t, redis.Options{})
			opts := limits.RedisOptions{Prefix: redistest.Prefix(t, rdb, "answers")}
			return limits.NewRedisConcurrency(rdb, slots, opts), limits.NewRedisTokenQuota(rdb, tokens, opts)
		},
	}
}

func TestConcurrentAnswersCap(t *testing.T) {
	for name, on := range limitsOn(t) {
		t.Run(name, func(t *testing.T) {
			slots, _ := on(2, 0)
			testConcurrentAnswersCap(t, slots)
		})
	}
}

func testConcurrentAnswersCap(t *testing.T, slots limits.Concurrency) {
	f := newFixture(t, fixtureOptions{})
	m := answers.New(answers.Options{Store: f.Store, LLM: must(llm.NewClient(f.Backend.URL(), llm.Options{})), Log: f.Log,
		Concurrency: slots})
	defer m.Shutdown(t.Context())
	f.Backend.Hold()
	defer f.Backend.Unhold() // before the Shutdown above: let the answers end
	ask := func() (*chat.Exchange, error) {
		ex := &chat.Exchange{Question: &chat.Message{ConversationID: f.conv.ID, Content: "q"}, Answer: &chat.Message{ConversationID: f.conv.ID}}
		_, err := m.Ask(t.Context(), "alice", ex, "")
		return ex, err
	}
	first := must(ask())
	keyed := &chat.Exchange{IdempotencyKey: "k", Question: &chat.Message{ConversationID: f.conv.ID, Content: "q"}, Answer: &chat.Message{ConversationID: f.conv.ID}}
	must(m.Ask(t.Context(), "alice", keyed, ""))
	if _, err := ask(); chat.ErrorCode(err) != chat.CodeRateLimited {
		t.Fatalf("third concurrent ask: %v, want RATE_LIMITED", err)
	}
	// A retry of an ask is not refused by the slot its first attempt
	// holds: it gets the stored pair.
	retry := &chat.Exchange{IdempotencyKey: "k", Question: &chat.Message{ConversationID: f.conv.ID, Content: "q"}, Answer: &chat.Message{ConversationID: f.conv.ID}}
	if created, err := m.Ask(t.Context(), "alice", retry, ""); err != nil || created || retry.Answer.ID != keyed.Answer.ID {
		t.Errorf("retry at the cap: created %v, %v, answer %s; want the first pair", created, err, retry.Answer.ID)
	}
	pages := must(f.Store.ListMessages(t.Context(), "alice", []string{f.conv.ID}, chat.Page{Limit: 10}))
	if n := len(pages[0].Messages); n != 4 {
		t.Errorf("%d messages stored, want the two pairs only", n)
	}
	// Another user has slots of their own.
	bobConv := f.conversation("bob")
	bex := &chat.Exchange{Question: &chat.Message{ConversationID: bobConv.ID, Content: "q"}, Answer: &chat.Message{ConversationID: bobConv.ID}}
	if _, err := m.Ask(t.Context(), "bob", bex, ""); err != nil {
		t.Errorf("bob's ask: %v", err)
	}
	// Once an answer ends, its slot is free again.
	must(m.Cancel(t.Context(), "alice", first.Answer.ID))
	waitFor(t, func() bool { _, err := ask(); return err == nil })
}

func TestTokenQuota(t *testing.T) {
	for name, on := range limitsOn(t) {
		t.Run(name, func(t *testing.T) {
			_, quota := on(0, 2500)
			testTokenQuota(t, quota)
		})
	}
}

func testTokenQuota(t *testing.T, quota limits.TokenQuota) {
	f := newFixture(t, fixtureOptions{})
	m := answers.New(answers.Options{Store: f.Store, LLM: must(llm.NewClient(f.Backend.URL(), llm.Options{})), Log: f.Log,
		TokenQuota: quota})
	defer m.Shutdown(t.Context())
	// The backend reports more than the reservation: the quota follows
	// the real usage.
	f.Backend.SetUsage(&chat.TokenUsage{PromptTokens: 10, CompletionTokens: 1490, TotalTokens: 1500})
	ask := func() (*chat.Exchange, error) {
		ex := &chat.Exchange{Question: &chat.Message{ConversationID: f.conv.ID, Content: "q"}, Answer: &chat.Message{ConversationID: f.conv.ID}}
		_, err := m.Ask(t.Context(), "alice", ex, "")
		return ex, err
	}
	first := must(ask())
	collect(t, must(m.Watch(t.Context(), "alice", first.Answer.ID, 0)))
	waitFor(t, func() bool { return m.Running() == 0 })
	calls := f.Backend.Requests()
	if _, err := ask(); chat.ErrorCode(err) != chat.CodeRateLimited {
		t.Fatalf("ask with 1 000 tokens left and ~1 000 estimated: %v, want RATE_LIMITED", err)
	}
	if f.Backend.Requests() != calls {
		t.Error("the refused ask called the backend")
	}
	pages := must(f.Store.ListMessages(t.Context(), "alice", []string{f.conv.ID}, chat.Page{Limit: 10}))
	if n := len(pages[0].Messages); n != 2 {
		t.Errorf("%d messages stored, want the first pair only", n)
	}
}
