package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"askgate/internal/chat"
	"askgate/internal/store/internal/sqlkit"
)

// answerColumns lists the columns of an answer that UpdateAnswer writes.
var answerColumns = []string{
	"content", "status", "model", "completed_at", "prompt_tokens", "completion_tokens", "total_tokens", "error",
}

var (
	// insertKeySQL takes an owner's idempotency key, unless it is taken.
	insertKeySQL = `INSERT INTO idempotency_keys (owner_id, key, question_id, answer_id, created_at)
VALUES (?, ?, ?, ?, ?)
ON CONFLICT (owner_id, key) DO NOTHING`

	// exchangeByKeySQL reads the question and the answer that an owner's
	// idempotency key names, in that order.
	exchangeByKeySQL = `SELECT ` + columns("m") + `
FROM idempotency_keys AS k
	JOIN messages AS m ON m.id IN (k.question_id, k.answer_id)
	JOIN conversations AS c ON c.id = m.conversation_id
WHERE k.owner_id = ? AND k.key = ? AND +c.owner_id = ?
ORDER BY m.id = k.answer_id`

	// updateAnswerSQL writes answerColumns to owner's answer while it
	// streams. Arguments: answerColumns, the answer's id, owner.
	updateAnswerSQL = `UPDATE messages AS m SET ` + strings.Join(answerColumns, " = ?, ") + ` = ?
FROM conversations AS c
WHERE m.id = ? AND m.status = 'STREAMING' AND c.id = m.conversation_id AND +c.owner_id = ?`

	// touchAnswerConversationSQL bumps the UpdatedAt of the conversation
	// of owner's answer, while the answer streams.
	touchAnswerConversationSQL = `UPDATE conversations SET updated_at = max(updated_at, ?)
WHERE id = (SELECT conversation_id FROM messages WHERE id = ? AND status = 'STREAMING') AND owner_id = ?`

	interruptAnswersSQL = `UPDATE messages SET status = 'FAILED', error = ?, completed_at = ?
WHERE status = 'STREAMING'`

	// streamingAnswersSQL reads the first answers still streaming, oldest
	// first, in order from the partial index messages_streaming, and their
	// owners by the conversations' primary key. Arguments: the bound of
	// created_at, limit.
	streamingAnswersSQL = `SELECT m.id, m.conversation_id, c.owner_id, m.created_at
FROM messages AS m JOIN conversations AS c ON c.id = m.conversation_id
WHERE m.status = 'STREAMING' AND m.created_at < ?
ORDER BY m.created_at, m.id
LIMIT ?`
)

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

// AddExchange stores ex.Question and ex.Answer, and ex.Conversation if
// set, in one transaction, and bumps the conversation's UpdatedAt. With
// an idempotency key that owner already used, it stores nothing and loads
// the pair stored then (and its conversation, when ex.Conversation is set)
// into ex instead.
//
// The key is looked up first, outside the transaction and without the
// write lock, since a retry is the usual reason for a key seen before; it
// is taken last, inside. Two calls with one key cannot both take it: the
// second finds it taken, rolls back and loads the first one's pair.
func (s *Store) AddExchange(ctx context.Context, owner string, ex *chat.Exchange) (created bool, err error) {
	if ex == nil {
		return false, errors.New("sqlite: add exchange: nil exchange")
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
		return false, fmt.Errorf("sqlite: add exchange: %w", err)
	}
	err = s.insertExchange(ctx, owner, conv, ex, now)
	switch {
	case errors.Is(err, errKeyTaken):
		found, err := s.loadExchange(ctx, owner, ex)
		if err == nil && !found {
			err = errors.New("sqlite: add exchange: the exchange that took the idempotency key is gone")
		}
		return false, err
	case errors.Is(err, chat.ErrNotFound):
		return false, chat.ErrNotFound
	case err != nil:
		return false, fmt.Errorf("sqlite: add exchange: %w", err)
	}
	return true, nil
}

