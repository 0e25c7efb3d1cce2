package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"slices"
	"testing"

	"github.com/pressly/goose/v3"

	"askgate/internal/chat"
	"askgate/internal/store/sqlite"
	"askgate/internal/store/storetest"
)

// open returns a new, migrated store on a file in a temporary directory,
// closed when t ends.
func open(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "sub", "askgate.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chat.Store { return open(t) })
}

func TestStoreInMemory(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chat.Store {
		s, err := sqlite.Open(":memory:")
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Migrate(t.Context()); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		return s
	})
}

func TestMigrateTwice(t *testing.T) {
	s := open(t)
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
}

// TestStreamingAnswersPlan checks that StreamingAnswers reads the first
// answers in order from the partial index, rather than sorting them all.
func TestStreamingAnswersPlan(t *testing.T) {
	path := filepath.Join(t.TempDir(), "askgate.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("open the file: %v", err)
	}
	defer db.Close()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+sqlite.StreamingAnswersSQL, 0, 10)
	if err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN: %v", err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatalf("EXPLAIN QUERY PLAN: %v", err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("EXPLAIN QUERY PLAN: %v", err)
	}
	want := []string{
		"SEARCH m USING INDEX messages_streaming (created_at<?)",
		"SEARCH c USING INDEX sqlite_autoindex_conversations_1 (id=?)",
	}
	if !slices.Equal(plan, want) {
		t.Errorf("plan of StreamingAnswers = %q; want %q", plan, want)
	}
}

// TestMigrateDown checks that every migration can be undone and applied
// again, with data in the tables.
func TestMigrateDown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "askgate.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if created, err := s.AddExchange(ctx, "user-alice", newExchange()); err != nil || !created {
		t.Fatalf("AddExchange = %v, %v; want true, nil", created, err)
	}

	db, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatalf("open the file: %v", err)
	}
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectSQLite3, db, sqlite.Migrations())
	if err != nil {
		t.Fatalf("goose: %v", err)
	}
	for _, version := range []int64{2, 1, 0} {
		if _, err := p.DownTo(ctx, version); err != nil {
			t.Fatalf("migrate down to %d: %v", version, err)
		}
		var n int
		if err := db.QueryRow("SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE 'goose%' AND name NOT LIKE 'sqlite%'").Scan(&n); err != nil {
			t.Fatalf("count tables: %v", err)
		}
		if version == 0 && n != 0 {
			t.Errorf("after migrating down to 0, %d tables and indexes remain; want 0", n)
		}
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("migrate up again: %v", err)
	}
	if created, err := s.AddExchange(ctx, "user-alice", newExchange()); err != nil || !created {
		t.Fatalf("AddExchange after migrating down and up = %v, %v; want true, nil", created, err)
	}
}

// newExchange returns a new conversation of user-alice with a question
// and the start of an answer, under the idempotency key "key".
func newExchange() *chat.Exchange {
	return &chat.Exchange{
		Conversation:   &chat.Conversation{OwnerID: "user-alice"},
		IdempotencyKey: "key",
		Question:       &chat.Message{Role: chat.RoleUser, Status: chat.StatusComplete},
		Answer:         &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming},
	}
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "askgate.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	c := &chat.Conversation{OwnerID: "user-alice", Title: "kept"}
	if err := s.CreateConversation(ctx, c); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s, err = sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open again: %v", err)
	}
	defer s.Close()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	got, err := s.ConversationsByID(ctx, "user-alice", []string{c.ID})
	if err != nil || len(got) != 1 || got[0].Title != "kept" {
		t.Fatalf("after reopening, ConversationsByID = %v, %v; want the conversation", got, err)
	}
}

func TestOpenBadPath(t *testing.T) {
	for _, path := range []string{"", "data/a?b.db"} {
		if s, err := sqlite.Open(path); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded; want an error", path)
		}
	}
}

// TestFile checks what the store leaves in the file, as another SQLite
// client sees it: WAL mode, and no messages left behind by a deleted
// conversation.
func TestFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "askgate.db")
	s, err := sqlite.Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	c := &chat.Conversation{OwnerID: "user-alice"}
	if err := s.CreateConversation(ctx, c); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	m := &chat.Message{ConversationID: c.ID, Role: chat.RoleUser, Status: chat.StatusComplete}
	if err := s.AddMessages(ctx, "user-alice", m); err != nil {
		t.Fatalf("AddMessages: %v", err)
	}
	if err := s.DeleteConversation(ctx, "user-alice", c.ID); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatalf("open the file: %v", err)
	}
	defer db.Close()
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var n int
	if err := db.QueryRow("SELECT count(*) FROM messages").Scan(&n); err != nil || n != 0 {
		t.Errorf("messages left after deleting their conversation: %d, %v; want 0", n, err)
	}
}

func BenchmarkListMessages(b *testing.B) {
	storetest.BenchmarkListMessages(b, open(b))
}

func BenchmarkListConversations(b *testing.B) {
	storetest.BenchmarkListConversations(b, open(b))
}
