package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"askgate/internal/chat"
	"askgate/internal/store/internal/sqlkit"
)

// messageColumns lists the columns of a message, as every query reads them.
var messageColumns = []string{
	"id", "conversation_id", "role", "author_id", "content", "status", "model",
	"created_at", "completed_at", "prompt_tokens", "completion_tokens", "total_tokens", "error", "cached",
}

// The positions of the columns that messageRow reads raw.
const (
	colConversationID = 1
	colRole           = 2
	colStatus         = 5
	colModel          = 6
)

// columns returns messageColumns qualified with the table alias t.
func columns(t string) string {
	return t + "." + strings.Join(messageColumns, ", "+t+".")
}

// placeholders returns "$1, $2, …, $n".
func placeholders(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteString(", ")
		}
		b.WriteString("$" + strconv.Itoa(i))
	}
	return b.String()
}

var (
	insertMessageSQL = `INSERT INTO messages (` + strings.Join(messageColumns, ", ") + `)
VALUES (` + placeholders(len(messageColumns)) + `)`

	// touchConversationSQL bumps the conversation's UpdatedAt, never
	// backwards, and finds out whether it is owner's.
	touchConversationSQL = `UPDATE conversations SET updated_at = greatest(updated_at, $1)
WHERE id = $2 AND owner_id = $3`

	messagesByIDSQL = `SELECT ` + columns("m") + `
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.id = ANY($1) AND c.owner_id = $2`

	countMessagesSQL = `SELECT c.id, count(m.id)
FROM conversations AS c LEFT JOIN messages AS m ON m.conversation_id = c.id
WHERE c.id = ANY($1) AND c.owner_id = $2
GROUP BY c.id`
)

// messageKeyset is the order of a conversation's messages.
var messageKeyset = sqlkit.Keyset{Time: "m.created_at", ID: "m.id"}

// listMessagesSQL holds the query of ListMessages for each shape of page.
// For each conversation asked for, a LATERAL subquery reads the first
// Limit+1 messages in fetch order straight from the index, so the cost is
// the same for a conversation of ten messages or ten thousand. (A
// row_number() window over each conversation would read all its messages
// before keeping the first few.) Arguments: ids, owner, the cursors,
// limit.
var listMessagesSQL [sqlkit.Variants]string

func init() {
	for v := range sqlkit.Variant(sqlkit.Variants) {
		param := sqlkit.Dollar(3)
		where := messageKeyset.Where(v, param)
		listMessagesSQL[v] = `SELECT ` + columns("m") + `
FROM conversations AS c
CROSS JOIN LATERAL (
	SELECT ` + columns("m") + ` FROM messages AS m
	WHERE m.conversation_id = c.id` + where + `
	ORDER BY ` + messageKeyset.OrderBy(v) + `
	LIMIT ` + param() + `
) AS m
WHERE c.id = ANY($1) AND c.owner_id = $2
ORDER BY m.conversation_id, ` + messageKeyset.OrderBy(v)
	}
}

// messageRow scans messages with one set of destinations. The columns
// that repeat from row to row (conversation, role, status, model) are read
// from the raw row rather than scanned, so that rows share one string for
// each of their values instead of allocating their own.
type messageRow struct {
	m                         chat.Message
	author, errText           pgtype.Text
	completed                 pgtype.Timestamptz
	prompt, completion, total pgtype.Int4
	dest                      []any

	conversationID string            // of the previous row
	models         map[string]string // the model names seen

	msgs  sqlkit.Slab[chat.Message]
	times sqlkit.Slab[time.Time]
	usage sqlkit.Slab[chat.TokenUsage]
}

func newMessageRow() *messageRow {
	r := &messageRow{}
	r.dest = []any{
		&r.m.ID, nil, nil, &r.author, &r.m.Content, nil, nil,
		&r.m.CreatedAt, &r.completed, &r.prompt, &r.completion, &r.total, &r.errText, &r.m.Cached,
	}
	return r
}

