package postgres_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"

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

// TestListMessagesCounted: the pages and counts read in one round trip are
// those of ListMessages and CountMessages, scoped to the owner alike, in
// their two statements.
func TestListMessagesCounted(t *testing.T) {
	var counter pgtest.StatementCounter
	s := pgtest.NewStore(t, postgres.WithTracer(&counter))
	ctx := t.Context()
	var ids []string
	for i, owner := range []string{"user-alice", "user-alice", "user-alice", "user-bob"} {
		c := &chat.Conversation{OwnerID: owner}
		if err := s.CreateConversation(ctx, c); err != nil {
			t.Fatalf("CreateConversation: %v", err)
		}
		ids = append(ids, c.ID)
		for j := range i + 1 {
			m := &chat.Message{ConversationID: c.ID, Role: chat.RoleUser, AuthorID: owner, Content: fmt.Sprint(j), Status: chat.StatusComplete}
			if err := s.AddMessages(ctx, owner, m); err != nil {
				t.Fatalf("AddMessages: %v", err)
			}
		}
	}
	page := chat.Page{Limit: 2, Backward: true}
	wantPages, err := s.ListMessages(ctx, "user-alice", ids, page)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts, err := s.CountMessages(ctx, "user-alice", ids[1:])
	if err != nil {
		t.Fatal(err)
	}

	counter.Reset()
	pages, counts, err := s.ListMessagesCounted(ctx, "user-alice", ids, page, ids[1:])
	if err != nil {
		t.Fatal(err)
	}
	if n := counter.Count(); n != 2 {
		t.Errorf("%d statements; want 2: %q", n, counter.Statements())
	}
	if got, want := fmt.Sprint(counts), fmt.Sprint(wantCounts); got != want {
		t.Errorf("counts = %s; want %s", got, want)
	}
	if len(pages) != len(wantPages) {
		t.Fatalf("%d pages; want %d", len(pages), len(wantPages))
	}
	for i := range pages {
		got, want := pages[i], wantPages[i]
		if got.ConversationID != want.ConversationID || got.PageInfo != want.PageInfo || len(got.Messages) != len(want.Messages) {
			t.Errorf("page %d = %+v; want %+v", i, got, want)
			continue
		}
		for j := range got.Messages {
			if got.Messages[j].ID != want.Messages[j].ID || got.Messages[j].Content != want.Messages[j].Content {
				t.Errorf("page %d message %d = %+v; want %+v", i, j, got.Messages[j], want.Messages[j])
			}
		}
	}
}

// TestListConversationsCounted: the page and total read in one round trip
// are those of ListConversations and CountConversations, in their two
// statements.
func TestListConversationsCounted(t *testing.T) {
	var counter pgtest.StatementCounter
	s := pgtest.NewStore(t, postgres.WithTracer(&counter))
	ctx := t.Context()
	for _, owner := range []string{"user-alice", "user-alice", "user-alice", "user-bob"} {
		if err := s.CreateConversation(ctx, &chat.Conversation{OwnerID: owner}); err != nil {
			t.Fatalf("CreateConversation: %v", err)
		}
	}
	page := chat.Page{Limit: 2}
	want, err := s.ListConversations(ctx, "user-alice", page)
	if err != nil {
		t.Fatal(err)
	}
	counter.Reset()
	got, n, err := s.ListConversationsCounted(ctx, "user-alice", page)
	if err != nil {
		t.Fatal(err)
	}
	if c := counter.Count(); c != 2 {
		t.Errorf("%d statements; want 2: %q", c, counter.Statements())
	}
	if n != 3 {
		t.Errorf("total %d; want 3", n)
	}
	if len(got.Conversations) != len(want.Conversations) || got.PageInfo != want.PageInfo {
		t.Fatalf("page = %+v; want %+v", got, want)
	}
	for i := range got.Conversations {
		if got.Conversations[i].ID != want.Conversations[i].ID {
			t.Errorf("conversation %d = %s; want %s", i, got.Conversations[i].ID, want.Conversations[i].ID)
		}
	}
}

