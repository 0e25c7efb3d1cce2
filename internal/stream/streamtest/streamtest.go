// Package streamtest provides the conformance suite of chat.TokenLog: the
// behaviour every implementation (in-process, Redis) must have, tested
// through the interface only.
//
// An implementation's tests call Run with a function that returns a fresh
// log:
//
//	func TestMemory(t *testing.T) {
//		streamtest.Run(t, func(t *testing.T) chat.TokenLog {
//			m := stream.NewMemory(stream.MemoryOptions{})
//			t.Cleanup(func() { m.Close() })
//			return m
//		})
//	}
package streamtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"askgate/internal/chat"
)

// timeout bounds every wait of the suite, so that a hanging implementation
// fails instead of stalling the test binary.
const timeout = 20 * time.Second

// Run runs the conformance suite against the logs newLog returns, each in
// its own subtest. newLog is called once per subtest and may register
// cleanups with t. Logs returned by newLog may be shared between subtests
// (as a Redis database is): every subtest uses answer ids of its own.
//
// The suite needs a retention of at least a few seconds. It checks only
// what chat.TokenLog promises: in particular, that a reader far behind gets
// merged events, not how large they are.
func Run(t *testing.T, newLog func(t *testing.T) chat.TokenLog) {
	tests := []struct {
		name string
		fn   func(*testing.T, chat.TokenLog)
	}{
		{"SeqFromOne", testSeqFromOne},
		{"OpenTwice", testOpenTwice},
		{"AppendFinishClosed", testAppendFinishClosed},
		{"ReadUnknown", testReadUnknown},
		{"ReplayEveryOffset", testReplayEveryOffset},
		{"ReplayNegativeAfter", testReplayNegativeAfter},
		{"ReadPastEndWaits", testReadPastEndWaits},
		{"LiveTail", testLiveTail},
		{"WaitingReaderWakes", testWaitingReaderWakes},
		{"ConcurrentReaders", testConcurrentReaders},
		{"SlowReaderMerges", testSlowReaderMerges},
		{"DoneLastAlone", testDoneLastAlone},
		{"FinishedStillReadable", testFinishedStillReadable},
		{"FinishedWithoutDeltas", testFinishedWithoutDeltas},
		{"NextHonoursContext", testNextHonoursContext},
		{"CloseIdempotent", testCloseIdempotent},
		{"AnswersIndependent", testAnswersIndependent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newLog(t))
		})
	}
}

var idCounter atomic.Int64

// answerID returns an answer id no other test uses, even across runs that
// share a backend.
func answerID(t *testing.T) string {
	return fmt.Sprintf("streamtest/%s/%d-%d", t.Name(), time.Now().UnixNano(), idCounter.Add(1))
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx
}

// deltas returns n deltas of varied lengths and scripts, deterministic for
// a seed, none empty.
func deltas(seed uint64, n int) []string {
	words := []string{"the", " answer", " is", " 42", ",", " héllo", " 世界", "\n", " λx.x", "!", "  ", "emoji 🙂"}
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", words[r.IntN(len(words))], i)
	}
	return out
}

// writeAll opens answerID and appends ds, checking each seq, and finishes
// it when finish is set. It returns the seq of the terminal event (or 0).
func writeAll(t *testing.T, log chat.TokenLog, answerID string, ds []string, finish bool) int {
	t.Helper()
	ctx := testContext(t)
	if err := log.Open(ctx, answerID); err != nil {
		t.Fatalf("Open(%q): %v", answerID, err)
	}
	appendAll(t, log, answerID, 0, ds)
	if !finish {
		return 0
	}
	seq, err := log.Finish(ctx, answerID)
	if err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if seq != len(ds)+1 {
		t.Fatalf("Finish seq = %d, want %d", seq, len(ds)+1)
	}
	return seq
}

