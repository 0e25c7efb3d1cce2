package limits

import (
	"context"
	"crypto/rand"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// DefaultPrefix is the prefix of every key of the Redis limits unless
// RedisOptions.Prefix says otherwise.
const DefaultPrefix = "askgate:"

// DefaultLease is how long a RedisConcurrency slot lasts unless released,
// unless RedisOptions.Lease says otherwise.
const DefaultLease = 10 * time.Minute

// RedisOptions configures the Redis limits.
type RedisOptions struct {
	// Prefix starts every key; DefaultPrefix when empty. Keys are
	// <Prefix>rate:{<key>}, <Prefix>budget:{<key>},
	// <Prefix>answers:{<user>} and <Prefix>tokens:{<user>}:<day>: the
	// braces make every limit of one key live on one Redis Cluster slot.
	Prefix string
	// Lease is how long a RedisConcurrency slot lasts when it is not
	// released (its holder crashed): it should outlast the longest
	// answer. DefaultLease when zero.
	Lease time.Duration
	// Now returns the current time for RedisTokenQuota's days; time.Now
	// when nil. The other limits use Redis's clock (TIME), never the
	// client's.
	Now func() time.Time
}

// prefix returns the key prefix per o.
func (o RedisOptions) prefix() string {
	if o.Prefix == "" {
		return DefaultPrefix
	}
	return o.Prefix
}

// redisTimeMS is the Lua that sets now to Redis's clock in milliseconds.
const redisTimeMS = `
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// RedisRate is a RateLimiter on Redis, shared by every instance using the
// same Redis and prefix: GCRA, by go-redis/redis_rate, one script call per
// request on Redis's clock. A key's state is one string,
// <prefix>rate:{<key>}, which expires when the key is back to a full
// burst. It is safe for concurrent use.
type RedisRate struct {
	limiter *redis_rate.Limiter
	limit   redis_rate.Limit
	rate    Rate
}

var _ RateLimiter = (*RedisRate)(nil)

// NewRedisRate returns a RedisRate limiting each key to rate, which must
// have positive Events and Per, on client.
func NewRedisRate(client redis.UniversalClient, rate Rate, opts RedisOptions) *RedisRate {
	return &RedisRate{
		limiter: redis_rate.NewLimiter(rateKeys{client, opts.prefix() + "rate:"}),
		limit:   redis_rate.Limit{Rate: rate.Events, Period: rate.Per, Burst: rate.burst()},
		rate:    rate,
	}
}

// Allow counts a request of key and reports whether it may go ahead.
func (r *RedisRate) Allow(ctx context.Context, key string) (Decision, error) {
	res, err := r.limiter.Allow(ctx, "{"+key+"}", r.limit)
	if err != nil {
		return Decision{}, fmt.Errorf("limits: rate of %q: %w", key, err)
	}
	d := Decision{
		Allowed:    res.Allowed > 0,
		RetryAfter: max(res.RetryAfter, 0),
		ResetAfter: max(res.ResetAfter, 0),
	}
	if d.Allowed {
		// redis_rate's Remaining is its float arithmetic truncated,
		// which can be one below the truth (1.9999 for 2); recount it
		// from ResetAfter to the microsecond, the resolution of
		// Redis's clock.
		emission := r.rate.emission()
		burstOffset := emission * time.Duration(r.rate.burst())
		d.Remaining = max(int((burstOffset-d.ResetAfter+time.Microsecond)/emission), 0)
	}
	return d, nil
}

// redisRatePrefix is the prefix go-redis/redis_rate gives its keys.
const redisRatePrefix = "rate:"

// rateKeys is the client go-redis/redis_rate is given: it replaces the
// prefix redis_rate puts on its keys by ours, so that its keys are
// namespaced like every other key of askgate.
type rateKeys struct {
	redis.UniversalClient
	prefix string
}

// keys returns keys with our prefix instead of redis_rate's.
func (c rateKeys) keys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = c.prefix + strings.TrimPrefix(k, redisRatePrefix)
	}
	return out
}

// Eval runs script with our keys.
func (c rateKeys) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.Eval(ctx, script, c.keys(keys), args...)
}

// EvalSha runs script sha1 with our keys.
func (c rateKeys) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalSha(ctx, sha1, c.keys(keys), args...)
}

// EvalRO runs read-only script with our keys.
func (c rateKeys) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalRO(ctx, script, c.keys(keys), args...)
}

// EvalShaRO runs read-only script sha1 with our keys.
func (c rateKeys) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return c.UniversalClient.EvalShaRO(ctx, sha1, c.keys(keys), args...)
}

// Del deletes our keys.
func (c rateKeys) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return c.UniversalClient.Del(ctx, c.keys(keys)...)
}

// budgetScript debits ARGV[3] points (refunds -ARGV[3] when negative) from
// the bucket in hash KEYS[1] of size ARGV[1] restoring ARGV[2] points per
// second, and returns {allowed, available, retry after in ms}. The hash
// holds the points available and the time (ms, Redis's clock) they were
// counted; it expires ARGV[4] ms after the bucket would be full again, and
// a full bucket is deleted: no hash is a full bucket.
var budgetScript = redis.NewScript(redisTimeMS + bucketLua + `
local size = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local allowed, available, at, retry = bucket_debit(KEYS[1], size, rate, tonumber(ARGV[3]))
bucket_store(KEYS[1], size, rate, available, at, tonumber(ARGV[4]))
return {allowed, tostring(available), retry}
`)

// bucketLua defines the Lua functions of a cost budget's bucket, in a hash
// of the points available and the time (ms, Redis's clock, in now) they
// were counted; no hash is a full bucket. bucket_debit(key, size, rate,
// cost) restores the bucket to now and takes cost points if they are all
// available (gives -cost back when negative), returning {allowed (1/0),
// available, at, retry after in ms}, without writing; bucket_store(key,
// size, rate, available, at, margin) writes the result, deleting a full
// bucket and making the hash expire margin ms after it would be full.
const bucketLua = `
local function bucket_debit(key, size, rate, cost)
  local state = redis.call('HMGET', key, 'available', 'at')
  local available = tonumber(state[1])
  local at = tonumber(state[2])
  if available == nil or at == nil then
    available = size
    at = now
  end
  if now > at then
    available = math.min(size, available + (now - at) * rate / 1000)
    at = now
  end
  if cost > available then
    local retry = 0
    if cost <= size then
      retry = math.ceil((cost - available) * 1000 / rate - 1e-9)
    end
    return 0, available, at, retry
  end
  return 1, math.min(size, available - cost), at, 0
end

local function bucket_store(key, size, rate, available, at, margin)
  if available >= size then
    redis.call('DEL', key)
  else
    redis.call('HSET', key, 'available', tostring(available), 'at', at)
    redis.call('PEXPIRE', key, math.ceil((size - available) * 1000 / rate) + margin)
  end
end
`

// budgetMargin is how long a bucket's hash outlives the time it takes to
// fill, in milliseconds.
const budgetMargin = 1000

// RedisBudget is a Budget on Redis, shared by every instance using the same
// Redis and prefix: one atomic script call per debit or refund, on Redis's
// clock. A key's bucket is a hash, <prefix>budget:{<key>}, which expires
// once the bucket would be full again. It is safe for concurrent use.
type RedisBudget struct {
	client redis.UniversalClient
	bucket Bucket
	prefix string
}

var _ Budget = (*RedisBudget)(nil)

// NewRedisBudget returns a RedisBudget giving each key a bucket configured
// by b, whose Size and RestoreRate must be positive, on client.
func NewRedisBudget(client redis.UniversalClient, b Bucket, opts RedisOptions) *RedisBudget {
	return &RedisBudget{client: client, bucket: b, prefix: opts.prefix() + "budget:"}
}

// Debit takes cost points from key's bucket if they are all available.
func (r *RedisBudget) Debit(ctx context.Context, key string, cost int) (Throttle, error) {
	return r.apply(ctx, key, max(cost, 0))
}

// Refund gives amount points back to key's bucket, up to its size.
func (r *RedisBudget) Refund(ctx context.Context, key string, amount int) (Throttle, error) {
	return r.apply(ctx, key, -max(amount, 0))
}

// apply runs budgetScript for cost points.
func (r *RedisBudget) apply(ctx context.Context, key string, cost int) (Throttle, error) {
	v, err := budgetScript.Run(ctx, r.client, []string{r.prefix + "{" + key + "}"},
		r.bucket.Size, r.bucket.RestoreRate, cost, budgetMargin).Slice()
	if err != nil {
		return Throttle{}, fmt.Errorf("limits: budget of %q: %w", key, err)
	}
	allowed, _ := v[0].(int64)
	s, _ := v[1].(string)
	available, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return Throttle{}, fmt.Errorf("limits: budget of %q: script returned %v", key, v)
	}
	retry, _ := v[2].(int64)
	return Throttle{
		MaximumAvailable:   r.bucket.Size,
		CurrentlyAvailable: int(math.Floor(available)),
		RestoreRate:        r.bucket.RestoreRate,
		Allowed:            allowed == 1,
		RetryAfter:         time.Duration(retry) * time.Millisecond,
	}, nil
}

// acquireScript adds ARGV[3] to the sorted set KEYS[1] of slots, scored by
// the time (ms, Redis's clock) their lease ends, unless it already holds
// ARGV[1] slots whose lease has not ended; the lease lasts ARGV[2] ms.
// Returns 1 when the slot was taken.
var acquireScript = redis.NewScript(redisTimeMS + `
local key = KEYS[1]
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
if redis.call('ZCARD', key) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', key, now + lease, ARGV[3])
redis.call('PEXPIRE', key, lease)
return 1
`)

// releaseTimeout bounds the release of a RedisConcurrency slot; a slot
// whose release fails ends with its lease.
const releaseTimeout = time.Second

// RedisConcurrency is a Concurrency on Redis, shared by every instance
// using the same Redis and prefix. A user's slots are a sorted set,
// <prefix>answers:{<user>}, of random slot ids scored by the end of their
// lease: a slot ends when it is released or when its lease ends, so the
// slots of an instance that crashed free themselves, one by one (a counter
// could not tell whose slots have ended). It is safe for concurrent use.
type RedisConcurrency struct {
	client redis.UniversalClient
	max    int
	lease  time.Duration
	prefix string
}

var _ Concurrency = (*RedisConcurrency)(nil)

// NewRedisConcurrency returns a RedisConcurrency allowing each user max
// concurrent answers, on client.
func NewRedisConcurrency(client redis.UniversalClient, max int, opts RedisOptions) *RedisConcurrency {
	lease := opts.Lease
	if lease <= 0 {
		lease = DefaultLease
	}
	return &RedisConcurrency{client: client, max: max, lease: lease, prefix: opts.prefix() + "answers:"}
}

// Acquire takes one of user's slots. Its release removes the slot from
// Redis (within a second; when that fails, the slot ends with its lease).
func (r *RedisConcurrency) Acquire(ctx context.Context, user string) (func(), bool, error) {
	key := r.prefix + "{" + user + "}"
	id := rand.Text()
	ok, err := acquireScript.Run(ctx, r.client, []string{key}, r.max, r.lease.Milliseconds(), id).Bool()
	if err != nil {
		return nil, false, fmt.Errorf("limits: answers of %q: %w", user, err)
	}
	if !ok {
		return nil, false, nil
	}
	return sync.OnceFunc(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		_ = r.client.ZRem(ctx, key, id).Err()
	}), true, nil
}

// reserveScript adds ARGV[2] to the counter KEYS[1] unless that takes it
// over ARGV[1], and makes it expire in ARGV[3] seconds. Returns {taken,
// remaining}.
var reserveScript = redis.NewScript(`
local limit = tonumber(ARGV[1])
local estimate = tonumber(ARGV[2])
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + estimate > limit then
  return {0, math.max(limit - used, 0)}
end
if estimate > 0 then
  used = redis.call('INCRBY', KEYS[1], estimate)
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return {1, limit - used}
`)

// reconcileScript adds ARGV[1] (maybe negative) to the counter KEYS[1],
// deletes it when that leaves nothing, and makes it expire in ARGV[2]
// seconds otherwise.
var reconcileScript = redis.NewScript(`
local used = redis.call('INCRBY', KEYS[1], ARGV[1])
if used <= 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return used
`)

// tokensMargin is how long a day's token counter outlives its day.
const tokensMargin = time.Hour

// RedisTokenQuota is a TokenQuota on Redis, shared by every instance using
// the same Redis and prefix. A user's usage of a day is a counter,
// <prefix>tokens:{<user>}:<day>, which expires an hour after the day
// (UTC) ends. It is safe for concurrent use.
type RedisTokenQuota struct {
	client redis.UniversalClient
	limit  int
	prefix string
	now    func() time.Time
}

var _ TokenQuota = (*RedisTokenQuota)(nil)

// NewRedisTokenQuota returns a RedisTokenQuota giving each user limit
// tokens per day, on client.
func NewRedisTokenQuota(client redis.UniversalClient, limit int, opts RedisOptions) *RedisTokenQuota {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	return &RedisTokenQuota{client: client, limit: limit, prefix: opts.prefix() + "tokens:", now: now}
}

// key returns the key of user's counter of today, and its TTL in seconds.
func (r *RedisTokenQuota) key(user string) (string, int64) {
	now := r.now().UTC()
	end := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	ttl := int64(math.Ceil((end.Sub(now) + tokensMargin).Seconds()))
	return r.prefix + "{" + user + "}:" + day(now), ttl
}

// Reserve takes estimate tokens from user's quota of the day if they fit.
func (r *RedisTokenQuota) Reserve(ctx context.Context, user string, estimate int) (bool, int, error) {
	_, ok, remaining, err := r.Take(ctx, user, estimate)
	return ok, remaining, err
}

// Take reserves estimate tokens of user's quota of the day, and returns
// the function that settles them in the counter of that day.
func (r *RedisTokenQuota) Take(ctx context.Context, user string, estimate int) (Settle, bool, int, error) {
	estimate = max(estimate, 0)
	key, ttl := r.key(user)
	v, err := reserveScript.Run(ctx, r.client, []string{key}, r.limit, estimate, ttl).Int64Slice()
	if err != nil {
		return nil, false, 0, fmt.Errorf("limits: tokens of %q: %w", user, err)
	}
	if len(v) != 2 {
		return nil, false, 0, fmt.Errorf("limits: tokens of %q: script returned %v", user, v)
	}
	if v[0] != 1 {
		return nil, false, int(v[1]), nil
	}
	// The counter of the day expires with it: settling it later keeps
	// its TTL, which still runs out an hour after that day.
	expires := r.now().Add(time.Duration(ttl) * time.Second)
	return func(ctx context.Context, actual int) error {
		left := int64(math.Ceil(expires.Sub(r.now()).Seconds()))
		if left <= 0 {
			return nil
		}
		return r.reconcile(ctx, user, key, left, estimate, actual)
	}, true, int(v[1]), nil
}

// Reconcile replaces a reservation of estimate tokens by actual.
func (r *RedisTokenQuota) Reconcile(ctx context.Context, user string, estimate, actual int) error {
	key, ttl := r.key(user)
	return r.reconcile(ctx, user, key, ttl, estimate, actual)
}

// reconcile applies the difference between actual and estimate to the
// counter key, which expires in ttl seconds.
func (r *RedisTokenQuota) reconcile(ctx context.Context, user, key string, ttl int64, estimate, actual int) error {
	delta := max(actual, 0) - max(estimate, 0)
	if delta == 0 {
		return nil
	}
	if err := reconcileScript.Run(ctx, r.client, []string{key}, delta, ttl).Err(); err != nil {
		return fmt.Errorf("limits: tokens of %q: %w", user, err)
	}
	return nil
}
