package answercache

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
)

// Metered is a Cache that counts what the Cache it wraps does, for
// /metrics: askgate_answer_cache_lookups_total{result="hit"|"miss"|"error"}
// and askgate_answer_cache_stores_total{result="ok"|"error"}. It is a
// prometheus.Collector; register it once.
type Metered struct {
	cache   Cache
	lookups *prometheus.CounterVec
	stores  *prometheus.CounterVec
}

var _ Cache = (*Metered)(nil)

// NewMetered returns c counted.
func NewMetered(c Cache) *Metered {
	m := &Metered{
		cache: c,
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "askgate_answer_cache_lookups_total",
			Help: "Lookups of first questions in the answer cache, by result: hit (answered from the cache), miss, error (the cache did not answer; counted as a miss).",
		}, []string{"result"}),
		stores: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "askgate_answer_cache_stores_total",
			Help: "Complete answers to first questions stored in the answer cache, by result: ok or error.",
		}, []string{"result"}),
	}
	// Every label exists from the start, at zero.
	for _, r := range []string{"hit", "miss", "error"} {
		m.lookups.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.stores.WithLabelValues(r)
	}
	return m
}

// Get looks key up in the wrapped cache and counts the result.
func (m *Metered) Get(ctx context.Context, key string) (*Entry, error) {
	e, err := m.cache.Get(ctx, key)
	switch {
	case err != nil:
		m.lookups.WithLabelValues("error").Inc()
	case e != nil:
		m.lookups.WithLabelValues("hit").Inc()
	default:
		m.lookups.WithLabelValues("miss").Inc()
	}
	return e, err
}

// Put stores e in the wrapped cache and counts the result.
func (m *Metered) Put(ctx context.Context, key string, e *Entry) error {
	err := m.cache.Put(ctx, key, e)
	if err != nil {
		m.stores.WithLabelValues("error").Inc()
	} else {
		m.stores.WithLabelValues("ok").Inc()
	}
	return err
}

// Describe implements prometheus.Collector.
func (m *Metered) Describe(ch chan<- *prometheus.Desc) {
	m.lookups.Describe(ch)
	m.stores.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metered) Collect(ch chan<- prometheus.Metric) {
	m.lookups.Collect(ch)
	m.stores.Collect(ch)
}
