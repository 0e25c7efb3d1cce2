package stream

import (
	"context"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkFanOut100 measures one writer appending small deltas to one
// answer that 100 readers read to the end. One op is one delta, delivered
// to all 100 readers. It reports:
//
//   - events/s: events returned by Next, all readers together;
//   - deltas/s: deltas delivered, all readers together (a merged event
//     delivers several).
//
// Sub-benchmarks: "burst" (the writer appends as fast as it can and lagging
// readers get merged events), "unmerged" (the same with MaxMerge 1, so
// every Next returns one delta: the raw delivery rate) and "live" (the
// writer yields after every delta, so readers are woken for every event).
func BenchmarkFanOut100(b *testing.B) {
	for _, bc := range []struct {
		name     string
		maxMerge int
		yield    bool
	}{
		{"burst", 0, false},
		{"unmerged", 1, false},
		{"live", 0, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			benchFanOut(b, 100, bc.maxMerge, bc.yield)
		})
	}
}

func benchFanOut(b *testing.B, readers, maxMerge int, yield bool) {
	ctx := context.Background()
	m := NewMemory(MemoryOptions{MaxMerge: maxMerge, MaxLogBytes: math.MaxInt})
	defer m.Close()
	if err := m.Open(ctx, "a"); err != nil {
		b.Fatal(err)
	}
	const delta = "tok "
	var events, bytes atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		r, err := m.Read(ctx, "a", 0)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer r.Close()
			var n, size int64
			for {
				ev, err := r.Next(ctx)
				if err == io.EOF {
					break
				}
				if err != nil {
					b.Error(err)
					return
				}
				if !ev.Done {
					n++
				}
				size += int64(len(ev.Delta))
			}
			events.Add(n)
			bytes.Add(size)
		})
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := m.Append(ctx, "a", delta); err != nil {
			b.Fatal(err)
		}
		if yield {
			runtime.Gosched()
		}
	}
	if _, err := m.Finish(ctx, "a"); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	b.StopTimer()
	if want := int64(readers * b.N * len(delta)); bytes.Load() != want {
		b.Fatalf("readers got %d bytes, want %d", bytes.Load(), want)
	}
	b.ReportMetric(float64(events.Load())/elapsed, "events/s")
	b.ReportMetric(float64(readers*b.N)/elapsed, "deltas/s")
}

// BenchmarkAppend measures the writer's cost per delta, with no reader and
// with 100 readers waiting for every event.
func BenchmarkAppend(b *testing.B) {
	b.Run("NoReaders", func(b *testing.B) {
		// Answers of 1000 deltas, as a long answer has: the cost includes
		// the Open and Finish of each.
		ctx := context.Background()
		m := NewMemory(MemoryOptions{})
		defer m.Close()
		const perAnswer = 1000
		var id string
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%perAnswer == 0 {
				if i > 0 {
					if _, err := m.Finish(ctx, id); err != nil {
						b.Fatal(err)
					}
				}
				id = fmt.Sprint("a", i)
				if err := m.Open(ctx, id); err != nil {
					b.Fatal(err)
				}
			}
			i++
			if _, err := m.Append(ctx, id, "tok "); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("WaitingReaders100", func(b *testing.B) {
		benchFanOutAppendOnly(b, 100)
	})
}

// benchFanOutAppendOnly times Append alone while readers are waiting: the
// readers read in between, outside the timer.
func benchFanOutAppendOnly(b *testing.B, readers int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMemory(MemoryOptions{MaxLogBytes: math.MaxInt})
	defer m.Close()
	if err := m.Open(ctx, "a"); err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var caughtUp sync.WaitGroup
	for range readers {
		r, err := m.Read(ctx, "a", 0)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer r.Close()
			for {
				if _, err := r.Next(ctx); err != nil {
					return
				}
				caughtUp.Done()
			}
		})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		caughtUp.Add(readers)
		if _, err := m.Append(ctx, "a", "tok "); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		caughtUp.Wait()
		b.StartTimer()
	}
}

// BenchmarkIdleReaders measures the memory of readers waiting in Next on
// an answer with nothing new: 10 000 readers, each in its own goroutine
// (the caller's goroutine, as a subscription has). It reports heap-B/reader
// (the reader and its wait) and B/reader (the same plus the goroutine's
// stack).
func BenchmarkIdleReaders(b *testing.B) {
	const readers = 10000
	for range b.N {
		heap, total := idleReaders(b, readers)
		b.ReportMetric(heap, "heap-B/reader")
		b.ReportMetric(total, "B/reader")
	}
}

func idleReaders(b *testing.B, readers int) (heapPerReader, totalPerReader float64) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m := NewMemory(MemoryOptions{})
	defer m.Close()
	id := fmt.Sprint("idle-", time.Now().UnixNano())
	if err := m.Open(ctx, id); err != nil {
		b.Fatal(err)
	}
	if _, err := m.Append(ctx, id, "x"); err != nil {
		b.Fatal(err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	var started, wg sync.WaitGroup
	started.Add(readers)
	for range readers {
		wg.Go(func() {
			r, err := m.Read(ctx, id, 1)
			if err != nil {
				b.Error(err)
				started.Done()
				return
			}
			defer r.Close()
			started.Done()
			if _, err := r.Next(ctx); err != context.Canceled {
				b.Errorf("Next = %v, want context.Canceled", err)
			}
		})
	}
	started.Wait()
	// Let every goroutine reach its wait in Next.
	for i := 0; i < 100 && waiting() < readers; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	cancel()
	wg.Wait()

	heap := float64(after.HeapInuse) - float64(before.HeapInuse)
	stack := float64(after.StackInuse) - float64(before.StackInuse)
	return heap / float64(readers), (heap + stack) / float64(readers)
}

// waiting returns how many goroutines are inside a reader's Next (with
// nothing to read, they are waiting or about to).
func waiting() int {
	buf := make([]byte, 64<<20)
	n := runtime.Stack(buf, true)
	return strings.Count(string(buf[:n]), "stream.(*memReader).Next(")
}
