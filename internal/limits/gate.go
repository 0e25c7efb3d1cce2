package limits

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// NoDebit is the cost to give Gate.Admit when the request's cost is not
// known yet: the cost budget is not consulted.
const NoDebit = -1

// GateConfig configures a Gate: a zero Rate, Global or Budget is off.
type GateConfig struct {
	// Rate limits each key's requests.
	Rate Rate
	// Global limits the requests of every key together.
	Global Rate
	// Budget is each key's cost budget.
	Budget Bucket
}

// enabled reports which limits c switches on.
func (c GateConfig) enabled() (rate, global, budget bool) {
	return c.Rate.Events > 0, c.Global.Events > 0, c.Budget.Size > 0
}

// Refusal says which limit refused a request.
type Refusal int

// The limits of a Gate, in the order it checks them.
const (
	Admitted Refusal = iota
	RefusedRate
	RefusedGlobal
	RefusedBudget
)

// Admission is the answer of a Gate.
type Admission struct {
	// Refused is the first limit that refused the request, Admitted when
	// none did. A refused request is counted by none of them.
	Refused Refusal
	// RetryAfter is, for a refusal, how long until the limit that refused
	// would allow the request (zero for a cost that never fits).
	RetryAfter time.Duration
	// Throttle is the state of the key's cost budget after the debit (or
	// as it stands, when nothing was debited); Budgeted reports whether
	// the budget was consulted.
	Throttle Throttle
	Budgeted bool

	// refund gives points back to the budget that debited them; nil when
	// nothing was debited.
	refund func(ctx context.Context, amount int) (Throttle, error)
}

// Allowed reports whether the request may go ahead.
func (a Admission) Allowed() bool { return a.Refused == Admitted }

// Refund gives amount points of an admitted request's debit back to the
// budget that took them — Redis or in process, whichever admitted it, even
// when the other answers by then. It returns the budget's state after;
// without a debit it does nothing and returns the zero Throttle.
func (a Admission) Refund(ctx context.Context, amount int) (Throttle, error) {
	if a.refund == nil || amount <= 0 {
		return Throttle{}, nil
	}
	return a.refund(ctx, amount)
}

// Gate checks every limit of one request at once — the key's request
// rate, the global rate and the key's cost budget — and counts the request
// against all of them or, when one refuses, against none. On Redis that is
// one script call, one round trip per request however many limits are on.
// Implementations are safe for concurrent use.
type Gate interface {
	// Admit counts a request of key against the rates when countRate is
	// set and debits cost points from its budget unless cost is NoDebit.
	Admit(ctx context.Context, key string, countRate bool, cost int) (Admission, error)
	// Refund gives amount points back to key's budget (a request that
	// cost less than it was debited).
	Refund(ctx context.Context, key string, amount int) (Throttle, error)
}

// globalGateKey is the key of the global rate.
const globalGateKey = "global"

// LocalGate is a Gate in process, over LocalRate and LocalBudget state. It
// is safe for concurrent use; the zero value is not usable.
type LocalGate struct {
	cfg    GateConfig
	opts   LocalOptions
	mu     sync.Mutex // makes a check of the three limits and its count one step
	rate   *LocalRate
	global *LocalRate
	budget *LocalBudget
}

var _ Gate = (*LocalGate)(nil)

// NewLocalGate returns a LocalGate enforcing cfg.
func NewLocalGate(cfg GateConfig, opts LocalOptions) *LocalGate {
	g := &LocalGate{cfg: cfg, opts: opts}
	rate, global, budget := cfg.enabled()
	if rate {
		g.rate = NewLocalRate(cfg.Rate, opts)
	}
	if global {
		g.global = NewLocalRate(cfg.Global, opts)
	}
	if budget {
		g.budget = NewLocalBudget(cfg.Budget, opts)
	}
	return g
}

