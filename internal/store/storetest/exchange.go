package storetest

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"askgate/internal/chat"
)

func testAddExchange(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	earlier := seedMessages(t, s, alice, c.ID, 2)
	ex := newExchange(c.ID, "")

	before := chat.Now()
	created, err := s.AddExchange(ctx, alice, ex)
	after := chat.Now()
	if err != nil || !created {
		t.Fatalf("AddExchange = %v, %v; want true, nil", created, err)
	}
	q, a := ex.Question, ex.Answer
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
	if compareMessages(q, a) >= 0 {
		t.Errorf("the answer %s does not sort after the question %s", messageString(a), messageString(q))
	}

	got := getConversation(t, s, alice, c.ID)
	if got.UpdatedAt.Before(a.CreatedAt) || got.UpdatedAt.After(after) {
		t.Errorf("conversation UpdatedAt after AddExchange = %v; want within [%v, %v]", got.UpdatedAt, a.CreatedAt, after)
	}
	checkTime(t, "conversation CreatedAt after AddExchange", got.CreatedAt, c.CreatedAt)

	// Both are stored as given: the question COMPLETE, the answer
	// STREAMING, after the conversation's earlier messages.
	pages := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 10})
	checkMessages(t, pages[0].Messages, append(earlier, q, a))
	stored := getMessages(t, s, alice, q.ID, a.ID)
	if stored[0].Role != chat.RoleUser || stored[0].Status != chat.StatusComplete ||
		stored[1].Role != chat.RoleAssistant || stored[1].Status != chat.StatusStreaming {
		t.Errorf("stored exchange = %s/%s, %s/%s; want USER/COMPLETE, ASSISTANT/STREAMING",
			stored[0].Role, stored[0].Status, stored[1].Role, stored[1].Status)
	}
}

func testAddExchangeNewConversation(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := &chat.Conversation{OwnerID: alice, Title: "New"}
	ex := newExchange("", "")
	ex.Conversation = c

	before := chat.Now()
	created, err := s.AddExchange(ctx, alice, ex)
	after := chat.Now()
	if err != nil || !created {
		t.Fatalf("AddExchange = %v, %v; want true, nil", created, err)
	}
	if ex.Conversation != c {
		t.Errorf("AddExchange replaced the new conversation")
	}
	checkUUIDv7(t, "conversation ID", c.ID)
	if c.CreatedAt.Before(before) || c.CreatedAt.After(after) {
		t.Errorf("conversation CreatedAt = %v; want within [%v, %v]", c.CreatedAt, before, after)
	}
	if c.UpdatedAt.Before(ex.Answer.CreatedAt) || c.UpdatedAt.After(after) {
		t.Errorf("conversation UpdatedAt = %v; want within [%v, %v]", c.UpdatedAt, ex.Answer.CreatedAt, after)
	}
	for _, m := range []*chat.Message{ex.Question, ex.Answer} {
		if m.ConversationID != c.ID {
			t.Errorf("message ConversationID = %q; want the new conversation's, %q", m.ConversationID, c.ID)
		}
	}
	checkConversation(t, getConversation(t, s, alice, c.ID), c)
	pages := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 10})
	checkMessages(t, pages[0].Messages, []*chat.Message{ex.Question, ex.Answer})

	// The new conversation must be the acting user's, and the question
	// must go in it; otherwise nothing is stored.
	other := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	for _, tt := range []struct {
		name string
		conv *chat.Conversation
		in   string
	}{
		{"another owner's", &chat.Conversation{OwnerID: bob}, ""},
		{"no owner", &chat.Conversation{}, ""},
		{"question elsewhere", &chat.Conversation{OwnerID: alice}, other.ID},
	} {
		ex := newExchange(tt.in, "")
		ex.Conversation = tt.conv
		if created, err := s.AddExchange(ctx, alice, ex); err == nil {
			t.Errorf("AddExchange of a new conversation, %s: %v, no error; want an error", tt.name, created)
		}
	}
	for _, tt := range []struct {
		owner string
		want  int
	}{{alice, 2}, {bob, 0}} {
		if n := countConversations(t, s, tt.owner); n != tt.want {
			t.Errorf("CountConversations(%q) = %d; want %d", tt.owner, n, tt.want)
		}
	}
	checkCounts(t, s, alice, []string{other.ID}, map[string]int{other.ID: 0})
}

func testAddExchangeMissingConversation(t *testing.T, s chat.Store) {
	ctx := t.Context()
	theirs := mustCreate(t, s, &chat.Conversation{OwnerID: bob})
	for _, id := range []string{"missing", "", theirs.ID} {
		for _, key := range []string{"", "key"} {
			_, err := s.AddExchange(ctx, alice, newExchange(id, key))
			checkNotFound(t, fmt.Sprintf("AddExchange to conversation %q with key %q", id, key), err)
		}
	}
	checkConversation(t, getConversation(t, s, bob, theirs.ID), theirs)
	checkCounts(t, s, bob, []string{theirs.ID}, map[string]int{theirs.ID: 0})

	// The failed calls did not take the key.
	own := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	addExchange(t, s, alice, newExchange(own.ID, "key"))
}

