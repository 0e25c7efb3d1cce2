package answers

import (
	"context"
	"sync/atomic"
)

// A Relay lets the code that consumes a subscription take each event
// before the consumer does: Watch, finding a Relay in its context, hands
// its events to the Relay's Source and returns the Relay's channel, which
// gets only what Feed puts in. A GraphQL server uses it to render an event
// once for every subscriber whose operation renders it the same way (see
// Event.Rendered), rather than once per subscriber.
//
// A Relay serves one Watch call; the first one claims it. Its methods are
// safe for concurrent use with that Watch.
type Relay struct {
	claimed atomic.Bool
	src     atomic.Pointer[<-chan *Event]
	dst     chan *Event

	// notifies is set while Source's sender signals every change of
	// Source (see Arm); ready is set by a signal and cleared by Ready.
	notifies atomic.Bool
	ready    atomic.Bool
	armed    atomic.Pointer[func()]
}

type relayKey struct{}

// WithRelay returns a copy of ctx carrying a new Relay, and the Relay.
func WithRelay(ctx context.Context) (context.Context, *Relay) {
	r := &Relay{}
	return context.WithValue(ctx, relayKey{}, r), r
}

// Source returns the events of the Watch that claimed the relay, closed
// after the last one, or nil if no Watch has claimed it.
func (r *Relay) Source() <-chan *Event {
	if p := r.src.Load(); p != nil {
		return *p
	}
	return nil
}

// Feed passes e on to the channel Watch returned; it does not wait. Call
// it only when that channel's consumer has taken the previous event, or
// is about to, and from one goroutine.
func (r *Relay) Feed(e *Event) { r.dst <- e }

// Close closes the channel Watch returned; call it once Source is closed.
func (r *Relay) Close() { close(r.dst) }

// Arm has f called once, on the goroutine of Source's sender, when Source
// next gets an event or is closed, or when it stops notifying. It reports
// whether Source notifies at all; if not, f is not armed and the consumer
// must wait on Source.
//
// A consumer that has found Source empty arms, then asks Ready: when Ready
// reports false, the consumer may stop waiting, as f will be called (or
// has been) for whatever comes; when it reports true, something may have
// come meanwhile and f is disarmed: look at Source again.
func (r *Relay) Arm(f func()) bool { return r.ArmFunc(&f) }

// ArmFunc is Arm with a pointer to the function, which the relay keeps
// rather than a copy: a consumer that arms the same function for every
// event saves an allocation each time. *f must not change while armed.
func (r *Relay) ArmFunc(f *func()) bool {
	if !r.notifies.Load() {
		return false
	}
	r.armed.Store(f)
	return true
}

// Ready reports, after Arm, whether Source is to be looked at again (see
// Arm), in which case it disarms the armed function.
func (r *Relay) Ready() bool {
	if !r.ready.Swap(false) {
		return false
	}
	return r.armed.Swap(nil) != nil
}

// signal tells the consumer that Source has changed: it has an event, is
// closed or no longer notifies. Source's sender calls it after the change.
func (r *Relay) signal() {
	if r == nil {
		return
	}
	r.ready.Store(true)
	if f := r.armed.Swap(nil); f != nil {
		(*f)()
	}
}

// stopNotifying ends Source's notifications; an armed consumer is woken,
// to wait on Source instead.
func (r *Relay) stopNotifying() {
	if r == nil {
		return
	}
	r.notifies.Store(false)
	r.signal()
}

// relayFrom returns the unclaimed relay in ctx, or nil.
func relayFrom(ctx context.Context) *Relay {
	r, _ := ctx.Value(relayKey{}).(*Relay)
	if r == nil || r.claimed.Load() {
		return nil
	}
	return r
}

// claim has r take out's events, and returns the channel its consumer is
// to read instead; out itself when r is nil or taken. With notifies, out's
// sender calls signal after every event and after closing out, and
// stopNotifying before it stops doing so.
func (r *Relay) claim(out <-chan *Event, notifies bool) <-chan *Event {
	if r == nil || !r.claimed.CompareAndSwap(false, true) {
		return out
	}
	r.dst = make(chan *Event, 1)
	r.notifies.Store(notifies)
	r.src.Store(&out)
	return r.dst
}

// claimRelay has the relay in ctx take out's events, and returns the channel its
// consumer is to read instead, or out itself when ctx has no relay or it
// is taken.
func claimRelay(ctx context.Context, out <-chan *Event) <-chan *Event {
	return relayFrom(ctx).claim(out, false)
}

// rendering is what a consumer made of an event, for a key.
type rendering struct {
	key  string
	data []byte
}

// Rendered returns the rendering of e that SetRendered recorded under key,
// or nil.
func (e *Event) Rendered(key string) []byte {
	if r := e.rendered.Load(); r != nil && r.key == key {
		return r.data
	}
	return nil
}

// SetRendered records data as the rendering of e for key, for the other
// subscribers of e that render it the same way; data must not be modified
// afterwards. Only the last rendering recorded is kept.
func (e *Event) SetRendered(key string, data []byte) {
	e.rendered.Store(&rendering{key: key, data: data})
}
