// Package storetest is the conformance suite of chat.Store: the behaviour
// every implementation must share, written as tests. An implementation's
// own tests call Run with a function that makes fresh stores:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) chat.Store {
//			s := open(t) // new, empty, migrated; closed by t.Cleanup
//			return s
//		})
//	}
package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"askgate/internal/chat"
)

// The users of the suite. Stores must treat their ids as opaque strings.
const (
	alice = "user-alice"
	bob   = "user-bob"
)

// Run runs the conformance suite on the stores newStore makes. Each call
// of newStore must return a new, empty, migrated store, and arrange for it
// to be closed when t ends. Subtests run in parallel, so newStore may be
// called concurrently.
func Run(t *testing.T, newStore func(t *testing.T) chat.Store) {
	tests := []struct {
		name string
		test func(t *testing.T, s chat.Store)
	}{
		{"CreateConversation", testCreateConversation},
		{"CreateConversationKeepsGivenFields", testCreateConversationKeepsGivenFields},
		{"CreateConversationRequiresOwner", testCreateConversationRequiresOwner},
		{"ConversationsByID", testConversationsByID},
		{"ListConversationsEmpty", testListConversationsEmpty},
		{"ListConversationsPaging", testListConversationsPaging},
		{"ListConversationsStableUnderInserts", testListConversationsStableUnderInserts},
		{"ListConversationsCursorOfDeletedConversation", testListConversationsCursorOfDeleted},
		{"CountConversations", testCountConversations},
		{"RenameConversation", testRenameConversation},
		{"RenameMissingConversation", testRenameMissingConversation},
		{"DeleteConversation", testDeleteConversation},
		{"AddMessages", testAddMessages},
		{"AddMessagesRoundTrip", testAddMessagesRoundTrip},
		{"AddMessagesNone", testAddMessagesNone},
		{"AddMessagesMissingConversation", testAddMessagesMissingConversation},
		{"AddMessagesAllOrNothing", testAddMessagesAllOrNothing},
		{"AddMessagesOneConversation", testAddMessagesOneConversation},
		{"MessagesByID", testMessagesByID},
		{"ListMessagesPaging", testListMessagesPaging},
		{"ListMessagesStableUnderInserts", testListMessagesStableUnderInserts},
		{"ListMessagesBatch", testListMessagesBatch},
		{"ListMessagesNoConversations", testListMessagesNoConversations},
		{"CountMessages", testCountMessages},
		{"AddExchange", testAddExchange},
		{"AddExchangeNewConversation", testAddExchangeNewConversation},
		{"AddExchangeMissingConversation", testAddExchangeMissingConversation},
		{"AddExchangeAllOrNothing", testAddExchangeAllOrNothing},
		{"AddExchangeOrder", testAddExchangeOrder},
		{"AddExchangeIdempotent", testAddExchangeIdempotent},
		{"AddExchangeIdempotentNewConversation", testAddExchangeIdempotentNewConversation},
		{"AddExchangeKeyPerOwner", testAddExchangeKeyPerOwner},
		{"AddExchangeKeyFreedByDelete", testAddExchangeKeyFreedByDelete},
		{"AddExchangeConcurrentKey", testAddExchangeConcurrentKey},
		{"UpdateAnswer", testUpdateAnswer},
		{"UpdateAnswerKeepsCached", testUpdateAnswerKeepsCached},
		{"UpdateAnswerFinalStates", testUpdateAnswerFinalStates},
		{"UpdateAnswerOnlyWhileStreaming", testUpdateAnswerOnlyWhileStreaming},
		{"UpdateAnswerRaces", testUpdateAnswerRaces},
		{"InterruptAnswers", testInterruptAnswers},
		{"StreamingAnswers", testStreamingAnswers},
		{"Ownership", testOwnership},
		{"Users", testUsers},
		{"TimestampsRoundTrip", testTimestampsRoundTrip},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Ping", testPing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newStore(t))
		})
	}
}

func testCreateConversation(t *testing.T, s chat.Store) {
	ctx := t.Context()
	before := chat.Now()
	c := &chat.Conversation{OwnerID: alice, Title: "Hello"}
	if err := s.CreateConversation(ctx, c); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	after := chat.Now()

	checkUUIDv7(t, "conversation ID", c.ID)
	if c.CreatedAt.Before(before) || c.CreatedAt.After(after) || !c.UpdatedAt.Equal(c.CreatedAt) {
		t.Errorf("CreatedAt, UpdatedAt = %v, %v; want the same time within [%v, %v]", c.CreatedAt, c.UpdatedAt, before, after)
	}
	checkStoredTime(t, "CreatedAt", c.CreatedAt)

	got := getConversation(t, s, alice, c.ID)
	checkConversation(t, got, c)

	other := &chat.Conversation{OwnerID: alice}
	mustCreate(t, s, other)
	if other.ID == c.ID {
		t.Errorf("two conversations got the same ID %q", c.ID)
	}
}

func testCreateConversationKeepsGivenFields(t *testing.T, s chat.Store) {
	ctx := t.Context()
	created := time.Date(2023, 1, 2, 3, 4, 5, 123456789, time.FixedZone("CET", 3600))
	c := &chat.Conversation{
		ID:        "given-id",
		OwnerID:   alice,
		Title:     "Given",
		CreatedAt: created,
		UpdatedAt: created.Add(time.Hour),
	}
	if err := s.CreateConversation(ctx, c); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	want := &chat.Conversation{
		ID:        "given-id",
		OwnerID:   alice,
		Title:     "Given",
		CreatedAt: time.Date(2023, 1, 2, 2, 4, 5, 123456000, time.UTC),
		UpdatedAt: time.Date(2023, 1, 2, 3, 4, 5, 123456000, time.UTC),
	}
	// The store keeps times in UTC to the microsecond, and says so by
	// normalizing the ones it was given.
	checkConversation(t, c, want)
	checkConversation(t, getConversation(t, s, alice, "given-id"), want)

	if err := s.CreateConversation(ctx, &chat.Conversation{ID: "given-id", OwnerID: bob}); err == nil {
		t.Errorf("CreateConversation with an existing ID succeeded; want an error")
	}
	checkConversation(t, getConversation(t, s, alice, "given-id"), want)
}

func testCreateConversationRequiresOwner(t *testing.T, s chat.Store) {
	if err := s.CreateConversation(t.Context(), &chat.Conversation{Title: "Nobody's"}); err == nil {
		t.Errorf("CreateConversation without OwnerID succeeded; want an error")
	}
	if n := countConversations(t, s, ""); n != 0 {
		t.Errorf("CountConversations(\"\") = %d; want 0", n)
	}
}

