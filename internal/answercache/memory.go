package answercache

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// DefaultMaxBytes bounds a Memory cache when MemoryOptions.MaxBytes is zero.
const DefaultMaxBytes = 16 << 20

// MemoryOptions configure a Memory cache.
type MemoryOptions struct {
	// TTL is how long an entry is served after it was stored. Required
	// (positive).
	TTL time.Duration
	// MaxBytes bounds the memory of the entries (their text, roughly);
	// the least recently used go first. Zero means DefaultMaxBytes.
	MaxBytes int
}

// Memory is an in-process Cache: a least-recently-used list bounded in
// bytes, whose entries expire after the TTL. It starts no goroutine:
// expired entries are dropped when met, or pushed out by newer ones. It is
// safe for concurrent use.
type Memory struct {
	ttl      time.Duration
	maxBytes int
	now      func() time.Time

	mu    sync.Mutex
	lru   *list.List // of *memoryItem, the most recently used first
	items map[string]*list.Element
	bytes int
}

type memoryItem struct {
	key     string
	entry   Entry
	expires time.Time
	size    int
}

// NewMemory returns an empty Memory cache.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	return &Memory{ttl: opts.TTL, maxBytes: opts.MaxBytes, now: time.Now, lru: list.New(), items: map[string]*list.Element{}}
}

// Get returns a copy of the entry under key, or nil.
func (m *Memory) Get(_ context.Context, key string) (*Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, nil
	}
	it := el.Value.(*memoryItem)
	if !m.now().Before(it.expires) {
		m.remove(el)
		return nil, nil
	}
	m.lru.MoveToFront(el)
	return it.entry.clone(), nil
}

// Put stores a copy of e under key. An entry larger than the whole cache
// is not stored.
func (m *Memory) Put(_ context.Context, key string, e *Entry) error {
	it := &memoryItem{key: key, entry: *e.clone(), expires: m.now().Add(m.ttl), size: e.size(key)}
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.remove(el)
	}
	if it.size > m.maxBytes {
		return nil
	}
	for m.bytes+it.size > m.maxBytes {
		m.remove(m.lru.Back())
	}
	m.items[key] = m.lru.PushFront(it)
	m.bytes += it.size
	return nil
}

// Len returns the number of entries held, expired ones included.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lru.Len()
}

func (m *Memory) remove(el *list.Element) {
	it := m.lru.Remove(el).(*memoryItem)
	delete(m.items, it.key)
	m.bytes -= it.size
}

// clone returns a copy of e that shares nothing with it.
func (e *Entry) clone() *Entry {
	c := *e
	if e.Usage != nil {
		u := *e.Usage
		c.Usage = &u
	}
	return &c
}
