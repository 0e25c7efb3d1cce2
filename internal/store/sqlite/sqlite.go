// Package sqlite implements chat.Store on a SQLite database file, with the
// pure Go driver modernc.org/sqlite (no cgo). It is askgate's embedded
// store: the default when no PostgreSQL is configured.
//
// The database runs in WAL mode, so that readers never wait for the writer.
// A Store keeps two connection pools on the file: one connection for
// writes, which SQLite performs one at a time anyway, so that writers queue
// in Go rather than in SQLite's busy handler; and several read-only
// connections for queries. Times are stored as INTEGER microseconds since
// the Unix epoch, which round-trip exactly and sort numerically.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"askgate/internal/chat"
)

//go:embed migrations/*.sql
var migrations embed.FS

// busyTimeout is how long a connection waits for a lock held by another
// connection (another process, in practice) before it reports SQLITE_BUSY.
const busyTimeout = 5 * time.Second

// Store is a chat.Store on a SQLite database. It is safe for concurrent
// use. Create one with Open and call Migrate before using it on a new
// database.
type Store struct {
	write *sql.DB // exactly one connection
	read  *sql.DB // query-only connections; write itself for ":memory:"

	writeStmts, readStmts stmtCache

	migrateMu sync.Mutex
}

var _ chat.Store = (*Store)(nil)

// Open opens the SQLite database file at path, creating the file and its
// parent directory if they are missing. The special path ":memory:" opens a
// private in-memory database, served by a single connection. Open does not
// create the schema: call Migrate for that.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("sqlite: database path %q contains '?'", path)
	}
	memory := path == ":memory:"
	if !memory {
		if dir := filepath.Dir(path); dir != "." {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("sqlite: create the database directory: %w", err)
			}
		}
	}

	params := fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)", busyTimeout.Milliseconds())
	write, err := sql.Open("sqlite", path+"?"+params+
		"&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	write.SetConnMaxLifetime(0)
	write.SetConnMaxIdleTime(0)
	// Open the write connection now: it switches the file to WAL before any
	// reader connects, and a bad path fails here rather than at first use.
	if err := write.Ping(); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	read := write
	if !memory {
		read, err = sql.Open("sqlite", path+"?"+params+"&_query_only=1")
		if err != nil {
			write.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
		n := max(4, runtime.GOMAXPROCS(0))
		read.SetMaxOpenConns(n)
		read.SetMaxIdleConns(n)
		read.SetConnMaxLifetime(0)
		read.SetConnMaxIdleTime(0)
	}

	s := &Store{write: write, read: read}
	s.writeStmts.db = write
	s.readStmts.db = read
	return s, nil
}

// Migrate brings the database schema up to date. It is safe to call on an
// up-to-date database and from several goroutines; it does not coordinate
// with other processes migrating the same file.
func (s *Store) Migrate(ctx context.Context) error {
	s.migrateMu.Lock()
	defer s.migrateMu.Unlock()
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	// The provider runs every SQL migration on one connection, which lets
	// it work on the single write connection. (Provider.Close would close
	// that pool: it is not called.)
	p, err := goose.NewProvider(goose.DialectSQLite3, s.write, fsys)
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Ping checks that the database answers on both pools.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	if err := s.read.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", err)
	}
	return nil
}

// Close closes the database. Queries in flight are not interrupted; new
// ones fail.
func (s *Store) Close() error {
	err := errors.Join(s.readStmts.close(), s.writeStmts.close(), s.write.Close())
	if s.read != s.write {
		err = errors.Join(err, s.read.Close())
	}
	return err
}

// stmtCache prepares each query once per pool; database/sql then prepares
// it once per connection and reuses it. Queries are prepared on first use,
// not at Open, since the tables may not exist before Migrate.
type stmtCache struct {
	db *sql.DB
	m  sync.Map // query string → *sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if st, ok := c.m.Load(query); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := c.m.LoadOrStore(query, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

func (c *stmtCache) close() error {
	var errs []error
	c.m.Range(func(k, v any) bool {
		errs = append(errs, v.(*sql.Stmt).Close())
		c.m.Delete(k)
		return true
	})
	return errors.Join(errs...)
}

// query runs a cached read query.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := s.readStmts.get(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// micros returns t as stored: microseconds since the Unix epoch.
func micros(t time.Time) int64 { return t.UnixMicro() }

// fromMicros returns the time stored as us, in UTC.
func fromMicros(us int64) time.Time { return time.UnixMicro(us).UTC() }

// jsonList returns ids as a JSON array, the form in which a list of values
// is passed to SQLite (read with json_each).
func jsonList(ids []string) (string, error) {
	b, err := json.Marshal(ids)
	return string(b), err
}

// nullString returns s as an SQL value: NULL when empty.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}