func testConversationsByID(t *testing.T, s chat.Store) {
	ctx := t.Context()
	a1 := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "a1"})
	a2 := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "a2"})
	b1 := mustCreate(t, s, &chat.Conversation{OwnerID: bob, Title: "b1"})

	tests := []struct {
		name  string
		owner string
		ids   []string
		want  []*chat.Conversation
	}{
		{"none", alice, nil, nil},
		{"one", alice, []string{a1.ID}, []*chat.Conversation{a1}},
		{"several", alice, []string{a2.ID, a1.ID}, []*chat.Conversation{a1, a2}},
		{"repeated", alice, []string{a1.ID, a1.ID}, []*chat.Conversation{a1}},
		{"another owner's", alice, []string{b1.ID}, nil},
		{"mixed", alice, []string{"missing", b1.ID, a2.ID, "", "not a uuid'; --"}, []*chat.Conversation{a2}},
		{"the other owner", bob, []string{a1.ID, a2.ID, b1.ID}, []*chat.Conversation{b1}},
		{"no owner", "", []string{a1.ID, b1.ID}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ConversationsByID(ctx, tt.owner, tt.ids)
			if err != nil {
				t.Fatalf("ConversationsByID: %v", err)
			}
			sortByID(got, conversationID)
			want := slices.Clone(tt.want)
			sortByID(want, conversationID)
			checkConversations(t, got, want)
		})
	}
}

func testListConversationsEmpty(t *testing.T, s chat.Store) {
	mustCreate(t, s, &chat.Conversation{OwnerID: bob})
	for _, p := range []chat.Page{{Limit: 10}, {Limit: 10, Backward: true}} {
		got := listConversations(t, s, alice, p)
		if len(got.Conversations) != 0 || got.PageInfo != (chat.PageInfo{}) {
			t.Errorf("ListConversations(%+v) of a user without conversations = %d conversations, %+v; want none and no neighbours",
				p, len(got.Conversations), got.PageInfo)
		}
	}
}

func testListConversationsPaging(t *testing.T, s chat.Store) {
	all := seedConversations(t, s, alice, 25)
	seedConversations(t, s, bob, 5)
	checkPaging(t, all, conversationAccess, func(t *testing.T, p chat.Page) ([]*chat.Conversation, chat.PageInfo) {
		page := listConversations(t, s, alice, p)
		return page.Conversations, page.PageInfo
	}, 10, 5)
}

func testListConversationsStableUnderInserts(t *testing.T, s chat.Store) {
	all := seedConversations(t, s, alice, 25)

	first := listConversations(t, s, alice, chat.Page{Limit: 10})
	checkIDs(t, "first page", ids(first.Conversations), ids(all[:10]))
	last := listConversations(t, s, alice, chat.Page{Limit: 10, Backward: true})
	checkIDs(t, "last page", ids(last.Conversations), ids(all[15:]))

	// New conversations go to the top of the list; the cursors of pages
	// already fetched still lead to the same neighbours.
	for range 5 {
		mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "newer"})
	}
	next := listConversations(t, s, alice, chat.Page{Limit: 10, After: cursor(first.Conversations[9])})
	checkIDs(t, "page after the first", ids(next.Conversations), ids(all[10:20]))
	prev := listConversations(t, s, alice, chat.Page{Limit: 10, Backward: true, Before: cursor(last.Conversations[0])})
	checkIDs(t, "page before the last", ids(prev.Conversations), ids(all[5:15]))
}

func testListConversationsCursorOfDeleted(t *testing.T, s chat.Store) {
	all := seedConversations(t, s, alice, 10)
	if err := s.DeleteConversation(t.Context(), alice, all[4].ID); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}
	// A cursor is a position in the list, not a reference to an object.
	got := listConversations(t, s, alice, chat.Page{Limit: 3, After: cursor(all[4])})
	checkIDs(t, "after a deleted conversation", ids(got.Conversations), ids(all[5:8]))
	got = listConversations(t, s, alice, chat.Page{Limit: 3, Backward: true, Before: cursor(all[4])})
	checkIDs(t, "before a deleted conversation", ids(got.Conversations), ids(all[1:4]))
}

func testCountConversations(t *testing.T, s chat.Store) {
	seedConversations(t, s, alice, 7)
	seedConversations(t, s, bob, 2)
	for _, tt := range []struct {
		owner string
		want  int
	}{{alice, 7}, {bob, 2}, {"user-carol", 0}} {
		if got := countConversations(t, s, tt.owner); got != tt.want {
			t.Errorf("CountConversations(%q) = %d; want %d", tt.owner, got, tt.want)
		}
	}
	if err := s.DeleteConversation(t.Context(), bob, listConversations(t, s, bob, chat.Page{Limit: 1}).Conversations[0].ID); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}
	if got := countConversations(t, s, bob); got != 1 {
		t.Errorf("CountConversations after a delete = %d; want 1", got)
	}
}

func testRenameConversation(t *testing.T, s chat.Store) {
	ctx := t.Context()
	all := seedConversations(t, s, alice, 5)
	oldest := all[4]

	before := chat.Now()
	got, err := s.RenameConversation(ctx, alice, oldest.ID, "Renamed")
	if err != nil {
		t.Fatalf("RenameConversation: %v", err)
	}
	want := *oldest
	want.Title = "Renamed"
	want.UpdatedAt = got.UpdatedAt
	checkConversation(t, got, &want)
	if got.UpdatedAt.Before(before) {
		t.Errorf("UpdatedAt after rename = %v; want at least %v", got.UpdatedAt, before)
	}
	checkStoredTime(t, "UpdatedAt", got.UpdatedAt)
	checkConversation(t, getConversation(t, s, alice, oldest.ID), got)

	// Renaming bumps the conversation to the top of the list.
	page := listConversations(t, s, alice, chat.Page{Limit: 10})
	wantOrder := append([]*chat.Conversation{oldest}, all[:4]...)
	checkIDs(t, "order after rename", ids(page.Conversations), ids(wantOrder))
}

func testRenameMissingConversation(t *testing.T, s chat.Store) {
	_, err := s.RenameConversation(t.Context(), alice, "missing", "Renamed")
	checkNotFound(t, "RenameConversation of a missing conversation", err)
}

func testDeleteConversation(t *testing.T, s chat.Store) {
	ctx := t.Context()
	keep := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "keep"})
	keepMsgs := seedMessages(t, s, alice, keep.ID, 3)
	gone := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "gone"})
	goneMsgs := seedMessages(t, s, alice, gone.ID, 4)

	if err := s.DeleteConversation(ctx, alice, gone.ID); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}
	if got, err := s.ConversationsByID(ctx, alice, []string{gone.ID}); err != nil || len(got) != 0 {
		t.Errorf("ConversationsByID of a deleted conversation = %d conversations, %v; want none", len(got), err)
	}
	// The messages went with it.
	if got, err := s.MessagesByID(ctx, alice, ids(goneMsgs)); err != nil || len(got) != 0 {
		t.Errorf("MessagesByID of a deleted conversation's messages = %d messages, %v; want none", len(got), err)
	}
	pages := listMessages(t, s, alice, []string{gone.ID, keep.ID}, chat.Page{Limit: 10})
	checkIDs(t, "messages of the deleted conversation", ids(pages[0].Messages), nil)
	checkIDs(t, "messages of the kept conversation", ids(pages[1].Messages), ids(keepMsgs))
	checkCounts(t, s, alice, []string{gone.ID, keep.ID}, map[string]int{keep.ID: 3})

	checkNotFound(t, "DeleteConversation again", s.DeleteConversation(ctx, alice, gone.ID))
	checkNotFound(t, "DeleteConversation of a missing conversation", s.DeleteConversation(ctx, alice, "missing"))
}

