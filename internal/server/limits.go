package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/99designs/gqlgen/graphql"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/limits"
	"askgate/internal/protect"
	"askgate/internal/server/subscriptions"
)

// codeRateLimited is the code of an operation refused by the request rate
// or the cost budget (HTTP 429 with Retry-After).
const codeRateLimited = string(chat.CodeRateLimited)

// RequestLimits are the limits on the requests of every authenticated
// viewer: the zero value limits nothing.
type RequestLimits struct {
	// gate checks the viewer's request rate (key user:<id>), the global
	// rate and the viewer's cost budget together; nil = off.
	gate limits.Gate
	// rate and budget say which of them are on.
	rate, budget bool
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

// NewRequestLimits returns the limits configured by c, on Redis (through a
// limits.Fallback) when c.Redis is set and in process otherwise.
func NewRequestLimits(c RequestLimitsConfig, log *slog.Logger) RequestLimits {
	var rl RequestLimits
	if !c.Enabled() {
		return rl
	}
	cfg := limits.GateConfig{Rate: c.Rate, Global: c.Global, Budget: c.Budget}
	rl.rate = c.Rate.Events > 0 || c.Global.Events > 0
	rl.budget = c.Budget.Size > 0
	rl.gate = limits.NewLocalGate(cfg, limits.LocalOptions{})
	if c.Redis != nil {
		fopts := c.Fallback
		if fopts.Logger == nil {
			fopts.Logger = log
		}
		fb := limits.NewFallback(fopts)
		rl.Degraded = fb.Degraded
		rl.gate = fb.Gate(limits.NewRedisGate(c.Redis, cfg, limits.RedisOptions{Prefix: c.Prefix}), rl.gate)
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

// rateCountedKey marks a context whose request has been counted against
// the request rates already.
type rateCountedKey struct{}

// countRate counts a request of the viewer in ctx against the request
// rates alone, before its document is parsed — prepare does it for a
// document not in the cache, whose parsing a refused request then does
// not cost — and returns the context that says so. A request whose
// document is cached is counted by admit instead, together with its cost:
// one round trip to Redis per request.
func (s *Server) countRate(ctx context.Context) (context.Context, *gqlerror.Error) {
	rl := s.deps.RequestLimits
	if !rl.rate {
		return ctx, nil
	}
	v, ok := auth.ViewerFrom(ctx)
	if !ok {
		return ctx, nil
	}
	ctx = context.WithValue(ctx, rateCountedKey{}, true)
	a, err := rl.gate.Admit(ctx, userKey(v.ID), true, limits.NoDebit)
	if err != nil {
		s.limitError(ctx, err)
		return ctx, nil
	}
	return ctx, refusal(a, 0)
}

// refused counts an operation refused after prepare and before guard
// against the request rates, when prepare left that to guard (its
// document was cached): a client looping on a cached document with bad
// variables is limited like any other. The refusal stands whatever the
// rates say.
func (s *Server) refused(prepCtx context.Context) {
	if prepCtx.Value(rateCountedKey{}) != nil {
		return
	}
	_, _ = s.countRate(prepCtx)
}

// admit counts an operation of the viewer in prepCtx against the request
// rates (unless prepare counted it) and debits its cost from the cost
// budget, in one call; it refuses the operation when a limit does not let
// it through. With a cost budget, it records the budget's state in oc for
// extensions.cost.throttleStatus, and arranges for the cost that did not
// run to be refunded once the operation has (see settleCost). Operations
// without a viewer are not limited; a limit that fails (the request's
// context ended) lets the operation through.
func (s *Server) admit(prepCtx context.Context, oc *graphql.OperationContext, cost int) *gqlerror.Error {
	rl := s.deps.RequestLimits
	countRate := rl.rate && prepCtx.Value(rateCountedKey{}) == nil
	if !countRate && !rl.budget {
		return nil
	}
	v, ok := auth.ViewerFrom(prepCtx)
	if !ok {
		return nil
	}
	debit := limits.NoDebit
	if rl.budget {
		debit = cost
	}
	key := userKey(v.ID)
	a, err := rl.gate.Admit(prepCtx, key, countRate, debit)
	if err != nil {
		s.limitError(prepCtx, err)
		return nil
	}
	if a.Budgeted {
		oc.Stats.SetExtension(subscriptions.ThrottleStatsKey, throttleStatus(a.Throttle))
		if a.Allowed() {
			oc.Stats.SetExtension(subscriptions.SettleStatsKey, s.settleCost(prepCtx, oc, cost, a))
		}
	}
	return refusal(a, cost)
}

// settleCost returns the function that reports an operation's
// actualQueryCost once it has run, and refunds the viewer's budget the
// cost it was debited (cost, admitted by a) but did not use: a query that
// got 3 conversations of the 20 it asked for pays for 3
// (protect.ActualCost). A subscription is charged what it asked for.
func (s *Server) settleCost(prepCtx context.Context, oc *graphql.OperationContext, cost int, a limits.Admission) subscriptions.Settle {
	t := a.Throttle
	return func(resp *graphql.Response) (int, any) {
		if oc.Operation == nil || oc.Operation.Operation == ast.Subscription {
			return cost, throttleStatus(t)
		}
		actual := protect.ActualCost(s.schema.Schema(), oc.Doc, oc.Operation, oc.Variables, resp.Data)
		if actual >= cost {
			return cost, throttleStatus(t)
		}
		// The refund is owed even when the request's context has ended
		// (a timeout): the budget's state outlives the request.
		ctx := context.WithoutCancel(prepCtx)
		refunded, err := a.Refund(ctx, cost-actual)
		if err != nil {
			s.limitError(ctx, err)
			return actual, throttleStatus(t)
		}
		return actual, throttleStatus(refunded)
	}
}

// throttleStatus returns the value of extensions.cost.throttleStatus for t.
func throttleStatus(t limits.Throttle) map[string]any {
	return map[string]any{
		"maximumAvailable":   t.MaximumAvailable,
		"currentlyAvailable": t.CurrentlyAvailable,
		"restoreRate":        t.RestoreRate,
	}
}

// refusal returns the RATE_LIMITED error of a refused admission of an
// operation of the given cost, nil when a was allowed.
func refusal(a limits.Admission, cost int) *gqlerror.Error {
	retry := max(limits.RetryAfterSeconds(a.RetryAfter), 1)
	switch a.Refused {
	case limits.RefusedRate:
		return rateLimited(fmt.Sprintf("over your request rate: retry in %d s", retry), retry)
	case limits.RefusedGlobal:
		return rateLimited(fmt.Sprintf("over the gateway's request rate: retry in %d s", retry), retry)
	case limits.RefusedBudget:
		if a.RetryAfter <= 0 {
			return rateLimited(fmt.Sprintf("the query's cost, %d, is over the cost budget's size, %d", cost, a.Throttle.MaximumAvailable), 0)
		}
		return rateLimited(fmt.Sprintf("the query's cost, %d, is over the %d points available: retry in %d s", cost, a.Throttle.CurrentlyAvailable, retry), retry)
	}
	return nil
}

// limitError logs a limit that could not be checked.
func (s *Server) limitError(ctx context.Context, err error) {
	s.log.LogAttrs(ctx, slog.LevelWarn, "request limit check failed",
		slog.String("error", err.Error()), slog.String("trace_id", traceID(ctx)))
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

// limitsDegraded reports whether limits on Redis are configured (request
// limits, or answer limits through Deps.AnswerLimitsDegraded) and whether
// any of them fell back to the in-process ones.
func (s *Server) limitsDegraded() (configured, degraded bool) {
	for _, d := range []func() bool{s.deps.RequestLimits.Degraded, s.deps.AnswerLimitsDegraded} {
		if d != nil {
			configured = true
			degraded = degraded || d()
		}
	}
	return configured, degraded
}
