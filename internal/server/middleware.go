package server

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"askgate/internal/auth"
	"askgate/internal/chat"
)

// propagator reads and writes W3C traceparent headers.
var propagator = propagation.TraceContext{}

// traced continues the trace of an incoming traceparent header, or starts a
// new one, so that every log line and upstream call of the request carries
// the same trace id.
func (s *Server) traced(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := s.tracer.Start(ctx, r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// traceID returns the trace id of ctx's span, or "" when there is none.
func traceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// requestLog gathers what the access log line of one request reports; the
// GraphQL hooks fill it in as the operation runs.
type requestLog struct {
	mu        sync.Mutex
	operation string
	opType    string
	userID    string
	codes     []string
}

func (l *requestLog) addCode(code string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.codes {
		if c == code {
			return
		}
	}
	l.codes = append(l.codes, code)
}

type requestLogKey struct{}

func requestLogFrom(ctx context.Context) *requestLog {
	l, _ := ctx.Value(requestLogKey{}).(*requestLog)
	return l
}

// statusWriter records the status code a handler writes.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush sends buffered data to the client, for server-sent events.
func (w *statusWriter) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack hands the connection over to a WebSocket (gorilla/websocket
// needs the writer itself to be an http.Hijacker).
func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return conn, rw, err
}

// observe counts and times requests to a route and, for the GraphQL route,
// writes one log line per operation: name, type, duration, status, error
// codes, user id and trace id.
func (s *Server) observe(route string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rl := &requestLog{}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), requestLogKey{}, rl)))
		elapsed := time.Since(start)
		if sw.status == 0 {
			sw.status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		s.metrics.duration.WithLabelValues(route).Observe(elapsed.Seconds())
		if route != "graphql" {
			return
		}
		rl.mu.Lock()
		defer rl.mu.Unlock()
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "operation",
			slog.String("operation", rl.operation),
			slog.String("type", rl.opType),
			slog.String("method", r.Method),
			slog.Int("status", sw.status),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.Any("codes", rl.codes),
			slog.String("user_id", rl.userID),
			slog.String("trace_id", traceID(r.Context())),
		)
	})
}

// observer is implemented by the built-in user directory, which keeps the
// profiles of the users whose tokens it sees.
type observer interface {
	Observe(ctx context.Context, u *chat.User) error
}

// authenticated lets a request through only with a valid access token and
// puts its viewer in the request's context. Without one the request gets
// 401 with a WWW-Authenticate challenge and no resolver runs.
func (s *Server) authenticated(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		if isWebSocketUpgrade(r) {
			// A WebSocket authenticates with its connection_init message
			// (see authenticateSocket): browsers cannot set headers on it.
			next.ServeHTTP(w, r)
			return
		}
		ctx := r.Context()
		v, err := s.deps.Auth.Authenticate(r)
		if err != nil {
			s.unauthorized(w, r, err)
			return
		}
		if rl := requestLogFrom(ctx); rl != nil {
			rl.userID = v.ID
		}
		s.observeViewer(ctx, v)
		next.ServeHTTP(w, r.WithContext(auth.WithViewer(ctx, v)))
	})
}

// isWebSocketUpgrade reports whether r asks for a WebSocket.
func isWebSocketUpgrade(r *http.Request) bool {
	for _, v := range r.Header.Values("Upgrade") {
		for _, token := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "websocket") {
				return true
			}
		}
	}
	return false
}

// observeViewer lets the built-in directory record the viewer's profile.
func (s *Server) observeViewer(ctx context.Context, v *auth.Viewer) {
	if o, ok := s.deps.Users.(observer); ok {
		if err := o.Observe(ctx, v.User()); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "could not record the viewer's profile",
				slog.String("user_id", v.ID), slog.String("error", err.Error()),
				slog.String("trace_id", traceID(ctx)))
		}
	}
}

// unauthorized answers a request whose token is missing or bad.
func (s *Server) unauthorized(w http.ResponseWriter, r *http.Request, err error) {
	ctx := r.Context()
	s.log.LogAttrs(ctx, slog.LevelDebug, "authentication failed",
		slog.String("error", err.Error()), slog.String("trace_id", traceID(ctx)))
	challenge := `Bearer realm="askgate"`
	if r.Header.Get("Authorization") != "" {
		challenge += `, error="invalid_token"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeErrors(w, http.StatusUnauthorized, chat.ErrorMessage(err), chat.CodeUnauthenticated)
	if rl := requestLogFrom(ctx); rl != nil {
		rl.addCode(string(chat.CodeUnauthenticated))
	}
	s.metrics.errors.WithLabelValues(string(chat.CodeUnauthenticated)).Inc()
}

// writeErrors writes a GraphQL response holding one request error and no
// data, in the media type the client accepts.
func writeErrors(w http.ResponseWriter, status int, message string, code chat.Code) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []any{map[string]any{
			"message":    message,
			"extensions": map[string]any{"code": code},
		}},
	})
}
