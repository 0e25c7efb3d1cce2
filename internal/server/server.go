// Package server assembles askgate's HTTP surface: the GraphQL endpoint with
// its transports, authentication, error masking and per-operation logging,
// GraphiQL, health checks and metrics. NewServer returns it as one
// http.Handler; the routes are all listed in routes.go.
package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"askgate/internal/answers"
	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/protect"
	"askgate/internal/server/subscriptions"
	"askgate/loaders"
	"askgate/resolvers"
)

// Pinger is a dependency whose reachability /readyz reports.
type Pinger interface {
	Ping(ctx context.Context) error
}

// Deps are the server's dependencies and settings.
type Deps struct {
	// Store keeps conversations and messages. Required.
	Store chat.Store
	// Users finds user profiles. Required. When it also has an
	// Observe(ctx, *chat.User) error method (the built-in directory), the
	// server calls it with each authenticated viewer's claims.
	Users chat.UserDirectory
	// Auth verifies access tokens. Required.
	Auth *auth.Verifier
	// Logger receives one line per operation and every masked error.
	// Nil means slog.Default().
	Logger *slog.Logger
	// Tracer starts a span for every request, continuing the trace of an
	// incoming traceparent header. Nil means a tracer that only propagates.
	Tracer trace.Tracer
	// Development enables introspection, GraphiQL and "did you mean"
	// suggestions in validation errors, and shows DevToken in GraphiQL's
	// headers. Production (false) has none of them.
	Development bool
	// DevToken is the bearer token GraphiQL starts with in development.
	DevToken string
	// LoaderWait is the dataloaders' batch window; zero means the default.
	LoaderWait time.Duration
	// RequestTimeout bounds a query or mutation; zero means
	// DefaultRequestTimeout. Subscriptions are exempt.
	RequestTimeout time.Duration
	// APQ stores automatic persisted queries (Redis, shared by every
	// instance, when configured). Nil means an in-process LRU.
	APQ protect.APQStore
	// Trusted holds the trusted documents manifest, when one is
	// configured; in persisted-only mode nothing else runs.
	Trusted *protect.Trusted
	// Limits bound every operation before it executes: depth, aliases,
	// root fields, directives, tokens, size and cost. The zero value means
	// protect's defaults.
	Limits protect.Limits
	// Redis, when set, is the shared state whose reachability /readyz
	// reports.
	Redis Pinger
	// RequestLimits limit each viewer's request rate and cost budget, and
	// the global request rate (RATE_LIMITED, HTTP 429). The zero value
	// limits nothing; see NewRequestLimits.
	RequestLimits RequestLimits
	// AnswerLimitsDegraded, when set, reports whether the answer limits
	// (concurrent answers, LLM token quota) on Redis fell back to
	// in-process ones, for /readyz.
	AnswerLimitsDegraded func() bool
	// Answers asks the language model and streams its answers. Required.
	Answers *answers.Manager
	// Subscriptions configure the WebSocket and server-sent events
	// transports.
	Subscriptions SubscriptionOptions
	// Collectors are more instruments served on /metrics, such as the
	// user cache's.
	Collectors []prometheus.Collector
}

// DefaultRequestTimeout bounds a query or mutation when
// Deps.RequestTimeout is zero.
const DefaultRequestTimeout = 30 * time.Second

// Server is askgate's HTTP handler.
type Server struct {
	deps      Deps
	log       *slog.Logger
	tracer    trace.Tracer
	metrics   *metrics
	documents *documentCache
	schema    graphql.ExecutableSchema
	apq       *protect.APQ
	ws        *subscriptions.WebSocket
	sse       *subscriptions.SSE
	handler   http.Handler
}

// NewServer returns askgate's HTTP handler for deps.
func NewServer(deps Deps) *Server {
	s := &Server{deps: deps, log: deps.Logger, tracer: deps.Tracer}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.tracer == nil {
		s.tracer = noop.NewTracerProvider().Tracer("askgate")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(deps.Collectors...)
	s.metrics = newMetrics(reg)
	s.documents = newDocumentCache(queryCacheSize, reg)
	s.handler = s.routes(reg)
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.handler.ServeHTTP(w, r)
}

// loaderConfig returns the configuration of every operation's loaders.
func (s *Server) loaderConfig() loaders.Config {
	return loaders.Config{Store: s.deps.Store, Users: s.deps.Users, Wait: s.deps.LoaderWait}
}

// resolver returns the schema's resolver root.
func (s *Server) resolver() *resolvers.Resolver {
	return &resolvers.Resolver{Store: s.deps.Store, Users: s.deps.Users, Answers: s.deps.Answers}
}
