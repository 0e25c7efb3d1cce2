package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"askgate/internal/chat"
	"askgate/internal/store/internal/sqlkit"
)

const conversationColumns = `id, owner_id, title, created_at, updated_at`

const (
	insertConversationSQL = `INSERT INTO conversations (` + conversationColumns + `) VALUES (?, ?, ?, ?, ?)`

	// In this query and others, the unary + keeps SQLite from using the
	// owner's index, which would scan all the owner's conversations, rather
	// than the primary key of the few ids asked for.
	conversationsByIDSQL = `SELECT ` + conversationColumns + ` FROM conversations
WHERE id IN (SELECT value FROM json_each(?)) AND +owner_id = ?`

	countConversationsSQL = `SELECT count(*) FROM conversations WHERE owner_id = ?`

	renameConversationSQL = `UPDATE conversations SET title = ?, updated_at = max(updated_at, ?)
WHERE id = ? AND owner_id = ?
RETURNING ` + conversationColumns

	deleteConversationSQL = `DELETE FROM conversations WHERE id = ? AND owner_id = ?`
)

// conversationKeyset is the order of a user's conversations.
var conversationKeyset = sqlkit.Keyset{Time: "updated_at", ID: "id", Desc: true}

// listConversationsSQL holds the query of ListConversations for each
// shape of page. Arguments: owner, the cursors, limit.
var listConversationsSQL [sqlkit.Variants]string

func init() {
	for v := range sqlkit.Variant(sqlkit.Variants) {
		listConversationsSQL[v] = `SELECT ` + conversationColumns + ` FROM conversations
WHERE owner_id = ?` + conversationKeyset.Where(v, sqlkit.Question) + `
ORDER BY ` + conversationKeyset.OrderBy(v) + `
LIMIT ?`
	}
}

// conversationRow scans conversations with one set of destinations.
type conversationRow struct {
	c                chat.Conversation
	created, updated int64
	dest             []any
	slab             sqlkit.Slab[chat.Conversation]
}

func newConversationRow() *conversationRow {
	r := &conversationRow{}
	r.dest = []any{&r.c.ID, &r.c.OwnerID, &r.c.Title, &r.created, &r.updated}
	return r
}

// scan reads the current row and returns it as a new Conversation.
func (r *conversationRow) scan(rows interface{ Scan(...any) error }) (*chat.Conversation, error) {
	if err := rows.Scan(r.dest...); err != nil {
		return nil, err
	}
	c := r.slab.New()
	*c = r.c
	c.CreatedAt, c.UpdatedAt = fromMicros(r.created), fromMicros(r.updated)
	return c, nil
}

// CreateConversation stores c, filling in an empty ID and zero times.
func (s *Store) CreateConversation(ctx context.Context, c *chat.Conversation) error {
	if err := sqlkit.PrepareConversation(c, chat.Now()); err != nil {
		return fmt.Errorf("sqlite: create conversation: %w", err)
	}
	st, err := s.writeStmts.get(ctx, insertConversationSQL)
	if err == nil {
		_, err = st.ExecContext(ctx, c.ID, c.OwnerID, c.Title, micros(c.CreatedAt), micros(c.UpdatedAt))
	}
	if err != nil {
		return fmt.Errorf("sqlite: create conversation: %w", err)
	}
	return nil
}

// ConversationsByID returns owner's conversations among ids.
func (s *Store) ConversationsByID(ctx context.Context, owner string, ids []string) ([]*chat.Conversation, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	list, err := jsonList(ids)
	if err != nil {
		return nil, fmt.Errorf("sqlite: conversations by id: %w", err)
	}
	rows, err := s.query(ctx, conversationsByIDSQL, list, owner)
	if err != nil {
		return nil, fmt.Errorf("sqlite: conversations by id: %w", err)
	}
	cs, err := scanConversations(rows, len(ids))
	if err != nil {
		return nil, fmt.Errorf("sqlite: conversations by id: %w", err)
	}
	return cs, nil
}

// ListConversations returns a page of owner's conversations, most
// recently updated first.
func (s *Store) ListConversations(ctx context.Context, owner string, p chat.Page) (*chat.ConversationPage, error) {
	args := make([]any, 0, 6)
	args = append(args, owner)
	args = sqlkit.AppendCursorArgs(args, p, micros)
	args = append(args, p.Limit+1)
	rows, err := s.query(ctx, listConversationsSQL[sqlkit.VariantOf(p)], args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list conversations: %w", err)
	}
	cs, err := scanConversations(rows, p.Limit+1)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list conversations: %w", err)
	}
	page := &chat.ConversationPage{}
	page.Conversations, page.PageInfo = chat.Finish(p, cs)
	return page, nil
}

// scanConversations reads and closes rows.
func scanConversations(rows *sql.Rows, hint int) ([]*chat.Conversation, error) {
	defer rows.Close()
	r := newConversationRow()
	cs := make([]*chat.Conversation, 0, min(hint, chat.MaxPageSize+1))
	for rows.Next() {
		c, err := r.scan(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return cs, nil
}

// CountConversations returns how many conversations owner has.
func (s *Store) CountConversations(ctx context.Context, owner string) (int, error) {
	st, err := s.readStmts.get(ctx, countConversationsSQL)
	if err != nil {
		return 0, fmt.Errorf("sqlite: count conversations: %w", err)
	}
	var n int
	if err := st.QueryRowContext(ctx, owner).Scan(&n); err != nil {
		return 0, fmt.Errorf("sqlite: count conversations: %w", err)
	}
	return n, nil
}

// RenameConversation sets the title of owner's conversation id and bumps
// its UpdatedAt.
func (s *Store) RenameConversation(ctx context.Context, owner, id, title string) (*chat.Conversation, error) {
	st, err := s.writeStmts.get(ctx, renameConversationSQL)
	if err != nil {
		return nil, fmt.Errorf("sqlite: rename conversation: %w", err)
	}
	rows, err := st.QueryContext(ctx, title, micros(chat.Now()), id, owner)
	if err != nil {
		return nil, fmt.Errorf("sqlite: rename conversation: %w", err)
	}
	cs, err := scanConversations(rows, 1)
	if err != nil {
		return nil, fmt.Errorf("sqlite: rename conversation: %w", err)
	}
	if len(cs) == 0 {
		return nil, chat.ErrNotFound
	}
	return cs[0], nil
}

// DeleteConversation removes owner's conversation id and its messages.
func (s *Store) DeleteConversation(ctx context.Context, owner, id string) error {
	st, err := s.writeStmts.get(ctx, deleteConversationSQL)
	if err != nil {
		return fmt.Errorf("sqlite: delete conversation: %w", err)
	}
	res, err := st.ExecContext(ctx, id, owner)
	if err != nil {
		return fmt.Errorf("sqlite: delete conversation: %w", err)
	}
	return notFoundIfNone(res, "delete conversation")
}

// notFoundIfNone returns chat.ErrNotFound when res changed no row.
func notFoundIfNone(res sql.Result, op string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("sqlite: %s: %w", op, err)
	}
	if n == 0 {
		return chat.ErrNotFound
	}
	return nil
}