func testAddMessages(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	q := &chat.Message{ConversationID: c.ID, Role: chat.RoleUser, AuthorID: alice, Content: "Why?", Status: chat.StatusComplete}
	a := &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming, Model: "demo"}

	before := chat.Now()
	if err := s.AddMessages(ctx, alice, q, a); err != nil {
		t.Fatalf("AddMessages: %v", err)
	}
	after := chat.Now()
	for _, m := range []*chat.Message{q, a} {
		checkUUIDv7(t, "message ID", m.ID)
		if m.ConversationID != c.ID {
			t.Errorf("message ConversationID = %q; want %q", m.ConversationID, c.ID)
		}
		if m.CreatedAt.Before(before) || m.CreatedAt.After(after) {
			t.Errorf("message CreatedAt = %v; want within [%v, %v]", m.CreatedAt, before, after)
		}
		checkStoredTime(t, "CreatedAt", m.CreatedAt)
	}
	if q.ID == a.ID {
		t.Errorf("two messages got the same ID %q", q.ID)
	}

	got := getConversation(t, s, alice, c.ID)
	if got.UpdatedAt.Before(q.CreatedAt) {
		t.Errorf("conversation UpdatedAt after AddMessages = %v; want at least %v", got.UpdatedAt, q.CreatedAt)
	}
	if !got.CreatedAt.Equal(c.CreatedAt) {
		t.Errorf("conversation CreatedAt after AddMessages = %v; want %v unchanged", got.CreatedAt, c.CreatedAt)
	}

	pages := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 10})
	checkMessages(t, pages[0].Messages, sortedMessages(q, a))
}

func testAddMessagesRoundTrip(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	created := time.Date(2024, 6, 1, 10, 0, 0, 1000, time.UTC)
	completed := created.Add(1500 * time.Millisecond)
	msgs := []*chat.Message{
		{
			ID: "question", ConversationID: c.ID, Role: chat.RoleUser, AuthorID: alice,
			Content: "What is 𝜋? ‘quotes’, \"double\", back\\slash, NUL-free\nnewline",
			Status:  chat.StatusComplete, CreatedAt: created,
		},
		{
			ID: "answer", ConversationID: c.ID, Role: chat.RoleAssistant,
			Content: "About 3.14159.", Status: chat.StatusComplete, Model: "gpt-test",
			CreatedAt: created.Add(time.Microsecond), CompletedAt: &completed,
			Usage: &chat.TokenUsage{PromptTokens: 12, CompletionTokens: 7, TotalTokens: 19},
		},
		{
			ID: "failed", ConversationID: c.ID, Role: chat.RoleAssistant,
			Content: "partial", Status: chat.StatusFailed, Model: "gpt-test",
			CreatedAt: created.Add(2 * time.Second), CompletedAt: &completed,
			Usage: &chat.TokenUsage{}, Error: "backend went away",
		},
		{
			ID: "cancelled", ConversationID: c.ID, Role: chat.RoleAssistant,
			Status: chat.StatusCancelled, CreatedAt: created.Add(3 * time.Second),
		},
		{
			ID: "cached", ConversationID: c.ID, Role: chat.RoleAssistant,
			Content: "About 3.14159.", Status: chat.StatusComplete, Model: "gpt-test",
			CreatedAt: created.Add(3500 * time.Millisecond), CompletedAt: &completed,
			Usage: &chat.TokenUsage{}, Cached: true,
		},
		{
			ID: "streaming", ConversationID: c.ID, Role: chat.RoleAssistant,
			Status: chat.StatusStreaming, CreatedAt: created.Add(4 * time.Second),
		},
	}
	if err := s.AddMessages(ctx, alice, msgs...); err != nil {
		t.Fatalf("AddMessages: %v", err)
	}
	got, err := s.MessagesByID(ctx, alice, ids(msgs))
	if err != nil {
		t.Fatalf("MessagesByID: %v", err)
	}
	sortByID(got, messageID)
	want := slices.Clone(msgs)
	sortByID(want, messageID)
	checkMessages(t, got, want)
}

func testAddMessagesNone(t *testing.T, s chat.Store) {
	if err := s.AddMessages(t.Context(), alice); err != nil {
		t.Errorf("AddMessages with no messages: %v; want no error", err)
	}
}

func testAddMessagesMissingConversation(t *testing.T, s chat.Store) {
	for _, id := range []string{"missing", ""} {
		err := s.AddMessages(t.Context(), alice, &chat.Message{ConversationID: id, Role: chat.RoleUser, Status: chat.StatusComplete})
		checkNotFound(t, fmt.Sprintf("AddMessages to conversation %q", id), err)
	}
}

func testAddMessagesAllOrNothing(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	good := &chat.Message{ID: "good", ConversationID: c.ID, Role: chat.RoleUser, Status: chat.StatusComplete}
	for _, bad := range []*chat.Message{
		{ID: "bad-role", ConversationID: c.ID, Role: "SYSTEM", Status: chat.StatusComplete},
		{ID: "bad-status", ConversationID: c.ID, Role: chat.RoleAssistant, Status: "DONE"},
		{ID: "good", ConversationID: c.ID, Role: chat.RoleAssistant, Status: chat.StatusComplete}, // duplicate ID
	} {
		good.ID = "good"
		if err := s.AddMessages(ctx, alice, good, bad); err == nil {
			t.Errorf("AddMessages with message %q succeeded; want an error", bad.ID)
		}
		if n := countMessages(t, s, alice, c.ID); n != 0 {
			t.Errorf("after a failed AddMessages, the conversation has %d messages; want 0", n)
		}
		checkConversation(t, getConversation(t, s, alice, c.ID), c)
	}
}

func testAddMessagesOneConversation(t *testing.T, s chat.Store) {
	c1 := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	c2 := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	err := s.AddMessages(t.Context(), alice,
		&chat.Message{ConversationID: c1.ID, Role: chat.RoleUser, Status: chat.StatusComplete},
		&chat.Message{ConversationID: c2.ID, Role: chat.RoleUser, Status: chat.StatusComplete},
	)
	if err == nil {
		t.Errorf("AddMessages to two conversations at once succeeded; want an error")
	}
	checkCounts(t, s, alice, []string{c1.ID, c2.ID}, map[string]int{c1.ID: 0, c2.ID: 0})
}