// TestExchangeStatements checks what streaming an answer costs in
// statements: a few for an exchange, all but the lookup of its key in one
// batch; one for a retry (two when it also wants the new conversation), a
// checkpoint, the interruption of every streaming answer, or the list of
// those still streaming.
func TestExchangeStatements(t *testing.T) {
	var counter pgtest.StatementCounter
	s := pgtest.NewStore(t, postgres.WithTracer(&counter))
	ctx := t.Context()
	const owner = "user-alice"
	c := &chat.Conversation{OwnerID: owner}
	if err := s.CreateConversation(ctx, c); err != nil {
		t.Fatalf("CreateConversation: %v", err)
	}
	exchange := func(key string, fresh bool) *chat.Exchange {
		ex := &chat.Exchange{
			IdempotencyKey: key,
			Question:       &chat.Message{ConversationID: c.ID, Role: chat.RoleUser, AuthorID: owner, Content: "q", Status: chat.StatusComplete},
			Answer:         &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming},
		}
		if fresh {
			ex.Question.ConversationID = ""
			ex.Conversation = &chat.Conversation{OwnerID: owner}
		}
		return ex
	}
	add := func(ex *chat.Exchange, want bool) error {
		created, err := s.AddExchange(ctx, owner, ex)
		if err == nil && created != want {
			t.Errorf("AddExchange created = %v; want %v", created, want)
		}
		return err
	}
	streaming := func() *chat.Message {
		ex := exchange("", false)
		if err := add(ex, true); err != nil {
			t.Fatalf("AddExchange: %v", err)
		}
		return ex.Answer
	}
	if err := add(exchange("retried", false), true); err != nil {
		t.Fatalf("AddExchange: %v", err)
	}

	tests := []struct {
		name string
		want int
		// prepare returns the call to count.
		prepare func(i int) func() error
	}{
		{"AddExchange", 5, func(int) func() error { // begin, touch, question, answer, commit
			return func() error { return add(exchange("", false), true) }
		}},
		{"AddExchangeWithKey", 7, func(i int) func() error { // lookup, begin, touch, question, answer, key, commit
			return func() error { return add(exchange(fmt.Sprint("key ", i), false), true) }
		}},
		{"AddExchangeNewConversation", 5, func(int) func() error { // begin, conversation, question, answer, commit
			return func() error { return add(exchange("", true), true) }
		}},
		{"AddExchangeRetried", 1, func(int) func() error { // lookup
			return func() error { return add(exchange("retried", false), false) }
		}},
		{"AddExchangeRetriedNewConversation", 2, func(int) func() error { // lookup, conversation
			return func() error { return add(exchange("retried", true), false) }
		}},
		{"Checkpoint", 1, func(int) func() error {
			a := streaming()
			a.Content = "partial"
			return func() error { _, err := s.UpdateAnswer(ctx, owner, a); return err }
		}},
		{"FinalUpdate", 4, func(int) func() error { // begin, touch, update, commit
			a := streaming()
			a.Status, a.Content = chat.StatusComplete, "done"
			return func() error { _, err := s.UpdateAnswer(ctx, owner, a); return err }
		}},
		{"InterruptAnswers", 1, func(int) func() error {
			streaming()
			return func() error { _, err := s.InterruptAnswers(ctx, "interrupted"); return err }
		}},
		{"StreamingAnswers", 1, func(int) func() error {
			streaming()
			return func() error {
				refs, err := s.StreamingAnswers(ctx, chat.Now(), 10)
				if err == nil && len(refs) == 0 {
					t.Errorf("StreamingAnswers found no answer")
				}
				return err
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 3 { // first use prepares; the count stays the same
				call := tt.prepare(i)
				counter.Reset()
				if err := call(); err != nil {
					t.Fatalf("%s: %v", tt.name, err)
				}
				if n := counter.Count(); n != tt.want {
					t.Errorf("call %d: %s ran %d statements; want %d: %q", i, tt.name, n, tt.want, counter.Statements())
				}
			}
		})
	}
}