// insertExchange is the transaction of AddExchange.
func (s *Store) insertExchange(ctx context.Context, owner, conv string, ex *chat.Exchange, now time.Time) (err error) {
	var stmts [4]*sql.Stmt
	for i, query := range []string{insertConversationSQL, touchConversationSQL, insertMessageSQL, insertKeySQL} {
		if stmts[i], err = s.writeStmts.get(ctx, query); err != nil {
			return err
		}
	}
	insertConv, touch, insert, insertKey := stmts[0], stmts[1], stmts[2], stmts[3]

	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE: see Open
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	q, a := ex.Question, ex.Answer
	if c := ex.Conversation; c != nil {
		_, err = tx.StmtContext(ctx, insertConv).ExecContext(ctx, c.ID, c.OwnerID, c.Title, micros(c.CreatedAt), micros(c.UpdatedAt))
		if err != nil {
			return err
		}
	} else {
		updated := now
		if a.CreatedAt.After(updated) { // the answer is the later message
			updated = a.CreatedAt
		}
		n, err := rowsAffected(tx.StmtContext(ctx, touch).ExecContext(ctx, micros(updated), conv, owner))
		if err != nil {
			return err
		}
		if n == 0 {
			return chat.ErrNotFound
		}
	}
	ins := tx.StmtContext(ctx, insert)
	for _, m := range []*chat.Message{q, a} {
		if _, err := ins.ExecContext(ctx, messageArgs(m)...); err != nil {
			return err
		}
	}
	if ex.IdempotencyKey != "" {
		n, err := rowsAffected(tx.StmtContext(ctx, insertKey).ExecContext(ctx, owner, ex.IdempotencyKey, q.ID, a.ID, micros(now)))
		if err != nil {
			return err
		}
		if n == 0 {
			return errKeyTaken
		}
	}
	return tx.Commit()
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
	rows, err := s.query(ctx, exchangeByKeySQL, owner, ex.IdempotencyKey, owner)
	if err != nil {
		return false, fmt.Errorf("sqlite: add exchange: %w", err)
	}
	ms, err := scanMessages(rows, 2)
	if err != nil {
		return false, fmt.Errorf("sqlite: add exchange: %w", err)
	}
	switch len(ms) {
	case 0:
		return false, nil
	case 2:
	default:
		return false, fmt.Errorf("sqlite: add exchange: idempotency key names %d messages", len(ms))
	}
	if ex.Conversation != nil {
		cs, err := s.ConversationsByID(ctx, owner, []string{ms[0].ConversationID})
		if err != nil {
			return false, err
		}
		if len(cs) != 1 {
			return false, errors.New("sqlite: add exchange: the conversation of an idempotency key is gone")
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
		return false, fmt.Errorf("sqlite: update answer: %w", err)
	}
	args := append(answerArgs(a), a.ID, owner)
	update, err := s.writeStmts.get(ctx, updateAnswerSQL)
	if err != nil {
		return false, fmt.Errorf("sqlite: update answer: %w", err)
	}
	if a.Status == chat.StatusStreaming {
		n, err := rowsAffected(update.ExecContext(ctx, args...))
		if err != nil {
			return false, fmt.Errorf("sqlite: update answer: %w", err)
		}
		return n == 1, nil
	}

	touch, err := s.writeStmts.get(ctx, touchAnswerConversationSQL)
	if err != nil {
		return false, fmt.Errorf("sqlite: update answer: %w", err)
	}
	tx, err := s.write.BeginTx(ctx, nil) // BEGIN IMMEDIATE: see Open
	if err != nil {
		return false, fmt.Errorf("sqlite: update answer: %w", err)
	}
	defer tx.Rollback() // a no-op after Commit
	// The bump finds out whether the answer is owner's and streaming;
	// with writes serialized, the update that follows then succeeds.
	n, err := rowsAffected(tx.StmtContext(ctx, touch).ExecContext(ctx, micros(chat.Now()), a.ID, owner))
	if err == nil && n == 1 {
		n, err = rowsAffected(tx.StmtContext(ctx, update).ExecContext(ctx, args...))
	}
	if err == nil && n == 1 {
		err = tx.Commit()
	}
	if err != nil {
		return false, fmt.Errorf("sqlite: update answer: %w", err)
	}
	return n == 1, nil
}

// InterruptAnswers ends every answer still STREAMING as FAILED with the
// error errMessage, and returns how many it ended.
func (s *Store) InterruptAnswers(ctx context.Context, errMessage string) (int, error) {
	st, err := s.writeStmts.get(ctx, interruptAnswersSQL)
	if err != nil {
		return 0, fmt.Errorf("sqlite: interrupt answers: %w", err)
	}
	n, err := rowsAffected(st.ExecContext(ctx, nullString(errMessage), micros(chat.Now())))
	if err != nil {
		return 0, fmt.Errorf("sqlite: interrupt answers: %w", err)
	}
	return int(n), nil
}

// StreamingAnswers returns up to limit answers still STREAMING, whoever
// owns them, created before createdBefore, oldest first (ties by id).
func (s *Store) StreamingAnswers(ctx context.Context, createdBefore time.Time, limit int) ([]chat.AnswerRef, error) {
	if limit <= 0 {
		return []chat.AnswerRef{}, nil
	}
	rows, err := s.query(ctx, streamingAnswersSQL, micros(sqlkit.Before(createdBefore)), limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: streaming answers: %w", err)
	}
	defer rows.Close()
	refs := make([]chat.AnswerRef, 0, min(limit, 64))
	var created int64
	for rows.Next() {
		var r chat.AnswerRef
		if err := rows.Scan(&r.ID, &r.ConversationID, &r.OwnerID, &created); err != nil {
			return nil, fmt.Errorf("sqlite: streaming answers: %w", err)
		}
		r.CreatedAt = fromMicros(created)
		refs = append(refs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: streaming answers: %w", err)
	}
	return refs, nil
}

// rowsAffected returns the number of rows that the statement whose
// result is res changed, or err.
func rowsAffected(res sql.Result, err error) (int64, error) {
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