func testMessagesByID(t *testing.T, s chat.Store) {
	ctx := t.Context()
	a := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	am := seedMessages(t, s, alice, a.ID, 4)
	b := mustCreate(t, s, &chat.Conversation{OwnerID: bob})
	bm := seedMessages(t, s, bob, b.ID, 2)

	tests := []struct {
		name  string
		owner string
		ids   []string
		want  []*chat.Message
	}{
		{"none", alice, nil, nil},
		{"one", alice, []string{am[2].ID}, am[2:3]},
		{"all", alice, ids(am), am},
		{"another owner's", alice, ids(bm), nil},
		{"mixed", alice, []string{bm[0].ID, am[1].ID, "missing", am[3].ID, am[1].ID}, []*chat.Message{am[1], am[3]}},
		{"the other owner", bob, append(ids(am), ids(bm)...), bm},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.MessagesByID(ctx, tt.owner, tt.ids)
			if err != nil {
				t.Fatalf("MessagesByID: %v", err)
			}
			sortByID(got, messageID)
			want := slices.Clone(tt.want)
			sortByID(want, messageID)
			checkMessages(t, got, want)
		})
	}
}

func testListMessagesPaging(t *testing.T, s chat.Store) {
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	all := seedMessages(t, s, alice, c.ID, 12)
	other := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	seedMessages(t, s, alice, other.ID, 3)
	checkPaging(t, all, messageAccess, func(t *testing.T, p chat.Page) ([]*chat.Message, chat.PageInfo) {
		pages := listMessages(t, s, alice, []string{c.ID}, p)
		return pages[0].Messages, pages[0].PageInfo
	}, 5, 5)
}

func testListMessagesStableUnderInserts(t *testing.T, s chat.Store) {
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	all := seedMessages(t, s, alice, c.ID, 12)

	first := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 5})[0]
	last := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 5, Backward: true})[0]
	checkIDs(t, "first page", ids(first.Messages), ids(all[:5]))
	checkIDs(t, "last page", ids(last.Messages), ids(all[7:]))

	// New messages go to the end of the list.
	newer := seedMessagesAt(t, s, alice, c.ID, 3, chat.Now())
	next := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 5, After: cursor(first.Messages[4])})[0]
	checkIDs(t, "page after the first", ids(next.Messages), ids(all[5:10]))
	prev := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 5, Backward: true, Before: cursor(last.Messages[0])})[0]
	checkIDs(t, "page before the last", ids(prev.Messages), ids(all[2:7]))
	tail := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 10, After: cursor(last.Messages[4])})[0]
	checkIDs(t, "page after the last", ids(tail.Messages), ids(newer))
}

func testListMessagesBatch(t *testing.T, s chat.Store) {
	c0 := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "empty"})
	c3 := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "three"})
	m3 := seedMessages(t, s, alice, c3.ID, 3)
	c12 := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "twelve"})
	m12 := seedMessages(t, s, alice, c12.ID, 12)
	cb := mustCreate(t, s, &chat.Conversation{OwnerID: bob, Title: "bob's"})
	seedMessages(t, s, bob, cb.ID, 2)

	ids := []string{c12.ID, cb.ID, c3.ID, "missing", c0.ID, c12.ID}
	type want struct {
		msgs []*chat.Message
		info chat.PageInfo
	}
	none := want{}
	tests := []struct {
		name string
		page chat.Page
		want []want
	}{
		{
			name: "last 10",
			page: chat.Page{Limit: 10, Backward: true},
			want: []want{
				{m12[2:], chat.PageInfo{HasPreviousPage: true}},
				none,
				{m3, chat.PageInfo{}},
				none,
				none,
				{m12[2:], chat.PageInfo{HasPreviousPage: true}},
			},
		},
		{
			name: "first 2",
			page: chat.Page{Limit: 2},
			want: []want{
				{m12[:2], chat.PageInfo{HasNextPage: true}},
				none,
				{m3[:2], chat.PageInfo{HasNextPage: true}},
				none,
				none,
				{m12[:2], chat.PageInfo{HasNextPage: true}},
			},
		},
		{
			name: "first 3",
			page: chat.Page{Limit: 3},
			want: []want{
				{m12[:3], chat.PageInfo{HasNextPage: true}},
				none,
				{m3, chat.PageInfo{}},
				none,
				none,
				{m12[:3], chat.PageInfo{HasNextPage: true}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pages := listMessages(t, s, alice, ids, tt.page)
			if len(pages) != len(ids) {
				t.Fatalf("ListMessages for %d ids returned %d pages", len(ids), len(pages))
			}
			for i, page := range pages {
				if page.ConversationID != ids[i] {
					t.Errorf("page %d is of conversation %q; want %q", i, page.ConversationID, ids[i])
				}
				checkMessages(t, page.Messages, tt.want[i].msgs)
				if page.PageInfo != tt.want[i].info {
					t.Errorf("page %d PageInfo = %+v; want %+v", i, page.PageInfo, tt.want[i].info)
				}
			}
		})
	}
}

func testListMessagesNoConversations(t *testing.T, s chat.Store) {
	pages, err := s.ListMessages(t.Context(), alice, nil, chat.Page{Limit: 10})
	if err != nil || len(pages) != 0 {
		t.Errorf("ListMessages with no ids = %d pages, %v; want none", len(pages), err)
	}
}

func testCountMessages(t *testing.T, s chat.Store) {
	c0 := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	c3 := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	seedMessages(t, s, alice, c3.ID, 3)
	c12 := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	seedMessages(t, s, alice, c12.ID, 12)
	cb := mustCreate(t, s, &chat.Conversation{OwnerID: bob})
	seedMessages(t, s, bob, cb.ID, 2)

	tests := []struct {
		name  string
		owner string
		ids   []string
		want  map[string]int
	}{
		{"none", alice, nil, map[string]int{}},
		{"several", alice, []string{c12.ID, c3.ID}, map[string]int{c12.ID: 12, c3.ID: 3}},
		{"empty conversation", alice, []string{c0.ID}, map[string]int{c0.ID: 0}},
		{"mixed", alice, []string{c0.ID, cb.ID, "missing", c3.ID, c3.ID}, map[string]int{c0.ID: 0, c3.ID: 3}},
		{"the other owner", bob, []string{c0.ID, c3.ID, cb.ID}, map[string]int{cb.ID: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkCounts(t, s, tt.owner, tt.ids, tt.want)
		})
	}
}

