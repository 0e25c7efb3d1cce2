// Package limits provides per-user request rates, Shopify-style cost budgets
// and LLM quotas, on Redis shared by every instance or in process.
//
// Each kind of limit is an interface with two implementations: one on Redis
// (RedisRate, RedisBudget, RedisConcurrency, RedisTokenQuota), which every
// gateway instance on the same Redis shares, and one in process (LocalRate,
// LocalBudget, LocalConcurrency, LocalTokenQuota), for a single instance or
// for when Redis does not answer. A Fallback combines the two: it uses Redis
// while Redis answers within a short timeout and the in-process limits when
// it does not, so that a Redis outage never fails or stalls a request.
//
// Keys are the caller's: a per-user limit uses the user's id, a global
// ceiling is just another key (a second RateLimiter with its own rate, asked
// for the key "global"). Limiters of different configurations must not
// share keys.
package limits

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Rate is a request rate: Events per Per, with bursts of up to Burst events.
// A Burst of zero or less means Events.
type Rate struct {
	Events int
	Per    time.Duration
	Burst  int
}

// burst returns the effective burst of r.
func (r Rate) burst() int {
	if r.Burst <= 0 {
		return r.Events
	}
	return r.Burst
}

// String returns r as ParseRate reads it, followed by its burst.
func (r Rate) String() string {
	unit := r.Per.String()
	switch r.Per {
	case time.Second:
		unit = "s"
	case time.Minute:
		unit = "m"
	case time.Hour:
		unit = "h"
	}
	return fmt.Sprintf("%d/%s (burst %d)", r.Events, unit, r.burst())
}

// emission returns the interval between two events at the steady rate, at
// least a nanosecond (and Per for a rate of no events, which is invalid).
func (r Rate) emission() time.Duration {
	return max(r.Per/time.Duration(max(r.Events, 1)), 1)
}

// ParseRate parses a rate written "<count>/<unit>", such as "600/m", where
// unit is s, m or h (second, minute, hour) and count is a positive integer.
// The burst of the rate it returns is count.
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	events, err := strconv.Atoi(strings.TrimSpace(n))
	if !ok || err != nil || events <= 0 {
		return Rate{}, fmt.Errorf("rate %q: want <count>/<s|m|h> with a positive count, such as 600/m", s)
	}
	var per time.Duration
	switch strings.TrimSpace(unit) {
	case "s":
		per = time.Second
	case "m":
		per = time.Minute
	case "h":
		per = time.Hour
	default:
		return Rate{}, fmt.Errorf("rate %q: unit %q: want s, m or h, such as 600/m", s, unit)
	}
	if per/time.Duration(events) <= 0 {
		return Rate{}, fmt.Errorf("rate %q: more than one event per nanosecond; want a rate such as 600/m", s)
	}
	return Rate{Events: events, Per: per, Burst: events}, nil
}

// Bucket is the configuration of a cost budget: a bucket of Size points
// that restores RestoreRate points per second.
type Bucket struct {
	Size        int
	RestoreRate int
}

// String returns b as ParseBudget reads it.
func (b Bucket) String() string { return fmt.Sprintf("%d/%d", b.Size, b.RestoreRate) }

// ParseBudget parses a cost budget written "<size>/<restore per second>",
// such as "1000/50", both positive integers.
func ParseBudget(s string) (Bucket, error) {
	a, b, ok := strings.Cut(strings.TrimSpace(s), "/")
	size, err1 := strconv.Atoi(strings.TrimSpace(a))
	rate, err2 := strconv.Atoi(strings.TrimSpace(b))
	if !ok || err1 != nil || err2 != nil || size <= 0 || rate <= 0 {
		return Bucket{}, fmt.Errorf("cost budget %q: want <size>/<restore per second>, both positive integers, such as 1000/50", s)
	}
	return Bucket{Size: size, RestoreRate: rate}, nil
}

