package postgres_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"askgate/internal/chat"
	"askgate/internal/store/postgres"
	"askgate/internal/store/postgres/pgtest"
	"askgate/internal/store/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) chat.Store {
		return pgtest.NewStore(t)
	})
}

// TestOneStatement checks that the batched reads of a page of the
// conversation list cost one statement each, whatever the number of
// conversations.
func TestOneStatement(t *testing.T) {
	var counter pgtest.StatementCounter
	s := pgtest.NewStore(t, postgres.WithTracer(&counter))
	ctx := t.Context()
	const owner = "user-alice"
	var ids []string
	for i := range 20 {
		c := &chat.Conversation{OwnerID: owner}
		if err := s.CreateConversation(ctx, c); err != nil {
			t.Fatalf("CreateConversation: %v", err)
		}
		ids = append(ids, c.ID)
		for range 6 {
			q := &chat.Message{ConversationID: c.ID, Role: chat.RoleUser, AuthorID: owner, Content: "q", Status: chat.StatusComplete}
			a := &chat.Message{ConversationID: c.ID, Role: chat.RoleAssistant, Content: "a" + string(rune('a'+i)), Status: chat.StatusComplete, Model: "demo"}
			if err := s.AddMessages(ctx, owner, q, a); err != nil {
				t.Fatalf("AddMessages: %v", err)
			}
		}
	}

	tests := []struct {
		name string
		call func() error
	}{
		{"ListMessages", func() error {
			pages, err := s.ListMessages(ctx, owner, ids, chat.Page{Limit: 10, Backward: true})
			if err == nil && (len(pages) != 20 || len(pages[19].Messages) != 10) {
				t.Errorf("ListMessages returned %d pages; want 20 of 10 messages", len(pages))
			}
			return err
		}},
		{"ListMessagesWindow", func() error {
			c := &chat.Cursor{Time: chat.Now().Add(-time.Hour), ID: "x"}
			_, err := s.ListMessages(ctx, owner, ids, chat.Page{Limit: 10, After: c, Before: &chat.Cursor{Time: chat.Now()}})
			return err
		}},
		{"CountMessages", func() error {
			counts, err := s.CountMessages(ctx, owner, ids)
			if err == nil && (len(counts) != 20 || counts[ids[0]] != 12) {
				t.Errorf("CountMessages = %v; want 12 for each of 20 conversations", counts)
			}
			return err
		}},
		{"ListConversations", func() error {
			_, err := s.ListConversations(ctx, owner, chat.Page{Limit: 20})
			return err
		}},
		{"CountConversations", func() error {
			_, err := s.CountConversations(ctx, owner)
			return err
		}},
		{"ConversationsByID", func() error {
			_, err := s.ConversationsByID(ctx, owner, ids)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 3 { // first use prepares; the count stays the same
				counter.Reset()
				if err := tt.call(); err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if n := counter.Count(); n != 1 {
					t.Errorf("call %d: %s ran %d statements; want 1: %q", i, tt.name, n, counter.Statements())
				}
			}
		})
	}
}

// TestConcurrentMigrate checks that processes starting at once on a new
// schema can all migrate it.
func TestConcurrentMigrate(t *testing.T) {
	url := pgtest.NewSchema(t)
	stores := make([]*postgres.Store, 4)
	for i := range stores {
		stores[i] = pgtest.Open(t, url, false) // one pool each, as separate processes would have
	}
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			if err := s.Migrate(t.Context()); err != nil {
				t.Errorf("Migrate %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	for _, s := range stores {
		c := &chat.Conversation{OwnerID: "user-alice"}
		if err := s.CreateConversation(t.Context(), c); err != nil {
			t.Errorf("CreateConversation after migrating: %v", err)
		}
	}
}

// TestCascade checks that deleting a conversation leaves none of its
// messages in the table.
func TestCascade(t *testing.T) {
	url := pgtest.NewSchema(t)
	s := pgtest.Open(t, url, true)
	ctx := t.Context()
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
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM messages").Scan(&n); err != nil || n != 0 {
		t.Errorf("messages left after deleting their conversation: %d, %v; want 0", n, err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	start := time.Now()
	s, err := postgres.Open(t.Context(), "postgres://postgres:secret@127.0.0.1:1/test?sslmode=disable&connect_timeout=5")
	if err == nil {
		s.Close()
		t.Fatalf("Open of an unreachable database succeeded; want an error")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("Open error %q shows the password", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("Open took %v to fail", time.Since(start))
	}
}

func TestOpenBadURL(t *testing.T) {
	s, err := postgres.Open(t.Context(), "postgres://postgres:secret@127.0.0.1:5432/test?sslmode=bogus")
	if err == nil {
		s.Close()
		t.Fatalf("Open with a bad URL succeeded; want an error")
	}
	if strings.Contains(err.Error(), "secret") {
		t.Errorf("Open error %q shows the password", err)
	}
}

func BenchmarkListMessages(b *testing.B) {
	storetest.BenchmarkListMessages(b, pgtest.NewStore(b))
}

func BenchmarkListConversations(b *testing.B) {
	storetest.BenchmarkListConversations(b, pgtest.NewStore(b))
}