// testOwnership checks that every method keeps a user away from another
// user's conversation and its messages: it behaves as if they did not
// exist, and nothing changes.
func testOwnership(t *testing.T, s chat.Store) {
	ctx := t.Context()
	conv := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "alice's"})
	msgs := seedMessages(t, s, alice, conv.ID, 3)
	streaming := addExchange(t, s, alice, newExchange(conv.ID, "alice's key"))
	msgs = append(msgs, streaming.Question, streaming.Answer)
	conv = getConversation(t, s, alice, conv.ID)
	own := mustCreate(t, s, &chat.Conversation{OwnerID: bob, Title: "bob's"})

	tests := []struct {
		name string
		try  func(t *testing.T)
	}{
		{"ConversationsByID", func(t *testing.T) {
			got, err := s.ConversationsByID(ctx, bob, []string{conv.ID})
			if err != nil || len(got) != 0 {
				t.Errorf("ConversationsByID = %d conversations, %v; want none", len(got), err)
			}
		}},
		{"ListConversations", func(t *testing.T) {
			for _, p := range []chat.Page{{Limit: 10}, {Limit: 10, Backward: true}} {
				got := listConversations(t, s, bob, p)
				checkIDs(t, "ListConversations", ids(got.Conversations), []string{own.ID})
			}
		}},
		{"CountConversations", func(t *testing.T) {
			if n := countConversations(t, s, bob); n != 1 {
				t.Errorf("CountConversations = %d; want 1", n)
			}
		}},
		{"RenameConversation", func(t *testing.T) {
			_, err := s.RenameConversation(ctx, bob, conv.ID, "bob was here")
			checkNotFound(t, "RenameConversation", err)
		}},
		{"DeleteConversation", func(t *testing.T) {
			checkNotFound(t, "DeleteConversation", s.DeleteConversation(ctx, bob, conv.ID))
		}},
		{"AddMessages", func(t *testing.T) {
			err := s.AddMessages(ctx, bob, &chat.Message{ConversationID: conv.ID, Role: chat.RoleUser, AuthorID: bob, Status: chat.StatusComplete})
			checkNotFound(t, "AddMessages", err)
		}},
		{"MessagesByID", func(t *testing.T) {
			got, err := s.MessagesByID(ctx, bob, ids(msgs))
			if err != nil || len(got) != 0 {
				t.Errorf("MessagesByID = %d messages, %v; want none", len(got), err)
			}
		}},
		{"ListMessages", func(t *testing.T) {
			for _, p := range []chat.Page{{Limit: 10}, {Limit: 10, Backward: true}, {Limit: 10, After: cursor(msgs[0])}} {
				pages := listMessages(t, s, bob, []string{conv.ID}, p)
				checkIDs(t, "ListMessages", ids(pages[0].Messages), nil)
			}
		}},
		{"CountMessages", func(t *testing.T) {
			checkCounts(t, s, bob, []string{conv.ID}, map[string]int{})
		}},
		{"AddExchange", func(t *testing.T) {
			for _, key := range []string{"", "alice's key"} {
				_, err := s.AddExchange(ctx, bob, newExchange(conv.ID, key))
				checkNotFound(t, fmt.Sprintf("AddExchange with key %q", key), err)
			}
		}},
		{"UpdateAnswer", func(t *testing.T) {
			a := *streaming.Answer
			a.Content = "bob was here"
			if ok, err := s.UpdateAnswer(ctx, bob, &a); ok || err != nil {
				t.Errorf("UpdateAnswer = %v, %v; want false, nil", ok, err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.try(t)
			// Nothing of alice's changed.
			checkConversation(t, getConversation(t, s, alice, conv.ID), conv)
			pages := listMessages(t, s, alice, []string{conv.ID}, chat.Page{Limit: 10})
			checkMessages(t, pages[0].Messages, msgs)
		})
	}
}

func testUsers(t *testing.T, s chat.Store) {
	ctx := t.Context()
	a := &chat.User{ID: alice, Name: "Alice", Email: "alice@example.com", AvatarURL: "https://example.com/a.png"}
	b := &chat.User{ID: bob, Name: "Bob"}
	for _, u := range []*chat.User{a, b} {
		if err := s.UpsertUser(ctx, u); err != nil {
			t.Fatalf("UpsertUser(%q): %v", u.ID, err)
		}
	}
	check := func(t *testing.T, ids []string, want ...*chat.User) {
		t.Helper()
		got, err := s.UsersByID(ctx, ids)
		if err != nil {
			t.Fatalf("UsersByID: %v", err)
		}
		sortByID(got, func(u *chat.User) string { return u.ID })
		if len(got) != len(want) {
			t.Fatalf("UsersByID(%q) = %d users; want %d", ids, len(got), len(want))
		}
		for i := range got {
			if *got[i] != *want[i] {
				t.Errorf("UsersByID user %d = %+v; want %+v", i, *got[i], *want[i])
			}
		}
	}
	check(t, nil)
	check(t, []string{alice}, a)
	check(t, []string{bob, "user-unknown", alice, alice}, a, b)
	check(t, []string{"user-unknown"})

	// Upserting again updates, unchanged profiles included.
	a2 := &chat.User{ID: alice, Name: "Alice Liddell", Email: "alice@example.org"}
	for range 2 {
		if err := s.UpsertUser(ctx, a2); err != nil {
			t.Fatalf("UpsertUser: %v", err)
		}
	}
	check(t, []string{alice, bob}, a2, b)

	if err := s.UpsertUser(ctx, &chat.User{Name: "No ID"}); err == nil {
		t.Errorf("UpsertUser without an ID succeeded; want an error")
	}
}

func testTimestampsRoundTrip(t *testing.T, s chat.Store) {
	ctx := t.Context()
	times := []time.Time{
		time.Date(2024, 2, 29, 23, 59, 59, 999999000, time.UTC),
		time.Date(2000, 1, 1, 0, 0, 0, 1000, time.UTC),
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC),
		chat.Now(),
	}
	for _, tm := range times {
		t.Run(tm.Format(time.RFC3339Nano), func(t *testing.T) {
			c := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: tm, UpdatedAt: tm})
			got := getConversation(t, s, alice, c.ID)
			checkTime(t, "CreatedAt", got.CreatedAt, tm)
			checkTime(t, "UpdatedAt", got.UpdatedAt, tm)

			// The time in a cursor matches the stored one exactly: the
			// narrowest window around it holds the conversation.
			page := listConversations(t, s, alice, chat.Page{Limit: 10, Before: &chat.Cursor{Time: tm}, After: &chat.Cursor{Time: tm, ID: c.ID + "~"}})
			checkIDs(t, "conversations in the window around the time", ids(page.Conversations), []string{c.ID})

			done := tm.Add(time.Microsecond)
			m := &chat.Message{ConversationID: c.ID, Role: chat.RoleAssistant, Status: chat.StatusComplete, CreatedAt: tm, CompletedAt: &done}
			if err := s.AddMessages(ctx, alice, m); err != nil {
				t.Fatalf("AddMessages: %v", err)
			}
			msgs, err := s.MessagesByID(ctx, alice, []string{m.ID})
			if err != nil || len(msgs) != 1 {
				t.Fatalf("MessagesByID = %d messages, %v; want 1", len(msgs), err)
			}
			checkTime(t, "message CreatedAt", msgs[0].CreatedAt, tm)
			if msgs[0].CompletedAt == nil {
				t.Fatalf("message CompletedAt = nil; want %v", done)
			}
			checkTime(t, "message CompletedAt", *msgs[0].CompletedAt, done)
			pages := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 10, After: &chat.Cursor{Time: tm}, Before: &chat.Cursor{Time: tm, ID: m.ID + "~"}})
			checkIDs(t, "messages in the window around the time", ids(pages[0].Messages), []string{m.ID})
		})
	}
}

