// Package stream provides token logs with replay: implementations of
// chat.TokenLog, which keep the events of every answer being generated so
// that any number of subscribers can read an answer from any position, the
// replay of what they missed and then the live tail.
//
// Memory is the in-process implementation, for a single gateway instance.
// Every implementation passes the conformance suite in
// internal/stream/streamtest.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"askgate/internal/chat"
)

// Defaults of MemoryOptions.
const (
	DefaultRetention   = 10 * time.Minute
	DefaultMaxIdle     = time.Hour
	DefaultMaxMerge    = 16 << 10
	DefaultMaxLogBytes = 4 << 20
)

// eventOverhead is what one event costs a log beyond the bytes of its delta
// (the string header kept for it), counted against MaxLogBytes.
const eventOverhead = 16

// Errors of Memory, beyond those of chat.TokenLog.
var (
	// ErrLogDropped is returned by a reader's Next when the log it reads
	// was dropped before it finished because its writer stayed idle for
	// longer than MaxIdle (the generation presumably crashed). The reader
	// gets every event appended before the drop first. It wraps
	// chat.ErrLogNotFound, so errors.Is(err, chat.ErrLogNotFound) holds.
	ErrLogDropped = fmt.Errorf("stream: token log dropped while unfinished: %w", chat.ErrLogNotFound)

	// ErrLogFull is returned by Append when the delta would take the log
	// over MaxLogBytes. The delta is not added; the log stays open, so the
	// writer can still Finish it (the complete answer is in the store).
	ErrLogFull = chat.ErrLogFull

	// ErrReaderClosed is returned by Next on a reader that was closed.
	ErrReaderClosed = errors.New("stream: token reader is closed")
)

var errEmptyDelta = errors.New("stream: empty delta")

// MemoryOptions configures a Memory. The zero value of every field selects
// its default.
type MemoryOptions struct {
	// Retention is how long a finished log stays readable (default
	// DefaultRetention). Readers opened before it is dropped keep
	// working until they reach the end.
	Retention time.Duration

	// MaxIdle is how long an unfinished log may go without an Append
	// before it is dropped as abandoned (default DefaultMaxIdle). Its
	// readers then get ErrLogDropped once they have read what it holds,
	// and its writer gets chat.ErrLogClosed. Idleness is measured by the
	// janitor, so a log is dropped between MaxIdle and MaxIdle plus the
	// janitor's period after its last Append.
	MaxIdle time.Duration

	// MaxMerge bounds, in bytes of text, the event a lagging reader gets
	// when consecutive deltas are merged (default DefaultMaxMerge). A
	// single delta larger than MaxMerge is returned alone.
	MaxMerge int

	// MaxLogBytes bounds the memory of one log: the bytes of its deltas
	// plus 16 bytes per event (default DefaultMaxLogBytes). An Append
	// that would exceed it returns ErrLogFull.
	MaxLogBytes int

	// Now returns the current time (default time.Now). Tests set it to
	// control expiry.
	Now func() time.Time
}

// Memory is the in-process chat.TokenLog. Logs live in memory: a finished
// log is dropped after its retention, an abandoned one after MaxIdle.
// A background janitor drops expired logs every quarter of the shorter of
// the two (at least every 10ms, at most every minute); a finished log is
// also dropped exactly on time when it is accessed after its retention.
//
// Appends never wait for readers. Readers pull: Next returns at once when
// the log holds events after the reader's position and otherwise waits on a
// broadcast that the next Append or Finish sends, so a waiting reader costs
// no goroutine beyond its caller's.
//
// A Memory must be created with NewMemory (the zero value is not usable)
// and closed with Close. It is safe for concurrent use.
type Memory struct {
	opts MemoryOptions

	mu   sync.RWMutex
	logs map[string]*answerLog

	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

var _ chat.TokenLog = (*Memory)(nil)

// NewMemory returns a Memory configured by opts and starts its janitor, the
// goroutine that drops expired logs; Close stops it.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = DefaultMaxIdle
	}
	if opts.MaxMerge <= 0 {
		opts.MaxMerge = DefaultMaxMerge
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = DefaultMaxLogBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	m := &Memory{
		opts:    opts,
		logs:    make(map[string]*answerLog),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go m.janitor(sweepInterval(opts))
	return m
}

// sweepInterval is the janitor's period: a quarter of the shortest
// lifetime, between 10ms and a minute. An expired log lingers in memory
// at most that long past its lifetime.
func sweepInterval(opts MemoryOptions) time.Duration {
	d := min(opts.Retention, opts.MaxIdle) / 4
	return min(max(d, 10*time.Millisecond), time.Minute)
}

// Close stops the janitor and waits for it to return. Logs stay readable
// and writable, but from then on only a finished log accessed after its
// retention is dropped: abandoned logs are not. Close is safe to call more
// than once and always returns nil.
func (m *Memory) Close() error {
	m.closeOnce.Do(func() {
		close(m.stop)
		<-m.stopped
	})
	return nil
}

func (m *Memory) janitor(every time.Duration) {
	defer close(m.stopped)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
			m.sweep()
		}
	}
}