// Admit checks and counts a request of key.
func (g *LocalGate) Admit(_ context.Context, key string, countRate bool, cost int) (Admission, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.opts.now()
	var a Admission
	type rateCount struct {
		l   *LocalRate
		key string
		tat time.Time
	}
	var counts [2]rateCount
	if countRate {
		for i, r := range []struct {
			l       *LocalRate
			key     string
			refusal Refusal
		}{{g.rate, key, RefusedRate}, {g.global, globalGateKey, RefusedGlobal}} {
			if r.l == nil {
				continue
			}
			d, tat := r.l.decide(r.key, now)
			if !d.Allowed {
				a.Refused, a.RetryAfter = r.refusal, d.RetryAfter
				break
			}
			counts[i] = rateCount{r.l, r.key, tat}
		}
	}
	var bucket localBucket
	if g.budget != nil && cost != NoDebit {
		debit := cost
		if a.Refused != Admitted {
			debit = 0 // report the state, take nothing
		}
		a.Throttle, bucket = g.budget.decide(key, debit, now)
		a.Budgeted = true
		if !a.Throttle.Allowed && a.Refused == Admitted {
			a.Refused, a.RetryAfter = RefusedBudget, a.Throttle.RetryAfter
		}
		if a.Refused != Admitted {
			a.Throttle.Allowed = false
		}
	}
	if a.Refused != Admitted {
		return a, nil
	}
	for _, c := range counts {
		if c.l != nil {
			c.l.set(c.key, c.tat, now)
		}
	}
	if a.Budgeted {
		g.budget.store(key, bucket, now)
		a.refund = func(ctx context.Context, amount int) (Throttle, error) { return g.Refund(ctx, key, amount) }
	}
	return a, nil
}