func testConcurrentWriters(t *testing.T, s chat.Store) {
	ctx := t.Context()
	shared := mustCreate(t, s, &chat.Conversation{OwnerID: alice, Title: "shared"})
	const writers, rounds = 8, 10

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			own := &chat.Conversation{OwnerID: alice, Title: fmt.Sprintf("writer %d", w)}
			if err := s.CreateConversation(ctx, own); err != nil {
				t.Errorf("writer %d: CreateConversation: %v", w, err)
				return
			}
			for r := range rounds {
				for _, conv := range []string{shared.ID, own.ID} {
					q := &chat.Message{ConversationID: conv, Role: chat.RoleUser, AuthorID: alice, Content: fmt.Sprintf("q %d.%d", w, r), Status: chat.StatusComplete}
					a := &chat.Message{ConversationID: conv, Role: chat.RoleAssistant, Content: fmt.Sprintf("a %d.%d", w, r), Status: chat.StatusStreaming}
					if err := s.AddMessages(ctx, alice, q, a); err != nil {
						t.Errorf("writer %d: AddMessages: %v", w, err)
						return
					}
				}
			}
			if _, err := s.RenameConversation(ctx, alice, own.ID, "done"); err != nil {
				t.Errorf("writer %d: RenameConversation: %v", w, err)
			}
		})
	}
	for r := range writers / 2 {
		wg.Go(func() {
			for range rounds {
				page, err := s.ListConversations(ctx, alice, chat.Page{Limit: 20})
				if err != nil {
					t.Errorf("reader %d: ListConversations: %v", r, err)
					return
				}
				if _, err := s.ListMessages(ctx, alice, ids(page.Conversations), chat.Page{Limit: 10, Backward: true}); err != nil {
					t.Errorf("reader %d: ListMessages: %v", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	if n := countConversations(t, s, alice); n != writers+1 {
		t.Errorf("CountConversations = %d; want %d", n, writers+1)
	}
	const want = writers * rounds * 2
	if n := countMessages(t, s, alice, shared.ID); n != want {
		t.Errorf("CountMessages of the shared conversation = %d; want %d", n, want)
	}
	// Paging through the shared conversation sees every message once, in
	// order.
	var got []*chat.Message
	p := chat.Page{Limit: 7}
	for {
		page := listMessages(t, s, alice, []string{shared.ID}, p)[0]
		got = append(got, page.Messages...)
		if !page.PageInfo.HasNextPage {
			break
		}
		p.After = cursor(page.Messages[len(page.Messages)-1])
	}
	if len(got) != want {
		t.Errorf("paging through the shared conversation found %d messages; want %d", len(got), want)
	}
	if !slices.IsSortedFunc(got, compareMessages) {
		t.Errorf("paging through the shared conversation found messages out of order")
	}
	seen := make(map[string]bool)
	for _, m := range got {
		if seen[m.ID] {
			t.Errorf("message %q seen twice", m.ID)
		}
		seen[m.ID] = true
	}
}

func testPing(t *testing.T, s chat.Store) {
	if err := s.Ping(t.Context()); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// checkPaging checks the pages of a list whose items, in list order, are
// all: walking it forward and backward, and windows between two cursors.
// list fetches one page. all must have at least 12 items.
func checkPaging[T any](t *testing.T, all []T, acc access[T], list func(*testing.T, chat.Page) ([]T, chat.PageInfo), forward, backward int) {
	t.Helper()
	n := len(all)
	idsOf := func(xs []T) []string {
		s := make([]string, len(xs))
		for i, x := range xs {
			s[i] = acc.id(x)
		}
		return s
	}
	at := func(i int) *chat.Cursor { c := acc.cursor(all[i]); return &c }

	t.Run("Forward", func(t *testing.T) {
		var got []T
		p := chat.Page{Limit: forward}
		for i := 0; ; i++ {
			items, info := list(t, p)
			lo, hi := i*forward, min((i+1)*forward, n)
			checkIDs(t, fmt.Sprintf("page %d", i), idsOf(items), idsOf(all[lo:hi]))
			want := chat.PageInfo{HasNextPage: hi < n, HasPreviousPage: i > 0}
			if info != want {
				t.Errorf("page %d PageInfo = %+v; want %+v", i, info, want)
			}
			got = append(got, items...)
			if !info.HasNextPage || len(items) == 0 || i > n {
				break
			}
			p.After = ptr(acc.cursor(items[len(items)-1]))
		}
		checkIDs(t, "all pages", idsOf(got), idsOf(all))
	})

	t.Run("Backward", func(t *testing.T) {
		var got []T
		p := chat.Page{Limit: backward, Backward: true}
		for i := 0; ; i++ {
			items, info := list(t, p)
			lo, hi := max(n-(i+1)*backward, 0), n-i*backward
			checkIDs(t, fmt.Sprintf("page %d from the end", i), idsOf(items), idsOf(all[lo:hi]))
			want := chat.PageInfo{HasPreviousPage: lo > 0, HasNextPage: i > 0}
			if info != want {
				t.Errorf("page %d from the end PageInfo = %+v; want %+v", i, info, want)
			}
			got = append(items, got...)
			if !info.HasPreviousPage || len(items) == 0 || i > n {
				break
			}
			p.Before = ptr(acc.cursor(items[0]))
		}
		checkIDs(t, "all pages", idsOf(got), idsOf(all))
	})

	t.Run("Windows", func(t *testing.T) {
		tests := []struct {
			name   string
			page   chat.Page
			lo, hi int // the items wanted are all[lo:hi]
			info   chat.PageInfo
		}{
			{"first 3", chat.Page{Limit: 3}, 0, 3, chat.PageInfo{HasNextPage: true}},
			{"first all", chat.Page{Limit: n}, 0, n, chat.PageInfo{}},
			{"first more than all", chat.Page{Limit: n + 1}, 0, n, chat.PageInfo{}},
			{"first 3 after 1", chat.Page{Limit: 3, After: at(1)}, 2, 5, chat.PageInfo{HasNextPage: true, HasPreviousPage: true}},
			{"first 3 after the third last", chat.Page{Limit: 3, After: at(n - 3)}, n - 2, n, chat.PageInfo{HasPreviousPage: true}},
			{"first 3 after the last", chat.Page{Limit: 3, After: at(n - 1)}, n, n, chat.PageInfo{HasPreviousPage: true}},
			{"last 3", chat.Page{Limit: 3, Backward: true}, n - 3, n, chat.PageInfo{HasPreviousPage: true}},
			{"last all", chat.Page{Limit: n, Backward: true}, 0, n, chat.PageInfo{}},
			{"last 3 before 10", chat.Page{Limit: 3, Backward: true, Before: at(10)}, 7, 10, chat.PageInfo{HasPreviousPage: true, HasNextPage: true}},
			{"last 3 before 2", chat.Page{Limit: 3, Backward: true, Before: at(2)}, 0, 2, chat.PageInfo{HasNextPage: true}},
			{"last 3 before the first", chat.Page{Limit: 3, Backward: true, Before: at(0)}, 0, 0, chat.PageInfo{HasNextPage: true}},
			{"first 3 before 2", chat.Page{Limit: 3, Before: at(2)}, 0, 2, chat.PageInfo{}},
			{"last 3 after 8", chat.Page{Limit: 3, Backward: true, After: at(8)}, n - 3, n, chat.PageInfo{HasPreviousPage: n-9 > 3}},
			{"first 100 between 3 and 10", chat.Page{Limit: 100, After: at(3), Before: at(10)}, 4, 10, chat.PageInfo{HasPreviousPage: true}},
			{"first 3 between 3 and 10", chat.Page{Limit: 3, After: at(3), Before: at(10)}, 4, 7, chat.PageInfo{HasNextPage: true, HasPreviousPage: true}},
			{"first 6 between 3 and 10", chat.Page{Limit: 6, After: at(3), Before: at(10)}, 4, 10, chat.PageInfo{HasPreviousPage: true}},
			{"last 3 between 3 and 10", chat.Page{Limit: 3, Backward: true, After: at(3), Before: at(10)}, 7, 10, chat.PageInfo{HasPreviousPage: true, HasNextPage: true}},
			{"last 100 between 3 and 10", chat.Page{Limit: 100, Backward: true, After: at(3), Before: at(10)}, 4, 10, chat.PageInfo{HasNextPage: true}},
			{"between neighbours", chat.Page{Limit: 10, After: at(5), Before: at(6)}, 6, 6, chat.PageInfo{HasPreviousPage: true}},
			{"crossed cursors", chat.Page{Limit: 10, After: at(10), Before: at(3)}, 0, 0, chat.PageInfo{HasPreviousPage: true}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				items, info := list(t, tt.page)
				checkIDs(t, "page", idsOf(items), idsOf(all[tt.lo:tt.hi]))
				if info != tt.info {
					t.Errorf("PageInfo = %+v; want %+v", info, tt.info)
				}
			})
		}
	})
}

// access reads the id and the cursor of a list item.
type access[T any] struct {
	id     func(T) string
	cursor func(T) chat.Cursor
}

var (
	conversationAccess = access[*chat.Conversation]{conversationID, (*chat.Conversation).Cursor}
	messageAccess      = access[*chat.Message]{messageID, (*chat.Message).Cursor}
)

// seedConversations creates n conversations of owner, with random ids and
// times in the past, three at a time sharing an UpdatedAt, and returns them
// in list order.
func seedConversations(t *testing.T, s chat.Store, owner string, n int) []*chat.Conversation {
	t.Helper()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	cs := make([]*chat.Conversation, n)
	for i := range cs {
		at := base.Add(time.Duration(i/3) * time.Second)
		cs[i] = mustCreate(t, s, &chat.Conversation{
			ID:        uuid.NewString(), // random, so that ties are not broken by insertion order
			OwnerID:   owner,
			Title:     fmt.Sprintf("conversation %d", i),
			CreatedAt: at,
			UpdatedAt: at,
		})
	}
	slices.SortFunc(cs, compareConversations)
	return cs
}

// seedMessages adds n messages to conv, as questions and answers, with
// random ids and times in the past, two at a time sharing a CreatedAt, and
// returns them in list order.
func seedMessages(t *testing.T, s chat.Store, owner, conv string, n int) []*chat.Message {
	t.Helper()
	return seedMessagesAt(t, s, owner, conv, n, time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC))
}

// seedMessagesAt is seedMessages from time base on.
func seedMessagesAt(t testing.TB, s chat.Store, owner, conv string, n int, base time.Time) []*chat.Message {
	t.Helper()
	ms := make([]*chat.Message, n)
	for i := range ms {
		m := &chat.Message{
			ID:             uuid.NewString(),
			ConversationID: conv,
			Role:           chat.RoleUser,
			AuthorID:       owner,
			Content:        fmt.Sprintf("question %d", i),
			Status:         chat.StatusComplete,
			CreatedAt:      base.Add(time.Duration(i/2) * time.Millisecond),
		}
		if i%2 == 1 {
			m.Role, m.AuthorID, m.Model = chat.RoleAssistant, "", "demo"
			m.Content = fmt.Sprintf("answer %d", i)
		}
		ms[i] = m
	}
	for i := 0; i < n; i += 2 {
		if err := s.AddMessages(t.Context(), owner, ms[i:min(i+2, n)]...); err != nil {
			t.Fatalf("AddMessages: %v", err)
		}
	}
	slices.SortFunc(ms, compareMessages)
	return ms
}

func mustCreate(t testing.TB, s chat.Store, c *chat.Conversation) *chat.Conversation {
	t.Helper()
	if err := s.CreateConversation(t.Context(), c); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	return c
}

func getConversation(t *testing.T, s chat.Store, owner, id string) *chat.Conversation {
	t.Helper()
	cs, err := s.ConversationsByID(t.Context(), owner, []string{id})
	if err != nil {
		t.Fatalf("ConversationsByID: %v", err)
	}
	if len(cs) != 1 {
		t.Fatalf("ConversationsByID(%q, %q) = %d conversations; want 1", owner, id, len(cs))
	}
	return cs[0]
}

func listConversations(t *testing.T, s chat.Store, owner string, p chat.Page) *chat.ConversationPage {
	t.Helper()
	page, err := s.ListConversations(t.Context(), owner, p)
	if err != nil {
		t.Fatalf("ListConversations(%q, %s): %v", owner, pageString(p), err)
	}
	return page
}

func countConversations(t *testing.T, s chat.Store, owner string) int {
	t.Helper()
	n, err := s.CountConversations(t.Context(), owner)
	if err != nil {
		t.Fatalf("CountConversations: %v", err)
	}
	return n
}

func listMessages(t *testing.T, s chat.Store, owner string, convs []string, p chat.Page) []*chat.MessagePage {
	t.Helper()
	pages, err := s.ListMessages(t.Context(), owner, convs, p)
	if err != nil {
		t.Fatalf("ListMessages(%q, %d ids, %s): %v", owner, len(convs), pageString(p), err)
	}
	if len(pages) != len(convs) {
		t.Fatalf("ListMessages for %d ids returned %d pages", len(convs), len(pages))
	}
	return pages
}

func countMessages(t *testing.T, s chat.Store, owner, conv string) int {
	t.Helper()
	counts, err := s.CountMessages(t.Context(), owner, []string{conv})
	if err != nil {
		t.Fatalf("CountMessages: %v", err)
	}
	return counts[conv]
}

func checkCounts(t *testing.T, s chat.Store, owner string, convs []string, want map[string]int) {
	t.Helper()
	got, err := s.CountMessages(t.Context(), owner, convs)
	if err != nil {
		t.Fatalf("CountMessages: %v", err)
	}
	if len(got) != len(want) {
		t.Errorf("CountMessages(%q, %q) = %v; want %v", owner, convs, got, want)
		return
	}
	for id, n := range want {
		if m, ok := got[id]; !ok || m != n {
			t.Errorf("CountMessages(%q, %q) = %v; want %v", owner, convs, got, want)
			return
		}
	}
}

func checkNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("%s: error = %v; want chat.ErrNotFound", what, err)
	}
}

func checkUUIDv7(t *testing.T, what, id string) {
	t.Helper()
	u, err := uuid.Parse(id)
	if err != nil || u.Version() != 7 || u.String() != id {
		t.Errorf("%s = %q; want a UUIDv7 in canonical form", what, id)
	}
}

// checkStoredTime checks that tm is in the form stores keep times in.
func checkStoredTime(t *testing.T, what string, tm time.Time) {
	t.Helper()
	if tm.Location() != time.UTC || !tm.Equal(tm.Truncate(time.Microsecond)) {
		t.Errorf("%s = %v; want UTC to the microsecond", what, tm)
	}
}

func checkTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if !got.Equal(want) || got.Location() != time.UTC {
		t.Errorf("%s = %v; want %v", what, got, want)
	}
}

func checkIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: ids\n got %q\nwant %q", what, got, want)
	}
}

