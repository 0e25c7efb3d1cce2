package storetest

import (
	"fmt"
	"testing"
	"time"

	"askgate/internal/chat"
)

// BenchmarkListMessages measures the query behind a page of the
// conversation list: the last 10 messages of each of 20 conversations
// that have 12 each, in one ListMessages. s must be new, empty and
// migrated.
func BenchmarkListMessages(b *testing.B, s chat.Store) {
	convs := seedBenchmark(b, s)
	ctx := b.Context()
	p := chat.Page{Limit: 10, Backward: true}
	b.ReportAllocs()
	for b.Loop() {
		pages, err := s.ListMessages(ctx, alice, convs, p)
		if err != nil {
			b.Fatalf("ListMessages: %v", err)
		}
		if len(pages) != len(convs) || len(pages[0].Messages) != 10 {
			b.Fatalf("ListMessages returned %d pages, the first with %d messages; want %d pages of 10", len(pages), len(pages[0].Messages), len(convs))
		}
	}
}

// BenchmarkListConversations measures a page of 20 conversations out of
// the 40 a user has, with their count, and the second page. s must be new,
// empty and migrated.
func BenchmarkListConversations(b *testing.B, s chat.Store) {
	seedBenchmark(b, s)
	seedBenchmark(b, s)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		page, err := s.ListConversations(ctx, alice, chat.Page{Limit: 20})
		if err != nil {
			b.Fatalf("ListConversations: %v", err)
		}
		if len(page.Conversations) != 20 {
			b.Fatalf("ListConversations returned %d conversations; want 20", len(page.Conversations))
		}
		after := page.Conversations[19].Cursor()
		if _, err := s.ListConversations(ctx, alice, chat.Page{Limit: 20, After: &after}); err != nil {
			b.Fatalf("ListConversations: %v", err)
		}
		if _, err := s.CountConversations(ctx, alice); err != nil {
			b.Fatalf("CountConversations: %v", err)
		}
	}
}

// seedBenchmark creates 20 conversations of alice with 12 messages each
// and returns their ids.
func seedBenchmark(b *testing.B, s chat.Store) []string {
	b.Helper()
	convs := make([]string, 20)
	base := chat.Now().Add(-time.Hour)
	for i := range convs {
		c := mustCreate(b, s, &chat.Conversation{OwnerID: alice, Title: fmt.Sprintf("conversation %d", i)})
		seedMessagesAt(b, s, alice, c.ID, 12, base)
		convs[i] = c.ID
	}
	return convs
}
