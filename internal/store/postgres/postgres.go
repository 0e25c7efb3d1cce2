// Package postgres implements chat.Store on PostgreSQL, with a pgx
// connection pool. It is askgate's production store.
//
// Every query is a single statement, prepared once per connection and
// cached by pgx. Times are timestamptz, which keeps microseconds exactly;
// ids are text in the "C" collation, so that they sort as Go sorts strings.
package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"runtime"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

	"askgate/internal/chat"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a chat.Store on PostgreSQL. It is safe for concurrent use.
// Create one with Open and call Migrate before using it on a new database.
type Store struct {
	pool      *pgxpool.Pool
	migrateMu sync.Mutex
}

var _ chat.Store = (*Store)(nil)

// An Option configures a Store.
type Option func(*config)

type config struct {
	tracer pgx.QueryTracer
}

// WithTracer makes every connection of the store report its statements to
// tracer.
func WithTracer(tracer pgx.QueryTracer) Option {
	return func(c *config) { c.tracer = tracer }
}

// Open connects to the PostgreSQL database at url, a postgres:// URL or a
// keyword/value connection string as pgx accepts them. The pool_* settings
// of pgxpool apply; runtime parameters such as search_path are set on
// every connection. Open checks that the database answers, but does not
// create the schema: call Migrate for that.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	var c config
	for _, opt := range opts {
		opt(&c)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's error leaves out the password.
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default, max(4, NumCPU), queues requests on a busy
		// small machine; connections are cheap next to that.
		cfg.MaxConns = int32(max(8, 2*runtime.GOMAXPROCS(0)))
	}
	cfg.ConnConfig.Tracer = c.tracer

	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s: %w", address(cfg), err)
	}
	return &Store{pool: pool}, nil
}

// address describes the database cfg connects to, without credentials.
func address(cfg *pgxpool.Config) string {
	return fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
}

// Migrate brings the database schema (the first schema of the search_path)
// up to date. Concurrent calls, from this process or others, take turns:
// the first applies the migrations and the others find nothing to do.
func (s *Store) Migrate(ctx context.Context) error {
	s.migrateMu.Lock()
	defer s.migrateMu.Unlock()
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}

	// A session-level advisory lock named after the schema serializes
	// migrations across processes. It is held for the whole of goose's Up,
	// whose first step, creating goose's version table, does not take
	// goose's own session locker, and on a connection of its own, so that
	// goose still has one when the pool has a single connection. Closing
	// the connection releases the lock.
	lock, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer lock.Close(context.WithoutCancel(ctx))
	if _, err := lock.Exec(ctx, `SELECT pg_advisory_lock(hashtextextended('askgate.migrate.' || coalesce(current_schema(), ''), 0))`); err != nil {
		return fmt.Errorf("postgres: migrate: lock: %w", err)
	}

	db := stdlib.OpenDBFromPool(s.pool) // closing it leaves the pool open
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close closes the pool's connections, waiting for the ones in use to be
// released.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
