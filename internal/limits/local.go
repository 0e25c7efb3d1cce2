package limits

import (
	"context"
	"math"
	"sync"
	"time"
)

// LocalOptions configures the in-process limits.
type LocalOptions struct {
	// Now returns the current time; time.Now when nil (tests set a fake
	// clock).
	Now func() time.Time
}

// now returns the current time per o.
func (o LocalOptions) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// minSweep is the number of keys below which the in-process limits do not
// look for state they can forget.
const minSweep = 1024

// sweeper decides when a map of per-key state is due for a sweep of the
// entries that are equivalent to no entry: when it has doubled since the
// last one. This keeps the memory bounded by the keys in use without a
// goroutine, at an amortized constant cost per call.
type sweeper struct{ next int }

// due reports whether a map of n entries should be swept now.
func (s *sweeper) due(n int) bool { return n >= max(s.next, minSweep) }

// swept records that a sweep left n entries.
func (s *sweeper) swept(n int) { s.next = 2 * n }

// LocalRate is a RateLimiter in process: GCRA on a map of theoretical
// arrival times, with the same arithmetic as RedisRate's script. It is its
// own rather than golang.org/x/time/rate's token bucket so that both
// implementations give the same Remaining, RetryAfter and ResetAfter, and
// because GCRA's state is a single time per key, which is forgotten as soon
// as it is in the past. It is safe for concurrent use; the zero value is
// not usable.
type LocalRate struct {
	rate Rate
	opts LocalOptions

	mu    sync.Mutex
	tat   map[string]time.Time // theoretical arrival time per key
	sweep sweeper
}

var _ RateLimiter = (*LocalRate)(nil)

// NewLocalRate returns a LocalRate limiting each key to rate, which must
// have positive Events and Per.
func NewLocalRate(rate Rate, opts LocalOptions) *LocalRate {
	return &LocalRate{rate: rate, opts: opts, tat: make(map[string]time.Time)}
}

// Allow counts a request of key and reports whether it may go ahead.
func (l *LocalRate) Allow(_ context.Context, key string) (Decision, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.now()
	d, tat := l.decideLocked(key, now)
	if d.Allowed {
		l.setLocked(key, tat, now)
	}
	return d, nil
}

// decide returns what Allow would decide for key at now, and the
// theoretical arrival time to set when it allows the request, without
// counting it.
func (l *LocalRate) decide(key string, now time.Time) (Decision, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.decideLocked(key, now)
}

// set counts a request that decide allowed: key's theoretical arrival
// time becomes tat.
func (l *LocalRate) set(key string, tat, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setLocked(key, tat, now)
}

// decideLocked is decide with l.mu held.
func (l *LocalRate) decideLocked(key string, now time.Time) (Decision, time.Time) {
	emission := l.rate.emission()
	burstOffset := emission * time.Duration(l.rate.burst())
	tat, ok := l.tat[key]
	if !ok || tat.Before(now) {
		tat = now
	}
	newTAT := tat.Add(emission)
	diff := now.Sub(newTAT.Add(-burstOffset))
	remaining := float64(diff) / float64(emission)
	if remaining < 0 {
		return Decision{RetryAfter: -diff, ResetAfter: tat.Sub(now)}, time.Time{}
	}
	return Decision{Allowed: true, Remaining: int(remaining), ResetAfter: newTAT.Sub(now)}, newTAT
}

// setLocked is set with l.mu held.
func (l *LocalRate) setLocked(key string, tat, now time.Time) {
	l.tat[key] = tat
	if l.sweep.due(len(l.tat)) {
		for k, t := range l.tat {
			if !t.After(now) {
				delete(l.tat, k)
			}
		}
		l.sweep.swept(len(l.tat))
	}
}

// LocalBudget is a Budget in process. It is safe for concurrent use; the
// zero value is not usable.
type LocalBudget struct {
	bucket Bucket
	opts   LocalOptions

	mu      sync.Mutex
	buckets map[string]localBucket
	sweep   sweeper
}

// localBucket is the state of one key's bucket: the points available at
// time last.
type localBucket struct {
	available float64
	last      time.Time
}

var _ Budget = (*LocalBudget)(nil)

// NewLocalBudget returns a LocalBudget giving each key a bucket configured
// by b, whose Size and RestoreRate must be positive.
func NewLocalBudget(b Bucket, opts LocalOptions) *LocalBudget {
	return &LocalBudget{bucket: b, opts: opts, buckets: make(map[string]localBucket)}
}

// Debit takes cost points from key's bucket if they are all available.
func (l *LocalBudget) Debit(_ context.Context, key string, cost int) (Throttle, error) {
	return l.apply(key, max(cost, 0)), nil
}

// Refund gives amount points back to key's bucket, up to its size.
func (l *LocalBudget) Refund(_ context.Context, key string, amount int) (Throttle, error) {
	return l.apply(key, -max(amount, 0)), nil
}

// apply debits cost points from key's bucket, or refunds -cost when cost is
// negative, as the Redis script does.
func (l *LocalBudget) apply(key string, cost int) Throttle {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.opts.now()
	t, b := l.decideLocked(key, cost, now)
	l.storeLocked(key, b, now)
	return t
}

// decide returns what a debit of cost points (a refund when negative)
// from key's bucket at now gives, and the bucket's state afterwards (as
// it was, when the debit is refused), without storing it.
func (l *LocalBudget) decide(key string, cost int, now time.Time) (Throttle, localBucket) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.decideLocked(key, cost, now)
}

