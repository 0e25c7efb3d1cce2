// Package pgtest gives tests a PostgreSQL store of their own: a fresh
// schema in the test database, dropped when the test ends, and a tracer
// that counts the SQL statements a piece of code runs.
//
// PostgreSQL must be running (`make test` sees to it); the tests fail
// without it. ASKGATE_TEST_POSTGRES_URL names the database, by default
// postgres://postgres@127.0.0.1:5432/test.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"askgate/internal/store/postgres"
)

// BaseURL is the database the tests make their schemas in.
func BaseURL() string {
	if u := os.Getenv("ASKGATE_TEST_POSTGRES_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// NewSchema creates a schema of its own for t, dropped when t ends, and
// returns the URL of the database with the schema as its search_path.
func NewSchema(t testing.TB) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, BaseURL())
	if err != nil {
		t.Fatalf("connect to PostgreSQL (set ASKGATE_TEST_POSTGRES_URL, or start it): %v", err)
	}
	defer conn.Close(ctx)

	var b [8]byte
	_, _ = rand.Read(b[:])
	schema := "storetest_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, BaseURL())
		if err != nil {
			t.Errorf("connect to drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})

	u, err := url.Parse(BaseURL())
	if err != nil {
		t.Fatalf("ASKGATE_TEST_POSTGRES_URL: %v", err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// Open returns a store on the database at url (one with a query string,
// as NewSchema returns), closed when t ends; migrated unless migrate is
// false. Unless url sets pool_max_conns, the pool is kept small: tests
// run in parallel, and with other packages' tests.
func Open(t testing.TB, url string, migrate bool, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	if !strings.Contains(url, "pool_max_conns") {
		url += "&pool_max_conns=4"
	}
	s, err := postgres.Open(context.Background(), url, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if migrate {
		if err := s.Migrate(context.Background()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
	}
	return s
}

// NewStore is Open(t, NewSchema(t), true, opts...): a fresh, migrated,
// empty store.
func NewStore(t testing.TB, opts ...postgres.Option) *postgres.Store {
	t.Helper()
	return Open(t, NewSchema(t), true, opts...)
}

// StatementCounter is a pgx.QueryTracer and pgx.BatchTracer that counts
// the statements run, each statement of a batch included, and keeps their
// text. Its methods are safe for concurrent use.
type StatementCounter struct {
	mu         sync.Mutex
	statements []string
}

// TraceQueryStart implements pgx.QueryTracer.
func (c *StatementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	c.add(data.SQL)
	return ctx
}

// TraceQueryEnd implements pgx.QueryTracer.
func (c *StatementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TraceBatchStart implements pgx.BatchTracer.
func (c *StatementCounter) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	return ctx
}

// TraceBatchQuery implements pgx.BatchTracer: it counts a statement of a
// batch once its result has been read.
func (c *StatementCounter) TraceBatchQuery(_ context.Context, _ *pgx.Conn, data pgx.TraceBatchQueryData) {
	c.add(data.SQL)
}

// TraceBatchEnd implements pgx.BatchTracer.
func (c *StatementCounter) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData) {}

func (c *StatementCounter) add(sql string) {
	c.mu.Lock()
	c.statements = append(c.statements, strings.Join(strings.Fields(sql), " "))
	c.mu.Unlock()
}

// Count returns the number of statements since the last Reset.
func (c *StatementCounter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.statements)
}

// Statements returns the statements since the last Reset, oldest first.
func (c *StatementCounter) Statements() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.statements...)
}

// Reset forgets the statements counted so far.
func (c *StatementCounter) Reset() {
	c.mu.Lock()
	c.statements = nil
	c.mu.Unlock()
}
