package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"time"
)

// handleHealthz reports that the process is alive.
func (s *Server) handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

// handleReadyz reports whether the server can serve, as the contract
// defines readiness: its store and, when configured, Redis answer. With
// limits on Redis, it also reports them "degraded" while they fall back to
// in-process limits, which does not make the server unready by itself:
// requests keep being served meanwhile.
func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"store": "ok"}
	status := http.StatusOK
	if err := s.deps.Store.Ping(ctx); err != nil {
		s.log.LogAttrs(ctx, slog.LevelWarn, "readiness check failed",
			slog.String("check", "store"), slog.String("error", err.Error()))
		checks["store"] = "unavailable"
		status = http.StatusServiceUnavailable
	}
	if s.deps.Redis != nil {
		checks["redis"] = "ok"
		if err := s.deps.Redis.Ping(ctx); err != nil {
			s.log.LogAttrs(ctx, slog.LevelWarn, "readiness check failed",
				slog.String("check", "redis"), slog.String("error", err.Error()))
			checks["redis"] = "unavailable"
			status = http.StatusServiceUnavailable
		}
	}
	if configured, degraded := s.limitsDegraded(); configured {
		// Still ready: the limits are enforced in process meanwhile.
		checks["limits"] = "ok"
		if degraded {
			checks["limits"] = "degraded"
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": status == http.StatusOK, "checks": checks})
}
