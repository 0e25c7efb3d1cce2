package stream

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/chat"
)

// BenchmarkRedisFanOut100 measures one writer appending small deltas to
// one answer in Redis that 100 readers of one instance read live to the
// end, through one hub. One op is one delta, delivered to all 100
// readers. It reports events/s (events returned by Next, all readers
// together), deltas/s (deltas delivered, all readers together) and
// appends/s (the writer's rate, one round trip each).
//
// Sub-benchmarks: "burst" (lagging readers get merged events) and
// "unmerged" (MaxMerge 1: every Next returns one delta, the raw delivery
// rate).
func BenchmarkRedisFanOut100(b *testing.B) {
	for _, bc := range []struct {
		name     string
		maxMerge int
	}{
		{"burst", 0},
		{"unmerged", 1},
	} {
		b.Run(bc.name, func(b *testing.B) {
			client := redisTestClient(b, redis.Options{})
			r := newTestRedis(b, client, RedisOptions{MaxMerge: bc.maxMerge, MaxLogBytes: math.MaxInt, MaxLen: math.MaxInt})
			benchLogFanOut(b, r, 100)
		})
	}
}

// benchLogFanOut is benchFanOut for any chat.TokenLog.
func benchLogFanOut(b *testing.B, log chat.TokenLog, readers int) {
	ctx := context.Background()
	id := fmt.Sprint("fanout-", time.Now().UnixNano())
	if err := log.Open(ctx, id); err != nil {
		b.Fatal(err)
	}
	const delta = "tok "
	var events, bytes atomic.Int64
	var wg sync.WaitGroup
	for range readers {
		r, err := log.Read(ctx, id, 0)
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
		if _, err := log.Append(ctx, id, delta); err != nil {
			b.Fatal(err)
		}
	}
	appended := time.Since(start).Seconds()
	if _, err := log.Finish(ctx, id); err != nil {
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
	b.ReportMetric(float64(b.N)/appended, "appends/s")
}

// BenchmarkAppendToRead measures the latency of one event, from the call
// of Append to its arrival at the readers waiting live, through Memory
// and through Redis, with 1 and with 100 readers of one answer. Each op
// appends one delta and waits until every reader has it, so every event
// is read alone. It reports p50-µs and p99-µs (until the last reader has
// the event) and append-p50-µs (Append alone).
func BenchmarkAppendToRead(b *testing.B) {
	for _, readers := range []int{1, 100} {
		b.Run(fmt.Sprintf("Memory/readers=%d", readers), func(b *testing.B) {
			m := NewMemory(MemoryOptions{MaxLogBytes: math.MaxInt})
			defer m.Close()
			benchLatency(b, m, readers)
		})
		b.Run(fmt.Sprintf("Redis/readers=%d", readers), func(b *testing.B) {
			client := redisTestClient(b, redis.Options{})
			r := newTestRedis(b, client, RedisOptions{MaxLogBytes: math.MaxInt, MaxLen: math.MaxInt})
			benchLatency(b, r, readers)
		})
	}
}

func benchLatency(b *testing.B, log chat.TokenLog, readers int) {
	ctx := context.Background()
	id := fmt.Sprint("latency-", time.Now().UnixNano())
	if err := log.Open(ctx, id); err != nil {
		b.Fatal(err)
	}
	got := make(chan time.Time, readers)
	var wg sync.WaitGroup
	for range readers {
		r, err := log.Read(ctx, id, 0)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			defer r.Close()
			for {
				ev, err := r.Next(ctx)
				if err == io.EOF {
					return
				}
				if err != nil {
					b.Error(err)
					return
				}
				if !ev.Done {
					got <- time.Now()
				}
			}
		})
	}
	lat := make([]time.Duration, 0, b.N)
	appendLat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := log.Append(ctx, id, "tok "); err != nil {
			b.Fatal(err)
		}
		appendLat = append(appendLat, time.Since(start))
		var last time.Time
		for range readers {
			if t := <-got; t.After(last) {
				last = t
			}
		}
		lat = append(lat, last.Sub(start))
	}
	b.StopTimer()
	if _, err := log.Finish(ctx, id); err != nil {
		b.Fatal(err)
	}
	wg.Wait()
	slices.Sort(lat)
	slices.Sort(appendLat)
	pct := func(ds []time.Duration, p float64) float64 {
		return float64(ds[min(len(ds)-1, int(p*float64(len(ds))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(pct(lat, 0.50), "p50-µs")
	b.ReportMetric(pct(lat, 0.99), "p99-µs")
	b.ReportMetric(pct(appendLat, 0.50), "append-p50-µs")
}