// appendAll appends ds to an open log whose last seq is last, checking
// each returned seq. It uses t.Errorf only, so it may run in any goroutine.
func appendAll(t *testing.T, log chat.TokenLog, answerID string, last int, ds []string) bool {
	ctx := context.Background()
	for i, d := range ds {
		seq, err := log.Append(ctx, answerID, d)
		if err != nil {
			t.Errorf("Append #%d: %v", last+i+1, err)
			return false
		}
		if want := last + i + 1; seq != want {
			t.Errorf("Append seq = %d, want %d", seq, want)
			return false
		}
	}
	return true
}

// readAll reads r to io.EOF and returns its events. It fails the test on
// any other error. It uses t.Errorf only, so it may run in any goroutine.
func readAll(t *testing.T, ctx context.Context, r chat.TokenReader) ([]chat.TokenEvent, bool) {
	var evs []chat.TokenEvent
	for {
		ev, err := r.Next(ctx)
		if err == io.EOF {
			return evs, true
		}
		if err != nil {
			t.Errorf("Next after %d events: %v", len(evs), err)
			return evs, false
		}
		if n := len(evs); n > 0 && evs[n-1].Done {
			t.Errorf("Next after the Done event = %+v, want io.EOF", ev)
			return evs, false
		}
		evs = append(evs, ev)
	}
}

// checkEvents checks that evs is exactly the rest of the finished log of ds
// after seq after: seqs strictly increase with no gap, each event's text is
// that of the deltas it merges, and the terminal event comes last, alone.
// It uses t.Errorf only.
func checkEvents(t *testing.T, ds []string, after int, evs []chat.TokenEvent, finished bool) {
	doneSeq := len(ds) + 1
	prev := max(after, 0)
	if finished && prev >= doneSeq {
		if len(evs) != 0 {
			t.Errorf("after %d (done at %d): got %d events, want none", after, doneSeq, len(evs))
		}
		return
	}
	for i, ev := range evs {
		if ev.Done {
			if i != len(evs)-1 {
				t.Errorf("after %d: event %d is Done but %d more follow", after, i, len(evs)-1-i)
			}
			if ev.Seq != doneSeq {
				t.Errorf("after %d: Done event seq = %d, want %d", after, ev.Seq, doneSeq)
			}
			if prev != len(ds) {
				t.Errorf("after %d: Done event follows seq %d, want %d: deltas missing", after, prev, len(ds))
			}
			if ev.Delta != "" {
				t.Errorf("after %d: Done event has delta %q, want none", after, ev.Delta)
			}
			prev = ev.Seq
			continue
		}
		if ev.Seq <= prev || ev.Seq > len(ds) {
			t.Errorf("after %d: event %d has seq %d after seq %d (%d deltas)", after, i, ev.Seq, prev, len(ds))
			return
		}
		if want := strings.Join(ds[prev:ev.Seq], ""); ev.Delta != want {
			t.Errorf("after %d: event %d (seq %d after %d) delta = %q, want %q", after, i, ev.Seq, prev, ev.Delta, want)
			return
		}
		prev = ev.Seq
	}
	if finished && prev != doneSeq {
		t.Errorf("after %d: events end at seq %d, want the Done event %d", after, prev, doneSeq)
	}
	if !finished && prev != len(ds) {
		t.Errorf("after %d: events end at seq %d, want %d", after, prev, len(ds))
	}
}

func testSeqFromOne(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	id := answerID(t)
	if err := log.Open(ctx, id); err != nil {
		t.Fatalf("Open: %v", err)
	}
	for want := 1; want <= 3; want++ {
		got, err := log.Append(ctx, id, fmt.Sprint("d", want))
		if err != nil || got != want {
			t.Fatalf("Append #%d = %d, %v; want %d, nil", want, got, err, want)
		}
	}
	if got, err := log.Finish(ctx, id); err != nil || got != 4 {
		t.Fatalf("Finish = %d, %v; want 4, nil", got, err)
	}
}

