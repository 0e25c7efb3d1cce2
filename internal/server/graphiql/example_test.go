package graphiql_test

import (
	"net/http"

	"askgate/internal/server/graphiql"
)

func ExampleHandler() {
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", graphiql.Handler(graphiql.Options{
		Title:       "askgate",
		Endpoint:    "/graphql",
		Token:       "a development token",
		AssetPrefix: "/graphiql/",
	}))
	mux.Handle("GET /graphiql/", graphiql.Assets())
	// http.ListenAndServe(":8080", mux)
}