func testAddExchangeAllOrNothing(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	taken := addExchange(t, s, alice, newExchange(c.ID, ""))
	c = getConversation(t, s, alice, c.ID)

	for _, tt := range []struct {
		name  string
		spoil func(ex *chat.Exchange)
	}{
		{"bad answer status", func(ex *chat.Exchange) { ex.Answer.Status = "DONE" }},
		{"bad question role", func(ex *chat.Exchange) { ex.Question.Role = "SYSTEM" }},
		{"answer id taken", func(ex *chat.Exchange) { ex.Answer.ID = taken.Answer.ID }},
		{"answer before question", func(ex *chat.Exchange) {
			ex.Question.CreatedAt = time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)
			ex.Answer.CreatedAt = ex.Question.CreatedAt.Add(-time.Second)
		}},
		{"answer in another conversation", func(ex *chat.Exchange) { ex.Answer.ConversationID = "elsewhere" }},
		{"no answer", func(ex *chat.Exchange) { ex.Answer = nil }},
	} {
		for _, fresh := range []bool{false, true} {
			ex := newExchange(c.ID, "retried")
			if fresh {
				ex.Question.ConversationID = ""
				ex.Conversation = &chat.Conversation{OwnerID: alice}
			}
			tt.spoil(ex)
			if created, err := s.AddExchange(ctx, alice, ex); err == nil {
				t.Errorf("AddExchange with %s (new conversation: %v) = %v, no error; want an error", tt.name, fresh, created)
			}
		}
	}
	if n := countConversations(t, s, alice); n != 1 {
		t.Errorf("after failed AddExchanges, CountConversations = %d; want 1", n)
	}
	checkConversation(t, getConversation(t, s, alice, c.ID), c)
	checkCounts(t, s, alice, []string{c.ID}, map[string]int{c.ID: 2})

	// None of them took the key.
	addExchange(t, s, alice, newExchange(c.ID, "retried"))
}

func testAddExchangeOrder(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})

	// Exchanges added one after the other, within the same microsecond or
	// not, list in that order, each answer after its question.
	var want []*chat.Message
	for range 8 {
		ex := addExchange(t, s, alice, newExchange(c.ID, ""))
		want = append(want, ex.Question, ex.Answer)
	}
	pages := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 20})
	checkIDs(t, "exchanges in the order added", ids(pages[0].Messages), ids(want))

	// An answer without a time follows a question given a later one.
	later := chat.Now().Add(time.Hour)
	ex := newExchange(c.ID, "")
	ex.Question.CreatedAt = later
	if _, err := s.AddExchange(ctx, alice, ex); err != nil {
		t.Fatalf("AddExchange: %v", err)
	}
	checkTime(t, "answer CreatedAt", ex.Answer.CreatedAt, later)
	pages = listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 2, Backward: true})
	checkIDs(t, "the last exchange", ids(pages[0].Messages), []string{ex.Question.ID, ex.Answer.ID})
	if got := getConversation(t, s, alice, c.ID); !got.UpdatedAt.Equal(later) {
		t.Errorf("conversation UpdatedAt = %v; want the answer's CreatedAt, %v", got.UpdatedAt, later)
	}
}

