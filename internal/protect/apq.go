package protect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/redis/go-redis/v9"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// APQStore keeps the documents of automatic persisted queries by their
// SHA-256 hash (64 lowercase hex digits). Implementations must be safe for
// concurrent use.
type APQStore interface {
	// Get returns the document stored under hash; ok is false when there
	// is none. An error means the store could not answer.
	Get(ctx context.Context, hash string) (query string, ok bool, err error)
	// Put stores query under hash. The caller has checked that hash is the
	// SHA-256 of query.
	Put(ctx context.Context, hash, query string) error
}

// ErrAPQQueryTooLarge is returned by a store's Put for a document over its
// per-document size cap. The document is not stored; the operation still
// runs, and the client has to send the document again next time.
var ErrAPQQueryTooLarge = errors.New("persisted query is over the store's size cap")

// APQ is the gqlgen handler extension for automatic persisted queries, the
// protocol of Apollo clients: a request carries
// extensions.persistedQuery {"version": 1, "sha256Hash": "<hex>"}, with or
// without its document.
//
//   - Hash only: the document is taken from the store. When the store does
//     not have it, the request fails with PERSISTED_QUERY_NOT_FOUND (message
//     "PersistedQueryNotFound"), and the client resends it with the document.
//   - Hash and document: the hash must be the SHA-256 of the document, else
//     the request fails with PERSISTED_QUERY_HASH_MISMATCH and nothing is
//     stored; when it is, the document is stored and the operation runs.
//   - Any version but 1, or a malformed extension, fails with BAD_REQUEST.
//
// The store never fails a request: a store that cannot answer Get counts
// as a miss, and a failed Put is logged; store errors never reach clients.
// A document read from the store is checked against its hash again, so a
// corrupted or tampered entry also counts as a miss.
//
// When trusted documents are enabled too, the Trusted extension must come
// first (see Trusted). An APQ is safe for concurrent use.
type APQ struct {
	store APQStore
	log   *slog.Logger
	// deferStore leaves a registration for Commit instead of storing it
	// as soon as its hash checks out; see Deferred.
	deferStore bool
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = (*APQ)(nil)

// NewAPQ returns the APQ extension over store. Store failures are logged to
// log (nil discards them).
func NewAPQ(store APQStore, log *slog.Logger) *APQ {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &APQ{store: store, log: log}
}

// ExtensionName implements graphql.HandlerExtension.
func (a *APQ) ExtensionName() string { return "AutomaticPersistedQueries" }

// Validate implements graphql.HandlerExtension.
func (a *APQ) Validate(graphql.ExecutableSchema) error {
	if a == nil || a.store == nil {
		return errors.New("protect: APQ needs a store (use NewAPQ)")
	}
	return nil
}

// MutateOperationParameters implements graphql.OperationParameterMutator:
// it fills in the document of a hash-only request, or checks and stores the
// document of a request that carries both.
func (a *APQ) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	sent, present, gerr := readPersistedQuery(p.Extensions)
	if !present {
		return nil
	}
	if gerr != nil {
		return gerr
	}
	if resolvedFromManifest(ctx) {
		// The trusted-documents extension took the document from the
		// manifest by this id; there is nothing to look up or store.
		return nil
	}
	hash, ok := normalizePersistedHash(sent)
	if !ok {
		return persistedError(persistedCodeBadRequest,
			"extensions.persistedQuery.sha256Hash must be a SHA-256 in hex (64 digits)")
	}
	stats := persistedStats(ctx)
	stats.APQHash = hash

	if p.Query == "" {
		query, ok := a.get(ctx, hash)
		if !ok {
			return persistedError(CodePersistedQueryNotFound, persistedQueryNotFoundMessage)
		}
		p.Query = query
		return nil
	}

	if persistedQueryHash(p.Query) != hash {
		return persistedError(CodePersistedQueryHashMismatch,
			"extensions.persistedQuery.sha256Hash is not the SHA-256 of the query")
	}
	stats.APQSentQuery = true
	if a.deferStore {
		stats.pendingQuery = p.Query
		return nil
	}
	a.put(ctx, hash, p.Query)
	return nil
}

// Deferred returns an APQ over the same store that does not store a
// registration when it sees it, only when Commit is called: a server
// calls Commit once the document has been parsed, validated and found
// within every limit, so that the store never keeps a document that would
// be refused.
func (a *APQ) Deferred() *APQ {
	d := *a
	d.deferStore = true
	return &d
}

// Commit stores the registration that a Deferred APQ saw for the
// operation in ctx, if any.
func (a *APQ) Commit(ctx context.Context) {
	s := PersistedQueryStatsFrom(ctx)
	if s == nil || s.pendingQuery == "" {
		return
	}
	a.put(ctx, s.APQHash, s.pendingQuery)
	s.pendingQuery = ""
}

