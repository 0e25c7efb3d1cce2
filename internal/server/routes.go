package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"askgate/internal/server/graphiql"
)

// routes lists every route of the server.
func (s *Server) routes(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/graphql", s.traced(s.observe("graphql", s.authenticated(s.graphqlHandler()))))
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.Handle("GET /readyz", s.observe("readyz", http.HandlerFunc(s.handleReadyz)))
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if s.deps.Development {
		mux.Handle("GET /{$}", graphiql.Handler(graphiql.Options{
			Title:       "askgate",
			Endpoint:    "/graphql",
			Token:       s.deps.DevToken,
			AssetPrefix: "/graphiql/",
		}))
		mux.Handle("GET /graphiql/", http.StripPrefix("/graphiql/", graphiql.Assets()))
	}
	return mux
}