// sweep notes which logs were appended to since the last sweep and drops
// every expired log.
func (m *Memory) sweep() {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, l := range m.logs {
		l.mu.Lock()
		if n := len(l.deltas); n != l.swept {
			l.swept = n
			l.active = now
		}
		if !l.done && !l.dropped && now.Sub(l.active) >= m.opts.MaxIdle {
			l.dropped = true
			l.broadcastLocked()
		}
		expired := l.expiredLocked(now, &m.opts)
		l.mu.Unlock()
		if expired {
			delete(m.logs, id)
		}
	}
}

// Open creates the empty log of answerID. It returns chat.ErrLogExists
// when the answer has a log, finished or not, that has not been dropped.
// ctx is unused: Memory never blocks.
func (m *Memory) Open(ctx context.Context, answerID string) error {
	now := m.opts.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if l := m.logs[answerID]; l != nil {
		l.mu.RLock()
		expired := l.expiredLocked(now, &m.opts)
		l.mu.RUnlock()
		if !expired {
			return chat.ErrLogExists
		}
	}
	m.logs[answerID] = &answerLog{
		active: now,
		wake:   make(chan struct{}),
	}
	return nil
}

// Append adds delta to the open log of answerID and returns its seq. It
// returns chat.ErrLogClosed when the log is missing, finished or was
// dropped, ErrLogFull when the log would exceed MaxLogBytes, and an error
// for an empty delta. It never waits for readers.
func (m *Memory) Append(ctx context.Context, answerID, delta string) (int, error) {
	if delta == "" {
		return 0, errEmptyDelta
	}
	l := m.get(answerID)
	if l == nil {
		return 0, chat.ErrLogClosed
	}
	l.mu.Lock()
	if l.done || l.dropped {
		l.mu.Unlock()
		return 0, chat.ErrLogClosed
	}
	if l.size+len(delta)+eventOverhead > m.opts.MaxLogBytes {
		l.mu.Unlock()
		return 0, ErrLogFull
	}
	l.deltas = append(l.deltas, delta)
	l.size += len(delta) + eventOverhead
	seq := len(l.deltas)
	l.broadcastLocked()
	l.mu.Unlock()
	return seq, nil
}

// Finish ends the log of answerID with its terminal event and returns that
// event's seq. The log stays readable for Retention. It returns
// chat.ErrLogClosed when the log is missing, finished or was dropped.
func (m *Memory) Finish(ctx context.Context, answerID string) (int, error) {
	l := m.get(answerID)
	if l == nil {
		return 0, chat.ErrLogClosed
	}
	now := m.opts.Now()
	l.mu.Lock()
	if l.done || l.dropped {
		l.mu.Unlock()
		return 0, chat.ErrLogClosed
	}
	l.done = true
	l.finishedAt = now
	seq := len(l.deltas) + 1
	l.broadcastLocked()
	l.mu.Unlock()
	return seq, nil
}