func checkConversation(t *testing.T, got, want *chat.Conversation) {
	t.Helper()
	if !sameConversation(got, want) {
		t.Errorf("conversation\n got %s\nwant %s", conversationString(got), conversationString(want))
	}
}

func checkConversations(t *testing.T, got, want []*chat.Conversation) {
	t.Helper()
	if !slices.EqualFunc(got, want, sameConversation) {
		t.Errorf("conversations\n got %s\nwant %s", listString(got, conversationString), listString(want, conversationString))
	}
}

func checkMessages(t *testing.T, got, want []*chat.Message) {
	t.Helper()
	if !slices.EqualFunc(got, want, sameMessage) {
		t.Errorf("messages\n got %s\nwant %s", listString(got, messageString), listString(want, messageString))
	}
}

func sameConversation(a, b *chat.Conversation) bool {
	return a.ID == b.ID && a.OwnerID == b.OwnerID && a.Title == b.Title &&
		sameTime(a.CreatedAt, b.CreatedAt) && sameTime(a.UpdatedAt, b.UpdatedAt)
}

func sameMessage(a, b *chat.Message) bool {
	if a.CompletedAt == nil || b.CompletedAt == nil {
		if a.CompletedAt != b.CompletedAt {
			return false
		}
	} else if !sameTime(*a.CompletedAt, *b.CompletedAt) {
		return false
	}
	if a.Usage == nil || b.Usage == nil {
		if a.Usage != b.Usage {
			return false
		}
	} else if *a.Usage != *b.Usage {
		return false
	}
	return a.ID == b.ID && a.ConversationID == b.ConversationID && a.Role == b.Role &&
		a.AuthorID == b.AuthorID && a.Content == b.Content && a.Status == b.Status &&
		a.Model == b.Model && sameTime(a.CreatedAt, b.CreatedAt) && a.Error == b.Error && a.Cached == b.Cached
}

