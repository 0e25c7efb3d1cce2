package answers

import (
	"context"
	"errors"
	"io"
	"sort"
	"strings"
	"sync"

	"askgate/internal/chat"
)

// This file fans an answer's events out to its local subscribers: one
// reader of the token log per streaming answer (a hub), started by the
// first Watch and stopped when the last subscriber leaves or the answer
// ends, rather than one reader and one goroutine per subscriber.
//
// The hub never waits for a subscriber. Each subscriber's channel is its
// mailbox (mailboxSize events); when it is full, the events that do not
// fit are kept aside, consecutive deltas merged into one (its seq the last
// merged, as the contract allows for a subscriber that lags), and a
// goroutine of the subscriber's own hands them over as room comes: only a
// lagging subscriber has a goroutine. The terminal event comes after every
// delta and is never merged or dropped.
//
// A subscriber that cannot join a hub exactly where it stands (its after
// is before the hub's start, or between two events the hub received
// merged), and every subscriber of a hub whose reading fails, reads the
// log on its own, as the hub would (see follow).

// mailboxSize is the capacity of a subscriber's channel.
const mailboxSize = 4

// A Manager keeps its running hubs by answer id (Manager.hubs, guarded by
// Manager.hubMu). Lock order: Manager.hubMu, then a hub's mu, then a
// subscriber's mu.

// hub reads one answer's log for the local subscribers.
type hub struct {
	m         *Manager
	id, owner string
	cancel    context.CancelFunc

	mu     sync.Mutex
	subs   []*sub
	closed bool // ended: nobody may join
	start  int  // the position the hub's reader started from
	last   int  // the seq of the last event delivered
	// seqs and deltas are the events delivered since start, so that a
	// subscriber from an earlier position can join with their replay.
	seqs   []int
	deltas []string
	// replay is the last replay given to a joiner, from replayFrom: the
	// next ones from there share it (and its rendering) while the hub
	// has received nothing since.
	replay     *Event
	replayFrom int
}

// sub is one subscriber of a hub: a Watch's channel.
type sub struct {
	h   *hub
	ctx context.Context
	out chan *Event
	// relay is the Relay that takes out's events, if any; the subscriber
	// signals it (see Relay.Arm).
	relay *Relay
	// stopWatch unregisters the stop function from ctx.
	stopWatch func() bool

	mu      sync.Mutex
	pos     int // the seq of the last event queued (sent or pending)
	pending pendingEvents
	running bool // a goroutine sends for the subscriber (drain)
	handed  bool // left the hub: drain reads the log itself after pending
	ended   bool // the terminal event is queued
	closed  bool // out is closed
}

// pendingEvents are a subscriber's events that did not fit its mailbox:
// at most one (possibly merged) run of deltas, then the terminal event.
type pendingEvents struct {
	one    *Event          // the run's only event, shared with the others
	merged strings.Builder // the run's text when it has more than one
	seq    int             // the run's last seq; 0 when there is no run
	done   *Event
}

// add queues e after the pending events.
func (p *pendingEvents) add(e *Event) {
	switch {
	case e.Done:
		p.done = e
	case p.seq == 0:
		p.one, p.seq = e, e.Seq
	default:
		if p.one != nil {
			p.merged.WriteString(p.one.Delta)
			p.one = nil
		}
		p.merged.WriteString(e.Delta)
		p.seq = e.Seq
	}
}

// take removes and returns the first pending event, or nil.
func (p *pendingEvents) take(answerID string) *Event {
	switch {
	case p.one != nil:
		e := p.one
		p.one, p.seq = nil, 0
		return e
	case p.seq != 0:
		e := &Event{AnswerID: answerID, Seq: p.seq, Delta: p.merged.String()}
		p.merged, p.seq = strings.Builder{}, 0
		return e
	case p.done != nil:
		e := p.done
		p.done = nil
		return e
	}
	return nil
}

