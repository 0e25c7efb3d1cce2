package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"askgate/internal/chat"
	"askgate/internal/store/internal/sqlkit"
)

const conversationColumns = `id, owner_id, title, created_at, updated_at`

const (
	insertConversationSQL = `INSERT INTO conversations (` + conversationColumns + `) VALUES ($1, $2, $3, $4, $5)`

	conversationsByIDSQL = `SELECT ` + conversationColumns + ` FROM conversations
WHERE id = ANY($1) AND owner_id = $2`

	countConversationsSQL = `SELECT count(*) FROM conversations WHERE owner_id = $1`

	renameConversationSQL = `UPDATE conversations SET title = $1, updated_at = greatest(updated_at, $2)
WHERE id = $3 AND owner_id = $4
RETURNING ` + conversationColumns

	deleteConversationSQL = `DELETE FROM conversations WHERE id = $1 AND owner_id = $2`
)

// conversationKeyset is the order of a user's conversations.
var conversationKeyset = sqlkit.Keyset{Time: "updated_at", ID: "id", Desc: true}

// listConversationsSQL holds the query of ListConversations for each
// shape of page. Arguments: owner, the cursors, limit.
var listConversationsSQL [sqlkit.Variants]string

func init() {
	for v := range sqlkit.Variant(sqlkit.Variants) {
		param := sqlkit.Dollar(2)
		where := conversationKeyset.Where(v, param)
		listConversationsSQL[v] = `SELECT ` + conversationColumns + ` FROM conversations
WHERE owner_id = $1` + where + `
ORDER BY ` + conversationKeyset.OrderBy(v) + `
LIMIT ` + param()
	}
}

// conversationRow scans conversations with one set of destinations.
type conversationRow struct {
	c    chat.Conversation
	dest []any
	slab sqlkit.Slab[chat.Conversation]
}

func newConversationRow() *conversationRow {
	r := &conversationRow{}
	r.dest = []any{&r.c.ID, &r.c.OwnerID, &r.c.Title, &r.c.CreatedAt, &r.c.UpdatedAt}
	return r
}

// scan reads the current row and returns it as a new Conversation.
func (r *conversationRow) scan(rows pgx.Rows) (*chat.Conversation, error) {
	if err := rows.Scan(r.dest...); err != nil {
		return nil, err
	}
	c := r.slab.New()
	*c = r.c
	c.CreatedAt, c.UpdatedAt = c.CreatedAt.UTC(), c.UpdatedAt.UTC()
	return c, nil
}

// scanConversations reads and closes rows.
func scanConversations(rows pgx.Rows, hint int) ([]*chat.Conversation, error) {
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

// CreateConversation stores c, filling in an empty ID and zero times.
func (s *Store) CreateConversation(ctx context.Context, c *chat.Conversation) error {
	if err := sqlkit.PrepareConversation(c, chat.Now()); err != nil {
		return fmt.Errorf("postgres: create conversation: %w", err)
	}
	if _, err := s.pool.Exec(ctx, insertConversationSQL, c.ID, c.OwnerID, c.Title, c.CreatedAt, c.UpdatedAt); err != nil {
		return fmt.Errorf("postgres: create conversation: %w", err)
	}
	return nil
}

// ConversationsByID returns owner's conversations among ids.
func (s *Store) ConversationsByID(ctx context.Context, owner string, ids []string) ([]*chat.Conversation, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, conversationsByIDSQL, ids, owner)
	if err != nil {
		return nil, fmt.Errorf("postgres: conversations by id: %w", err)
	}
	cs, err := scanConversations(rows, len(ids))
	if err != nil {
		return nil, fmt.Errorf("postgres: conversations by id: %w", err)
	}
	return cs, nil
}

// ListConversations returns a page of owner's conversations, most
// recently updated first.
func (s *Store) ListConversations(ctx context.Context, owner string, p chat.Page) (*chat.ConversationPage, error) {
	rows, err := s.pool.Query(ctx, listConversationsSQL[sqlkit.VariantOf(p)], listConversationsArgs(owner, p)...)
	if err != nil {
		return nil, fmt.Errorf("postgres: list conversations: %w", err)
	}
	return conversationPage(rows, p)
}

// listConversationsArgs returns the arguments of listConversationsSQL.
func listConversationsArgs(owner string, p chat.Page) []any {
	args := make([]any, 0, 6)
	args = append(args, owner)
	args = sqlkit.AppendCursorArgs(args, p, sqlkit.Time)
	return append(args, p.Limit+1)
}

// conversationPage reads the rows of listConversationsSQL into page p.
func conversationPage(rows pgx.Rows, p chat.Page) (*chat.ConversationPage, error) {
	cs, err := scanConversations(rows, p.Limit+1)
	if err != nil {
		return nil, fmt.Errorf("postgres: list conversations: %w", err)
	}
	page := &chat.ConversationPage{}
	page.Conversations, page.PageInfo = chat.Finish(p, cs)
	return page, nil
}

// ListConversationsCounted is ListConversations and CountConversations in
// one round trip to the server, for a list shown with its total.
func (s *Store) ListConversationsCounted(ctx context.Context, owner string, p chat.Page) (*chat.ConversationPage, int, error) {
	b := &pgx.Batch{}
	b.Queue(countConversationsSQL, owner)
	b.Queue(listConversationsSQL[sqlkit.VariantOf(p)], listConversationsArgs(owner, p)...)
	br := s.pool.SendBatch(ctx, b)
	defer br.Close()
	var n int
	if err := br.QueryRow().Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("postgres: count conversations: %w", err)
	}
	rows, err := br.Query()
	if err != nil {
		return nil, 0, fmt.Errorf("postgres: list conversations: %w", err)
	}
	page, err := conversationPage(rows, p)
	if err != nil {
		return nil, 0, err
	}
	if err := br.Close(); err != nil {
		return nil, 0, fmt.Errorf("postgres: list conversations: %w", err)
	}
	return page, n, nil
}

// CountConversations returns how many conversations owner has.
func (s *Store) CountConversations(ctx context.Context, owner string) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, countConversationsSQL, owner).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: count conversations: %w", err)
	}
	return n, nil
}

// RenameConversation sets the title of owner's conversation id and bumps
// its UpdatedAt.
func (s *Store) RenameConversation(ctx context.Context, owner, id, title string) (*chat.Conversation, error) {
	rows, err := s.pool.Query(ctx, renameConversationSQL, title, chat.Now(), id, owner)
	if err != nil {
		return nil, fmt.Errorf("postgres: rename conversation: %w", err)
	}
	cs, err := scanConversations(rows, 1)
	if err != nil {
		return nil, fmt.Errorf("postgres: rename conversation: %w", err)
	}
	if len(cs) == 0 {
		return nil, chat.ErrNotFound
	}
	return cs[0], nil
}

// DeleteConversation removes owner's conversation id and its messages.
func (s *Store) DeleteConversation(ctx context.Context, owner, id string) error {
	tag, err := s.pool.Exec(ctx, deleteConversationSQL, id, owner)
	if err != nil {
		return fmt.Errorf("postgres: delete conversation: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return chat.ErrNotFound
	}
	return nil
}
