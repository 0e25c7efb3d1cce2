package users

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	"github.com/prometheus/client_golang/prometheus"

	"askgate/internal/chat"
)

// Defaults of CacheOptions.
const (
	DefaultCacheTTL     = 30 * time.Second
	DefaultCacheStale   = 5 * time.Minute
	DefaultCacheSize    = 10000
	DefaultNegativeTTL  = 5 * time.Second
	DefaultRefreshLimit = 4
)

// Limits of a Cache.
const (
	// fetchTimeout bounds one call to the source, which runs detached from
	// the context of the request that started it (see UsersByID).
	fetchTimeout = 10 * time.Second
	// refreshRetry is how long a stale entry whose refresh failed is served
	// before another refresh of it is tried.
	refreshRetry = 5 * time.Second
)

// CacheOptions configure a Cache.
type CacheOptions struct {
	// TTL is how long a profile is served without asking the source again:
	// zero means DefaultCacheTTL.
	TTL time.Duration
	// Stale is how long after TTL a profile is still served, at once, while
	// one background call refreshes it, and served when the source fails
	// (stale-while-revalidate, stale-if-error). Zero means no stale window:
	// a profile older than TTL is fetched again before it is served.
	Stale time.Duration
	// NegativeTTL is how long an id the source does not know is remembered
	// as unknown before it is asked again (it has the Stale window too):
	// zero means DefaultNegativeTTL. It is never longer than TTL.
	NegativeTTL time.Duration
	// MaxEntries bounds the ids remembered, known or not; the least recently
	// read are forgotten first. Zero means DefaultCacheSize.
	MaxEntries int
	// RefreshLimit bounds the background refreshes running at once; a stale
	// read that finds them all busy serves the stale profile and leaves the
	// refresh to a later read. Zero means DefaultRefreshLimit.
	RefreshLimit int
	// Logger receives one warning when background refreshes start failing
	// and one line when they succeed again. Nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// Cache is a chat.UserDirectory that remembers the profiles another one
// (the HTTP user service's Client) returns, so that consecutive requests
// for the same users do not each call the user service.
//
// A profile is fresh for TTL: it is served from memory. For the following
// Stale window it is served at once while one background call per batch of
// such ids refreshes it; if that call fails the stale profile goes on being
// served until the window ends. Ids the cache does not hold (or holds for
// longer than TTL+Stale) are fetched before UsersByID returns, only those
// ids, in one call, which concurrent UsersByID calls missing the same ids
// share. A failure of that call is returned as the source reported it
// (UPSTREAM_UNAVAILABLE for a Client). Ids the source does not know are
// remembered as unknown for NegativeTTL, so that the authors of a deleted
// account's messages do not cost a call on every request.
//
// The cache lives in the process: each instance of the gateway has its own,
// which is enough for profiles that change rarely and may be a little late.
// It starts no goroutine per entry, only one per call to the source, and
// holds at most MaxEntries ids.
//
// A Cache is safe for concurrent use. Close stops its calls to the source;
// it is also a prometheus.Collector of its hits, misses and stale reads.
type Cache struct {
	src          chat.UserDirectory
	ttl, stale   time.Duration
	negativeTTL  time.Duration
	now          func() time.Time
	log          *slog.Logger
	refreshSlots chan struct{}

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // calls to the source

	mu       sync.Mutex
	closed   bool
	entries  *simplelru.LRU[string, *cacheEntry]
	inflight map[string]*fetch // id → the call that is fetching it
	failing  bool              // the latest background refresh failed

	lookups                  *prometheus.CounterVec
	hits, staleHits, misses  prometheus.Counter
	refreshes                *prometheus.CounterVec
	refreshOK, refreshFailed prometheus.Counter
}

// cacheEntry is what the Cache knows of one id. It is modified only with
// Cache.mu held.
type cacheEntry struct {
	user    *chat.User // nil: the source does not know the id
	fetched time.Time
	retryAt time.Time // no background refresh before, after one failed
}

// fetch is one call to the source; done is closed once users or err is set.
type fetch struct {
	done  chan struct{}
	users map[string]*chat.User // the ids found
	err   error
}

// NewCache returns a Cache of the profiles src returns.
func NewCache(src chat.UserDirectory, opts CacheOptions) (*Cache, error) {
	if src == nil {
		return nil, errors.New("users: NewCache: no source")
	}
	if opts.TTL < 0 || opts.Stale < 0 || opts.NegativeTTL < 0 || opts.MaxEntries < 0 || opts.RefreshLimit < 0 {
		return nil, errors.New("users: NewCache: negative option")
	}
	ttl := cmp.Or(opts.TTL, DefaultCacheTTL)
	entries, _ := simplelru.NewLRU[string, *cacheEntry](cmp.Or(opts.MaxEntries, DefaultCacheSize), nil) // size > 0
	ctx, cancel := context.WithCancel(context.Background())
	c := &Cache{
		src:          src,
		ttl:          ttl,
		stale:        opts.Stale,
		negativeTTL:  min(cmp.Or(opts.NegativeTTL, DefaultNegativeTTL), ttl),
		now:          opts.Now,
		log:          opts.Logger,
		refreshSlots: make(chan struct{}, cmp.Or(opts.RefreshLimit, DefaultRefreshLimit)),
		ctx:          ctx,
		cancel:       cancel,
		entries:      entries,
		inflight:     make(map[string]*fetch),
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "askgate_user_cache_lookups_total",
			Help: "User profiles looked up in the user cache, by result: hit (fresh), stale (served while refreshed) or miss (fetched).",
		}, []string{"result"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "askgate_user_cache_refreshes_total",
			Help: "Background refreshes of stale user profiles, by result (ok or error).",
		}, []string{"result"}),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.hits, c.staleHits, c.misses = c.lookups.WithLabelValues("hit"), c.lookups.WithLabelValues("stale"), c.lookups.WithLabelValues("miss")
	c.refreshOK, c.refreshFailed = c.refreshes.WithLabelValues("ok"), c.refreshes.WithLabelValues("error")
	return c, nil
}

