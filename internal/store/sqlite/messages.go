package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"askgate/internal/chat"
	"askgate/internal/store/internal/sqlkit"
)

// messageColumns lists the columns of a message, as every query reads them.
var messageColumns = []string{
	"id", "conversation_id", "role", "author_id", "content", "status", "model",
	"created_at", "completed_at", "prompt_tokens", "completion_tokens", "total_tokens", "error", "cached",
}

// columns returns messageColumns qualified with the table alias t.
func columns(t string) string {
	return t + "." + strings.Join(messageColumns, ", "+t+".")
}

var (
	insertMessageSQL = `INSERT INTO messages (` + strings.Join(messageColumns, ", ") + `)
VALUES (` + strings.Repeat("?, ", len(messageColumns)-1) + `?)`

	// touchConversationSQL bumps the conversation's UpdatedAt, never
	// backwards, and finds out whether it is owner's.
	touchConversationSQL = `UPDATE conversations SET updated_at = max(updated_at, ?)
WHERE id = ? AND owner_id = ?`

	messagesByIDSQL = `SELECT ` + columns("m") + `
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.id IN (SELECT value FROM json_each(?)) AND +c.owner_id = ?`

	countMessagesSQL = `SELECT c.id, count(m.id)
FROM conversations AS c LEFT JOIN messages AS m ON m.conversation_id = c.id
WHERE c.id IN (SELECT value FROM json_each(?)) AND +c.owner_id = ?
GROUP BY c.id`
)

// messageKeyset is the order of a conversation's messages.
var messageKeyset = sqlkit.Keyset{Time: "m.created_at", ID: "m.id"}

// listMessagesSQL holds the query of ListMessages for each shape of page.
// For each conversation asked for, a correlated subquery picks the rowids
// of the first Limit+1 messages in fetch order straight from the index, so
// the cost is the same for a conversation of ten messages or ten thousand.
// (A row_number() window over each conversation reads all its messages:
// on 20 conversations of 200 messages it is 30 times slower.) The inner
// alias m shadows the outer one. Arguments: ids (a JSON array), owner, the
// cursors, limit.
var listMessagesSQL [sqlkit.Variants]string

func init() {
	for v := range sqlkit.Variant(sqlkit.Variants) {
		listMessagesSQL[v] = `SELECT ` + columns("m") + `
FROM conversations AS c, messages AS m
WHERE c.id IN (SELECT value FROM json_each(?)) AND +c.owner_id = ?
	AND m.rowid IN (
		SELECT m.rowid FROM messages AS m
		WHERE m.conversation_id = c.id` + messageKeyset.Where(v, sqlkit.Question) + `
		ORDER BY ` + messageKeyset.OrderBy(v) + `
		LIMIT ?)
ORDER BY m.conversation_id, ` + messageKeyset.OrderBy(v)
	}
}

// messageRow scans messages with one set of destinations.
type messageRow struct {
	id, conversationID, content, role, status string
	author, model, errText                    sql.NullString
	created                                   int64
	completed, prompt, completion, total      sql.NullInt64
	cached                                    bool
	dest                                      []any

	msgs  sqlkit.Slab[chat.Message]
	times sqlkit.Slab[time.Time]
	usage sqlkit.Slab[chat.TokenUsage]
}

func newMessageRow() *messageRow {
	r := &messageRow{}
	r.dest = []any{
		&r.id, &r.conversationID, &r.role, &r.author, &r.content, &r.status, &r.model,
		&r.created, &r.completed, &r.prompt, &r.completion, &r.total, &r.errText, &r.cached,
	}
	return r
}

// scan reads the current row and returns it as a new Message.
func (r *messageRow) scan(rows *sql.Rows) (*chat.Message, error) {
	if err := rows.Scan(r.dest...); err != nil {
		return nil, err
	}
	m := r.msgs.New()
	m.ID = r.id
	m.ConversationID = r.conversationID
	m.Role = role(r.role)
	m.AuthorID = r.author.String
	m.Content = r.content
	m.Status = status(r.status)
	m.Model = r.model.String
	m.CreatedAt = fromMicros(r.created)
	if r.completed.Valid {
		t := r.times.New()
		*t = fromMicros(r.completed.Int64)
		m.CompletedAt = t
	}
	if r.prompt.Valid || r.completion.Valid || r.total.Valid {
		u := r.usage.New()
		*u = chat.TokenUsage{
			PromptTokens:     int(r.prompt.Int64),
			CompletionTokens: int(r.completion.Int64),
			TotalTokens:      int(r.total.Int64),
		}
		m.Usage = u
	}
	m.Error = r.errText.String
	m.Cached = r.cached
	return m, nil
}

// role returns the constant equal to s, so that rows share its string
// instead of each holding a copy.
func role(s string) chat.Role {
	for _, r := range []chat.Role{chat.RoleUser, chat.RoleAssistant} {
		if s == string(r) {
			return r
		}
	}
	return chat.Role(s)
}

// status returns the constant equal to s, so that rows share its string.
func status(s string) chat.Status {
	for _, st := range []chat.Status{chat.StatusStreaming, chat.StatusComplete, chat.StatusFailed, chat.StatusCancelled} {
		if s == string(st) {
			return st
		}
	}
	return chat.Status(s)
}

