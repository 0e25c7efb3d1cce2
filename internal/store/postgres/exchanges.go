package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"askgate/internal/chat"
	"askgate/internal/store/internal/sqlkit"
)

// answerColumns lists the columns of an answer that UpdateAnswer writes.
var answerColumns = []string{
	"content", "status", "model", "completed_at", "prompt_tokens", "completion_tokens", "total_tokens", "error",
}

var (
	// insertKeySQL takes an owner's idempotency key, unless it is taken.
	// When another transaction has just taken it, it waits for that one to
	// end, and then finds the key taken or free.
	insertKeySQL = `INSERT INTO idempotency_keys (owner_id, key, question_id, answer_id, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (owner_id, key) DO NOTHING`

	// exchangeByKeySQL reads the question and the answer that an owner's
	// idempotency key names, in that order.
	exchangeByKeySQL = `SELECT ` + columns("m") + `
FROM idempotency_keys AS k
	JOIN messages AS m ON m.id IN (k.question_id, k.answer_id)
	JOIN conversations AS c ON c.id = m.conversation_id
WHERE k.owner_id = $1 AND k.key = $2 AND c.owner_id = $1
ORDER BY m.id = k.answer_id`

	// touchAnswerConversationSQL bumps the UpdatedAt of the conversation
	// of owner's answer, while the answer streams. It locks the
	// conversation before the answer is updated, in the order in which
	// DeleteConversation and AddExchange lock them.
	touchAnswerConversationSQL = `UPDATE conversations AS c SET updated_at = greatest(c.updated_at, $1)
FROM messages AS m
WHERE m.id = $2 AND m.status = 'STREAMING' AND c.id = m.conversation_id AND c.owner_id = $3`

	// interruptAnswersSQL locks the answers it ends in the order of their
	// ids, so that processes starting at once cannot deadlock.
	interruptAnswersSQL = `UPDATE messages SET status = 'FAILED', error = $1, completed_at = $2
WHERE id IN (SELECT id FROM messages WHERE status = 'STREAMING' ORDER BY id FOR NO KEY UPDATE)
	AND status = 'STREAMING'`

	// streamingAnswersSQL reads the first answers still streaming, oldest
	// first, in order from the partial index messages_streaming, and their
	// owners by the conversations' primary key. Arguments: the bound of
	// created_at, limit.
	streamingAnswersSQL = `SELECT m.id, m.conversation_id, c.owner_id, m.created_at
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.status = 'STREAMING' AND m.created_at < $1
ORDER BY m.created_at, m.id
LIMIT $2`
)

// updateAnswerSQL writes answerColumns to owner's answer while it streams.
// Arguments: answerColumns, the answer's id, owner.
var updateAnswerSQL = func() string {
	param := sqlkit.Dollar(1)
	set := make([]string, len(answerColumns))
	for i, col := range answerColumns {
		set[i] = col + " = " + param()
	}
	return `UPDATE messages AS m SET ` + strings.Join(set, ", ") + `
FROM conversations AS c
WHERE m.id = ` + param() + ` AND m.status = 'STREAMING' AND c.id = m.conversation_id AND c.owner_id = ` + param()
}()

// answerArgs returns the values of a's answerColumns, in that order.
func answerArgs(a *chat.Message) []any {
	all := messageArgs(a)
	args := make([]any, len(answerColumns), len(answerColumns)+2) // room for id, owner
	for i, col := range answerColumns {
		args[i] = all[slices.Index(messageColumns, col)]
	}
	return args
}

// errKeyTaken says that another exchange took the idempotency key first.
var errKeyTaken = errors.New("idempotency key taken")

// errNotUpdated makes UpdateAnswer roll back.
var errNotUpdated = errors.New("answer not updated")