// joinHub subscribes to the events of owner's streaming answer id after
// seq after through the answer's hub, starting one if there is none. It
// returns false when the subscriber must read the log on its own: it
// cannot join the running hub where it stands, or the answer has no log
// here. An error is the log's.
func (m *Manager) joinHub(ctx context.Context, owner, id string, after int) (<-chan *Event, bool, error) {
	s := &sub{ctx: ctx, out: make(chan *Event, mailboxSize), relay: relayFrom(ctx)}
	m.hubMu.Lock()
	h := m.hubs[id]
	m.hubMu.Unlock()
	if h == nil {
		hctx, cancel := context.WithCancel(context.Background())
		r, err := m.opts.Log.Read(hctx, id, after)
		if err != nil {
			cancel()
			if errors.Is(err, chat.ErrLogNotFound) {
				return nil, false, nil
			}
			return nil, false, err
		}
		nh := &hub{m: m, id: id, owner: owner, cancel: cancel, start: after, last: after}
		m.hubMu.Lock()
		if h = m.hubs[id]; h == nil {
			h = nh
			m.hubs[id] = h
			s.h, s.pos = h, after
			h.subs = []*sub{s}
			s.stopWatch = context.AfterFunc(ctx, s.stop)
			m.hubMu.Unlock()
			go h.run(hctx, r)
			return s.relay.claim(s.out, true), true, nil
		}
		// Another Watch started one meanwhile.
		m.hubMu.Unlock()
		_ = r.Close()
		cancel()
	}
	if !h.join(s, after) {
		return nil, false, nil
	}
	stop := context.AfterFunc(ctx, s.stop)
	s.mu.Lock() // the hub may already be delivering to s
	s.stopWatch = stop
	s.mu.Unlock()
	return s.relay.claim(s.out, true), true, nil
}

// join adds s to the hub at position after, with the replay of the events
// since then, and reports whether it could.
func (h *hub) join(s *sub, after int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || after < h.start || after > h.last {
		return false
	}
	i := 0
	if after > h.start {
		// The events after seq after: those after the event with that seq,
		// which the hub must have received on its own (not merged).
		j := sort.SearchInts(h.seqs, after)
		if j == len(h.seqs) || h.seqs[j] != after {
			return false
		}
		i = j + 1
	}
	s.h, s.pos = h, after
	if i < len(h.deltas) {
		if h.replay == nil || h.replay.Seq != h.last || h.replayFrom != after {
			h.replay = &Event{AnswerID: h.id, Seq: h.last, Delta: strings.Join(h.deltas[i:], "")}
			h.replayFrom = after
		}
		s.out <- h.replay // a fresh mailbox has room
		s.pos = h.last
	}
	h.subs = append(h.subs, s)
	return true
}

// run reads the log and delivers its events until the terminal one, the
// last subscriber leaving (ctx), or a failure; then the subscribers left
// read the log on their own.
func (h *hub) run(ctx context.Context, r chat.TokenReader) {
	defer h.cancel()
	defer r.Close()
	for {
		ev, ended, err := h.m.next(ctx, h.owner, h.id, r)
		if ended != nil {
			// The answer ended without its log being finished (its
			// instance stopped between the two).
			h.mu.Lock()
			seq := h.last + 1
			h.mu.Unlock()
			h.finish(&Event{AnswerID: h.id, Seq: seq, Done: true, Message: ended})
			return
		}
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, io.EOF) {
				h.m.log.WarnContext(ctx, "reading an answer's token log failed", "answer_id", h.id, "error", err.Error())
			}
			h.abandon()
			return
		}
		e := &Event{AnswerID: h.id, Seq: ev.Seq, Delta: ev.Delta, Done: ev.Done}
		if ev.Done {
			// Without the message (deleted meanwhile, or a store
			// failure) the last event still comes.
			if e.Message, err = h.m.finalAnswer(ctx, h.owner, h.id); err != nil && ctx.Err() != nil {
				h.abandon()
				return
			}
			h.finish(e)
			return
		}
		// put may push the event to the subscriber's socket (a
		// non-blocking write, see the server's push path) under h.mu:
		// joins and leaves wait for the round, a few µs per subscriber.
		// Nothing called from put may take h.mu.
		h.mu.Lock()
		h.seqs = append(h.seqs, e.Seq)
		h.deltas = append(h.deltas, e.Delta)
		h.last = e.Seq
		for _, s := range h.subs {
			s.put(e)
		}
		h.mu.Unlock()
	}
}

