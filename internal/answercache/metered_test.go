package answercache

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// failing is a Cache that cannot be reached.
type failing struct{}

func (failing) Get(context.Context, string) (*Entry, error) { return nil, errors.New("down") }
func (failing) Put(context.Context, string, *Entry) error   { return errors.New("down") }

// TestMetered: hits, misses, errors and stores are counted, and the
// metrics are collected under their names.
func TestMetered(t *testing.T) {
	ctx := context.Background()
	m := NewMetered(NewMemory(MemoryOptions{TTL: time.Hour}))
	if e, err := m.Get(ctx, "k"); e != nil || err != nil {
		t.Fatalf("Get of an empty cache = %v, %v", e, err)
	}
	if err := m.Put(ctx, "k", &Entry{Content: "Paris."}); err != nil {
		t.Fatal(err)
	}
	if e, err := m.Get(ctx, "k"); err != nil || e == nil || e.Content != "Paris." {
		t.Fatalf("Get after Put = %v, %v", e, err)
	}
	down := NewMetered(failing{})
	if _, err := down.Get(ctx, "k"); err == nil {
		t.Fatal("Get of a failing cache: no error")
	}
	if err := down.Put(ctx, "k", &Entry{Content: "x"}); err == nil {
		t.Fatal("Put to a failing cache: no error")
	}
	for _, tc := range []struct {
		name           string
		m              *Metered
		hit, miss, err float64
		stored, failed float64
	}{
		{"memory", m, 1, 1, 0, 1, 0},
		{"failing", down, 0, 0, 1, 0, 1},
	} {
		got := []float64{
			testutil.ToFloat64(tc.m.lookups.WithLabelValues("hit")),
			testutil.ToFloat64(tc.m.lookups.WithLabelValues("miss")),
			testutil.ToFloat64(tc.m.lookups.WithLabelValues("error")),
			testutil.ToFloat64(tc.m.stores.WithLabelValues("ok")),
			testutil.ToFloat64(tc.m.stores.WithLabelValues("error")),
		}
		want := []float64{tc.hit, tc.miss, tc.err, tc.stored, tc.failed}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: hit, miss, error, stored, failed = %v, want %v", tc.name, got, want)
				break
			}
		}
		if n := testutil.CollectAndCount(tc.m, "askgate_answer_cache_lookups_total", "askgate_answer_cache_stores_total"); n != 5 {
			t.Errorf("%s: %d series collected, want 5", tc.name, n)
		}
	}
}