// AddExchange stores ex.Question and ex.Answer, and ex.Conversation if
// set, in one transaction, and bumps the conversation's UpdatedAt. With
// an idempotency key that owner already used, it stores nothing and loads
// the pair stored then (and its conversation, when ex.Conversation is set)
// into ex instead.
//
// The key is looked up first, outside the transaction, since a retry is
// the usual reason for a key seen before. The transaction then sends every
// write in one batch, the key taken last. Two calls with one key cannot
// both take it: the second waits for the first to commit, finds the key
// taken, rolls back and loads the first one's pair.
func (s *Store) AddExchange(ctx context.Context, owner string, ex *chat.Exchange) (bool, error) {
	if ex == nil {
		return false, errors.New("postgres: add exchange: nil exchange")
	}
	if ex.IdempotencyKey != "" {
		found, err := s.loadExchange(ctx, owner, ex)
		if err != nil || found {
			return false, err
		}
	}
	now := chat.Now()
	conv, err := sqlkit.PrepareExchange(owner, ex, now)
	if errors.Is(err, chat.ErrNotFound) {
		return false, chat.ErrNotFound
	}
	if err != nil {
		return false, fmt.Errorf("postgres: add exchange: %w", err)
	}
	q, a := ex.Question, ex.Answer
	updated := now
	if a.CreatedAt.After(updated) { // the answer is the later message
		updated = a.CreatedAt
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		if c := ex.Conversation; c != nil {
			b.Queue(insertConversationSQL, c.ID, c.OwnerID, c.Title, c.CreatedAt, c.UpdatedAt)
		} else {
			// The update also locks the conversation, as in AddMessages.
			b.Queue(touchConversationSQL, updated, conv, owner)
		}
		b.Queue(insertMessageSQL, messageArgs(q)...)
		b.Queue(insertMessageSQL, messageArgs(a)...)
		if ex.IdempotencyKey != "" {
			b.Queue(insertKeySQL, owner, ex.IdempotencyKey, q.ID, a.ID, now)
		}
		results := tx.SendBatch(ctx, &b)
		err := readExchangeResults(results, ex)
		if cerr := results.Close(); err == nil {
			err = cerr
		}
		return err
	})
	switch {
	case errors.Is(err, errKeyTaken):
		found, err := s.loadExchange(ctx, owner, ex)
		if err == nil && !found {
			err = errors.New("postgres: add exchange: the exchange that took the idempotency key is gone")
		}
		return false, err
	case errors.Is(err, chat.ErrNotFound):
		return false, chat.ErrNotFound
	case err != nil:
		return false, fmt.Errorf("postgres: add exchange: %w", err)
	}
	return true, nil
}

// readExchangeResults reads the results of the batch of AddExchange, in
// order, and stops at the first that fails: ErrNotFound when the
// conversation is not owner's, errKeyTaken when the key is.
func readExchangeResults(results pgx.BatchResults, ex *chat.Exchange) error {
	tag, err := results.Exec() // the conversation
	if err != nil {
		return err
	}
	if ex.Conversation == nil && tag.RowsAffected() == 0 {
		return chat.ErrNotFound
	}
	for range 2 { // the messages
		if _, err := results.Exec(); err != nil {
			return err
		}
	}
	if ex.IdempotencyKey != "" {
		tag, err := results.Exec()
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errKeyTaken
		}
	}
	return nil
}

// LoadExchange loads into ex the pair that owner's idempotency key
// ex.IdempotencyKey names (see chat.Store).
func (s *Store) LoadExchange(ctx context.Context, owner string, ex *chat.Exchange) (bool, error) {
	if ex == nil || ex.IdempotencyKey == "" {
		return false, nil
	}
	return s.loadExchange(ctx, owner, ex)
}