// sameTime reports whether a and b are the same instant, both in UTC.
func sameTime(a, b time.Time) bool {
	return a.Equal(b) && a.Location() == time.UTC && b.Location() == time.UTC
}

func conversationString(c *chat.Conversation) string {
	return fmt.Sprintf("{ID:%q Owner:%q Title:%q Created:%s Updated:%s}",
		c.ID, c.OwnerID, c.Title, c.CreatedAt.Format(time.RFC3339Nano), c.UpdatedAt.Format(time.RFC3339Nano))
}

func messageString(m *chat.Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{ID:%q Conv:%q %s/%s Author:%q Model:%q Content:%q Created:%s",
		m.ID, m.ConversationID, m.Role, m.Status, m.AuthorID, m.Model, m.Content, m.CreatedAt.Format(time.RFC3339Nano))
	if m.CompletedAt != nil {
		fmt.Fprintf(&b, " Completed:%s", m.CompletedAt.Format(time.RFC3339Nano))
	}
	if m.Usage != nil {
		fmt.Fprintf(&b, " Usage:%+v", *m.Usage)
	}
	if m.Error != "" {
		fmt.Fprintf(&b, " Error:%q", m.Error)
	}
	if m.Cached {
		b.WriteString(" Cached")
	}
	b.WriteString("}")
	return b.String()
}

func listString[T any](xs []T, str func(T) string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = str(x)
	}
	return "[" + strings.Join(parts, "\n     ") + "]"
}

func pageString(p chat.Page) string {
	s := fmt.Sprintf("limit %d", p.Limit)
	if p.Backward {
		s += " backward"
	}
	if p.After != nil {
		s += fmt.Sprintf(" after %s/%s", p.After.Time.Format(time.RFC3339Nano), p.After.ID)
	}
	if p.Before != nil {
		s += fmt.Sprintf(" before %s/%s", p.Before.Time.Format(time.RFC3339Nano), p.Before.ID)
	}
	return s
}

// compareConversations orders conversations as lists do: most recently
// updated first, ties broken by id, descending.
func compareConversations(a, b *chat.Conversation) int {
	return cmp.Or(b.UpdatedAt.Compare(a.UpdatedAt), strings.Compare(b.ID, a.ID))
}

// compareMessages orders messages as lists do: chronologically, ties
// broken by id.
func compareMessages(a, b *chat.Message) int {
	return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
}

func sortedMessages(ms ...*chat.Message) []*chat.Message {
	slices.SortFunc(ms, compareMessages)
	return ms
}

func sortByID[T any](xs []T, id func(T) string) {
	slices.SortFunc(xs, func(a, b T) int { return strings.Compare(id(a), id(b)) })
}

func conversationID(c *chat.Conversation) string { return c.ID }

func messageID(m *chat.Message) string { return m.ID }

// ids returns the ids of conversations or messages.
func ids[T *chat.Conversation | *chat.Message](xs []T) []string {
	s := make([]string, len(xs))
	for i, x := range xs {
		switch x := any(x).(type) {
		case *chat.Conversation:
			s[i] = x.ID
		case *chat.Message:
			s[i] = x.ID
		}
	}
	return s
}

func cursor[T interface{ Cursor() chat.Cursor }](x T) *chat.Cursor {
	c := x.Cursor()
	return &c
}

func ptr[T any](v T) *T { return &v }
