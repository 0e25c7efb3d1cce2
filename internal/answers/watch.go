package answers

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"askgate/internal/chat"
)

// Event is one step of an answer as a subscriber sees it: the schema's
// AnswerEvent.
type Event struct {
	// AnswerID is the answer's local id.
	AnswerID string
	// Seq, Delta and Done are the token log's (see chat.TokenEvent).
	Seq   int
	Delta string
	Done  bool
	// Message is the answer as saved, in the terminal event only.
	Message *chat.Message

	// rendered is what a subscriber's consumer made of the event, for
	// the others (see Rendered).
	rendered atomic.Pointer[rendering]
}

// MessageNodeID is the answer's global id.
func (e *Event) MessageNodeID() string { return chat.EncodeNodeID(chat.KindMessage, e.AnswerID) }

// waitForLog is how often Watch looks again for the log of an answer that
// is streaming but whose log is not (yet) readable here.
const waitForLog = 250 * time.Millisecond

// Watch returns the events of owner's answer id after seq `after`: the
// replay, then the live tail, then the terminal event with the saved
// answer, after which the channel is closed. An answer that has already
// ended, and whose log is gone, yields its terminal event at once. The
// channel is also closed when ctx ends, and everything behind it released.
// Another user's answer, like a missing one, gives ErrNotFound.
//
// The subscribers of a streaming answer share one reader of its log (see
// hub.go); a subscriber that lags gets the deltas it missed merged.
func (m *Manager) Watch(ctx context.Context, owner, id string, after int) (<-chan *Event, error) {
	if after < 0 {
		return nil, chat.Errorf(chat.CodeBadUserInput, "after must not be negative")
	}
	a, err := m.answer(ctx, owner, id)
	if err != nil {
		return nil, err
	}
	finished := a.Status != chat.StatusStreaming
	if !finished {
		out, ok, err := m.joinHub(ctx, owner, id, after)
		if err != nil {
			return nil, err
		}
		if ok {
			return out, nil // joinHub has claimed the relay
		}
	}
	r, err := m.opts.Log.Read(ctx, id, after)
	if err != nil && !errors.Is(err, chat.ErrLogNotFound) {
		return nil, err
	}
	// Keep the answer only while it is needed: it holds on to the block
	// of messages the store read it with.
	var pending *chat.Message
	if r == nil {
		pending = a
	}
	a = nil
	out := make(chan *Event, 1)
	go func() {
		defer close(out)
		if r == nil {
			if r = m.awaitLog(ctx, owner, pending, after, out, true); r == nil {
				return
			}
		}
		pending = nil
		m.read(ctx, owner, id, after, finished && after == 0, r, out)
	}()
	return claimRelay(ctx, out), nil
}

// follow sends the events of owner's answer id after seq after, as Watch
// does for an answer that was streaming, until the terminal event or the
// end of ctx. It does not close out.
func (m *Manager) follow(ctx context.Context, owner, id string, after int, out chan<- *Event) {
	r, err := m.opts.Log.Read(ctx, id, after)
	if err != nil {
		if !errors.Is(err, chat.ErrLogNotFound) {
			if ctx.Err() == nil {
				m.log.WarnContext(ctx, "reading an answer's token log failed", "answer_id", id, "error", err.Error())
			}
			return
		}
		a, err := m.answer(ctx, owner, id)
		if err != nil {
			return
		}
		if r = m.awaitLog(ctx, owner, a, after, out, true); r == nil {
			return
		}
	}
	m.read(ctx, owner, id, after, false, r, out)
}

// read sends the events r reads, then closes r. With onlyFinal (the answer
// had ended when the subscription began), the deltas are skipped: the
// final event holds the whole text.
func (m *Manager) read(ctx context.Context, owner, id string, after int, onlyFinal bool, r chat.TokenReader, out chan<- *Event) {
	defer r.Close()
	last := after
	for {
		ev, ended, err := m.next(ctx, owner, id, r)
		if ended != nil {
			// The answer ended without its log being finished (its
			// instance stopped between the two): end here.
			select {
			case out <- &Event{AnswerID: id, Seq: last + 1, Done: true, Message: ended}:
			case <-ctx.Done():
			}
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, io.EOF) {
				m.log.WarnContext(ctx, "reading an answer's token log failed", "answer_id", id, "error", err.Error())
			}
			// The log ended without a terminal event for this reader
			// (it was past the end, or the log was dropped): the
			// store has the answer's state.
			if a, err := m.answer(ctx, owner, id); err == nil {
				m.awaitFinal(ctx, owner, a, last, out)
			}
			return
		}
		last = ev.Seq
		if onlyFinal && !ev.Done {
			continue
		}
		e := &Event{AnswerID: id, Seq: ev.Seq, Delta: ev.Delta, Done: ev.Done}
		if ev.Done {
			// The answer has ended whatever the store says; if it cannot
			// be read (deleted meanwhile, or a store failure), the last
			// event still comes, without the message.
			if e.Message, err = m.finalAnswer(ctx, owner, id); err != nil && ctx.Err() != nil {
				return
			}
		}
		select {
		case out <- e:
		case <-ctx.Done():
			return
		}
		if ev.Done {
			return
		}
	}
}

// next reads the next event of answer id's log. When the log stays silent
// for a lease period, it looks at the stored answer: one that has ended
// although its log has not (its instance stopped between saving the end
// and finishing the log) is returned as ended, so that no subscriber
// waits for the log to expire.
func (m *Manager) next(ctx context.Context, owner, id string, r chat.TokenReader) (chat.TokenEvent, *chat.Message, error) {
	for {
		nctx, cancel := context.WithTimeout(ctx, m.opts.LeaseTTL)
		ev, err := r.Next(nctx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return ev, nil, err
		}
		if a, aerr := m.answer(ctx, owner, id); aerr == nil && a.Status != chat.StatusStreaming {
			return chat.TokenEvent{}, a, nil
		}
	}
}

// awaitFinal waits, reading the store, for an answer whose log can no
// longer tell its end, and sends its terminal event.
func (m *Manager) awaitFinal(ctx context.Context, owner string, a *chat.Message, after int, out chan<- *Event) {
	m.awaitLog(ctx, owner, a, after, out, false)
}

// awaitLog handles an answer without a readable log: one that has ended
// (its log expired) gets its terminal event from the store; one still
// streaming is looked at again until its log appears or it ends. It
// returns the log's reader once there is one, or nil when it has sent the
// terminal event or ctx has ended.
func (m *Manager) awaitLog(ctx context.Context, owner string, a *chat.Message, after int, out chan<- *Event, readLog bool) chat.TokenReader {
	t := time.NewTicker(waitForLog)
	defer t.Stop()
	for {
		if a.Status != chat.StatusStreaming {
			select {
			case out <- &Event{AnswerID: a.ID, Seq: after + 1, Done: true, Message: a}:
			case <-ctx.Done():
			}
			return nil
		}
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil
		}
		if readLog {
			r, err := m.opts.Log.Read(ctx, a.ID, after)
			if err == nil {
				return r
			}
			if !errors.Is(err, chat.ErrLogNotFound) {
				return nil
			}
		}
		var err error
		if a, err = m.answer(ctx, owner, a.ID); err != nil {
			return nil
		}
	}
}
