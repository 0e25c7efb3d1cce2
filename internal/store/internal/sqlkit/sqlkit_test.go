package sqlkit

import (
	"errors"
	"testing"
	"time"

	"askgate/internal/chat"
)

func TestKeyset(t *testing.T) {
	conv := Keyset{Time: "updated_at", ID: "id", Desc: true}
	msg := Keyset{Time: "m.created_at", ID: "m.id"}
	tests := []struct {
		k            Keyset
		v            Variant
		where, order string
	}{
		{conv, 0, "", "updated_at DESC, id DESC"},
		{conv, Backward, "", "updated_at, id"},
		{conv, HasAfter, " AND (updated_at, id) < ($2, $3)", "updated_at DESC, id DESC"},
		{conv, HasBefore | Backward, " AND (updated_at, id) > ($2, $3)", "updated_at, id"},
		{conv, HasAfter | HasBefore, " AND (updated_at, id) < ($2, $3) AND (updated_at, id) > ($4, $5)", "updated_at DESC, id DESC"},
		{msg, 0, "", "m.created_at, m.id"},
		{msg, Backward | HasAfter, " AND (m.created_at, m.id) > ($2, $3)", "m.created_at DESC, m.id DESC"},
		{msg, HasAfter | HasBefore, " AND (m.created_at, m.id) > ($2, $3) AND (m.created_at, m.id) < ($4, $5)", "m.created_at, m.id"},
	}
	for _, tt := range tests {
		if got := tt.k.Where(tt.v, Dollar(2)); got != tt.where {
			t.Errorf("%+v.Where(%03b) = %q; want %q", tt.k, tt.v, got, tt.where)
		}
		if got := tt.k.OrderBy(tt.v); got != tt.order {
			t.Errorf("%+v.OrderBy(%03b) = %q; want %q", tt.k, tt.v, got, tt.order)
		}
	}
}

func TestBefore(t *testing.T) {
	base := time.Date(2024, 5, 1, 13, 0, 0, 1000, time.UTC) // one microsecond past
	tests := []struct{ t, want time.Time }{
		{base, base},
		{base.Add(time.Nanosecond), base.Add(time.Microsecond)},
		{base.Add(999 * time.Nanosecond), base.Add(time.Microsecond)},
		{base.Add(-time.Nanosecond), base},
		{base.In(time.FixedZone("east", 3600)), base},
		{time.Time{}, time.Time{}},
	}
	for _, tt := range tests {
		got := Before(tt.t)
		if !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("Before(%v) = %v; want %v", tt.t, got, tt.want)
		}
	}
}

func TestVariantOf(t *testing.T) {
	c := &chat.Cursor{}
	tests := []struct {
		p    chat.Page
		want Variant
	}{
		{chat.Page{Limit: 1}, 0},
		{chat.Page{Limit: 1, Backward: true, Before: c}, Backward | HasBefore},
		{chat.Page{Limit: 1, After: c, Before: c}, HasAfter | HasBefore},
	}
	for _, tt := range tests {
		if got := VariantOf(tt.p); got != tt.want {
			t.Errorf("VariantOf(%+v) = %03b; want %03b", tt.p, got, tt.want)
		}
	}
}