func (a *APQ) put(ctx context.Context, hash, query string) {
	if err := a.store.Put(ctx, hash, query); err != nil {
		a.log.LogAttrs(ctx, apqLogLevel(err), "persisted query not stored",
			slog.String("hash", hash), slog.Int("bytes", len(query)), slog.String("error", err.Error()))
	}
}

// get looks hash up in the store. A store error and an entry that is not
// the document of its hash are logged and count as misses.
func (a *APQ) get(ctx context.Context, hash string) (string, bool) {
	query, ok, err := a.store.Get(ctx, hash)
	if err != nil {
		a.log.LogAttrs(ctx, apqLogLevel(err), "persisted query lookup failed; treated as a miss",
			slog.String("hash", hash), slog.String("error", err.Error()))
		return "", false
	}
	if !ok {
		return "", false
	}
	if persistedQueryHash(query) != hash {
		a.log.LogAttrs(ctx, slog.LevelError, "persisted query store returned a document that does not match its hash; treated as a miss",
			slog.String("hash", hash))
		return "", false
	}
	return query, true
}

// apqLogLevel is the level to log a store error at: a failure is a
// warning; the consequences of one already logged (a store backing off) and
// a document over the size cap are routine.
func apqLogLevel(err error) slog.Level {
	switch {
	case errors.Is(err, ErrAPQStoreUnavailable):
		return slog.LevelDebug
	case errors.Is(err, ErrAPQQueryTooLarge):
		return slog.LevelInfo
	default:
		return slog.LevelWarn
	}
}

// Defaults of the APQ stores.
const (
	// DefaultAPQMaxQueryBytes caps one stored document.
	DefaultAPQMaxQueryBytes = 100 << 10
	// DefaultAPQMemoryEntries bounds the in-process store's entries.
	DefaultAPQMemoryEntries = 10_000
	// DefaultAPQMemoryBytes bounds the in-process store's documents and
	// hashes together.
	DefaultAPQMemoryBytes = 32 << 20
	// DefaultAPQRedisPrefix starts every key of the Redis store.
	DefaultAPQRedisPrefix = "askgate:apq:"
	// DefaultAPQRedisTTL is how long an unused document stays in Redis.
	DefaultAPQRedisTTL = 24 * time.Hour
	// DefaultAPQRedisTimeout bounds one Redis call of the store.
	DefaultAPQRedisTimeout = 250 * time.Millisecond
	// DefaultAPQRedisBackoff is how long the Redis store is not tried
	// after a failure.
	DefaultAPQRedisBackoff = time.Second
)

// APQMemoryOptions configures NewAPQMemoryStore. Zero fields take the
// defaults.
type APQMemoryOptions struct {
	// MaxEntries bounds the number of documents (DefaultAPQMemoryEntries).
	MaxEntries int
	// MaxBytes bounds the size of all documents and their hashes
	// (DefaultAPQMemoryBytes).
	MaxBytes int64
	// MaxQueryBytes caps one document (DefaultAPQMaxQueryBytes); it must
	// not be over MaxBytes.
	MaxQueryBytes int
}

// APQMemoryStore is an in-process APQStore: a least-recently-used cache
// bounded both in entries and in bytes. Its errors are only
// ErrAPQQueryTooLarge. It is safe for concurrent use.
type APQMemoryStore struct {
	maxBytes      int64
	maxQueryBytes int

	mu    sync.Mutex
	lru   *simplelru.LRU[string, string]
	bytes int64 // len(hash)+len(query) of every entry; guarded by mu
}

var _ APQStore = (*APQMemoryStore)(nil)

// NewAPQMemoryStore returns an empty in-process store.
func NewAPQMemoryStore(opts APQMemoryOptions) (*APQMemoryStore, error) {
	if opts.MaxEntries == 0 {
		opts.MaxEntries = DefaultAPQMemoryEntries
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultAPQMemoryBytes
	}
	if opts.MaxEntries < 0 || opts.MaxBytes < 0 || opts.MaxQueryBytes < 0 {
		return nil, errors.New("protect: APQ memory store limits must not be negative")
	}
	if opts.MaxQueryBytes == 0 {
		opts.MaxQueryBytes = DefaultAPQMaxQueryBytes
		if opts.MaxBytes < DefaultAPQMaxQueryBytes {
			opts.MaxQueryBytes = int(opts.MaxBytes)
		}
	}
	if int64(opts.MaxQueryBytes) > opts.MaxBytes {
		return nil, fmt.Errorf("protect: APQ memory store: MaxQueryBytes (%d) is over MaxBytes (%d)", opts.MaxQueryBytes, opts.MaxBytes)
	}
	s := &APQMemoryStore{maxBytes: opts.MaxBytes, maxQueryBytes: opts.MaxQueryBytes}
	lru, err := simplelru.NewLRU(opts.MaxEntries, func(hash, query string) {
		s.bytes -= int64(len(hash) + len(query)) // called under s.mu, from Add, Remove and RemoveOldest
	})
	if err != nil {
		return nil, fmt.Errorf("protect: APQ memory store: %w", err)
	}
	s.lru = lru
	return s, nil
}