func testAddExchangeIdempotent(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	first := addExchange(t, s, alice, newExchange(c.ID, "key-1"))
	c = getConversation(t, s, alice, c.ID)

	// The answer has moved on since: a retry gets the pair as it is now.
	answer := *first.Answer
	answer.Content = "Rayleigh"
	updateAnswer(t, s, alice, &answer)
	want := []*chat.Message{first.Question, &answer}

	retry := newExchange(c.ID, "key-1")
	retry.Question.Content = "Something else"
	created, err := s.AddExchange(ctx, alice, retry)
	if err != nil || created {
		t.Fatalf("AddExchange again = %v, %v; want false, nil", created, err)
	}
	checkMessages(t, []*chat.Message{retry.Question, retry.Answer}, want)
	checkCounts(t, s, alice, []string{c.ID}, map[string]int{c.ID: 2})
	checkConversation(t, getConversation(t, s, alice, c.ID), c) // not bumped

	// LoadExchange finds the same pair, and writes nothing; an unknown
	// key, and another owner's, name none.
	loaded := newExchange(c.ID, "key-1")
	if found, err := s.LoadExchange(ctx, alice, loaded); err != nil || !found {
		t.Fatalf("LoadExchange = %v, %v; want true, nil", found, err)
	}
	checkMessages(t, []*chat.Message{loaded.Question, loaded.Answer}, want)
	for owner, key := range map[string]string{alice: "no-such-key", bob: "key-1"} {
		if found, err := s.LoadExchange(ctx, owner, newExchange(c.ID, key)); err != nil || found {
			t.Errorf("LoadExchange(%s, %s) = %v, %v; want false, nil", owner, key, found, err)
		}
	}
	checkCounts(t, s, alice, []string{c.ID}, map[string]int{c.ID: 2})

	// The key names that pair whatever the conversation of the retry,
	// even one that does not exist.
	other := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	for _, id := range []string{other.ID, "missing"} {
		retry := newExchange(id, "key-1")
		if created, err := s.AddExchange(ctx, alice, retry); err != nil || created {
			t.Fatalf("AddExchange again in conversation %q = %v, %v; want false, nil", id, created, err)
		}
		checkMessages(t, []*chat.Message{retry.Question, retry.Answer}, want)
	}
	checkCounts(t, s, alice, []string{c.ID, other.ID}, map[string]int{c.ID: 2, other.ID: 0})

	// Another key, or none, stores a new pair each time.
	for _, key := range []string{"key-2", "", ""} {
		addExchange(t, s, alice, newExchange(c.ID, key))
	}
	checkCounts(t, s, alice, []string{c.ID}, map[string]int{c.ID: 8})
}

func testAddExchangeIdempotentNewConversation(t *testing.T, s chat.Store) {
	ctx := t.Context()
	ex := newExchange("", "start")
	ex.Conversation = &chat.Conversation{OwnerID: alice, Title: "First"}
	addExchange(t, s, alice, ex)
	stored := getConversation(t, s, alice, ex.Conversation.ID)

	// A retry creates no conversation, and gets the first one's.
	retry := newExchange("", "start")
	retry.Conversation = &chat.Conversation{OwnerID: alice, Title: "Second"}
	created, err := s.AddExchange(ctx, alice, retry)
	if err != nil || created {
		t.Fatalf("AddExchange again = %v, %v; want false, nil", created, err)
	}
	checkConversation(t, retry.Conversation, stored)
	checkMessages(t, []*chat.Message{retry.Question, retry.Answer}, []*chat.Message{ex.Question, ex.Answer})
	if n := countConversations(t, s, alice); n != 1 {
		t.Errorf("CountConversations = %d; want 1", n)
	}

	// The same key in an existing conversation gets the same pair.
	retry = newExchange(stored.ID, "start")
	if created, err := s.AddExchange(ctx, alice, retry); err != nil || created {
		t.Fatalf("AddExchange in the conversation = %v, %v; want false, nil", created, err)
	}
	checkMessages(t, []*chat.Message{retry.Question, retry.Answer}, []*chat.Message{ex.Question, ex.Answer})
}

func testAddExchangeKeyPerOwner(t *testing.T, s chat.Store) {
	ctx := t.Context()
	ca := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	cb := mustCreate(t, s, &chat.Conversation{OwnerID: bob})
	ea := addExchange(t, s, alice, newExchange(ca.ID, "same"))
	eb := addExchange(t, s, bob, newExchange(cb.ID, "same"))
	if ea.Question.ID == eb.Question.ID || ea.Answer.ID == eb.Answer.ID {
		t.Errorf("two owners' exchanges with one key share ids")
	}
	for _, tt := range []struct {
		owner, conv string
		want        *chat.Exchange
	}{{alice, ca.ID, ea}, {bob, cb.ID, eb}} {
		retry := newExchange(tt.conv, "same")
		if created, err := s.AddExchange(ctx, tt.owner, retry); err != nil || created {
			t.Fatalf("AddExchange again by %q = %v, %v; want false, nil", tt.owner, created, err)
		}
		checkMessages(t, []*chat.Message{retry.Question, retry.Answer}, []*chat.Message{tt.want.Question, tt.want.Answer})
	}
}

func testAddExchangeKeyFreedByDelete(t *testing.T, s chat.Store) {
	ctx := t.Context()
	gone := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	old := addExchange(t, s, alice, newExchange(gone.ID, "key"))
	if err := s.DeleteConversation(ctx, alice, gone.ID); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}

	// The key went with the conversation: using it again stores a new pair.
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	ex := addExchange(t, s, alice, newExchange(c.ID, "key"))
	if ex.Question.ID == old.Question.ID {
		t.Errorf("AddExchange after deleting the conversation reused the old question %q", old.Question.ID)
	}
	retry := newExchange(c.ID, "key")
	if created, err := s.AddExchange(ctx, alice, retry); err != nil || created {
		t.Fatalf("AddExchange again = %v, %v; want false, nil", created, err)
	}
	checkMessages(t, []*chat.Message{retry.Question, retry.Answer}, []*chat.Message{ex.Question, ex.Answer})
}