// loadExchange loads into ex the question and the answer that owner's
// idempotency key ex.IdempotencyKey names, and their conversation if
// ex.Conversation is set, and reports whether the key names any.
func (s *Store) loadExchange(ctx context.Context, owner string, ex *chat.Exchange) (bool, error) {
	rows, err := s.pool.Query(ctx, exchangeByKeySQL, owner, ex.IdempotencyKey)
	if err != nil {
		return false, fmt.Errorf("postgres: add exchange: %w", err)
	}
	ms, err := scanMessages(rows, 2)
	if err != nil {
		return false, fmt.Errorf("postgres: add exchange: %w", err)
	}
	switch len(ms) {
	case 0:
		return false, nil
	case 2:
	default:
		return false, fmt.Errorf("postgres: add exchange: idempotency key names %d messages", len(ms))
	}
	if ex.Conversation != nil {
		cs, err := s.ConversationsByID(ctx, owner, []string{ms[0].ConversationID})
		if err != nil {
			return false, err
		}
		if len(cs) != 1 {
			return false, errors.New("postgres: add exchange: the conversation of an idempotency key is gone")
		}
		ex.Conversation = cs[0]
	}
	ex.Question, ex.Answer = ms[0], ms[1]
	return true, nil
}

// UpdateAnswer writes the content, status, model, usage, error and
// completion time of a to owner's answer a.ID while it is STREAMING, and
// reports whether it did.
//
// A checkpoint (a.Status STREAMING) is a single statement that leaves the
// conversation alone. The update that ends the answer also bumps the
// conversation's UpdatedAt, in the same transaction: the conversation has
// changed, as when a message is added.
func (s *Store) UpdateAnswer(ctx context.Context, owner string, a *chat.Message) (bool, error) {
	if err := sqlkit.PrepareAnswer(a); err != nil {
		return false, fmt.Errorf("postgres: update answer: %w", err)
	}
	args := append(answerArgs(a), a.ID, owner)
	if a.Status == chat.StatusStreaming {
		tag, err := s.pool.Exec(ctx, updateAnswerSQL, args...)
		if err != nil {
			return false, fmt.Errorf("postgres: update answer: %w", err)
		}
		return tag.RowsAffected() == 1, nil
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var b pgx.Batch
		b.Queue(touchAnswerConversationSQL, chat.Now(), a.ID, owner)
		b.Queue(updateAnswerSQL, args...)
		results := tx.SendBatch(ctx, &b)
		defer results.Close()
		for range 2 {
			tag, err := results.Exec()
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				// Not owner's, gone or ended (InterruptAnswers, which
				// takes no lock on the conversation, can end it between
				// the two statements): undo the bump.
				return errNotUpdated
			}
		}
		return results.Close()
	})
	switch {
	case errors.Is(err, errNotUpdated):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("postgres: update answer: %w", err)
	}
	return true, nil
}

// InterruptAnswers ends every answer still STREAMING as FAILED with the
// error errMessage, and returns how many it ended.
func (s *Store) InterruptAnswers(ctx context.Context, errMessage string) (int, error) {
	tag, err := s.pool.Exec(ctx, interruptAnswersSQL, text(errMessage), chat.Now())
	if err != nil {
		return 0, fmt.Errorf("postgres: interrupt answers: %w", err)
	}
	return int(tag.RowsAffected()), nil
}

// StreamingAnswers returns up to limit answers still STREAMING, whoever
// owns them, created before createdBefore, oldest first (ties by id).
func (s *Store) StreamingAnswers(ctx context.Context, createdBefore time.Time, limit int) ([]chat.AnswerRef, error) {
	if limit <= 0 {
		return []chat.AnswerRef{}, nil
	}
	rows, err := s.pool.Query(ctx, streamingAnswersSQL, sqlkit.Before(createdBefore), limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: streaming answers: %w", err)
	}
	defer rows.Close()
	refs := make([]chat.AnswerRef, 0, min(limit, 64))
	for rows.Next() {
		var r chat.AnswerRef
		if err := rows.Scan(&r.ID, &r.ConversationID, &r.OwnerID, &r.CreatedAt); err != nil {
			return nil, fmt.Errorf("postgres: streaming answers: %w", err)
		}
		r.CreatedAt = r.CreatedAt.UTC()
		refs = append(refs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: streaming answers: %w", err)
	}
	return refs, nil
}