// Get implements APQStore; a hit makes the entry the most recently used.
func (s *APQMemoryStore) Get(_ context.Context, hash string) (string, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	query, ok := s.lru.Get(hash)
	return query, ok, nil
}

// Put implements APQStore. It evicts the least recently used entries until
// both bounds hold.
func (s *APQMemoryStore) Put(_ context.Context, hash, query string) error {
	if len(query) > s.maxQueryBytes || int64(len(hash)+len(query)) > s.maxBytes {
		return ErrAPQQueryTooLarge
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.lru.Get(hash); ok && old == query {
		return nil
	}
	// Remove (not overwrite) an entry with the same key, so that the
	// eviction callback keeps the byte count right.
	s.lru.Remove(hash)
	s.lru.Add(hash, query)
	s.bytes += int64(len(hash) + len(query))
	for s.bytes > s.maxBytes {
		if _, _, ok := s.lru.RemoveOldest(); !ok {
			break
		}
	}
	return nil
}

// Len returns the number of stored documents.
func (s *APQMemoryStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// Bytes returns the size of the stored documents and their hashes.
func (s *APQMemoryStore) Bytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

// APQRedisOptions configures NewAPQRedisStore. Zero fields take the
// defaults.
type APQRedisOptions struct {
	// KeyPrefix starts every key; a document is kept under
	// KeyPrefix+hash (DefaultAPQRedisPrefix, "askgate:apq:").
	KeyPrefix string
	// TTL is how long a document stays after it was last stored or read
	// (DefaultAPQRedisTTL): every hit renews it, so documents in use never
	// expire and abandoned ones go.
	TTL time.Duration
	// MaxQueryBytes caps one document (DefaultAPQMaxQueryBytes).
	MaxQueryBytes int
	// Timeout bounds each Redis call (DefaultAPQRedisTimeout), so that a
	// slow Redis delays a request only that long.
	Timeout time.Duration
	// Backoff is how long the store leaves Redis alone after a failed call
	// (DefaultAPQRedisBackoff): meanwhile every call fails at once with
	// ErrAPQStoreUnavailable, so that a Redis that is down costs requests
	// a Timeout only once per Backoff, not twice per APQ request.
	Backoff time.Duration
}

// ErrAPQStoreUnavailable is returned by the Redis store while it backs off
// after a failure (see APQRedisOptions.Backoff).
var ErrAPQStoreUnavailable = errors.New("persisted query store unavailable after a recent failure")

// APQRedisStore is an APQStore in Redis, shared by every gateway instance
// that uses the same Redis and key prefix. A hit renews the entry's TTL
// (GETEX, Redis 6.2 or later). It is safe for concurrent use.
type APQRedisStore struct {
	client redis.UniversalClient
	opts   APQRedisOptions
	// downUntil is the time (UnixNano) before which Redis is not tried.
	downUntil atomic.Int64
}

var _ APQStore = (*APQRedisStore)(nil)

// NewAPQRedisStore returns a store in Redis through client, which the
// caller owns (and closes).
func NewAPQRedisStore(client redis.UniversalClient, opts APQRedisOptions) *APQRedisStore {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultAPQRedisPrefix
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultAPQRedisTTL
	}
	if opts.MaxQueryBytes <= 0 {
		opts.MaxQueryBytes = DefaultAPQMaxQueryBytes
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultAPQRedisTimeout
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultAPQRedisBackoff
	}
	return &APQRedisStore{client: client, opts: opts}
}

// Get implements APQStore.
func (s *APQRedisStore) Get(ctx context.Context, hash string) (string, bool, error) {
	if s.backingOff() {
		return "", false, ErrAPQStoreUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	query, err := s.client.GetEx(cctx, s.opts.KeyPrefix+hash, s.opts.TTL).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", false, nil
	case err != nil:
		s.failed(ctx)
		return "", false, fmt.Errorf("redis GETEX: %w", err)
	}
	return query, true, nil
}

// Put implements APQStore.
func (s *APQRedisStore) Put(ctx context.Context, hash, query string) error {
	if len(query) > s.opts.MaxQueryBytes {
		return ErrAPQQueryTooLarge
	}
	if s.backingOff() {
		return ErrAPQStoreUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	if err := s.client.Set(cctx, s.opts.KeyPrefix+hash, query, s.opts.TTL).Err(); err != nil {
		s.failed(ctx)
		return fmt.Errorf("redis SET: %w", err)
	}
	return nil
}

// backingOff reports whether a recent failure says not to try Redis yet.
func (s *APQRedisStore) backingOff() bool {
	return time.Now().UnixNano() < s.downUntil.Load()
}

// failed starts a back-off after a failed call, unless the call failed
// because the request itself was cancelled (the client went away).
func (s *APQRedisStore) failed(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	s.downUntil.Store(time.Now().Add(s.opts.Backoff).UnixNano())
}