// scan reads the current row and returns it as a new Message.
func (r *messageRow) scan(rows pgx.Rows) (*chat.Message, error) {
	if err := rows.Scan(r.dest...); err != nil {
		return nil, err
	}
	raw := rows.RawValues()
	m := r.msgs.New()
	m.ID = r.m.ID
	if b := raw[colConversationID]; string(b) != r.conversationID {
		r.conversationID = string(b)
	}
	m.ConversationID = r.conversationID
	m.Role = chat.Role(intern(raw[colRole], roleNames))
	m.AuthorID = r.author.String
	m.Content = r.m.Content
	m.Status = chat.Status(intern(raw[colStatus], statusNames))
	if b := raw[colModel]; b != nil {
		if r.models == nil {
			r.models = make(map[string]string)
		}
		m.Model = internMap(b, r.models)
	}
	m.CreatedAt = r.m.CreatedAt.UTC()
	if r.completed.Valid {
		t := r.times.New()
		*t = r.completed.Time.UTC()
		m.CompletedAt = t
	}
	if r.prompt.Valid || r.completion.Valid || r.total.Valid {
		u := r.usage.New()
		*u = chat.TokenUsage{
			PromptTokens:     int(r.prompt.Int32),
			CompletionTokens: int(r.completion.Int32),
			TotalTokens:      int(r.total.Int32),
		}
		m.Usage = u
	}
	m.Error = r.errText.String
	m.Cached = r.m.Cached
	return m, nil
}

var (
	roleNames   = []string{string(chat.RoleUser), string(chat.RoleAssistant)}
	statusNames = []string{string(chat.StatusStreaming), string(chat.StatusComplete), string(chat.StatusFailed), string(chat.StatusCancelled)}
)

// intern returns the string among names equal to b, or a new one.
func intern(b []byte, names []string) string {
	for _, s := range names {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// internMap returns the string in seen equal to b, adding it if needed.
func internMap(b []byte, seen map[string]string) string {
	if s, ok := seen[string(b)]; ok {
		return s
	}
	s := string(b)
	seen[s] = s
	return s
}

// scanMessages reads and closes rows.
func scanMessages(rows pgx.Rows, hint int) ([]*chat.Message, error) {
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
	var (
		completed                 pgtype.Timestamptz
		prompt, completion, total pgtype.Int4
	)
	if m.CompletedAt != nil {
		completed = pgtype.Timestamptz{Time: *m.CompletedAt, Valid: true}
	}
	if u := m.Usage; u != nil {
		prompt = pgtype.Int4{Int32: int32(u.PromptTokens), Valid: true}
		completion = pgtype.Int4{Int32: int32(u.CompletionTokens), Valid: true}
		total = pgtype.Int4{Int32: int32(u.TotalTokens), Valid: true}
	}
	return []any{
		m.ID, m.ConversationID, string(m.Role), text(m.AuthorID), m.Content, string(m.Status),
		text(m.Model), m.CreatedAt, completed, prompt, completion, total, text(m.Error), m.Cached,
	}
}

// text returns s as an SQL value: NULL when empty.
func text(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// AddMessages stores msgs in owner's conversation msgs[0].ConversationID,
// in one transaction, and bumps the conversation's UpdatedAt.
func (s *Store) AddMessages(ctx context.Context, owner string, msgs ...*chat.Message) error {
	now := chat.Now()
	conv, err := sqlkit.PrepareMessages(msgs, now)
	if err != nil || conv == "" {
		return err
	}
	updated := now
	if t := sqlkit.LatestCreatedAt(msgs); t.After(updated) {
		updated = t
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The update also locks the conversation: a concurrent delete waits
		// for the messages, or they wait for it and find nothing.
		tag, err := tx.Exec(ctx, touchConversationSQL, updated, conv, owner)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return chat.ErrNotFound
		}
		var b pgx.Batch
		for _, m := range msgs {
			b.Queue(insertMessageSQL, messageArgs(m)...)
		}
		return tx.SendBatch(ctx, &b).Close()
	})
	switch {
	case errors.Is(err, chat.ErrNotFound):
		return chat.ErrNotFound
	case err != nil:
		return fmt.Errorf("postgres: add messages: %w", err)
	}
	return nil
}

// MessagesByID returns the messages among ids that are in owner's
// conversations.
func (s *Store) MessagesByID(ctx context.Context, owner string, ids []string) ([]*chat.Message, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, messagesByIDSQL, ids, owner)
	if err != nil {
		return nil, fmt.Errorf("postgres: messages by id: %w", err)
	}
	ms, err := scanMessages(rows, len(ids))
	if err != nil {
		return nil, fmt.Errorf("postgres: messages by id: %w", err)
	}
	return ms, nil
}

