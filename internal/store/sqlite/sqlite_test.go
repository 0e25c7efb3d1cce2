package sqlite_test

import (
	"database/sql"
	"path/filepath"
	"testing"

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