// testAddExchangeConcurrentKey checks that of calls racing with one key,
// exactly one stores its exchange, and the others get it.
func testAddExchangeConcurrentKey(t *testing.T, s chat.Store) {
	const calls = 10
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	for _, fresh := range []bool{false, true} {
		t.Run(fmt.Sprintf("new conversation %v", fresh), func(t *testing.T) {
			key := fmt.Sprintf("racing %v", fresh)
			exs := make([]*chat.Exchange, calls)
			createdBy := make([]bool, calls)
			var wg sync.WaitGroup
			for i := range exs {
				ex := newExchange(c.ID, key)
				ex.Question.Content = fmt.Sprintf("call %d", i)
				if fresh {
					ex.Question.ConversationID = ""
					ex.Conversation = &chat.Conversation{OwnerID: alice, Title: key}
				}
				exs[i] = ex
				wg.Go(func() {
					created, err := s.AddExchange(t.Context(), alice, ex)
					if err != nil {
						t.Errorf("call %d: AddExchange: %v", i, err)
					}
					createdBy[i] = created
				})
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			winner := -1
			for i, created := range createdBy {
				if created {
					if winner >= 0 {
						t.Fatalf("calls %d and %d both stored an exchange", winner, i)
					}
					winner = i
				}
			}
			if winner < 0 {
				t.Fatalf("no call stored an exchange")
			}
			want := exs[winner]
			for i, ex := range exs {
				if ex.Question.ID != want.Question.ID || ex.Answer.ID != want.Answer.ID || ex.Question.Content != want.Question.Content {
					t.Errorf("call %d got question %q, answer %q; want the stored ones, %q and %q",
						i, ex.Question.ID, ex.Answer.ID, want.Question.ID, want.Answer.ID)
				}
				if fresh && ex.Conversation.ID != want.Conversation.ID {
					t.Errorf("call %d got conversation %q; want the stored one, %q", i, ex.Conversation.ID, want.Conversation.ID)
				}
			}
			conv := c.ID
			if fresh {
				conv = want.Conversation.ID
				page := listConversations(t, s, alice, chat.Page{Limit: 10})
				var titled int
				for _, c := range page.Conversations {
					if c.Title == key {
						titled++
					}
				}
				if titled != 1 {
					t.Errorf("%d new conversations stored; want 1", titled)
				}
			}
			pages := listMessages(t, s, alice, []string{conv}, chat.Page{Limit: 10})
			checkIDs(t, "messages stored", ids(pages[0].Messages), []string{want.Question.ID, want.Answer.ID})
		})
	}
	checkCounts(t, s, alice, []string{c.ID}, map[string]int{c.ID: 2})
}

func testUpdateAnswer(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	ex := addExchange(t, s, alice, newExchange(c.ID, ""))
	c = getConversation(t, s, alice, c.ID)

	// Checkpoints write the content so far, and leave the conversation
	// alone.
	a := *ex.Answer
	for _, content := range []string{"The", "The sky is", "The sky is blue because"} {
		a.Content = content
		updateAnswer(t, s, alice, &a)
		checkMessages(t, getMessages(t, s, alice, a.ID), []*chat.Message{&a})
	}
	checkConversation(t, getConversation(t, s, alice, c.ID), c)

	// The final update writes every field, exactly, and bumps the
	// conversation.
	completed := time.Date(2025, 3, 4, 5, 6, 7, 891234567, time.FixedZone("CET", 3600))
	a.Content = "The sky is blue because of Rayleigh scattering."
	a.Status = chat.StatusComplete
	a.Model = "demo-large"
	a.Usage = &chat.TokenUsage{PromptTokens: 12, CompletionTokens: 34, TotalTokens: 46}
	a.CompletedAt = &completed
	before := chat.Now()
	updateAnswer(t, s, alice, &a)
	after := chat.Now()
	// The store keeps times in UTC to the microsecond, and says so by
	// normalizing the ones it was given.
	checkTime(t, "CompletedAt", *a.CompletedAt, time.Date(2025, 3, 4, 4, 6, 7, 891234000, time.UTC))
	if completed.Nanosecond() != 891234567 {
		t.Errorf("UpdateAnswer changed the given time to %v", completed)
	}
	checkMessages(t, getMessages(t, s, alice, a.ID), []*chat.Message{&a})
	got := getConversation(t, s, alice, c.ID)
	if got.UpdatedAt.Before(before) || got.UpdatedAt.After(after) {
		t.Errorf("conversation UpdatedAt after the final update = %v; want within [%v, %v]", got.UpdatedAt, before, after)
	}
	want := *c
	want.UpdatedAt = got.UpdatedAt
	checkConversation(t, got, &want)

	// The question is not an answer, and a missing message is none.
	q := *ex.Question
	q.Content = "Edited"
	for _, m := range []*chat.Message{&q, {ID: "missing", Status: chat.StatusComplete}} {
		if ok, err := s.UpdateAnswer(ctx, alice, m); ok || err != nil {
			t.Errorf("UpdateAnswer of %q = %v, %v; want false, nil", m.ID, ok, err)
		}
	}
	checkMessages(t, getMessages(t, s, alice, q.ID), []*chat.Message{ex.Question})
}

// testUpdateAnswerKeepsCached checks that an answer stored as cached (served
// from the answer cache) is read back so, stays so through its checkpoints
// and end, and that other answers are not.
func testUpdateAnswerKeepsCached(t *testing.T, s chat.Store) {
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	cached := newExchange(c.ID, "")
	cached.Answer.Cached = true
	addExchange(t, s, alice, cached)
	plain := addExchange(t, s, alice, newExchange(c.ID, ""))
	checkMessages(t, getMessages(t, s, alice, cached.Question.ID, cached.Answer.ID, plain.Answer.ID),
		[]*chat.Message{cached.Question, cached.Answer, plain.Answer})
	if got := getMessages(t, s, alice, cached.Answer.ID)[0]; !got.Cached {
		t.Fatalf("answer stored with Cached read back as %s", messageString(got))
	}

	completed := chat.Now()
	for _, a := range []*chat.Message{cached.Answer, plain.Answer} {
		end := *a
		end.Content = "Rayleigh scattering."
		updateAnswer(t, s, alice, &end)
		end.Status, end.CompletedAt, end.Usage = chat.StatusComplete, &completed, &chat.TokenUsage{}
		// UpdateAnswer does not write Cached: what the answer was
		// created as stays.
		end.Cached = !a.Cached
		updateAnswer(t, s, alice, &end)
		end.Cached = a.Cached
		checkMessages(t, getMessages(t, s, alice, a.ID), []*chat.Message{&end})
	}
	pages := listMessages(t, s, alice, []string{c.ID}, chat.Page{Limit: 10})
	var flags []bool
	for _, m := range pages[0].Messages {
		flags = append(flags, m.Cached)
	}
	if want := []bool{false, true, false, false}; !slices.Equal(flags, want) {
		t.Errorf("Cached of the conversation's messages, listed = %v; want %v", flags, want)
	}
}

func testUpdateAnswerFinalStates(t *testing.T, s chat.Store) {
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
	completed := chat.Now()
	tests := []struct {
		name  string
		final func(a *chat.Message)
	}{
		{"complete", func(a *chat.Message) {
			a.Status, a.Content, a.Model = chat.StatusComplete, "Done.", "demo"
			a.Usage = &chat.TokenUsage{PromptTokens: 1, CompletionTokens: 2, TotalTokens: 3}
			a.CompletedAt, a.Error = &completed, ""
		}},
		{"failed", func(a *chat.Message) {
			a.Status, a.Content = chat.StatusFailed, "Partial"
			a.Usage, a.CompletedAt, a.Error = nil, &completed, "the backend went away"
		}},
		{"failed without content or model", func(a *chat.Message) {
			a.Status, a.Content, a.Model = chat.StatusFailed, "", ""
			a.Usage, a.CompletedAt, a.Error = &chat.TokenUsage{}, &completed, "no first token in time"
		}},
		{"cancelled without a time", func(a *chat.Message) {
			a.Status, a.Usage, a.CompletedAt, a.Error = chat.StatusCancelled, nil, nil, ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := addExchange(t, s, alice, newExchange(c.ID, ""))
			// A checkpoint with every optional field set, so that the
			// final update has to clear the ones it leaves empty.
			a := *ex.Answer
			earlier := completed.Add(-time.Second)
			a.Content, a.Model, a.Error, a.CompletedAt = "Part", "checkpoint-model", "transient", &earlier
			a.Usage = &chat.TokenUsage{PromptTokens: 9, CompletionTokens: 9, TotalTokens: 18}
			updateAnswer(t, s, alice, &a)
			tt.final(&a)
			updateAnswer(t, s, alice, &a)
			checkMessages(t, getMessages(t, s, alice, a.ID), []*chat.Message{&a})
		})
	}
}

// testUpdateAnswerOnlyWhileStreaming checks that an update after the
// final one, or by another user, returns false and changes nothing.
func testUpdateAnswerOnlyWhileStreaming(t *testing.T, s chat.Store) {
	ctx := t.Context()
	c := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	streaming := addExchange(t, s, alice, newExchange(c.ID, "")).Answer
	ended := addExchange(t, s, alice, newExchange(c.ID, "")).Answer
	final := *ended
	final.Status, final.Content, final.CompletedAt = chat.StatusCancelled, "Cancelled here", ptr(chat.Now())
	updateAnswer(t, s, alice, &final)
	c = getConversation(t, s, alice, c.ID)

	tests := []struct {
		name   string
		owner  string
		answer *chat.Message
	}{
		{"late checkpoint", alice, ended},
		{"second final update", alice, ended},
		{"another user's checkpoint", bob, streaming},
		{"another user's final update", bob, streaming},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := *tt.answer
			a.Content = "overwritten"
			if i%2 == 1 {
				a.Status, a.Error, a.CompletedAt = chat.StatusFailed, "overwritten", ptr(chat.Now())
			}
			if ok, err := s.UpdateAnswer(ctx, tt.owner, &a); ok || err != nil {
				t.Errorf("UpdateAnswer = %v, %v; want false, nil", ok, err)
			}
			checkMessages(t, getMessages(t, s, alice, streaming.ID, ended.ID), []*chat.Message{streaming, &final})
			checkConversation(t, getConversation(t, s, alice, c.ID), c)
		})
	}
}

