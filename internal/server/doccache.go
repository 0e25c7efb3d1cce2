package server

import (
	"context"
	"crypto/sha256"

	"github.com/99designs/gqlgen/graphql"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"
)

// documentCache keeps parsed and validated documents, so that a repeated
// document is parsed and validated once. It is keyed by the document's
// SHA-256 rather than its text, so that a cache of large documents holds
// 32 bytes per key. Safe for concurrent use.
type documentCache struct {
	lru          *lru.Cache[[sha256.Size]byte, *ast.QueryDocument]
	hits, misses prometheus.Counter
}

var _ graphql.Cache[*ast.QueryDocument] = (*documentCache)(nil)

func newDocumentCache(size int, reg prometheus.Registerer) *documentCache {
	c, _ := lru.New[[sha256.Size]byte, *ast.QueryDocument](size) // size > 0
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "askgate_graphql_document_cache_lookups_total",
		Help: "Lookups of parsed and validated documents, by result (hit or miss).",
	}, []string{"result"})
	reg.MustRegister(lookups)
	return &documentCache{lru: c, hits: lookups.WithLabelValues("hit"), misses: lookups.WithLabelValues("miss")}
}

// Get implements graphql.Cache.
func (c *documentCache) Get(_ context.Context, query string) (*ast.QueryDocument, bool) {
	doc, ok := c.lru.Get(sha256.Sum256([]byte(query)))
	if ok {
		c.hits.Inc()
	} else {
		c.misses.Inc()
	}
	return doc, ok
}

// Add implements graphql.Cache.
func (c *documentCache) Add(_ context.Context, query string, doc *ast.QueryDocument) {
	c.lru.Add(sha256.Sum256([]byte(query)), doc)
}

// Peek returns query's cached document, without counting a lookup or
// refreshing its place.
func (c *documentCache) Peek(query string) (*ast.QueryDocument, bool) {
	return c.lru.Peek(sha256.Sum256([]byte(query)))
}