// finish delivers the terminal event e and ends the hub.
func (h *hub) finish(e *Event) {
	h.m.hubMu.Lock()
	h.mu.Lock()
	h.unregisterLocked()
	h.last = e.Seq
	subs := h.subs
	h.subs, h.seqs, h.deltas, h.replay = nil, nil, nil, nil
	for _, s := range subs {
		s.put(e)
	}
	h.mu.Unlock()
	h.m.hubMu.Unlock()
}

// abandon ends the hub without the terminal event: its subscribers read
// the log on their own from where they are.
func (h *hub) abandon() {
	h.m.hubMu.Lock()
	h.mu.Lock()
	h.unregisterLocked()
	subs := h.subs
	h.subs, h.seqs, h.deltas, h.replay = nil, nil, nil, nil
	h.mu.Unlock()
	h.m.hubMu.Unlock()
	for _, s := range subs {
		s.handOver()
	}
}

// unregisterLocked closes the hub to newcomers; h.m.hubMu and h.mu are held.
func (h *hub) unregisterLocked() {
	h.closed = true
	if h.m.hubs[h.id] == h {
		delete(h.m.hubs, h.id)
	}
}

// leave removes s; the last subscriber to leave stops the hub.
func (h *hub) leave(s *sub) {
	h.m.hubMu.Lock()
	h.mu.Lock()
	for i, o := range h.subs {
		if o == s {
			last := len(h.subs) - 1
			h.subs[i] = h.subs[last]
			h.subs[last] = nil
			h.subs = h.subs[:last]
			break
		}
	}
	if len(h.subs) == 0 && !h.closed {
		h.unregisterLocked()
		h.cancel()
	}
	h.mu.Unlock()
	h.m.hubMu.Unlock()
}

// put queues e for the subscriber without waiting: into its mailbox when
// there is room and nothing pending, else among its pending events, which
// a goroutine of its own then hands over. h.mu is held.
func (s *sub) put(e *Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ended || s.handed || e.Seq <= s.pos {
		return
	}
	s.pos = e.Seq
	s.ended = e.Done
	if !s.running {
		select {
		case s.out <- e:
			if e.Done {
				s.closeLocked()
			} else {
				s.relay.signal()
			}
			return
		default:
		}
		s.running = true
		go s.drain()
	}
	s.pending.add(e)
}

// handOver has the subscriber, removed from its hub, read the log on its
// own once its pending events are sent.
func (s *sub) handOver() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.ended {
		return
	}
	s.handed = true
	s.relay.stopNotifying() // follow does not signal
	if !s.running {
		s.running = true
		go s.drain()
	}
}

// stop runs when the subscriber's context ends.
func (s *sub) stop() {
	s.h.leave(s)
	s.mu.Lock()
	if !s.running {
		s.closeLocked()
	}
	s.mu.Unlock()
}

// closeLocked closes the channel, once; s.mu is held.
func (s *sub) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	close(s.out)
	s.relay.signal()
	if s.stopWatch != nil {
		s.stopWatch()
	}
}

// drain sends the pending events as the subscriber takes them, then, for a
// subscriber handed over, reads the log on its own. It closes the channel
// after the terminal event or when the subscriber's context ends.
func (s *sub) drain() {
	for {
		s.mu.Lock()
		e := s.pending.take(s.h.id)
		if e == nil {
			if s.handed && !s.ended && s.ctx.Err() == nil {
				after := s.pos
				s.mu.Unlock()
				s.h.m.follow(s.ctx, s.h.owner, s.h.id, after, s.out)
				s.mu.Lock()
				s.running = false
				s.closeLocked()
				s.mu.Unlock()
				return
			}
			s.running = false
			if s.ended || s.ctx.Err() != nil {
				s.closeLocked()
			}
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
		select {
		case s.out <- e:
			s.relay.signal()
		case <-s.ctx.Done():
			s.mu.Lock()
			s.running = false
			s.closeLocked()
			s.mu.Unlock()
			return
		}
	}
}
