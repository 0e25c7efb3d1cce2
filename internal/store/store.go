// Package store opens askgate's conversations store from the database URL
// of the configuration (ASKGATE_DATABASE_URL): PostgreSQL for a
// postgres:// or postgresql:// URL, SQLite for anything else that names a
// file. The implementations live in the sqlite and postgres packages, and
// storetest is the conformance suite both pass.
package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"askgate/internal/chat"
	"askgate/internal/store/postgres"
	"askgate/internal/store/sqlite"
)

// Store is a chat.Store whose schema can be brought up to date.
type Store interface {
	chat.Store
	// Migrate applies the schema migrations the database lacks. It is
	// safe to call on an up-to-date database and, on PostgreSQL, from
	// several processes at once.
	Migrate(ctx context.Context) error
}

// Open opens the store at url, which is one of
//
//	postgres://user:password@host:port/database?sslmode=…&search_path=…
//	postgresql://…             (the same)
//	sqlite:PATH                a SQLite file; sqlite:///abs/path also works
//	sqlite::memory:            a private in-memory SQLite database
//	PATH                       a SQLite file, when url has no scheme
//
// The parent directory of a SQLite file is created if missing. Open checks
// that the database answers but does not migrate it: call Migrate.
func Open(ctx context.Context, url string) (Store, error) {
	kind, target, err := Parse(url)
	if err != nil {
		return nil, err
	}
	switch kind {
	case PostgreSQL:
		return postgres.Open(ctx, target)
	default:
		return sqlite.Open(target)
	}
}

// Kind names a database engine.
type Kind string

// The database engines a store runs on.
const (
	SQLite     Kind = "sqlite"
	PostgreSQL Kind = "postgres"
)

// Parse says which engine url is for and what to open it with: the URL
// itself for PostgreSQL, the file path for SQLite. It checks the form of
// url only, not that the database exists.
func Parse(url string) (kind Kind, target string, err error) {
	if strings.TrimSpace(url) == "" {
		return "", "", errors.New("empty database URL")
	}
	scheme, rest, ok := strings.Cut(url, ":")
	if !ok || !isScheme(scheme) || len(scheme) == 1 { // a path, or C:\path
		return SQLite, url, nil
	}
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		if !strings.HasPrefix(rest, "//") {
			return "", "", fmt.Errorf("database URL %q: want postgres://…", redact(url))
		}
		return PostgreSQL, url, nil
	case "sqlite":
		path := rest
		if p, ok := strings.CutPrefix(rest, "//"); ok {
			path = p // sqlite:///abs/path → /abs/path; sqlite://rel/path → rel/path
		}
		if path == "" {
			return "", "", fmt.Errorf("database URL %q: no file path after \"sqlite:\"", url)
		}
		return SQLite, path, nil
	}
	return "", "", fmt.Errorf("database URL %q: unsupported scheme %q: want postgres://…, sqlite:PATH or a file path", redact(url), scheme)
}

// isScheme reports whether s has the syntax of a URL scheme.
func isScheme(s string) bool {
	for i, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

// redact replaces the password in a URL with "xxxxx".
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.LastIndex(rest[:end], "@")
	if at < 0 {
		return url
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return url
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
