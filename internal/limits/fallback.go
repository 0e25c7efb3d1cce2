package limits

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of FallbackOptions.
const (
	DefaultFallbackTimeout = 50 * time.Millisecond
	DefaultProbeInterval   = time.Second
)

// lateTimeout bounds the undoing of a Redis operation that succeeded after
// the Fallback had given up on it.
const lateTimeout = time.Second

// FallbackOptions configures a Fallback.
type FallbackOptions struct {
	// Timeout is how long a limit waits for Redis before using the
	// in-process limits instead; DefaultFallbackTimeout when zero.
	Timeout time.Duration
	// ProbeInterval is how often, at most, a limit tries Redis again
	// while degraded; DefaultProbeInterval when zero.
	ProbeInterval time.Duration
	// Logger receives one line when Redis stops answering and one when
	// it answers again; slog.Default() when nil.
	Logger *slog.Logger
}

// Fallback keeps the limits working when Redis does not: the limits it
// wraps (Rate, Budget, Concurrency, TokenQuota) use their Redis
// implementation while Redis answers within the timeout, and their
// in-process one when it fails or does not answer in time. One Fallback
// tracks one Redis: the first failure of any of its limits makes all of
// them degraded (logged once), then at most one request per probe interval
// tries Redis again, and the first success makes all of them use Redis
// again (logged once). While degraded, each instance enforces the limits
// alone, from a fresh in-process state.
//
// Every call to Redis runs in a goroutine of its own, so that a Redis that
// hangs costs a request the timeout and no more, whatever the client's
// options; Close waits for those that outlived their timeout. An operation
// that succeeds in Redis after its timeout is undone when it can be (a
// debit refunded, a slot released, a reservation returned); a request rate
// counted late stays counted.
//
// A Fallback is safe for concurrent use; the zero value is not usable.
type Fallback struct {
	timeout time.Duration
	probe   time.Duration
	log     *slog.Logger

	degraded  atomic.Bool
	since     atomic.Int64 // when it became degraded, Unix ns
	nextProbe atomic.Int64 // when Redis may be tried again, Unix ns
	calls     sync.WaitGroup
}