// testUpdateAnswerRaces checks that the final update of an answer can
// race with what else ends it, without an error or a deadlock: a
// deletion of its conversation, InterruptAnswers, and another final
// update. Exactly one of them ends it.
func testUpdateAnswerRaces(t *testing.T, s chat.Store) {
	ctx := t.Context()
	final := func(a chat.Message, status chat.Status) func() (bool, error) {
		a.Status, a.Content, a.CompletedAt = status, string(status), ptr(chat.Now())
		return func() (bool, error) { return s.UpdateAnswer(ctx, alice, &a) }
	}
	tests := []struct {
		name  string
		other func(c *chat.Conversation, a chat.Message) func() (bool, error)
	}{
		{"DeleteConversation", func(c *chat.Conversation, _ chat.Message) func() (bool, error) {
			return func() (bool, error) { return true, s.DeleteConversation(ctx, alice, c.ID) }
		}},
		{"InterruptAnswers", func(*chat.Conversation, chat.Message) func() (bool, error) {
			return func() (bool, error) { n, err := s.InterruptAnswers(ctx, "interrupted"); return n == 1, err }
		}},
		{"UpdateAnswer", func(_ *chat.Conversation, a chat.Message) func() (bool, error) {
			return final(a, chat.StatusCancelled)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for round := range 10 {
				c := mustCreate(t, s, &chat.Conversation{OwnerID: alice})
				a := *addExchange(t, s, alice, newExchange(c.ID, "")).Answer
				calls := []func() (bool, error){final(a, chat.StatusComplete), tt.other(c, a)}
				ended := make([]bool, len(calls))
				var wg sync.WaitGroup
				for i, call := range calls {
					wg.Go(func() {
						var err error
						if ended[i], err = call(); err != nil {
							t.Errorf("round %d, call %d: %v", round, i, err)
						}
					})
				}
				wg.Wait()
				if tt.name != "DeleteConversation" && ended[0] == ended[1] {
					t.Errorf("round %d: the final update ended the answer: %v, %s: %v; want exactly one", round, ended[0], tt.name, ended[1])
				}
			}
		})
	}
}