func testOpenTwice(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	id := answerID(t)
	if err := log.Open(ctx, id); err != nil {
		t.Fatalf("Open: %v", err)
	}
	if err := log.Open(ctx, id); !errors.Is(err, chat.ErrLogExists) {
		t.Fatalf("second Open = %v, want ErrLogExists", err)
	}
	if _, err := log.Finish(ctx, id); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := log.Open(ctx, id); !errors.Is(err, chat.ErrLogExists) {
		t.Fatalf("Open of a finished log = %v, want ErrLogExists", err)
	}
}

func testAppendFinishClosed(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	missing := answerID(t)
	if _, err := log.Append(ctx, missing, "x"); !errors.Is(err, chat.ErrLogClosed) {
		t.Errorf("Append to a missing log = %v, want ErrLogClosed", err)
	}
	if _, err := log.Finish(ctx, missing); !errors.Is(err, chat.ErrLogClosed) {
		t.Errorf("Finish of a missing log = %v, want ErrLogClosed", err)
	}
	finished := answerID(t)
	writeAll(t, log, finished, []string{"a", "b"}, true)
	if _, err := log.Append(ctx, finished, "x"); !errors.Is(err, chat.ErrLogClosed) {
		t.Errorf("Append to a finished log = %v, want ErrLogClosed", err)
	}
	if _, err := log.Finish(ctx, finished); !errors.Is(err, chat.ErrLogClosed) {
		t.Errorf("Finish of a finished log = %v, want ErrLogClosed", err)
	}
	// The failed calls changed nothing.
	r, err := log.Read(ctx, finished, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()
	evs, _ := readAll(t, ctx, r)
	checkEvents(t, []string{"a", "b"}, 0, evs, true)
}

func testReadUnknown(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	for _, after := range []int{0, 5} {
		r, err := log.Read(ctx, answerID(t), after)
		if !errors.Is(err, chat.ErrLogNotFound) {
			t.Errorf("Read(unknown, %d) = %v, %v; want ErrLogNotFound", after, r, err)
		}
	}
}

func testReplayEveryOffset(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := deltas(1, 60)
	id := answerID(t)
	doneSeq := writeAll(t, log, id, ds, true)
	for after := 0; after <= doneSeq+2; after++ {
		r, err := log.Read(ctx, id, after)
		if err != nil {
			t.Fatalf("Read(%d): %v", after, err)
		}
		evs, ok := readAll(t, ctx, r)
		if ok {
			checkEvents(t, ds, after, evs, true)
			var text strings.Builder
			for _, ev := range evs {
				text.WriteString(ev.Delta)
			}
			if want := strings.Join(ds[min(after, len(ds)):], ""); text.String() != want {
				t.Errorf("Read(%d): text = %q, want %q", after, text.String(), want)
			}
			// EOF is sticky.
			if _, err := r.Next(ctx); err != io.EOF {
				t.Errorf("Read(%d): Next after EOF = %v, want io.EOF", after, err)
			}
		}
		r.Close()
	}
}

func testReplayNegativeAfter(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := deltas(2, 10)
	id := answerID(t)
	writeAll(t, log, id, ds, true)
	r, err := log.Read(ctx, id, -3)
	if err != nil {
		t.Fatalf("Read(-3): %v", err)
	}
	defer r.Close()
	evs, _ := readAll(t, ctx, r)
	checkEvents(t, ds, 0, evs, true)
}

func testReadPastEndWaits(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := deltas(3, 6)
	id := answerID(t)
	writeAll(t, log, id, ds[:3], false)
	r, err := log.Read(ctx, id, 5)
	if err != nil {
		t.Fatalf("Read(5) of a log at seq 3: %v", err)
	}
	defer r.Close()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	ev, err := r.Next(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next before seq 6 exists = %+v, %v; want DeadlineExceeded", ev, err)
	}
	appendAll(t, log, id, 3, ds[3:])
	ev, err = r.Next(ctx)
	if err != nil || ev != (chat.TokenEvent{Seq: 6, Delta: ds[5]}) {
		t.Fatalf("Next = %+v, %v; want seq 6 %q", ev, err, ds[5])
	}
	if _, err := log.Finish(ctx, id); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	ev, err = r.Next(ctx)
	if err != nil || ev != (chat.TokenEvent{Seq: 7, Done: true}) {
		t.Fatalf("Next = %+v, %v; want Done at seq 7", ev, err)
	}
	if _, err := r.Next(ctx); err != io.EOF {
		t.Fatalf("Next after Done = %v, want io.EOF", err)
	}

	// A reader past the end of a log that then finishes before reaching
	// its position reads nothing.
	id2 := answerID(t)
	writeAll(t, log, id2, ds[:2], false)
	r2, err := log.Read(ctx, id2, 10)
	if err != nil {
		t.Fatalf("Read(10): %v", err)
	}
	defer r2.Close()
	got := make(chan error, 1)
	go func() {
		_, err := r2.Next(ctx)
		got <- err
	}()
	time.Sleep(20 * time.Millisecond)
	if _, err := log.Finish(ctx, id2); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if err := <-got; err != io.EOF {
		t.Fatalf("Next of a reader past the Done event = %v, want io.EOF", err)
	}
}

func testLiveTail(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := deltas(4, 500)
	id := answerID(t)
	if err := log.Open(ctx, id); err != nil {
		t.Fatalf("Open: %v", err)
	}
	r, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, d := range ds {
			if !appendAll(t, log, id, i, []string{d}) {
				return
			}
			if i%50 == 0 {
				time.Sleep(time.Millisecond) // let the reader catch up now and then
			}
		}
		if _, err := log.Finish(context.Background(), id); err != nil {
			t.Errorf("Finish: %v", err)
		}
	})
	evs, _ := readAll(t, ctx, r)
	wg.Wait()
	checkEvents(t, ds, 0, evs, true)
}

