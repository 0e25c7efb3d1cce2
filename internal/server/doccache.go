package server

import (
	"context"
	"crypto/sha256"
	"sync"

	"github.com/99designs/gqlgen/graphql"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/vektah/gqlparser/v2/ast"

	"askgate/internal/cachecontrol"
)

// documentCache keeps parsed and validated documents, so that a repeated
// document is parsed and validated once, and with each the HTTP cache
// policy of its operations, computed once. It is keyed by the document's
// SHA-256 rather than its text, so that a cache of large documents holds
// 32 bytes per key. Safe for concurrent use.
type documentCache struct {
	lru          *lru.Cache[[sha256.Size]byte, *cachedDocument]
	hits, misses prometheus.Counter
}

// cachedDocument is a document and the cache policies of the operations
// computed so far, by operation name.
type cachedDocument struct {
	doc      *ast.QueryDocument
	mu       sync.Mutex
	policies map[string]cachecontrol.Policy
}

var _ graphql.Cache[*ast.QueryDocument] = (*documentCache)(nil)

func newDocumentCache(size int, reg prometheus.Registerer) *documentCache {
	c, _ := lru.New[[sha256.Size]byte, *cachedDocument](size) // size > 0
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "askgate_graphql_document_cache_lookups_total",
		Help: "Lookups of parsed and validated documents, by result (hit or miss).",
	}, []string{"result"})
	reg.MustRegister(lookups)
	return &documentCache{lru: c, hits: lookups.WithLabelValues("hit"), misses: lookups.WithLabelValues("miss")}
}

// Get implements graphql.Cache.
func (c *documentCache) Get(_ context.Context, query string) (*ast.QueryDocument, bool) {
	e, ok := c.lru.Get(sha256.Sum256([]byte(query)))
	if !ok {
		c.misses.Inc()
		return nil, false
	}
	c.hits.Inc()
	return e.doc, true
}

// Add implements graphql.Cache.
func (c *documentCache) Add(_ context.Context, query string, doc *ast.QueryDocument) {
	c.lru.Add(sha256.Sum256([]byte(query)), &cachedDocument{doc: doc})
}

// Peek returns query's cached document, without counting a lookup or
// refreshing its place.
func (c *documentCache) Peek(query string) (*ast.QueryDocument, bool) {
	e, ok := c.lru.Peek(sha256.Sum256([]byte(query)))
	if !ok {
		return nil, false
	}
	return e.doc, true
}

// policy returns the cache policy of op, an operation of doc, the document
// of query: the one computed before for the cached document, else one
// computed now by compute (and kept when doc is the cached document).
func (c *documentCache) policy(query string, doc *ast.QueryDocument, op *ast.OperationDefinition, compute func() cachecontrol.Policy) cachecontrol.Policy {
	e, ok := c.lru.Peek(sha256.Sum256([]byte(query)))
	if !ok || e.doc != doc {
		return compute()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p, ok := e.policies[op.Name]; ok {
		return p
	}
	p := compute()
	if e.policies == nil {
		e.policies = make(map[string]cachecontrol.Policy, 1)
	}
	e.policies[op.Name] = p
	return p
}
