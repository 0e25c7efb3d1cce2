package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"askgate/internal/auth"
	"askgate/internal/server/subscriptions"
)

// SubscriptionOptions configure the WebSocket and server-sent events
// transports. The zero value of each field selects its default.
type SubscriptionOptions struct {
	// InitTimeout is how long a WebSocket client has to send
	// connection_init (4408 after it). Default 3 s.
	InitTimeout time.Duration
	// MaxSubscriptions is how many operations one WebSocket connection
	// may run at a time. Default 20.
	MaxSubscriptions int
	// AllowedOrigins are the origins whose pages may open WebSockets;
	// empty allows the same origin only.
	AllowedOrigins []string
	// PingInterval is the interval of the server's pings and keep-alive
	// comments. Default 15 s.
	PingInterval time.Duration
}

// liveTransports returns the subscription transports, in the order the
// GraphQL handler must try them: before the plain HTTP one, which takes
// every request without an Upgrade header.
func (s *Server) liveTransports() []graphql.Transport {
	o := s.deps.Subscriptions
	ops := liveOps{s}
	s.ws = &subscriptions.WebSocket{
		Authenticate:     s.authenticateSocket,
		Ops:              ops,
		InitTimeout:      o.InitTimeout,
		PingInterval:     o.PingInterval,
		MaxSubscriptions: o.MaxSubscriptions,
		AllowedOrigins:   o.AllowedOrigins,
		RequestTimeout:   s.requestTimeout(),
		Logger:           s.log,
	}
	s.sse = &subscriptions.SSE{Ops: ops, PingInterval: o.PingInterval, RequestTimeout: s.requestTimeout(), Logger: s.log}
	return []graphql.Transport{s.ws, s.sse}
}

// requestTimeout bounds a query or mutation.
func (s *Server) requestTimeout() time.Duration {
	if s.deps.RequestTimeout > 0 {
		return s.deps.RequestTimeout
	}
	return DefaultRequestTimeout
}

// liveOps gives the subscription transports the same checks as the HTTP
// transport.
type liveOps struct{ s *Server }

func (o liveOps) Prepare(ctx context.Context, p *graphql.RawParams) (context.Context, gqlerror.List) {
	return o.s.prepare(ctx, p)
}

func (o liveOps) Guard(prepCtx context.Context, oc *graphql.OperationContext) (int, gqlerror.List) {
	return o.s.guard(prepCtx, oc)
}

// authenticateSocket authenticates a WebSocket connection from its
// connection_init payload ({"authorization": "Bearer <JWT>"}), or else
// from the upgrade request's Authorization header. The connection closes
// (4403) when the token expires.
func (s *Server) authenticateSocket(ctx context.Context, r *http.Request, payload map[string]any) (context.Context, time.Time, error) {
	var header string
	for _, key := range []string{"authorization", "Authorization"} {
		if v, ok := payload[key].(string); ok {
			header = v
			break
		}
	}
	var v *auth.Viewer
	var err error
	if header != "" {
		v, err = s.deps.Auth.AuthenticateHeader(header)
	} else {
		v, err = s.deps.Auth.Authenticate(r)
	}
	if err != nil {
		s.log.LogAttrs(ctx, slog.LevelDebug, "WebSocket authentication failed",
			slog.String("error", err.Error()), slog.String("trace_id", traceID(ctx)))
		return ctx, time.Time{}, err
	}
	if rl := requestLogFrom(ctx); rl != nil {
		rl.mu.Lock()
		rl.userID = v.ID
		rl.mu.Unlock()
	}
	s.observeViewer(ctx, v)
	return auth.WithViewer(ctx, v), v.ExpiresAt, nil
}

// Shutdown closes every WebSocket with 1001 (going away) and ends every
// server-sent events stream, then waits for their goroutines or ctx. Call
// it after the answers have been finished or saved, so that subscribers
// have had their terminal events.
func (s *Server) Shutdown(ctx context.Context) error {
	if s.ws == nil {
		return nil
	}
	return errors.Join(s.ws.Shutdown(ctx), s.sse.Shutdown(ctx))
}