// scanMessages reads and closes rows.
func scanMessages(rows *sql.Rows, hint int) ([]*chat.Message, error) {
	defer rows.Close()
	r := newMessageRow()
	ms := make([]*chat.Message, 0, hint)
	for rows.Next() {
		m, err := r.scan(rows)
		if err != nil {
			return nil, err
		}
		ms = append(ms, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return ms, nil
}

// messageArgs returns the values of m's columns, in messageColumns order.
func messageArgs(m *chat.Message) []any {
	var completed, prompt, completion, total any
	if m.CompletedAt != nil {
		completed = micros(*m.CompletedAt)
	}
	if u := m.Usage; u != nil {
		prompt, completion, total = u.PromptTokens, u.CompletionTokens, u.TotalTokens
	}
	return []any{
		m.ID, m.ConversationID, string(m.Role), nullString(m.AuthorID), m.Content, string(m.Status),
		nullString(m.Model), micros(m.CreatedAt), completed, prompt, completion, total, nullString(m.Error), m.Cached,
	}
}

// AddMessages stores msgs in owner's conversation msgs[0].ConversationID,
// in one transaction, and bumps the conversation's UpdatedAt.
func (s *Store) AddMessages(ctx context.Context, owner string, msgs ...*chat.Message) (err error) {
	now := chat.Now()
	conv, err := sqlkit.PrepareMessages(msgs, now)
	if err != nil || conv == "" {
		return err
	}
	touch, err := s.writeStmts.get(ctx, touchConversationSQL)
	if err != nil {
		return fmt.Errorf("sqlite: add messages: %w", err)
	}
	insert, err := s.writeStmts.get(ctx, insertMessageSQL)
	if err != nil {
		return fmt.Errorf("sqlite: add messages: %w", err)
	}

	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE: see Open
	if err != nil {
		return fmt.Errorf("sqlite: add messages: %w", err)
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	updated := now
	if t := sqlkit.LatestCreatedAt(msgs); t.After(updated) {
		updated = t
	}
	res, err := tx.StmtContext(ctx, touch).ExecContext(ctx, micros(updated), conv, owner)
	if err != nil {
		return fmt.Errorf("sqlite: add messages: %w", err)
	}
	if err := notFoundIfNone(res, "add messages"); err != nil {
		return err
	}
	ins := tx.StmtContext(ctx, insert)
	for _, m := range msgs {
		if _, err := ins.ExecContext(ctx, messageArgs(m)...); err != nil {
			return fmt.Errorf("sqlite: add messages: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: add messages: %w", err)
	}
	return nil
}

// MessagesByID returns the messages among ids that are in owner's
// conversations.
func (s *Store) MessagesByID(ctx context.Context, owner string, ids []string) ([]*chat.Message, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := jsonList(ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: messages by id: %w", err)
	}
	rows, err := s.query(ctx, messagesByIDSQL, list, owner)
	if err != nil {
		return nil, fmt.Errorf("sqlite: messages by id: %w", err)
	}
	ms, err := scanMessages(rows, len(ids))
	if err != nil {
		return nil, fmt.Errorf("sqlite: messages by id: %w", err)
	}
	return ms, nil
}

// ListMessages returns, for each id in conversationIDs, the page p of the
// conversation's messages if it is owner's, or an empty page, in one query.
func (s *Store) ListMessages(ctx context.Context, owner string, conversationIDs []string, p chat.Page) ([]*chat.MessagePage, error) {
	if len(conversationIDs) == 0 {
		return []*chat.MessagePage{}, nil
	}
	list, err := jsonList(conversationIDs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages: %w", err)
	}
	args := make([]any, 0, 7)
	args = append(args, list, owner)
	args = sqlkit.AppendCursorArgs(args, p, micros)
	args = append(args, p.Limit+1)
	rows, err := s.query(ctx, listMessagesSQL[sqlkit.VariantOf(p)], args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages: %w", err)
	}
	ms, err := scanMessages(rows, min(len(conversationIDs)*(p.Limit+1), 1024))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list messages: %w", err)
	}
	return sqlkit.MessagePages(p, conversationIDs, ms), nil
}

// CountMessages returns the number of messages of each of owner's
// conversations among conversationIDs.
func (s *Store) CountMessages(ctx context.Context, owner string, conversationIDs []string) (map[string]int, error) {
	counts := make(map[string]int, len(conversationIDs))
	if len(conversationIDs) == 0 {
		return counts, nil
	}
	list, err := jsonList(conversationIDs)
	if err != nil {
		return nil, fmt.Errorf("sqlite: count messages: %w", err)
	}
	rows, err := s.query(ctx, countMessagesSQL, list, owner)
	if err != nil {
		return nil, fmt.Errorf("sqlite: count messages: %w", err)
	}
	defer rows.Close()
	var (
		id string
		n  int
	)
	for rows.Next() {
		if err := rows.Scan(&id, &n); err != nil {
			return nil, fmt.Errorf("sqlite: count messages: %w", err)
		}
		counts[id] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: count messages: %w", err)
	}
	return counts, nil
}