// NewFallback returns a Fallback configured by opts, not degraded.
func NewFallback(opts FallbackOptions) *Fallback {
	f := &Fallback{timeout: opts.Timeout, probe: opts.ProbeInterval, log: opts.Logger}
	if f.timeout <= 0 {
		f.timeout = DefaultFallbackTimeout
	}
	if f.probe <= 0 {
		f.probe = DefaultProbeInterval
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	return f
}

// Degraded reports whether the limits are in process because Redis did
// not answer (for /readyz).
func (f *Fallback) Degraded() bool { return f.degraded.Load() }

// Close waits for the calls to Redis that outlived their timeout (they end
// with the client's own timeouts). The limits may still be used after it.
func (f *Fallback) Close() { f.calls.Wait() }

// tryRedis reports whether a call should go to Redis: always when healthy,
// and for one call per probe interval when degraded.
func (f *Fallback) tryRedis() bool {
	if !f.degraded.Load() {
		return true
	}
	now := time.Now().UnixNano()
	next := f.nextProbe.Load()
	return now >= next && f.nextProbe.CompareAndSwap(next, now+int64(f.probe))
}

// failed records that Redis failed with err.
func (f *Fallback) failed(err error) {
	now := time.Now()
	f.nextProbe.Store(now.Add(f.probe).UnixNano())
	if f.degraded.CompareAndSwap(false, true) {
		f.since.Store(now.UnixNano())
		f.log.Warn("limits: Redis does not answer; enforcing limits in process until it does", "err", err)
	}
}

// succeeded records that Redis answered.
func (f *Fallback) succeeded() {
	if f.degraded.Load() && f.degraded.CompareAndSwap(true, false) {
		down := time.Since(time.Unix(0, f.since.Load())).Round(time.Millisecond)
		f.log.Info("limits: Redis answers again; limits are shared again", "degraded_for", down.String())
	}
}

// fallback calls redis, within f's timeout, while Redis answers, and local
// otherwise. late, when not nil, is given the result of a redis call that
// succeeded after its timeout. An error is returned only when ctx ends.
func fallback[T any](ctx context.Context, f *Fallback, redis, local func(context.Context) (T, error), late func(T)) (T, error) {
	if f.tryRedis() {
		v, err := call(ctx, f, redis, late)
		if err == nil {
			f.succeeded()
			return v, nil
		}
		if ctx.Err() != nil {
			return v, ctx.Err()
		}
		f.failed(err)
	}
	return local(ctx)
}

// result is what a call to Redis returned.
type result[T any] struct {
	v   T
	err error
}

// call calls redis in a goroutine of f and waits for it at most f's
// timeout. When it gives up, a result that comes later goes to late if it
// is a success.
func call[T any](ctx context.Context, f *Fallback, redis func(context.Context) (T, error), late func(T)) (T, error) {
	// The wait is bounded by f's timeout, but the call itself may run on
	// (up to lateTimeout more): a script that Redis ran after the wait
	// gave up must have its reply read, so that late can undo it — with
	// a client that honours deadlines, cutting the call at f's timeout
	// would leave it done in Redis and never undone.
	wait, cancelWait := context.WithTimeout(ctx, f.timeout)
	defer cancelWait()
	callCtx, cancelCall := context.WithTimeout(context.WithoutCancel(ctx), f.timeout+lateTimeout)
	got := make(chan result[T])
	abandoned := make(chan struct{})
	f.calls.Go(func() {
		defer cancelCall()
		v, err := redis(callCtx)
		select {
		case got <- result[T]{v, err}:
		case <-abandoned:
			if err == nil && late != nil {
				late(v)
			}
		}
	})
	select {
	case r := <-got:
		return r.v, r.err
	case <-wait.Done():
		close(abandoned)
		var zero T
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		return zero, fmt.Errorf("limits: Redis did not answer within %v", f.timeout)
	}
}

// lateContext returns the context of the undoing of a late operation.
func lateContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), lateTimeout)
}

// Rate returns a RateLimiter that uses redis through f, and local when
// Redis does not answer.
func (f *Fallback) Rate(redis, local RateLimiter) RateLimiter {
	return fallbackRate{f, redis, local}
}

// fallbackRate is the RateLimiter of Fallback.Rate.
type fallbackRate struct {
	f            *Fallback
	redis, local RateLimiter
}

// Allow counts a request of key and reports whether it may go ahead.
func (r fallbackRate) Allow(ctx context.Context, key string) (Decision, error) {
	return fallback(ctx, r.f,
		func(ctx context.Context) (Decision, error) { return r.redis.Allow(ctx, key) },
		func(ctx context.Context) (Decision, error) { return r.local.Allow(ctx, key) },
		nil)
}

// Budget returns a Budget that uses redis through f, and local when Redis
// does not answer.
func (f *Fallback) Budget(redis, local Budget) Budget {
	return fallbackBudget{f, redis, local}
}

// fallbackBudget is the Budget of Fallback.Budget.
type fallbackBudget struct {
	f            *Fallback
	redis, local Budget
}

// Debit takes cost points from key's bucket if they are all available. A
// late debit in Redis is refunded.
func (b fallbackBudget) Debit(ctx context.Context, key string, cost int) (Throttle, error) {
	return fallback(ctx, b.f,
		func(ctx context.Context) (Throttle, error) { return b.redis.Debit(ctx, key, cost) },
		func(ctx context.Context) (Throttle, error) { return b.local.Debit(ctx, key, cost) },
		func(t Throttle) {
			if t.Allowed && cost > 0 {
				ctx, cancel := lateContext()
				defer cancel()
				_, _ = b.redis.Refund(ctx, key, cost)
			}
		})
}

// Refund gives amount points back to key's bucket, up to its size.
func (b fallbackBudget) Refund(ctx context.Context, key string, amount int) (Throttle, error) {
	return fallback(ctx, b.f,
		func(ctx context.Context) (Throttle, error) { return b.redis.Refund(ctx, key, amount) },
		func(ctx context.Context) (Throttle, error) { return b.local.Refund(ctx, key, amount) },
		nil)
}