func testWaitingReaderWakes(t *testing.T, log chat.TokenLog) {
	// A writer that waits for the reader before each delta: every delta
	// must reach a reader already waiting in Next, without the help of a
	// later Append or Finish.
	ctx, cancel := context.WithCancel(testContext(t))
	ds := deltas(10, 30)
	id := answerID(t)
	writeAll(t, log, id, nil, false)
	const readers = 3
	got := make(chan chat.TokenEvent, readers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range readers {
		r, err := log.Read(ctx, id, 0)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		wg.Go(func() {
			defer r.Close()
			for {
				ev, err := r.Next(ctx)
				if err != nil {
					if err != io.EOF && ctx.Err() == nil {
						t.Errorf("Next: %v", err)
					}
					return
				}
				select {
				case got <- ev:
				case <-ctx.Done():
					return
				}
			}
		})
	}
	for i, d := range ds {
		time.Sleep(time.Millisecond) // let the readers wait
		appendAll(t, log, id, i, []string{d})
		for range readers {
			select {
			case ev := <-got:
				if want := (chat.TokenEvent{Seq: i + 1, Delta: d}); ev != want {
					t.Fatalf("event = %+v, want %+v", ev, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("a reader waiting in Next did not get delta %d within 5s", i+1)
			}
		}
	}
	time.Sleep(time.Millisecond)
	if _, err := log.Finish(ctx, id); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	for range readers {
		select {
		case ev := <-got:
			if want := (chat.TokenEvent{Seq: len(ds) + 1, Done: true}); ev != want {
				t.Fatalf("event = %+v, want %+v", ev, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a reader waiting in Next did not get the Done event within 5s")
		}
	}
}

func testConcurrentReaders(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := deltas(5, 400)
	id := answerID(t)
	if err := log.Open(ctx, id); err != nil {
		t.Fatalf("Open: %v", err)
	}
	var written atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for i, d := range ds {
			if !appendAll(t, log, id, i, []string{d}) {
				return
			}
			written.Store(int64(i + 1))
			if i%20 == 0 {
				time.Sleep(100 * time.Microsecond)
			}
		}
		if _, err := log.Finish(context.Background(), id); err != nil {
			t.Errorf("Finish: %v", err)
		}
	})
	const readers = 32
	for i := range readers {
		wg.Go(func() {
			// Readers start at various times, at offsets behind, at and
			// past the writer's position.
			time.Sleep(time.Duration(i%8) * time.Millisecond)
			after := [...]int{0, int(written.Load()), int(written.Load()) + 7, i * 13}[i%4]
			r, err := log.Read(ctx, id, after)
			if err != nil {
				t.Errorf("reader %d: Read(%d): %v", i, after, err)
				return
			}
			defer r.Close()
			evs, ok := readAll(t, ctx, r)
			if ok {
				checkEvents(t, ds, after, evs, true)
			}
		})
	}
	wg.Wait()
}

func testSlowReaderMerges(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := deltas(6, 1000)
	id := answerID(t)
	if err := log.Open(ctx, id); err != nil {
		t.Fatalf("Open: %v", err)
	}
	r, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()
	// Take one event, so the reader is mid-stream, then sleep.
	appendAll(t, log, id, 0, ds[:1])
	first, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		appendAll(t, log, id, 1, ds[1:])
		if _, err := log.Finish(context.Background(), id); err != nil {
			t.Errorf("Finish: %v", err)
		}
	}()
	select {
	case <-wrote:
	case <-time.After(timeout):
		t.Fatal("the writer blocked on a reader that was not reading")
	}
	evs, ok := readAll(t, ctx, r)
	if !ok {
		return
	}
	checkEvents(t, ds, 0, append([]chat.TokenEvent{first}, evs...), true)
	if len(evs) >= len(ds) {
		t.Errorf("a reader 999 deltas behind got %d events, want them merged into fewer", len(evs))
	}
}

func testDoneLastAlone(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := []string{"a", "b", "c"}
	id := answerID(t)
	doneSeq := writeAll(t, log, id, ds, true)
	r, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()
	var text strings.Builder
	for i := 0; ; i++ {
		if i > len(ds) {
			t.Fatalf("no Done event after %d events (text %q)", i, text.String())
		}
		ev, err := r.Next(ctx)
		if err != nil {
			t.Fatalf("Next: %v (text so far %q)", err, text.String())
		}
		if ev.Done {
			if ev != (chat.TokenEvent{Seq: doneSeq, Done: true}) {
				t.Fatalf("Done event = %+v, want seq %d with no delta", ev, doneSeq)
			}
			break
		}
		text.WriteString(ev.Delta)
	}
	if text.String() != "abc" {
		t.Fatalf("text before Done = %q, want %q", text.String(), "abc")
	}
	for range 2 {
		if ev, err := r.Next(ctx); err != io.EOF {
			t.Fatalf("Next after Done = %+v, %v; want io.EOF", ev, err)
		}
	}
}

func testFinishedStillReadable(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	ds := deltas(7, 20)
	id := answerID(t)
	doneSeq := writeAll(t, log, id, ds, true)
	time.Sleep(100 * time.Millisecond)
	r, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatalf("Read of a finished log: %v", err)
	}
	evs, _ := readAll(t, ctx, r)
	r.Close()
	checkEvents(t, ds, 0, evs, true)

	r, err = log.Read(ctx, id, doneSeq-1)
	if err != nil {
		t.Fatalf("Read(%d): %v", doneSeq-1, err)
	}
	defer r.Close()
	if ev, err := r.Next(ctx); err != nil || ev != (chat.TokenEvent{Seq: doneSeq, Done: true}) {
		t.Fatalf("Read(%d).Next = %+v, %v; want the Done event at once", doneSeq-1, ev, err)
	}

	r, err = log.Read(ctx, id, doneSeq)
	if err != nil {
		t.Fatalf("Read(%d): %v", doneSeq, err)
	}
	defer r.Close()
	if ev, err := r.Next(ctx); err != io.EOF {
		t.Fatalf("Read(%d).Next = %+v, %v; want io.EOF at once", doneSeq, ev, err)
	}
}

func testFinishedWithoutDeltas(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	id := answerID(t)
	if seq := writeAll(t, log, id, nil, true); seq != 1 {
		t.Fatalf("Finish of an empty log = %d, want 1", seq)
	}
	r, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()
	evs, _ := readAll(t, ctx, r)
	if len(evs) != 1 || evs[0] != (chat.TokenEvent{Seq: 1, Done: true}) {
		t.Fatalf("events = %+v, want only Done at seq 1", evs)
	}
}

func testNextHonoursContext(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	id := answerID(t)
	writeAll(t, log, id, []string{"a"}, false)
	r, err := log.Read(ctx, id, 1)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer r.Close()

	deadline, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	start := time.Now()
	if ev, err := r.Next(deadline); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next with no events = %+v, %v; want DeadlineExceeded", ev, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Next returned %v after its deadline", d)
	}

	canceled, cancel := context.WithCancel(ctx)
	time.AfterFunc(30*time.Millisecond, cancel)
	if ev, err := r.Next(canceled); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next with no events = %+v, %v; want Canceled", ev, err)
	}

	// The reader still works after a canceled Next.
	appendAll(t, log, id, 1, []string{"b"})
	if ev, err := r.Next(ctx); err != nil || ev != (chat.TokenEvent{Seq: 2, Delta: "b"}) {
		t.Fatalf("Next after cancellation = %+v, %v; want seq 2 %q", ev, err, "b")
	}
}