// Refund gives amount points back to key's budget.
func (g *LocalGate) Refund(ctx context.Context, key string, amount int) (Throttle, error) {
	if g.budget == nil {
		return Throttle{}, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.budget.Refund(ctx, key, amount)
}

// gateScript is RedisGate's check of a request: the GCRA of the key's rate
// (KEYS[1]) and of the global rate (KEYS[2]), as go-redis/redis_rate
// computes and stores it (so that a RedisRate on the same keys agrees),
// then the debit of the key's cost budget (KEYS[3]), as budgetScript does.
// It writes only when every limit allows the request.
//
// ARGV: count the rates (1/0); the key's rate: events, period in seconds,
// burst (events 0 = off); the global rate likewise; the budget: size
// (0 = off), restore rate, cost (-1 = not consulted), margin in ms.
//
// Returns {refused (0 none, 1 rate, 2 global, 3 budget), retry after in
// seconds (string), budget consulted (1/0), budget allowed (1/0), points
// available (string), budget retry after in ms}.
var gateScript = redis.NewScript(redisTimeMS + bucketLua + `
local now_s = (tonumber(t[1]) - 1483228800) + tonumber(t[2]) / 1000000

local refused = 0
local retry = 0
local writes = {}

local function gcra(key, events, period, burst)
  local emission = period / events
  local tat = redis.call('GET', key)
  if tat then tat = tonumber(tat) else tat = now_s end
  tat = math.max(tat, now_s)
  local new_tat = tat + emission
  local diff = now_s - (new_tat - emission * burst)
  if diff < 0 then
    return false, -diff
  end
  table.insert(writes, {key, new_tat, math.ceil(new_tat - now_s)})
  return true, 0
end

if ARGV[1] == '1' then
  local limits = {{KEYS[1], 2, 1}, {KEYS[2], 5, 2}}
  for _, l in ipairs(limits) do
    local events = tonumber(ARGV[l[2]])
    if events > 0 then
      local ok, after = gcra(l[1], events, tonumber(ARGV[l[2] + 1]), tonumber(ARGV[l[2] + 2]))
      if not ok then
        refused = l[3]
        retry = after
        break
      end
    end
  end
end

local size = tonumber(ARGV[8])
local rate = tonumber(ARGV[9])
local cost = tonumber(ARGV[10])
local budgeted = 0
local budget_allowed = 0
local available = 0
local at = 0
local budget_retry = 0
if size > 0 and cost >= 0 then
  budgeted = 1
  if refused ~= 0 then
    cost = 0 -- report the state, take nothing
  end
  budget_allowed, available, at, budget_retry = bucket_debit(KEYS[3], size, rate, cost)
  if budget_allowed == 0 then
    refused = 3
  elseif refused ~= 0 then
    budget_allowed = 0
  end
end

if refused == 0 then
  for _, w in ipairs(writes) do
    if w[3] > 0 then
      redis.call('SET', w[1], w[2], 'EX', w[3])
    end
  end
  if budgeted == 1 then
    bucket_store(KEYS[3], size, rate, available, at, tonumber(ARGV[11]))
  end
end
return {refused, tostring(retry), budgeted, budget_allowed, tostring(available), budget_retry}
`)

// RedisGate is a Gate on Redis, shared by every instance using the same
// Redis and prefix: one script call per request, on Redis's clock, over
// the keys of RedisRate (the key's and "global") and RedisBudget. It is
// safe for concurrent use.
//
// On a Redis Cluster the global rate's key is on a slot of its own, and a
// script cannot span slots: the global rate is then checked by a second
// call (RedisRate's), after the key's limits; a request the global rate
// refuses has its debit refunded but stays counted against the key's rate.
type RedisGate struct {
	client redis.UniversalClient
	cfg    GateConfig
	prefix string
	// global, on a Redis Cluster, checks the global rate apart.
	global *RedisRate
	budget *RedisBudget
}

var _ Gate = (*RedisGate)(nil)

// NewRedisGate returns a RedisGate enforcing cfg on client.
func NewRedisGate(client redis.UniversalClient, cfg GateConfig, opts RedisOptions) *RedisGate {
	g := &RedisGate{client: client, cfg: cfg, prefix: opts.prefix()}
	if _, cluster := client.(*redis.ClusterClient); cluster && cfg.Global.Events > 0 {
		g.global = NewRedisRate(client, cfg.Global, opts)
		g.cfg.Global = Rate{}
	}
	if cfg.Budget.Size > 0 {
		g.budget = NewRedisBudget(client, cfg.Budget, opts)
	}
	return g
}

// rateArgs returns the script's arguments for r.
func rateArgs(r Rate) []any {
	if r.Events <= 0 {
		return []any{0, 0, 0}
	}
	return []any{r.Events, r.Per.Seconds(), r.burst()}
}

// Admit checks and counts a request of key.
func (g *RedisGate) Admit(ctx context.Context, key string, countRate bool, cost int) (Admission, error) {
	if cost < 0 {
		cost = NoDebit
	}
	if g.budget == nil && (!countRate || (g.cfg.Rate.Events <= 0 && g.cfg.Global.Events <= 0)) {
		if countRate && g.global != nil {
			return g.admitGlobal(ctx)
		}
		return Admission{}, nil
	}
	keys := []string{
		g.prefix + "rate:{" + key + "}",
		g.prefix + "rate:{" + globalGateKey + "}",
		g.prefix + "budget:{" + key + "}",
	}
	if g.global != nil {
		// A Redis Cluster refuses a script whose keys are on several
		// slots, even keys it does not touch: the global rate's key,
		// checked apart, gives way to one of the key's slot.
		keys[1] = keys[0]
	}
	args := make([]any, 0, 11)
	args = append(args, boolArg(countRate))
	args = append(args, rateArgs(g.cfg.Rate)...)
	args = append(args, rateArgs(g.cfg.Global)...)
	args = append(args, g.cfg.Budget.Size, g.cfg.Budget.RestoreRate, cost, budgetMargin)
	v, err := gateScript.Run(ctx, g.client, keys, args...).Slice()
	if err != nil {
		return Admission{}, fmt.Errorf("limits: request of %q: %w", key, err)
	}
	a, err := parseAdmission(v, g.cfg.Budget)
	if err != nil {
		return Admission{}, fmt.Errorf("limits: request of %q: %w", key, err)
	}
	if a.Budgeted && a.Allowed() {
		a.refund = func(ctx context.Context, amount int) (Throttle, error) { return g.Refund(ctx, key, amount) }
	}
	if a.Allowed() && countRate && g.global != nil {
		ga, err := g.admitGlobal(ctx)
		if err == nil && ga.Allowed() {
			return a, nil
		}
		// Refused after the key's limits admitted it: the debit goes
		// back; the key's rate stays counted.
		if cost > 0 {
			if t, rerr := a.Refund(ctx, cost); rerr == nil && a.Budgeted {
				a.Throttle = t
			}
		}
		ga.Throttle, ga.Budgeted = a.Throttle, a.Budgeted
		return ga, err
	}
	return a, nil
}

// admitGlobal checks the global rate apart (on a Redis Cluster).
func (g *RedisGate) admitGlobal(ctx context.Context) (Admission, error) {
	d, err := g.global.Allow(ctx, globalGateKey)
	if err != nil || d.Allowed {
		return Admission{}, err
	}
	return Admission{Refused: RefusedGlobal, RetryAfter: d.RetryAfter}, nil
}

// parseAdmission reads gateScript's reply.
func parseAdmission(v []any, b Bucket) (Admission, error) {
	if len(v) != 6 {
		return Admission{}, fmt.Errorf("script returned %v", v)
	}
	refused, _ := v[0].(int64)
	retryS, _ := v[1].(string)
	retry, err1 := strconv.ParseFloat(retryS, 64)
	budgeted, _ := v[2].(int64)
	allowed, _ := v[3].(int64)
	availS, _ := v[4].(string)
	available, err2 := strconv.ParseFloat(availS, 64)
	budgetRetry, _ := v[5].(int64)
	if err1 != nil || err2 != nil || refused < 0 || refused > int64(RefusedBudget) {
		return Admission{}, fmt.Errorf("script returned %v", v)
	}
	a := Admission{Refused: Refusal(refused)}
	switch a.Refused {
	case RefusedRate, RefusedGlobal:
		a.RetryAfter = time.Duration(retry * float64(time.Second))
	case RefusedBudget:
		a.RetryAfter = time.Duration(budgetRetry) * time.Millisecond
	}
	if budgeted == 1 {
		a.Budgeted = true
		a.Throttle = Throttle{
			MaximumAvailable:   b.Size,
			CurrentlyAvailable: int(math.Floor(available)),
			RestoreRate:        b.RestoreRate,
			Allowed:            allowed == 1,
		}
		if a.Refused == RefusedBudget {
			a.Throttle.RetryAfter = a.RetryAfter
		}
	}
	return a, nil
}

// boolArg returns b as a script argument.
func boolArg(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Refund gives amount points back to key's budget.
func (g *RedisGate) Refund(ctx context.Context, key string, amount int) (Throttle, error) {
	if g.budget == nil {
		return Throttle{}, nil
	}
	return g.budget.Refund(ctx, key, amount)
}

// Gate returns a Gate that uses redis through f, and local when Redis does
// not answer. A debit admitted late in Redis is refunded; rates counted
// late stay counted.
func (f *Fallback) Gate(redis, local Gate) Gate {
	return fallbackGate{f, redis, local}
}

// fallbackGate is the Gate of Fallback.Gate.
type fallbackGate struct {
	f            *Fallback
	redis, local Gate
}

// Admit checks and counts a request of key. The refund of a debit made in
// Redis goes to Redis, within the Fallback's timeout.
func (g fallbackGate) Admit(ctx context.Context, key string, countRate bool, cost int) (Admission, error) {
	return fallback(ctx, g.f,
		func(ctx context.Context) (Admission, error) {
			a, err := g.redis.Admit(ctx, key, countRate, cost)
			if inner := a.refund; inner != nil {
				a.refund = func(ctx context.Context, amount int) (Throttle, error) {
					return call(ctx, g.f, func(ctx context.Context) (Throttle, error) { return inner(ctx, amount) }, nil)
				}
			}
			return a, err
		},
		func(ctx context.Context) (Admission, error) { return g.local.Admit(ctx, key, countRate, cost) },
		func(a Admission) {
			if a.Allowed() && a.Budgeted && cost > 0 {
				ctx, cancel := lateContext()
				defer cancel()
				_, _ = g.redis.Refund(ctx, key, cost)
			}
		})
}

// Refund gives amount points back to key's budget, in Redis or, when it
// does not answer, in process. Refund an admitted request through its
// Admission instead: it goes to the store that debited it.
func (g fallbackGate) Refund(ctx context.Context, key string, amount int) (Throttle, error) {
	return fallback(ctx, g.f,
		func(ctx context.Context) (Throttle, error) { return g.redis.Refund(ctx, key, amount) },
		func(ctx context.Context) (Throttle, error) { return g.local.Refund(ctx, key, amount) },
		nil)
}