func testInterruptAnswers(t *testing.T, s chat.Store) {
	ctx := t.Context()
	ca := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	cb := mustCreate(t, s, &chat.Conversation{OwnerID: bob, CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
	seedMessages(t, s, alice, ca.ID, 4)

	// Two answers streaming, one of them checkpointed, and three ended.
	partial := *addExchange(t, s, alice, newExchange(ca.ID, "")).Answer
	partial.Content, partial.Model = "Half an answ", "demo"
	updateAnswer(t, s, alice, &partial)
	fresh := addExchange(t, s, bob, newExchange(cb.ID, "")).Answer
	var ended []*chat.Message
	for _, status := range []chat.Status{chat.StatusComplete, chat.StatusFailed, chat.StatusCancelled} {
		a := *addExchange(t, s, alice, newExchange(ca.ID, "")).Answer
		a.Status, a.Content, a.CompletedAt = status, "ended", ptr(chat.Now().Add(-time.Minute))
		updateAnswer(t, s, alice, &a)
		ended = append(ended, &a)
	}
	beforeA := listMessages(t, s, alice, []string{ca.ID}, chat.Page{Limit: 20})[0].Messages
	convs := map[string]*chat.Conversation{alice: getConversation(t, s, alice, ca.ID), bob: getConversation(t, s, bob, cb.ID)}

	before := chat.Now()
	n, err := s.InterruptAnswers(ctx, "interrupted by a restart")
	after := chat.Now()
	if err != nil || n != 2 {
		t.Fatalf("InterruptAnswers = %d, %v; want 2, nil", n, err)
	}

	// The streaming answers ended as FAILED, with what had been saved.
	for _, tt := range []struct {
		owner string
		a     *chat.Message
	}{{alice, &partial}, {bob, fresh}} {
		got := getMessages(t, s, tt.owner, tt.a.ID)[0]
		if got.CompletedAt == nil || got.CompletedAt.Before(before) || got.CompletedAt.After(after) {
			t.Errorf("interrupted answer CompletedAt = %v; want within [%v, %v]", got.CompletedAt, before, after)
			continue
		}
		checkStoredTime(t, "CompletedAt", *got.CompletedAt)
		want := *tt.a
		want.Status, want.Error, want.CompletedAt = chat.StatusFailed, "interrupted by a restart", got.CompletedAt
		checkMessages(t, []*chat.Message{got}, []*chat.Message{&want})
		// Ended, it takes no more updates.
		late := *tt.a
		late.Content = "late"
		if ok, err := s.UpdateAnswer(ctx, tt.owner, &late); ok || err != nil {
			t.Errorf("UpdateAnswer after InterruptAnswers = %v, %v; want false, nil", ok, err)
		}
	}
	// Nothing else changed, the conversations included.
	for i, m := range beforeA {
		if m.ID == partial.ID {
			beforeA[i] = getMessages(t, s, alice, m.ID)[0]
		}
	}
	checkMessages(t, listMessages(t, s, alice, []string{ca.ID}, chat.Page{Limit: 20})[0].Messages, beforeA)
	checkMessages(t, getMessages(t, s, alice, ids(ended)...), ended)
	checkConversation(t, getConversation(t, s, alice, ca.ID), convs[alice])
	checkConversation(t, getConversation(t, s, bob, cb.ID), convs[bob])

	if n, err := s.InterruptAnswers(ctx, "again"); n != 0 || err != nil {
		t.Errorf("InterruptAnswers again = %d, %v; want 0, nil", n, err)
	}
}

func testStreamingAnswers(t *testing.T, s chat.Store) {
	ctx := t.Context()
	streaming := func(before time.Time, limit int) []chat.AnswerRef {
		t.Helper()
		refs, err := s.StreamingAnswers(ctx, before, limit)
		if err != nil {
			t.Fatalf("StreamingAnswers(%v, %d): %v", before, limit, err)
		}
		if refs == nil {
			t.Errorf("StreamingAnswers(%v, %d) = nil; want an empty slice", before, limit)
		}
		return refs
	}
	if got := streaming(chat.Now().Add(time.Hour), 10); len(got) != 0 {
		t.Errorf("StreamingAnswers of an empty store = %s; want none", listString(got, refString))
	}

	base := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	ca := mustCreate(t, s, &chat.Conversation{OwnerID: alice, CreatedAt: base.Add(-time.Hour)})
	cb := mustCreate(t, s, &chat.Conversation{OwnerID: bob, CreatedAt: base.Add(-time.Hour)})
	seedMessagesAt(t, s, alice, ca.ID, 4, base.Add(-time.Minute)) // COMPLETE questions and answers
	// ask stores a question at base+at and its answer a millisecond later,
	// and returns the answer's reference.
	ask := func(c *chat.Conversation, at time.Duration) chat.AnswerRef {
		ex := newExchange(c.ID, "")
		ex.Question.CreatedAt = base.Add(at)
		ex.Answer.CreatedAt = base.Add(at + time.Millisecond)
		a := addExchange(t, s, c.OwnerID, ex).Answer
		return chat.AnswerRef{ID: a.ID, ConversationID: c.ID, OwnerID: c.OwnerID, CreatedAt: a.CreatedAt}
	}

	// Streaming answers of both owners, two created at the same time and
	// one checkpointed; and answers ended in every way among them, whose
	// questions, like every question, are COMPLETE.
	want := []chat.AnswerRef{
		ask(ca, 1*time.Second),
		ask(cb, 2*time.Second),
		ask(ca, 3*time.Second),
		ask(cb, 3*time.Second),
		ask(ca, 5*time.Second),
	}
	slices.SortFunc(want, func(a, b chat.AnswerRef) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(a.ID, b.ID))
	})
	checkpoint := chat.Message{ID: want[4].ID, Role: chat.RoleAssistant, Status: chat.StatusStreaming, Content: "Half an answ"}
	updateAnswer(t, s, alice, &checkpoint)
	for i, status := range []chat.Status{chat.StatusComplete, chat.StatusFailed, chat.StatusCancelled} {
		r := ask(ca, time.Duration(i)*time.Second+500*time.Millisecond)
		a := chat.Message{ID: r.ID, Role: chat.RoleAssistant, Status: status, Content: "ended", CompletedAt: ptr(base.Add(time.Minute))}
		updateAnswer(t, s, alice, &a)
	}
	last := want[4].CreatedAt

	tests := []struct {
		name   string
		before time.Time
		limit  int
		want   []chat.AnswerRef
	}{
		{"All", last.Add(time.Microsecond), 10, want},
		{"Now", chat.Now(), 10, want},
		{"LimitExact", last.Add(time.Hour), 5, want},
		{"LimitSplitsTie", last.Add(time.Hour), 3, want[:3]}, // the ids decide
		{"LimitBeforeTie", last.Add(time.Hour), 2, want[:2]},
		{"LimitOne", last.Add(time.Hour), 1, want[:1]},
		{"LimitZero", last.Add(time.Hour), 0, nil},
		{"BeforeIsExclusive", last, 10, want[:4]},
		{"BeforeTie", want[2].CreatedAt, 10, want[:2]},
		{"BeforeInsideAMicrosecond", last.Add(time.Nanosecond), 10, want},
		{"BeforeElsewhere", last.Add(time.Nanosecond).In(time.FixedZone("UTC+2", 2*60*60)), 10, want},
		{"BeforeFirst", want[0].CreatedAt, 10, nil},
		{"BeforeAll", base, 10, nil},
		{"ZeroTime", time.Time{}, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRefs(t, streaming(tt.before, tt.limit), tt.want)
		})
	}

	// Deleting a conversation takes its answers; ending them takes the rest.
	if err := s.DeleteConversation(ctx, bob, cb.ID); err != nil {
		t.Fatalf("DeleteConversation: %v", err)
	}
	alices := slices.DeleteFunc(slices.Clone(want), func(r chat.AnswerRef) bool { return r.OwnerID != alice })
	checkRefs(t, streaming(chat.Now(), 10), alices)
	if _, err := s.InterruptAnswers(ctx, "interrupted"); err != nil {
		t.Fatalf("InterruptAnswers: %v", err)
	}
	checkRefs(t, streaming(chat.Now(), 10), nil)
}

