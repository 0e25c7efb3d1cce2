package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/limits"
	"askgate/internal/server/subscriptions"
)

// codeRateLimited is the code of an operation refused by the request rate
// or the cost budget (HTTP 429 with Retry-After).
const codeRateLimited = string(chat.CodeRateLimited)

// globalKey is the key of the global request rate.
const globalKey = "global"

// RequestLimits are the limits on the requests of every authenticated
// viewer: the zero value limits nothing.
type RequestLimits struct {
	// Rate limits each viewer's operations (key user:<id>); nil = off.
	Rate limits.RateLimiter
	// Global limits the operations of all viewers together (key
	// "global"); nil = off.
	Global limits.RateLimiter
	// Budget is each viewer's cost budget (key user:<id>): an
	// operation's requested cost is debited before it executes; nil =
	// off.
	Budget limits.Budget
	// Degraded, when set, reports whether the limits are in process
	// because Redis does not answer (for /readyz).
	Degraded func() bool
}

// RequestLimitsConfig configures NewRequestLimits. A zero Rate, Global or
// Budget leaves that limit off.
type RequestLimitsConfig struct {
	Rate   limits.Rate
	Global limits.Rate
	Budget limits.Bucket
	// Redis, when set, holds the limits for every instance on it, with
	// the in-process limits as a fallback while it does not answer.
	Redis redis.UniversalClient
	// Prefix starts the limits' Redis keys; limits.DefaultPrefix when
	// empty.
	Prefix string
	// Fallback configures the fallback to the in-process limits (its
	// Logger is the one given to NewRequestLimits when nil).
	Fallback limits.FallbackOptions
}

// Enabled reports whether c switches any limit on.
func (c RequestLimitsConfig) Enabled() bool {
	return c.Rate.Events > 0 || c.Global.Events > 0 || c.Budget.Size > 0
}

// NewRequestLimits returns the limits configured by c, on Redis (wrapped
// in one limits.Fallback) when c.Redis is set and in process otherwise.
func NewRequestLimits(c RequestLimitsConfig, log *slog.Logger) RequestLimits {
	var rl RequestLimits
	if !c.Enabled() {
		return rl
	}
	var fb *limits.Fallback
	ropts := limits.RedisOptions{Prefix: c.Prefix}
	if c.Redis != nil {
		fopts := c.Fallback
		if fopts.Logger == nil {
			fopts.Logger = log
		}
		fb = limits.NewFallback(fopts)
		rl.Degraded = fb.Degraded
	}
	rate := func(r limits.Rate) limits.RateLimiter {
		local := limits.NewLocalRate(r, limits.LocalOptions{})
		if fb == nil {
			return local
		}
		return fb.Rate(limits.NewRedisRate(c.Redis, r, ropts), local)
	}
	if c.Rate.Events > 0 {
		rl.Rate = rate(c.Rate)
	}
	if c.Global.Events > 0 {
		rl.Global = rate(c.Global)
	}
	if c.Budget.Size > 0 {
		local := limits.NewLocalBudget(c.Budget, limits.LocalOptions{})
		if fb == nil {
			rl.Budget = local
		} else {
			rl.Budget = fb.Budget(limits.NewRedisBudget(c.Redis, c.Budget, ropts), local)
		}
	}
	return rl
}

// userKey is the key of a viewer's limits.
func userKey(id string) string { return "user:" + id }

// rateLimited returns the RATE_LIMITED error of an operation refused by
// a limit, with extensions.retryAfter in whole seconds when retry is
// positive (WebSocket and SSE clients see no header).
func rateLimited(msg string, retry int) *gqlerror.Error {
	ext := map[string]any{"code": codeRateLimited}
	if retry > 0 {
		ext["retryAfter"] = retry
	}
	return &gqlerror.Error{Message: msg, Extensions: ext}
}

// checkRate counts an operation of the viewer in ctx against the request
// rates, per user then global, and refuses it when either is exceeded.
// Operations without a viewer are not limited. A limiter's error (the
// request's context ended) lets the operation through.
func (s *Server) checkRate(ctx context.Context) *gqlerror.Error {
	rl := s.deps.RequestLimits
	if rl.Rate == nil && rl.Global == nil {
		return nil
	}
	v, ok := auth.ViewerFrom(ctx)
	if !ok {
		return nil
	}
	for _, l := range []struct {
		limiter limits.RateLimiter
		key     string
		what    string
	}{{rl.Rate, userKey(v.ID), "your request rate"}, {rl.Global, globalKey, "the gateway's request rate"}} {
		if l.limiter == nil {
			continue
		}
		d, err := l.limiter.Allow(ctx, l.key)
		if err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "rate limit check failed",
				slog.String("error", err.Error()), slog.String("trace_id", traceID(ctx)))
			continue
		}
		if !d.Allowed {
			retry := max(limits.RetryAfterSeconds(d.RetryAfter), 1)
			return rateLimited(fmt.Sprintf("over %s: retry in %d s", l.what, retry), retry)
		}
	}
	return nil
}

// debitCost debits an operation's cost from the viewer's cost budget,
// records the budget's state in oc for extensions.cost.throttleStatus and
// refuses the operation when its cost does not fit.
func (s *Server) debitCost(ctx context.Context, oc *graphql.OperationContext, cost int) *gqlerror.Error {
	b := s.deps.RequestLimits.Budget
	if b == nil {
		return nil
	}
	v, ok := auth.ViewerFrom(ctx)
	if !ok {
		return nil
	}
	t, err := b.Debit(ctx, userKey(v.ID), cost)
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "cost budget check failed",
			slog.String("error", err.Error()), slog.String("trace_id", traceID(ctx)))
		return nil
	}
	oc.Stats.SetExtension(subscriptions.ThrottleStatsKey, map[string]any{
		"maximumAvailable":   t.MaximumAvailable,
		"currentlyAvailable": t.CurrentlyAvailable,
		"restoreRate":        t.RestoreRate,
	})
	if t.Allowed {
		return nil
	}
	if cost > t.MaximumAvailable {
		return rateLimited(fmt.Sprintf("the query's cost, %d, is over the cost budget's size, %d", cost, t.MaximumAvailable), 0)
	}
	retry := max(limits.RetryAfterSeconds(t.RetryAfter), 1)
	return rateLimited(fmt.Sprintf("the query's cost, %d, is over the %d points available: retry in %d s", cost, t.CurrentlyAvailable, retry), retry)
}

// refusalStatus returns the HTTP status of a refused operation, status
// unless one of errs is RATE_LIMITED: then 429, with Retry-After set on w
// when the error says when.
func refusalStatus(w http.ResponseWriter, errs gqlerror.List, status int) int {
	for _, e := range errs {
		if e == nil || e.Extensions["code"] != codeRateLimited {
			continue
		}
		if retry, ok := e.Extensions["retryAfter"].(int); ok && retry > 0 {
			w.Header().Set("Retry-After", strconv.Itoa(retry))
		}
		return http.StatusTooManyRequests
	}
	return status
}

// limitsDegraded reports whether the request limits fell back to the
// in-process ones.
func (s *Server) limitsDegraded() (configured, degraded bool) {
	d := s.deps.RequestLimits.Degraded
	if d == nil {
		return false, false
	}
	return true, d()
}