// TestStreamingAnswersPlan checks that StreamingAnswers reads the first
// answers in order from the partial index, whatever the number of messages
// and conversations, rather than sorting them all or scanning the
// conversations.
func TestStreamingAnswersPlan(t *testing.T) {
	url := pgtest.NewSchema(t)
	pgtest.Open(t, url, true)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		`INSERT INTO conversations (id, owner_id, created_at, updated_at)
SELECT 'c' || i, 'user-' || i % 10, now(), now() FROM generate_series(1, 2000) AS i`,
		`INSERT INTO messages (id, conversation_id, role, status, created_at)
SELECT lpad(i::text, 6, '0'), 'c' || i % 2000 + 1, 'ASSISTANT',
	CASE WHEN i % 1000 = 0 THEN 'STREAMING' ELSE 'COMPLETE' END, now() - i * interval '1 second'
FROM generate_series(1, 40000) AS i`,
		`ANALYZE`,
		`PREPARE streaming_answers AS ` + postgres.StreamingAnswersSQL,
		`SET plan_cache_mode = force_generic_plan`,
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// The plan for the arguments, and the generic plan that a prepared
	// statement may settle on after a few runs.
	for _, explain := range []struct {
		query string
		args  []any
	}{
		{"EXPLAIN " + postgres.StreamingAnswersSQL, []any{time.Now(), 10}},
		{"EXPLAIN EXECUTE streaming_answers(now(), 10)", nil},
	} {
		var lines []string
		rows, err := conn.Query(ctx, explain.query, explain.args...)
		if err == nil {
			lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		}
		if err != nil {
			t.Fatalf("%s: %v", explain.query, err)
		}
		plan := strings.Join(lines, "\n")
		if !strings.Contains(plan, "Index Scan using messages_streaming on messages") ||
			!strings.Contains(plan, "Index Scan using conversations_pkey on conversations") ||
			strings.Contains(plan, "Sort") || strings.Contains(plan, "Seq Scan") {
			t.Errorf("%s:\n%s\nwant index scans of messages_streaming and conversations_pkey, and no sort", explain.query, plan)
		}
	}
}

// TestMigrateDown checks that every migration can be undone and applied
// again, with data in the tables.
func TestMigrateDown(t *testing.T) {
	url := pgtest.NewSchema(t)
	s := pgtest.Open(t, url, true)
	ctx := t.Context()
	exchange := func() *chat.Exchange {
		return &chat.Exchange{
			Conversation:   &chat.Conversation{OwnerID: "user-alice"},
			IdempotencyKey: "key",
			Question:       &chat.Message{Role: chat.RoleUser, Status: chat.StatusComplete},
			Answer:         &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming},
		}
	}
	if created, err := s.AddExchange(ctx, "user-alice", exchange()); err != nil || !created {
		t.Fatalf("AddExchange = %v, %v; want true, nil", created, err)
	}

	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatalf("parse %s: %v", url, err)
	}
	db := stdlib.OpenDB(*cfg)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, postgres.Migrations())
	if err != nil {
		t.Fatalf("goose: %v", err)
	}
	for _, version := range []int64{2, 1, 0} {
		if _, err := p.DownTo(ctx, version); err != nil {
			t.Fatalf("migrate down to %d: %v", version, err)
		}
	}
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM pg_class WHERE relnamespace = current_schema()::regnamespace AND relname NOT LIKE 'goose%'`).Scan(&n); err != nil {
		t.Fatalf("count relations: %v", err)
	}
	if n != 0 {
		t.Errorf("after migrating down to 0, %d relations remain; want 0", n)
	}
	if _, err := p.Up(ctx); err != nil {
		t.Fatalf("migrate up again: %v", err)
	}
	if created, err := s.AddExchange(ctx, "user-alice", exchange()); err != nil || !created {
		t.Fatalf("AddExchange after migrating down and up = %v, %v; want true, nil", created, err)
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