func TestPrepareMessages(t *testing.T) {
	now := chat.Now()
	cet := time.FixedZone("CET", 3600)
	done := time.Date(2024, 1, 1, 12, 0, 0, 999, cet)
	msgs := []*chat.Message{
		{ConversationID: "c", CreatedAt: time.Date(2024, 1, 1, 11, 0, 0, 1999, cet)},
		{CompletedAt: &done},
	}
	conv, err := PrepareMessages(msgs, now)
	if err != nil || conv != "c" {
		t.Fatalf("PrepareMessages = %q, %v; want \"c\", nil", conv, err)
	}
	if msgs[0].ID == "" || msgs[1].ID == "" || msgs[0].ID == msgs[1].ID {
		t.Errorf("ids %q, %q; want two new ones", msgs[0].ID, msgs[1].ID)
	}
	if msgs[1].ConversationID != "c" {
		t.Errorf("second message ConversationID = %q; want \"c\"", msgs[1].ConversationID)
	}
	if want := time.Date(2024, 1, 1, 10, 0, 0, 1000, time.UTC); msgs[0].CreatedAt != want {
		t.Errorf("CreatedAt = %v; want %v", msgs[0].CreatedAt, want)
	}
	if msgs[1].CreatedAt != now {
		t.Errorf("zero CreatedAt became %v; want %v", msgs[1].CreatedAt, now)
	}
	if want := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC); *msgs[1].CompletedAt != want || done.Nanosecond() != 999 {
		t.Errorf("CompletedAt = %v (given %v); want %v, the given time untouched", *msgs[1].CompletedAt, done, want)
	}
	if got := LatestCreatedAt(msgs); got != now {
		t.Errorf("LatestCreatedAt = %v; want %v", got, now)
	}

	if conv, err := PrepareMessages(nil, now); conv != "" || err != nil {
		t.Errorf("PrepareMessages(nil) = %q, %v; want \"\", nil", conv, err)
	}
	if _, err := PrepareMessages([]*chat.Message{{}}, now); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("PrepareMessages without a conversation: %v; want chat.ErrNotFound", err)
	}
	if _, err := PrepareMessages([]*chat.Message{{ConversationID: "a"}, {ConversationID: "b"}}, now); err == nil {
		t.Errorf("PrepareMessages of two conversations succeeded; want an error")
	}
}

func TestMessagePages(t *testing.T) {
	m := func(conv, id string) *chat.Message { return &chat.Message{ConversationID: conv, ID: id} }
	// Rows of a backward page of 2: newest first, one extra for "a".
	rows := []*chat.Message{m("a", "a3"), m("a", "a2"), m("a", "a1"), m("b", "b1")}
	before := &chat.Cursor{ID: "x"}
	p := chat.Page{Limit: 2, Backward: true, Before: before}
	pages := MessagePages(p, []string{"b", "a", "missing", "a"}, rows)

	type want struct {
		conv string
		ids  []string
		info chat.PageInfo
	}
	wants := []want{
		{"b", []string{"b1"}, chat.PageInfo{HasNextPage: true}},
		{"a", []string{"a2", "a3"}, chat.PageInfo{HasPreviousPage: true, HasNextPage: true}},
		{"missing", []string{}, chat.PageInfo{HasNextPage: true}},
		{"a", []string{"a2", "a3"}, chat.PageInfo{HasPreviousPage: true, HasNextPage: true}},
	}
	if len(pages) != len(wants) {
		t.Fatalf("got %d pages; want %d", len(pages), len(wants))
	}
	for i, w := range wants {
		pg := pages[i]
		var ids []string
		for _, m := range pg.Messages {
			ids = append(ids, m.ID)
		}
		if pg.ConversationID != w.conv || len(ids) != len(w.ids) || pg.PageInfo != w.info || pg.Messages == nil {
			t.Errorf("page %d = %q %q %+v; want %q %q %+v", i, pg.ConversationID, ids, pg.PageInfo, w.conv, w.ids, w.info)
			continue
		}
		for j := range ids {
			if ids[j] != w.ids[j] {
				t.Errorf("page %d ids = %q; want %q", i, ids, w.ids)
				break
			}
		}
	}
}

func TestSlab(t *testing.T) {
	var s Slab[int]
	seen := make(map[*int]bool)
	for i := range 1000 {
		p := s.New()
		if *p != 0 || seen[p] {
			t.Fatalf("New #%d returned a used value", i)
		}
		*p = i + 1
		seen[p] = true
	}
}

