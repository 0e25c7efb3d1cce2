package stream

import (
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"askgate/internal/chat"
	"askgate/internal/stream/streamtest"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestMemoryConformance(t *testing.T) {
	streamtest.Run(t, func(t *testing.T) chat.TokenLog {
		m := NewMemory(MemoryOptions{})
		t.Cleanup(func() { m.Close() })
		return m
	})
}

// clock is a settable time source for MemoryOptions.Now.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// newTestMemory returns a Memory whose janitor never runs during the test
// (its lifetimes are hours of real time) and whose clock the test sets.
func newTestMemory(t *testing.T, opts MemoryOptions) (*Memory, *clock) {
	t.Helper()
	c := newClock()
	opts.Now = c.Now
	m := NewMemory(opts)
	t.Cleanup(func() { m.Close() })
	return m, c
}

func (m *Memory) len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.logs)
}

func mustOpen(t *testing.T, m *Memory, id string, ds ...string) {
	t.Helper()
	ctx := context.Background()
	if err := m.Open(ctx, id); err != nil {
		t.Fatalf("Open(%q): %v", id, err)
	}
	for _, d := range ds {
		if _, err := m.Append(ctx, id, d); err != nil {
			t.Fatalf("Append(%q, %q): %v", id, d, err)
		}
	}
}

func TestMemoryRetention(t *testing.T) {
	ctx := context.Background()
	m, c := newTestMemory(t, MemoryOptions{Retention: time.Hour, MaxIdle: 100 * time.Hour})
	mustOpen(t, m, "a", "x", "y")
	if _, err := m.Finish(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	open, err := m.Read(ctx, "a", 0) // opened within retention
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()

	c.Advance(time.Hour - time.Second)
	r, err := m.Read(ctx, "a", 0)
	if err != nil {
		t.Fatalf("Read just before the end of retention: %v", err)
	}
	r.Close()

	c.Advance(time.Second)
	if _, err := m.Read(ctx, "a", 0); !errors.Is(err, chat.ErrLogNotFound) {
		t.Fatalf("Read after retention = %v, want ErrLogNotFound", err)
	}
	if n := m.len(); n != 0 {
		t.Errorf("%d logs kept after retention, want 0", n)
	}
	// A reader opened before keeps working until EOF.
	var text strings.Builder
	for {
		ev, err := open.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next of a reader opened before expiry: %v", err)
		}
		text.WriteString(ev.Delta)
	}
	if text.String() != "xy" {
		t.Errorf("text = %q, want %q", text.String(), "xy")
	}
	// The id can be opened again.
	if err := m.Open(ctx, "a"); err != nil {
		t.Fatalf("Open after expiry: %v", err)
	}
}

func TestMemorySweep(t *testing.T) {
	ctx := context.Background()
	m, c := newTestMemory(t, MemoryOptions{Retention: time.Minute, MaxIdle: time.Hour})
	mustOpen(t, m, "finished", "x")
	if _, err := m.Finish(ctx, "finished"); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, m, "streaming", "x")
	c.Advance(2 * time.Minute)
	m.sweep()
	if _, err := m.Read(ctx, "streaming", 0); err != nil {
		t.Errorf("Read of a log still streaming: %v", err)
	}
	if n := m.len(); n != 1 {
		t.Errorf("%d logs after sweep, want 1", n)
	}
}

