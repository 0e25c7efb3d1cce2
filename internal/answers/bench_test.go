package answers_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"askgate/internal/answers"
	"askgate/internal/chat"
	"askgate/internal/store/sqlite"
	"askgate/internal/stream"
)

// BenchmarkFanOut100 measures the delivery of one answer to 100 readers of
// Manager.Watch, without a network: the language model is a fake that
// returns its tokens from memory. One op is one token, delivered to every
// reader. It reports, from the first token to the last reader's terminal
// event:
//
//   - events/s: events received, all readers together. A reader that lags
//     gets the tokens it missed merged into one event, so events/token is at
//     most 100 (and the final event);
//   - deliveries/s: tokens received, all readers together, merged or not.
//
// Sub-benchmarks: "burst" (the model returns tokens as fast as the
// generation takes them) and "live" (it yields the processor after each,
// so that the readers mostly keep up and most tokens make an event of
// their own: closer to the rate of unmerged events).
//
// The server's counterpart, through graphql-transport-ws, is
// BenchmarkFanOut100 in internal/server.
func BenchmarkFanOut100(b *testing.B) {
	for _, bc := range []struct {
		name  string
		yield bool
	}{{"burst", false}, {"live", true}} {
		b.Run(bc.name, func(b *testing.B) { benchFanOut(b, 100, bc.yield) })
	}
}

func benchFanOut(b *testing.B, readers int, yield bool) {
	const token = " tok"
	ctx := context.Background()
	st, err := sqlite.Open(b.TempDir() + "/askgate.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if err := st.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	model := &memoryLLM{token: token, n: b.N, yield: yield, start: make(chan struct{})}
	tokens := stream.NewMemory(stream.MemoryOptions{MaxLogBytes: 1 << 30})
	defer tokens.Close()
	m := answers.New(answers.Options{Store: st, LLM: model, Log: tokens, Logger: slog.New(slog.DiscardHandler)})
	defer func() {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		m.Shutdown(ctx)
	}()
	defer func() {
		// Before Shutdown: if the benchmark failed before the start, the
		// generation ends all the same.
		select {
		case <-model.start:
		default:
			close(model.start)
		}
	}()
	conv := &chat.Conversation{OwnerID: "alice", Title: "bench"}
	if err := st.CreateConversation(ctx, conv); err != nil {
		b.Fatal(err)
	}
	ex := &chat.Exchange{
		Question: &chat.Message{ConversationID: conv.ID, Content: "tell everyone"},
		Answer:   &chat.Message{ConversationID: conv.ID},
	}
	if _, err := m.Ask(ctx, "alice", ex, ""); err != nil {
		b.Fatal(err)
	}

	var events, text atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		ch, err := m.Watch(ctx, "alice", ex.Answer.ID, 0)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			var n, size int64
			for ev := range ch {
				n++
				size += int64(len(ev.Delta))
			}
			events.Add(n)
			text.Add(size)
		})
	}
	b.ResetTimer()
	start := time.Now()
	close(model.start)
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()

	if want := int64(readers * b.N * len(token)); text.Load() != want {
		b.Errorf("the readers received %d bytes of text, want %d", text.Load(), want)
	}
	s := elapsed.Seconds()
	b.ReportMetric(float64(events.Load())/s, "events/s")
	b.ReportMetric(float64(readers*b.N)/s, "deliveries/s")
	b.ReportMetric(float64(events.Load())/float64(b.N), "events/token")
}

// memoryLLM is a chat.LLM without a network: its one stream waits for
// start to be closed, then returns n tokens, yielding the processor after
// each when yield is set.
type memoryLLM struct {
	token string
	n     int
	yield bool
	start chan struct{}
}

func (l *memoryLLM) Models(context.Context) ([]chat.Model, error) {
	return []chat.Model{{ID: "memory"}}, nil
}

func (l *memoryLLM) Complete(ctx context.Context, _ chat.CompletionRequest) (chat.CompletionStream, error) {
	return &memoryStream{ctx: ctx, l: l, left: l.n}, nil
}

type memoryStream struct {
	ctx     context.Context
	l       *memoryLLM
	left    int
	started bool
}

func (s *memoryStream) Next() (string, error) {
	if !s.started {
		select {
		case <-s.l.start:
		case <-s.ctx.Done():
			return "", s.ctx.Err()
		}
		s.started = true
	}
	if s.left == 0 {
		return "", io.EOF
	}
	s.left--
	if s.l.yield {
		runtime.Gosched()
	}
	return s.l.token, nil
}

func (s *memoryStream) Model() string           { return "memory" }
func (s *memoryStream) Usage() *chat.TokenUsage { return nil }
func (s *memoryStream) Close() error            { return nil }
