package chat

import (
	"context"
	"errors"
)

// TokenLog keeps the events of every answer being generated, numbered from
// 1, while it streams and for a retention period after it ends, so that any
// number of subscribers can read it from any position: the replay of what
// they missed, then the live tail, with no gap and no duplicate.
//
// One generation writes an answer's log (Open, Append…, Finish); any
// number of readers read it. The in-process implementation is
// internal/stream.Memory; the Redis one shares logs between instances.
// streamtest.Run is the conformance suite every implementation passes.
// Implementations are safe for concurrent use.
type TokenLog interface {
	// Open creates the empty log of an answer. Opening a log that exists
	// is an error.
	Open(ctx context.Context, answerID string) error
	// Append adds a non-empty delta to an open log and returns its seq.
	// Appending to a missing or finished log returns ErrLogClosed. An
	// implementation may bound a log's size: an Append beyond it returns
	// ErrLogFull and the log stays open for Finish.
	Append(ctx context.Context, answerID, delta string) (seq int, err error)
	// Finish ends the log with its terminal event (Done, empty Delta) and
	// returns that event's seq; the log is kept for the retention period,
	// then dropped. Finishing a missing or finished log returns
	// ErrLogClosed.
	Finish(ctx context.Context, answerID string) (seq int, err error)
	// Read returns a reader of the events after seq `after` (0 for all; a
	// negative after reads from the start). A reader at or past the
	// terminal event gets io.EOF at once; on an unfinished log, a reader
	// past its end waits for the events after `after`. Read returns
	// ErrLogNotFound when the answer has no log (never opened here, or
	// dropped after its retention).
	Read(ctx context.Context, answerID string, after int) (TokenReader, error)
}

// TokenReader reads one answer's log from a position. It is used by one
// goroutine. A reader never slows the writer or other readers.
type TokenReader interface {
	// Next waits for the events after the reader's position and returns
	// them. A reader that has fallen behind gets consecutive deltas merged
	// into one event whose Seq is the last merged, so the text stays
	// exact; the terminal event is never merged with deltas. After the
	// terminal event Next returns io.EOF. It returns ctx's error when ctx
	// ends first, and an error wrapping ErrLogNotFound when an unfinished
	// log is dropped (its writer gone).
	Next(ctx context.Context) (TokenEvent, error)
	// Close releases the reader. It is safe to call more than once.
	Close() error
}

// TokenEvent is one event of an answer's log.
type TokenEvent struct {
	// Seq numbers events from 1; a merged event has the seq of the last
	// event it holds.
	Seq int
	// Delta is the text the event adds to the answer (empty when Done).
	Delta string
	// Done marks the terminal event: the answer has ended and its final
	// state is saved in the store.
	Done bool
}

// Errors of a TokenLog.
var (
	ErrLogNotFound = errors.New("token log not found")
	ErrLogClosed   = errors.New("token log is finished or missing")
	ErrLogExists   = errors.New("token log already exists")
	ErrLogFull     = errors.New("token log is full")
)