func TestMemoryIdleDrop(t *testing.T) {
	ctx := context.Background()
	m, c := newTestMemory(t, MemoryOptions{MaxIdle: time.Hour})
	mustOpen(t, m, "a", "x")
	r, err := m.Read(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()

	c.Advance(59 * time.Minute)
	if _, err := m.Append(ctx, "a", "y"); err != nil {
		t.Fatalf("Append within MaxIdle: %v", err)
	}
	c.Advance(59 * time.Minute) // idle time counts from the last Append
	m.sweep()
	if _, err := m.Read(ctx, "a", 0); err != nil {
		t.Fatalf("Read within MaxIdle of the last Append: %v", err)
	}

	// A reader waiting when the log is dropped wakes up with ErrLogDropped,
	// after the events the log holds.
	waiting, err := m.Read(ctx, "a", 2)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	woke := make(chan error, 1)
	go func() {
		_, err := waiting.Next(ctx)
		woke <- err
	}()
	c.Advance(time.Hour)
	m.sweep()
	select {
	case err := <-woke:
		if !errors.Is(err, ErrLogDropped) || !errors.Is(err, chat.ErrLogNotFound) {
			t.Errorf("waiting reader woke with %v, want ErrLogDropped wrapping ErrLogNotFound", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a reader waiting on a dropped log did not wake")
	}
	var text strings.Builder
	for {
		ev, err := r.Next(ctx)
		if errors.Is(err, ErrLogDropped) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		text.WriteString(ev.Delta)
	}
	if text.String() != "xy" {
		t.Errorf("text before ErrLogDropped = %q, want %q", text.String(), "xy")
	}

	if _, err := m.Append(ctx, "a", "z"); !errors.Is(err, chat.ErrLogClosed) {
		t.Errorf("Append to a dropped log = %v, want ErrLogClosed", err)
	}
	if _, err := m.Finish(ctx, "a"); !errors.Is(err, chat.ErrLogClosed) {
		t.Errorf("Finish of a dropped log = %v, want ErrLogClosed", err)
	}
	if _, err := m.Read(ctx, "a", 0); !errors.Is(err, chat.ErrLogNotFound) {
		t.Errorf("Read of a dropped log = %v, want ErrLogNotFound", err)
	}
}

func TestMemoryIdleNeedsNoAppendBetweenSweeps(t *testing.T) {
	// A writer that appends between every two sweeps is never idle, however
	// long its answer takes.
	ctx := context.Background()
	m, c := newTestMemory(t, MemoryOptions{MaxIdle: time.Hour})
	mustOpen(t, m, "a")
	for i := range 5 {
		if _, err := m.Append(ctx, "a", "x"); err != nil {
			t.Fatalf("Append after %d hours: %v", i, err)
		}
		c.Advance(50 * time.Minute)
		m.sweep()
	}
	if _, err := m.Finish(ctx, "a"); err != nil {
		t.Fatalf("Finish: %v", err)
	}
}

func TestMemoryJanitor(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(MemoryOptions{Retention: 20 * time.Millisecond, MaxIdle: 40 * time.Millisecond})
	defer m.Close()
	mustOpen(t, m, "finished", "x")
	if _, err := m.Finish(ctx, "finished"); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, m, "abandoned", "x")
	r, err := m.Read(ctx, "abandoned", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := r.Next(ctx); !errors.Is(err, ErrLogDropped) {
		t.Fatalf("Next on an abandoned log = %v, want ErrLogDropped", err)
	}
	for m.len() > 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	if n := m.len(); n != 0 {
		t.Fatalf("janitor left %d logs", n)
	}
}

func TestMemoryCloseStopsJanitor(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	m := NewMemory(MemoryOptions{})
	mustOpen(t, m, "a", "x")
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The logs outlive Close.
	if _, err := m.Append(context.Background(), "a", "y"); err != nil {
		t.Fatalf("Append after Close: %v", err)
	}
}

func TestMemoryMaxLogBytes(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(t, MemoryOptions{MaxLogBytes: 10 * (4 + eventOverhead)})
	mustOpen(t, m, "a")
	for i := 1; i <= 10; i++ {
		if seq, err := m.Append(ctx, "a", "abcd"); err != nil || seq != i {
			t.Fatalf("Append #%d = %d, %v", i, seq, err)
		}
	}
	if _, err := m.Append(ctx, "a", "e"); !errors.Is(err, ErrLogFull) {
		t.Fatalf("Append over MaxLogBytes = %v, want ErrLogFull", err)
	}
	// The log is intact and can be finished.
	if seq, err := m.Finish(ctx, "a"); err != nil || seq != 11 {
		t.Fatalf("Finish of a full log = %d, %v; want 11, nil", seq, err)
	}
	r, err := m.Read(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ev, err := r.Next(ctx)
	if err != nil || ev != (chat.TokenEvent{Seq: 10, Delta: strings.Repeat("abcd", 10)}) {
		t.Fatalf("Next = %+v, %v", ev, err)
	}
}

func TestMemoryMaxMerge(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(t, MemoryOptions{MaxMerge: 10})
	big := strings.Repeat("B", 25)
	mustOpen(t, m, "a", "aaaa", "bbbb", "cc", "dddd", big, "e", "f")
	if _, err := m.Finish(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	r, err := m.Read(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := []chat.TokenEvent{
		{Seq: 3, Delta: "aaaabbbbcc"}, // exactly MaxMerge
		{Seq: 4, Delta: "dddd"},       // the next delta would exceed it
		{Seq: 5, Delta: big},          // larger than MaxMerge: alone
		{Seq: 7, Delta: "ef"},
		{Seq: 8, Done: true}, // never merged with deltas
	}
	for i, w := range want {
		got, err := r.Next(ctx)
		if err != nil || got != w {
			t.Fatalf("event %d = %+v, %v; want %+v", i, got, err, w)
		}
	}
	if _, err := r.Next(ctx); err != io.EOF {
		t.Fatalf("Next after Done = %v, want io.EOF", err)
	}
}

func TestMemoryEmptyDelta(t *testing.T) {
	m, _ := newTestMemory(t, MemoryOptions{})
	mustOpen(t, m, "a")
	if _, err := m.Append(context.Background(), "a", ""); err == nil {
		t.Fatal("Append of an empty delta succeeded")
	}
}

func TestMemoryReaderClosed(t *testing.T) {
	ctx := context.Background()
	m, _ := newTestMemory(t, MemoryOptions{})
	mustOpen(t, m, "a", "x")
	r, err := m.Read(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := r.Next(ctx); !errors.Is(err, ErrReaderClosed) {
		t.Fatalf("Next after Close = %v, want ErrReaderClosed", err)
	}
}