// store records b as key's bucket at now.
func (l *LocalBudget) store(key string, b localBucket, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.storeLocked(key, b, now)
}

// decideLocked is decide with l.mu held.
func (l *LocalBudget) decideLocked(key string, cost int, now time.Time) (Throttle, localBucket) {
	size, rate := float64(l.bucket.Size), float64(l.bucket.RestoreRate)
	b, ok := l.buckets[key]
	if !ok {
		b = localBucket{available: size, last: now}
	}
	if now.After(b.last) {
		b.available = math.Min(size, b.available+now.Sub(b.last).Seconds()*rate)
		b.last = now
	}
	t := Throttle{MaximumAvailable: l.bucket.Size, RestoreRate: l.bucket.RestoreRate, Allowed: true}
	switch c := float64(cost); {
	case c > b.available:
		t.Allowed = false
		if c <= size {
			t.RetryAfter = msCeil((c - b.available) / rate)
		}
	default:
		b.available = math.Min(size, b.available-c)
	}
	t.CurrentlyAvailable = int(math.Floor(b.available))
	return t, b
}

// storeLocked is store with l.mu held.
func (l *LocalBudget) storeLocked(key string, b localBucket, now time.Time) {
	size, rate := float64(l.bucket.Size), float64(l.bucket.RestoreRate)
	if b.available >= size {
		delete(l.buckets, key) // a full bucket is no bucket
	} else {
		l.buckets[key] = b
	}
	if l.sweep.due(len(l.buckets)) {
		for k, b := range l.buckets {
			if b.available+now.Sub(b.last).Seconds()*rate >= size {
				delete(l.buckets, k)
			}
		}
		l.sweep.swept(len(l.buckets))
	}
}

// LocalConcurrency is a Concurrency in process. It is safe for concurrent
// use; the zero value is not usable.
type LocalConcurrency struct {
	max int

	mu    sync.Mutex
	inUse map[string]int
}

var _ Concurrency = (*LocalConcurrency)(nil)

// NewLocalConcurrency returns a LocalConcurrency allowing each user max
// concurrent answers.
func NewLocalConcurrency(max int) *LocalConcurrency {
	return &LocalConcurrency{max: max, inUse: make(map[string]int)}
}

// Acquire takes one of user's slots.
func (l *LocalConcurrency) Acquire(_ context.Context, user string) (func(), bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inUse[user] >= l.max {
		return nil, false, nil
	}
	l.inUse[user]++
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.inUse[user]--; l.inUse[user] <= 0 {
				delete(l.inUse, user)
			}
		})
	}, true, nil
}

// LocalTokenQuota is a TokenQuota in process. It is safe for concurrent
// use; the zero value is not usable.
type LocalTokenQuota struct {
	limit int
	opts  LocalOptions

	mu    sync.Mutex
	used  map[string]localUsage
	sweep sweeper
}

// localUsage is the number of tokens a user used on a day.
type localUsage struct {
	day  string
	used int
}

var _ TokenQuota = (*LocalTokenQuota)(nil)

// NewLocalTokenQuota returns a LocalTokenQuota giving each user limit
// tokens per day.
func NewLocalTokenQuota(limit int, opts LocalOptions) *LocalTokenQuota {
	return &LocalTokenQuota{limit: limit, opts: opts, used: make(map[string]localUsage)}
}

// usage returns user's usage of today, today being d. l.mu is held.
func (l *LocalTokenQuota) usage(user, d string) localUsage {
	u := l.used[user]
	if u.day != d {
		u = localUsage{day: d}
	}
	return u
}

// store records u as user's usage. l.mu is held.
func (l *LocalTokenQuota) store(user string, u localUsage) {
	if u.used <= 0 {
		delete(l.used, user)
	} else {
		l.used[user] = u
	}
	if l.sweep.due(len(l.used)) {
		for k, v := range l.used {
			if v.day != u.day {
				delete(l.used, k)
			}
		}
		l.sweep.swept(len(l.used))
	}
}

// Reserve takes estimate tokens from user's quota of the day if they fit.
func (l *LocalTokenQuota) Reserve(ctx context.Context, user string, estimate int) (bool, int, error) {
	_, ok, remaining, err := l.Take(ctx, user, estimate)
	return ok, remaining, err
}

// Take reserves estimate tokens of user's quota of the day, and returns
// the function that settles them on that day.
func (l *LocalTokenQuota) Take(_ context.Context, user string, estimate int) (Settle, bool, int, error) {
	estimate = max(estimate, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	d := day(l.opts.now())
	u := l.usage(user, d)
	if u.used+estimate > l.limit {
		return nil, false, max(l.limit-u.used, 0), nil
	}
	u.used += estimate
	l.store(user, u)
	return func(_ context.Context, actual int) error {
		l.reconcile(user, d, estimate, actual)
		return nil
	}, true, l.limit - u.used, nil
}

// Reconcile replaces a reservation of estimate tokens by actual.
func (l *LocalTokenQuota) Reconcile(_ context.Context, user string, estimate, actual int) error {
	l.reconcile(user, day(l.opts.now()), estimate, actual)
	return nil
}

// reconcile applies the difference between actual and estimate to user's
// usage of day d; a day that is over has nothing left to reconcile.
func (l *LocalTokenQuota) reconcile(user, d string, estimate, actual int) {
	delta := max(actual, 0) - max(estimate, 0)
	if delta == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if today := day(l.opts.now()); today != d {
		return
	}
	u := l.usage(user, d)
	u.used = max(u.used+delta, 0)
	l.store(user, u)
}
