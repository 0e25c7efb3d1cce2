package store_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"askgate/internal/chat"
	"askgate/internal/store"
)

func TestParse(t *testing.T) {
	tests := []struct {
		url    string
		kind   store.Kind
		target string
	}{
		{"postgres://u:p@db:5432/askgate?sslmode=disable", store.PostgreSQL, "postgres://u:p@db:5432/askgate?sslmode=disable"},
		{"postgresql://db/askgate", store.PostgreSQL, "postgresql://db/askgate"},
		{"POSTGRES://db/askgate", store.PostgreSQL, "POSTGRES://db/askgate"},
		{"sqlite:data/askgate.db", store.SQLite, "data/askgate.db"},
		{"sqlite:/var/lib/askgate.db", store.SQLite, "/var/lib/askgate.db"},
		{"sqlite:///var/lib/askgate.db", store.SQLite, "/var/lib/askgate.db"},
		{"sqlite://data/askgate.db", store.SQLite, "data/askgate.db"},
		{"sqlite::memory:", store.SQLite, ":memory:"},
		{"data/askgate.db", store.SQLite, "data/askgate.db"},
		{"/var/lib/askgate.db", store.SQLite, "/var/lib/askgate.db"},
		{"./backup:2024.db", store.SQLite, "./backup:2024.db"},
		{`C:\askgate\askgate.db`, store.SQLite, `C:\askgate\askgate.db`},
	}
	for _, tt := range tests {
		kind, target, err := store.Parse(tt.url)
		if err != nil || kind != tt.kind || target != tt.target {
			t.Errorf("Parse(%q) = %q, %q, %v; want %q, %q", tt.url, kind, target, err, tt.kind, tt.target)
		}
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		url  string
		want string // in the error
	}{
		{"", "empty"},
		{"  ", "empty"},
		{"mysql://root:hunter2@db/askgate", `unsupported scheme "mysql"`},
		{"redis:localhost", `unsupported scheme "redis"`},
		{"postgres:db/askgate", "want postgres://"},
		{"sqlite:", "no file path"},
		{"sqlite://", "no file path"},
	}
	for _, tt := range tests {
		_, _, err := store.Parse(tt.url)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) error = %v; want one saying %q", tt.url, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Parse(%q) error %q shows the password", tt.url, err)
		}
	}
}

func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "new", "askgate.db")
	for _, url := range []string{"sqlite:" + path, path, "sqlite::memory:"} {
		s, err := store.Open(t.Context(), url)
		if err != nil {
			t.Fatalf("Open(%q): %v", url, err)
		}
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		c := &chat.Conversation{OwnerID: "user-alice"}
		if err := s.CreateConversation(t.Context(), c); err != nil {
			t.Errorf("CreateConversation: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the database file was not created: %v", err)
	}
}

func TestOpenPostgres(t *testing.T) {
	url := os.Getenv("ASKGATE_TEST_POSTGRES_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	s, err := store.Open(t.Context(), url)
	if err != nil {
		t.Fatalf("Open(%q): %v", url, err)
	}
	defer s.Close()
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}