// Read returns a reader of the events of answerID after seq after; a
// negative after reads from the start. It returns chat.ErrLogNotFound when
// the answer has no log or its log has expired. A reader whose position is
// at or past the terminal event gets io.EOF at once; a reader of an
// unfinished log positioned past its end waits for events beyond after.
func (m *Memory) Read(ctx context.Context, answerID string, after int) (chat.TokenReader, error) {
	l := m.get(answerID)
	if l == nil {
		return nil, chat.ErrLogNotFound
	}
	l.mu.RLock()
	expired := l.expiredLocked(m.opts.Now(), &m.opts)
	l.mu.RUnlock()
	if expired {
		m.mu.Lock()
		if m.logs[answerID] == l {
			delete(m.logs, answerID)
		}
		m.mu.Unlock()
		return nil, chat.ErrLogNotFound
	}
	return &memReader{log: l, pos: max(after, 0), maxMerge: m.opts.MaxMerge}, nil
}

// get returns the log of answerID, or nil.
func (m *Memory) get(answerID string) *answerLog {
	m.mu.RLock()
	l := m.logs[answerID]
	m.mu.RUnlock()
	return l
}

// answerLog is the log of one answer.
type answerLog struct {
	mu         sync.RWMutex
	deltas     []string // deltas[i] has seq i+1; elements never change once appended
	size       int      // bytes counted against MaxLogBytes
	done       bool     // finished: the terminal event has seq len(deltas)+1
	dropped    bool     // abandoned before it finished
	finishedAt time.Time
	active     time.Time // when it was opened, or last seen growing by a sweep
	swept      int       // len(deltas) at the last sweep

	// wake is closed, and replaced, by the first Append, Finish or drop
	// after a reader found nothing to read and set waiters.
	wake    chan struct{}
	waiters atomic.Bool
}

// expiredLocked reports whether l is to be removed at now: it was dropped,
// or finished longer than the retention ago. l.mu is held, for reading at
// least.
func (l *answerLog) expiredLocked(now time.Time, opts *MemoryOptions) bool {
	return l.dropped || l.done && now.Sub(l.finishedAt) >= opts.Retention
}

// broadcastLocked wakes the waiting readers, if any. l.mu is held for
// writing.
func (l *answerLog) broadcastLocked() {
	if l.waiters.Load() {
		l.waiters.Store(false)
		close(l.wake)
		l.wake = make(chan struct{})
	}
}

// memReader reads an answerLog. It holds the log itself, so it keeps
// working after the log is dropped from the Memory.
type memReader struct {
	log      *answerLog
	pos      int // seq of the last event returned
	maxMerge int
	closed   bool
}

// Next implements chat.TokenReader.
func (r *memReader) Next(ctx context.Context) (chat.TokenEvent, error) {
	if r.closed {
		return chat.TokenEvent{}, ErrReaderClosed
	}
	if err := ctx.Err(); err != nil {
		return chat.TokenEvent{}, err
	}
	l := r.log
	for {
		l.mu.RLock()
		pending := l.deltas[min(r.pos, len(l.deltas)):]
		done, dropped := l.done, l.dropped
		doneSeq := len(l.deltas) + 1
		var wake chan struct{}
		if len(pending) == 0 && !done && !dropped {
			if !l.waiters.Load() {
				l.waiters.Store(true)
			}
			wake = l.wake
		}
		l.mu.RUnlock()

		switch {
		case len(pending) > 0:
			// The elements of pending never change: read them unlocked.
			return r.merge(pending), nil
		case done && r.pos < doneSeq:
			r.pos = doneSeq
			return chat.TokenEvent{Seq: doneSeq, Done: true}, nil
		case done:
			return chat.TokenEvent{}, io.EOF
		case dropped:
			return chat.TokenEvent{}, ErrLogDropped
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return chat.TokenEvent{}, ctx.Err()
		}
	}
}

// merge returns the event of the deltas at the head of pending, merged up
// to maxMerge bytes, and advances the reader past them.
func (r *memReader) merge(pending []string) chat.TokenEvent {
	n, size := 1, len(pending[0])
	for n < len(pending) && size+len(pending[n]) <= r.maxMerge {
		size += len(pending[n])
		n++
	}
	r.pos += n
	if n == 1 {
		return chat.TokenEvent{Seq: r.pos, Delta: pending[0]}
	}
	var b strings.Builder
	b.Grow(size)
	for _, d := range pending[:n] {
		b.WriteString(d)
	}
	return chat.TokenEvent{Seq: r.pos, Delta: b.String()}
}

// Close implements chat.TokenReader.
func (r *memReader) Close() error {
	r.closed = true
	return nil
}