// UsersByID returns the users with the given ids, in any order; unknown ids
// are absent. Duplicate and empty ids are ignored, and so are ids containing
// a comma, as by Client.
//
// Calls to the source are detached from ctx's cancellation (with their own
// timeout), so that callers sharing one are not failed by the one that
// started it going away; UsersByID itself returns when ctx is done, with
// an UPSTREAM_UNAVAILABLE error as a Client's call would. After
// Close, UsersByID asks the source directly.
func (c *Cache) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	ids = uniqueIDs(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, chat.Wrap(chat.CodeUpstreamUnavailable, err, unavailable)
	}
	type wait struct {
		id string
		f  *fetch
	}
	var (
		out     []*chat.User
		waits   []wait
		missing []string // ids no call is fetching yet
		refresh []string // stale ids to refresh
	)
	now := c.now()

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.src.UsersByID(ctx, ids)
	}
	for _, id := range ids {
		e, ok := c.entries.Get(id)
		if ok {
			fresh := c.ttl
			if e.user == nil {
				fresh = c.negativeTTL
			}
			age := now.Sub(e.fetched)
			if age < fresh {
				c.hits.Inc()
				out = appendUser(out, e.user)
				continue
			}
			if age < fresh+c.stale {
				c.staleHits.Inc()
				out = appendUser(out, e.user)
				if c.inflight[id] == nil && !now.Before(e.retryAt) {
					refresh = append(refresh, id)
				}
				continue
			}
		}
		c.misses.Inc()
		if f := c.inflight[id]; f != nil {
			waits = append(waits, wait{id, f})
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		f := c.startLocked(ctx, missing, false)
		for _, id := range missing {
			waits = append(waits, wait{id, f})
		}
	}
	if len(refresh) > 0 {
		select {
		case c.refreshSlots <- struct{}{}: // released by run
			c.startLocked(ctx, refresh, true)
		default: // as many refreshes as allowed are running: a later read refreshes
		}
	}
	c.mu.Unlock()

	for _, w := range waits {
		select {
		case <-w.f.done:
		case <-ctx.Done():
			return nil, chat.Wrap(chat.CodeUpstreamUnavailable, ctx.Err(), unavailable)
		}
		if w.f.err != nil {
			return nil, w.f.err
		}
		out = appendUser(out, w.f.users[w.id])
	}
	return out, nil
}

// appendUser appends a copy of u, when it is not nil, so that no caller
// can change what the cache holds.
func appendUser(out []*chat.User, u *chat.User) []*chat.User {
	if u == nil {
		return out
	}
	cp := *u
	return append(out, &cp)
}

// startLocked starts a call to the source for ids, which no other call is
// fetching. c.mu must be held and c must not be closed. A background call
// holds a slot of c.refreshSlots, which it releases.
func (c *Cache) startLocked(ctx context.Context, ids []string, background bool) *fetch {
	f := &fetch{done: make(chan struct{})}
	for _, id := range ids {
		c.inflight[id] = f
	}
	c.wg.Add(1)
	go c.run(ctx, ids, f, background)
	return f
}

// run makes the call f to the source and records its result.
func (c *Cache) run(ctx context.Context, ids []string, f *fetch, background bool) {
	defer c.wg.Done()
	if background {
		defer func() { <-c.refreshSlots }()
	}
	// Detached from the caller, with its values (the trace to forward).
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	stop := context.AfterFunc(c.ctx, cancel)
	defer stop()

	users, err := c.src.UsersByID(fctx, ids)
	now := c.now()

	c.mu.Lock()
	for _, id := range ids {
		if c.inflight[id] == f {
			delete(c.inflight, id)
		}
	}
	if err == nil {
		f.users = make(map[string]*chat.User, len(users))
		for _, u := range users {
			if u != nil {
				f.users[u.ID] = u
			}
		}
		for _, id := range ids {
			c.entries.Add(id, &cacheEntry{user: f.users[id], fetched: now})
		}
	} else {
		f.err = err
		if background {
			for _, id := range ids {
				if e, ok := c.entries.Peek(id); ok {
					e.retryAt = now.Add(refreshRetry)
				}
			}
		}
	}
	var logFailure, logRecovery bool
	if background && c.ctx.Err() == nil { // not stopped by Close
		if err != nil {
			c.refreshFailed.Inc()
			logFailure, c.failing = !c.failing, true
		} else {
			c.refreshOK.Inc()
			logRecovery, c.failing = c.failing, false
		}
	}
	c.mu.Unlock()
	close(f.done)

	switch {
	case logFailure:
		c.log.Warn("users: refreshing cached profiles failed; serving them stale until they expire (logged once until a refresh succeeds)",
			slog.Int("ids", len(ids)), slog.String("error", err.Error()))
	case logRecovery:
		c.log.Info("users: refreshing cached profiles works again")
	}
}

// Close cancels the calls to the source that are running and waits for
// them to end. Later UsersByID calls ask the source directly. Close may be
// called more than once.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// Describe implements prometheus.Collector.
func (c *Cache) Describe(ch chan<- *prometheus.Desc) {
	c.lookups.Describe(ch)
	c.refreshes.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Cache) Collect(ch chan<- prometheus.Metric) {
	c.lookups.Collect(ch)
	c.refreshes.Collect(ch)
}