func testCloseIdempotent(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	id := answerID(t)
	writeAll(t, log, id, []string{"a"}, false)
	r, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	if _, err := r.Next(ctx); err != nil {
		t.Fatalf("Next: %v", err)
	}
	for i := range 3 {
		if err := r.Close(); err != nil {
			t.Errorf("Close #%d: %v", i+1, err)
		}
	}
	// Closing a reader affects neither the writer nor other readers.
	other, err := log.Read(ctx, id, 0)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	defer other.Close()
	appendAll(t, log, id, 1, []string{"b"})
	if _, err := log.Finish(ctx, id); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	evs, _ := readAll(t, ctx, other)
	checkEvents(t, []string{"a", "b"}, 0, evs, true)
}

func testAnswersIndependent(t *testing.T, log chat.TokenLog) {
	ctx := testContext(t)
	a, b := answerID(t), answerID(t)
	da, db := deltas(8, 50), deltas(9, 30)
	for _, id := range []string{a, b} {
		if err := log.Open(ctx, id); err != nil {
			t.Fatalf("Open: %v", err)
		}
	}
	for i := range max(len(da), len(db)) {
		if i < len(da) {
			appendAll(t, log, a, i, da[i:i+1])
		}
		if i < len(db) {
			appendAll(t, log, b, i, db[i:i+1])
		}
	}
	if _, err := log.Finish(ctx, b); err != nil {
		t.Fatalf("Finish(b): %v", err)
	}
	rb, err := log.Read(ctx, b, 0)
	if err != nil {
		t.Fatalf("Read(b): %v", err)
	}
	defer rb.Close()
	evs, _ := readAll(t, ctx, rb)
	checkEvents(t, db, 0, evs, true)

	// a is still open: its reader gets its text, then waits.
	ra, err := log.Read(ctx, a, 0)
	if err != nil {
		t.Fatalf("Read(a): %v", err)
	}
	defer ra.Close()
	var got []chat.TokenEvent
	for prev := 0; prev < len(da); {
		ev, err := ra.Next(ctx)
		if err != nil {
			t.Fatalf("Next(a): %v", err)
		}
		got = append(got, ev)
		prev = ev.Seq
	}
	checkEvents(t, da, 0, got, false)
}