func TestPrepareExchange(t *testing.T) {
	now := chat.Now()
	exchange := func(conv string) *chat.Exchange {
		return &chat.Exchange{
			Question: &chat.Message{ConversationID: conv, Role: chat.RoleUser},
			Answer:   &chat.Message{Role: chat.RoleAssistant},
		}
	}

	ex := exchange("c")
	conv, err := PrepareExchange("alice", ex, now)
	if err != nil || conv != "c" {
		t.Fatalf("PrepareExchange = %q, %v; want \"c\", nil", conv, err)
	}
	q, a := ex.Question, ex.Answer
	if a.ConversationID != "c" || q.CreatedAt != now || a.CreatedAt != now || !(q.ID < a.ID) {
		t.Errorf("prepared question %+v, answer %+v; want both in \"c\" at %v, the answer's id after the question's", *q, *a, now)
	}

	ex = exchange("")
	ex.Conversation = &chat.Conversation{OwnerID: "alice", UpdatedAt: now.Add(-time.Hour)}
	later := now.Add(time.Minute)
	ex.Question.CreatedAt = later
	conv, err = PrepareExchange("alice", ex, now)
	if err != nil || conv == "" || conv != ex.Conversation.ID || ex.Question.ConversationID != conv {
		t.Fatalf("PrepareExchange with a new conversation = %q, %v; want its new id", conv, err)
	}
	if ex.Answer.CreatedAt != later || ex.Conversation.UpdatedAt != later || ex.Conversation.CreatedAt != now {
		t.Errorf("answer CreatedAt %v, conversation CreatedAt %v, UpdatedAt %v; want %v, %v, %v",
			ex.Answer.CreatedAt, ex.Conversation.CreatedAt, ex.Conversation.UpdatedAt, later, now, later)
	}

	for _, tt := range []struct {
		name  string
		spoil func(ex *chat.Exchange)
	}{
		{"no question", func(ex *chat.Exchange) { ex.Question = nil }},
		{"no answer", func(ex *chat.Exchange) { ex.Answer = nil }},
		{"another owner's conversation", func(ex *chat.Exchange) { ex.Conversation = &chat.Conversation{OwnerID: "bob"} }},
		{"question outside the new conversation", func(ex *chat.Exchange) { ex.Conversation = &chat.Conversation{OwnerID: "alice"} }},
		{"answer in another conversation", func(ex *chat.Exchange) { ex.Answer.ConversationID = "d" }},
		{"answer before question", func(ex *chat.Exchange) { ex.Answer.CreatedAt = now.Add(-time.Second) }},
		{"answer id before question id", func(ex *chat.Exchange) { ex.Question.ID, ex.Answer.ID = "b", "a" }},
	} {
		ex := exchange("c")
		tt.spoil(ex)
		if _, err := PrepareExchange("alice", ex, now); err == nil {
			t.Errorf("PrepareExchange with %s succeeded; want an error", tt.name)
		}
	}
	if _, err := PrepareExchange("alice", exchange(""), now); !errors.Is(err, chat.ErrNotFound) {
		t.Errorf("PrepareExchange without a conversation: %v; want chat.ErrNotFound", err)
	}
	if _, err := PrepareExchange("alice", nil, now); err == nil {
		t.Errorf("PrepareExchange(nil) succeeded; want an error")
	}
}

func TestPrepareAnswer(t *testing.T) {
	done := time.Date(2024, 1, 1, 12, 0, 0, 999, time.FixedZone("CET", 3600))
	a := &chat.Message{CompletedAt: &done}
	if err := PrepareAnswer(a); err != nil {
		t.Fatalf("PrepareAnswer: %v", err)
	}
	if want := time.Date(2024, 1, 1, 11, 0, 0, 0, time.UTC); *a.CompletedAt != want || done.Nanosecond() != 999 {
		t.Errorf("CompletedAt = %v (given %v); want %v, the given time untouched", *a.CompletedAt, done, want)
	}
	if err := PrepareAnswer(nil); err == nil {
		t.Errorf("PrepareAnswer(nil) succeeded; want an error")
	}
}