// checkRefs checks that got is want, in order.
func checkRefs(t *testing.T, got, want []chat.AnswerRef) {
	t.Helper()
	if !slices.EqualFunc(got, want, func(a, b chat.AnswerRef) bool {
		return a.ID == b.ID && a.ConversationID == b.ConversationID && a.OwnerID == b.OwnerID && sameTime(a.CreatedAt, b.CreatedAt)
	}) {
		t.Errorf("StreamingAnswers =\n%s\nwant\n%s", listString(got, refString), listString(want, refString))
	}
}

func refString(r chat.AnswerRef) string {
	return fmt.Sprintf("{%s %s %s %s}", r.ID, r.ConversationID, r.OwnerID, r.CreatedAt.Format(time.RFC3339Nano))
}

// newExchange returns a question for conversation conv and the start of
// its answer, as the ask mutation stores them.
func newExchange(conv, key string) *chat.Exchange {
	return &chat.Exchange{
		IdempotencyKey: key,
		Question: &chat.Message{
			ConversationID: conv, Role: chat.RoleUser, Content: "Why is the sky blue?", Status: chat.StatusComplete,
		},
		Answer: &chat.Message{Role: chat.RoleAssistant, Status: chat.StatusStreaming, Model: "demo"},
	}
}

// addExchange stores ex, which must be new, for owner, and returns it.
func addExchange(t *testing.T, s chat.Store, owner string, ex *chat.Exchange) *chat.Exchange {
	t.Helper()
	ex.Question.AuthorID = owner
	created, err := s.AddExchange(t.Context(), owner, ex)
	if err != nil || !created {
		t.Fatalf("AddExchange = %v, %v; want true, nil", created, err)
	}
	return ex
}

// updateAnswer writes a, which must be owner's and streaming.
func updateAnswer(t *testing.T, s chat.Store, owner string, a *chat.Message) {
	t.Helper()
	ok, err := s.UpdateAnswer(t.Context(), owner, a)
	if err != nil || !ok {
		t.Fatalf("UpdateAnswer = %v, %v; want true, nil", ok, err)
	}
}

// getMessages returns owner's messages with the given ids, in that order.
func getMessages(t *testing.T, s chat.Store, owner string, ids ...string) []*chat.Message {
	t.Helper()
	ms, err := s.MessagesByID(t.Context(), owner, ids)
	if err != nil {
		t.Fatalf("MessagesByID: %v", err)
	}
	byID := make(map[string]*chat.Message, len(ms))
	for _, m := range ms {
		byID[m.ID] = m
	}
	got := make([]*chat.Message, len(ids))
	for i, id := range ids {
		if got[i] = byID[id]; got[i] == nil {
			t.Fatalf("MessagesByID(%q, %q) has no message %q", owner, ids, id)
		}
	}
	return got
}