// Decision is the answer of a RateLimiter.
type Decision struct {
	// Allowed reports whether the request may go ahead; it was counted.
	Allowed bool
	// Remaining is how many more requests the key may make at once.
	Remaining int
	// RetryAfter is how long until the next request will be allowed;
	// zero when this one was.
	RetryAfter time.Duration
	// ResetAfter is how long until the key is back to a full burst.
	ResetAfter time.Duration
}

// RateLimiter limits the rate of requests per key (GCRA: a request is
// allowed when it does not come sooner than the rate allows, give or take
// the burst). Implementations are safe for concurrent use.
type RateLimiter interface {
	// Allow counts a request of key and reports whether it may go ahead.
	// A refused request is not counted.
	Allow(ctx context.Context, key string) (Decision, error)
}

// Throttle is the state of a cost budget after a debit or a refund, named
// after Shopify's throttleStatus.
type Throttle struct {
	// MaximumAvailable is the size of the bucket.
	MaximumAvailable int
	// CurrentlyAvailable is the number of points left, rounded down.
	CurrentlyAvailable int
	// RestoreRate is the number of points restored per second.
	RestoreRate int
	// Allowed reports whether the debit was made; a refund is always
	// allowed.
	Allowed bool
	// RetryAfter is, for a refused debit, how long until enough points
	// are restored for it (to the millisecond, rounded up); zero
	// otherwise, and zero for a cost larger than MaximumAvailable, which
	// never fits. RetryAfterSeconds gives the value of a Retry-After
	// header.
	RetryAfter time.Duration
}

// Budget is a cost budget per key, Shopify's leaky bucket: each key has a
// bucket of points that restores continuously at a fixed rate up to its
// size. Implementations are safe for concurrent use.
type Budget interface {
	// Debit takes cost points from key's bucket if they are all
	// available, and refuses without taking any otherwise. A cost of
	// zero or less takes nothing and reports the state.
	Debit(ctx context.Context, key string, cost int) (Throttle, error)
	// Refund gives amount points back to key's bucket, up to its size
	// (after a debit of more than what was used).
	Refund(ctx context.Context, key string, amount int) (Throttle, error)
}

// Concurrency caps the number of concurrent answers per user.
// Implementations are safe for concurrent use.
type Concurrency interface {
	// Acquire takes one of user's slots. When ok, release frees it; it
	// may be called more than once and from any goroutine. When not ok,
	// all of user's slots are taken and release is nil.
	Acquire(ctx context.Context, user string) (release func(), ok bool, err error)
}

// TokenQuota caps the number of LLM tokens per user per day (UTC): a call
// reserves its estimate first, then reconciles it with the real usage.
// Implementations are safe for concurrent use.
type TokenQuota interface {
	// Reserve takes estimate tokens from user's quota of the day if they
	// fit, and refuses without taking any otherwise. remaining is what is
	// left of the quota afterwards.
	Reserve(ctx context.Context, user string, estimate int) (ok bool, remaining int, err error)
	// Reconcile replaces a reservation of estimate tokens by the actual
	// number used (the difference, positive or negative, is applied to
	// the quota of the day; usage never goes below zero).
	Reconcile(ctx context.Context, user string, estimate, actual int) error
	// Take is Reserve, and when ok also returns the function that
	// replaces this reservation by the actual number used: in the store
	// that took it (Redis or in process, whichever answered) and on the
	// day it was taken, whatever happens meanwhile. Call settle once.
	Take(ctx context.Context, user string, estimate int) (settle Settle, ok bool, remaining int, err error)
}

// Settle replaces a token reservation by the number of tokens actually
// used.
type Settle func(ctx context.Context, actual int) error

// RetryAfterSeconds returns d rounded up to whole seconds, as a Retry-After
// header wants it: at least 1 for any positive d, 0 otherwise.
func RetryAfterSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// msCeil returns secs seconds rounded up to the millisecond.
func msCeil(secs float64) time.Duration {
	if secs <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(secs*1000-1e-9)) * time.Millisecond
}

// day returns the UTC day of t, as "2006-01-02".
func day(t time.Time) string { return t.UTC().Format(time.DateOnly) }
