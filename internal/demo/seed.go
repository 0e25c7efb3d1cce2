// Package demo fills a store with sample conversations, for trying askgate
// in GraphiQL and for benchmarks that compare it with other servers on the
// same data.
package demo

import (
	"context"
	"fmt"
	"time"

	"askgate/internal/chat"
)

// Question is the text of the j-th message of conversation i when it is a
// question.
func Question(i, j int) string { return fmt.Sprintf("question %d of conversation %d", j, i) }

// Answer is the demo answer to question q. Its length is that of the
// answers of the benchmark peer's seed, so both serve the same bytes.
func Answer(q string) string {
	return fmt.Sprintf("Answer to %q: the quick brown fox jumps over the lazy dog, and then explains %d characters of reasoning in detail.", q, len(q))
}

// Seed adds n conversations owned by owner, each with pairs question and
// answer pairs, oldest first, and returns them.
func Seed(ctx context.Context, st chat.Store, owner string, n, pairs int) ([]*chat.Conversation, error) {
	if n < 0 || pairs < 0 {
		return nil, fmt.Errorf("demo: negative count")
	}
	t0 := chat.Now().Add(-24 * time.Hour)
	out := make([]*chat.Conversation, 0, n)
	for i := range n {
		start := t0.Add(time.Duration(i) * time.Minute)
		c := &chat.Conversation{OwnerID: owner, Title: fmt.Sprintf("conversation %d", i), CreatedAt: start, UpdatedAt: start}
		if err := st.CreateConversation(ctx, c); err != nil {
			return nil, err
		}
		msgs := make([]*chat.Message, 0, 2*pairs)
		for j := range 2 * pairs {
			at := start.Add(time.Duration(j) * time.Second)
			m := &chat.Message{ConversationID: c.ID, Status: chat.StatusComplete, CreatedAt: at}
			if j%2 == 0 {
				m.Role, m.AuthorID, m.Content = chat.RoleUser, owner, Question(i, j)
			} else {
				m.Role, m.Content, m.Model = chat.RoleAssistant, Answer(Question(i, j-1)), "demo"
				done := at
				m.CompletedAt = &done
			}
			msgs = append(msgs, m)
		}
		if len(msgs) > 0 {
			if err := st.AddMessages(ctx, owner, msgs...); err != nil {
				return nil, err
			}
		}
		out = append(out, c)
	}
	return out, nil
}