// Concurrency returns a Concurrency that uses redis through f, and local
// when Redis does not answer. A slot is released where it was taken.
func (f *Fallback) Concurrency(redis, local Concurrency) Concurrency {
	return fallbackConcurrency{f, redis, local}
}

// fallbackConcurrency is the Concurrency of Fallback.Concurrency.
type fallbackConcurrency struct {
	f            *Fallback
	redis, local Concurrency
}

// slot is what Acquire returns.
type slot struct {
	release func()
	ok      bool
}

// Acquire takes one of user's slots. A slot taken late in Redis is
// released.
func (c fallbackConcurrency) Acquire(ctx context.Context, user string) (func(), bool, error) {
	acquire := func(cc Concurrency) func(context.Context) (slot, error) {
		return func(ctx context.Context) (slot, error) {
			release, ok, err := cc.Acquire(ctx, user)
			return slot{release, ok}, err
		}
	}
	s, err := fallback(ctx, c.f, acquire(c.redis), acquire(c.local), func(s slot) {
		if s.ok {
			s.release()
		}
	})
	return s.release, s.ok, err
}

// TokenQuota returns a TokenQuota that uses redis through f, and local when
// Redis does not answer.
func (f *Fallback) TokenQuota(redis, local TokenQuota) TokenQuota {
	return fallbackTokenQuota{f, redis, local}
}

// fallbackTokenQuota is the TokenQuota of Fallback.TokenQuota.
type fallbackTokenQuota struct {
	f            *Fallback
	redis, local TokenQuota
}

// reservation is what Take returns.
type reservation struct {
	settle    Settle
	ok        bool
	remaining int
}

// Reserve takes estimate tokens from user's quota of the day if they fit.
// A reservation made late in Redis is returned.
func (q fallbackTokenQuota) Reserve(ctx context.Context, user string, estimate int) (bool, int, error) {
	_, ok, remaining, err := q.Take(ctx, user, estimate)
	return ok, remaining, err
}

// Take reserves estimate tokens of user's quota of the day in Redis, or in
// process when Redis does not answer; its settle goes to where the tokens
// were reserved, even when the other store answers by then. A reservation
// made late in Redis is returned.
func (q fallbackTokenQuota) Take(ctx context.Context, user string, estimate int) (Settle, bool, int, error) {
	take := func(tq TokenQuota) func(context.Context) (reservation, error) {
		return func(ctx context.Context) (reservation, error) {
			settle, ok, remaining, err := tq.Take(ctx, user, estimate)
			return reservation{settle, ok, remaining}, err
		}
	}
	fromRedis := func(ctx context.Context) (reservation, error) {
		r, err := take(q.redis)(ctx)
		if inner := r.settle; inner != nil {
			// Settled in Redis, within the Fallback's timeout.
			r.settle = func(ctx context.Context, actual int) error {
				_, err := call(ctx, q.f, func(ctx context.Context) (struct{}, error) {
					return struct{}{}, inner(ctx, actual)
				}, nil)
				return err
			}
		}
		return r, err
	}
	r, err := fallback(ctx, q.f, fromRedis, take(q.local), func(r reservation) {
		if r.ok {
			ctx, cancel := lateContext()
			defer cancel()
			_ = r.settle(ctx, 0)
		}
	})
	return r.settle, r.ok, r.remaining, err
}

// Reconcile replaces a reservation of estimate tokens by actual, in Redis
// or, when it does not answer, in process. Settle a reservation from Take
// instead: it goes to the store that took it.
func (q fallbackTokenQuota) Reconcile(ctx context.Context, user string, estimate, actual int) error {
	_, err := fallback(ctx, q.f,
		func(ctx context.Context) (struct{}, error) {
			return struct{}{}, q.redis.Reconcile(ctx, user, estimate, actual)
		},
		func(ctx context.Context) (struct{}, error) {
			return struct{}{}, q.local.Reconcile(ctx, user, estimate, actual)
		},
		nil)
	return err
}