// ListMessages returns, for each id in conversationIDs, the page p of the
// conversation's messages if it is owner's, or an empty page, in one query.
func (s *Store) ListMessages(ctx context.Context, owner string, conversationIDs []string, p chat.Page) ([]*chat.MessagePage, error) {
	if len(conversationIDs) == 0 {
		return []*chat.MessagePage{}, nil
	}
	rows, err := s.pool.Query(ctx, listMessagesSQL[sqlkit.VariantOf(p)], listMessagesArgs(owner, conversationIDs, p)...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list messages: %w", err)
	}
	ms, err := scanMessages(rows, min(len(conversationIDs)*(p.Limit+1), 1024))
	if err != nil {
		return nil, fmt.Errorf("postgres: list messages: %w", err)
	}
	return sqlkit.MessagePages(p, conversationIDs, ms), nil
}

// listMessagesArgs returns the arguments of listMessagesSQL.
func listMessagesArgs(owner string, conversationIDs []string, p chat.Page) []any {
	args := make([]any, 0, 7)
	args = append(args, conversationIDs, owner)
	args = sqlkit.AppendCursorArgs(args, p, sqlkit.Time)
	return append(args, p.Limit+1)
}

// CountMessages returns the number of messages of each of owner's
// conversations among conversationIDs.
func (s *Store) CountMessages(ctx context.Context, owner string, conversationIDs []string) (map[string]int, error) {
	if len(conversationIDs) == 0 {
		return map[string]int{}, nil
	}
	rows, err := s.pool.Query(ctx, countMessagesSQL, conversationIDs, owner)
	if err != nil {
		return nil, fmt.Errorf("postgres: count messages: %w", err)
	}
	counts, err := scanCounts(rows, len(conversationIDs))
	if err != nil {
		return nil, fmt.Errorf("postgres: count messages: %w", err)
	}
	return counts, nil
}

// ListMessagesCounted is ListMessages of conversationIDs and CountMessages
// of countIDs in one round trip to the server: the chat screen asks for
// both at once, and a round trip costs more than either statement.
func (s *Store) ListMessagesCounted(ctx context.Context, owner string, conversationIDs []string, p chat.Page, countIDs []string) ([]*chat.MessagePage, map[string]int, error) {
	if len(countIDs) == 0 || len(conversationIDs) == 0 {
		pages, err := s.ListMessages(ctx, owner, conversationIDs, p)
		if err != nil {
			return nil, nil, err
		}
		counts, err := s.CountMessages(ctx, owner, countIDs)
		return pages, counts, err
	}
	b := &pgx.Batch{}
	b.Queue(countMessagesSQL, countIDs, owner)
	b.Queue(listMessagesSQL[sqlkit.VariantOf(p)], listMessagesArgs(owner, conversationIDs, p)...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: count messages: %w", err)
	}
	counts, err := scanCounts(rows, len(countIDs))
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: count messages: %w", err)
	}
	if rows, err = br.Query(); err != nil {
		return nil, nil, fmt.Errorf("postgres: list messages: %w", err)
	}
	ms, err := scanMessages(rows, min(len(conversationIDs)*(p.Limit+1), 1024))
	if err != nil {
		return nil, nil, fmt.Errorf("postgres: list messages: %w", err)
	}
	if err := br.Close(); err != nil {
		return nil, nil, fmt.Errorf("postgres: list messages: %w", err)
	}
	return sqlkit.MessagePages(p, conversationIDs, ms), counts, nil
}

// scanCounts reads the rows of countMessagesSQL, n at most, and closes
// them.
func scanCounts(rows pgx.Rows, n int) (map[string]int, error) {
	defer rows.Close()
	counts := make(map[string]int, n)
	var (
		id    string
		count int
	)
	for rows.Next() {
		if err := rows.Scan(&id, &count); err != nil {
			return nil, err
		}
		counts[id] = count
	}
	return counts, rows.Err()
}
