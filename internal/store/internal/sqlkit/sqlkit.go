// Package sqlkit holds what askgate's SQL stores share: new ids, the one
// normal form of a stored time, the checks made on input before it is
// written, and the keyset clauses of a page.
package sqlkit

import (
	"cmp"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"askgate/internal/chat"
)

// NewID returns a new random, time-ordered id: a UUIDv7 string.
func NewID() string {
	return uuid.Must(uuid.NewV7()).String()
}

// Time returns t as every store keeps it: UTC, truncated to the microsecond.
// The zero time stays zero.
func Time(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

// Before returns the stored form of an exclusive upper bound t: t in UTC,
// rounded up to the microsecond. A stored time, a whole number of
// microseconds, is less than it exactly when it is before t.
func Before(t time.Time) time.Time {
	u := t.UTC().Truncate(time.Microsecond)
	if u.Before(t) {
		u = u.Add(time.Microsecond)
	}
	return u
}

// PrepareConversation checks c before it is created and fills in what the
// store owes it: an empty ID and zero CreatedAt and UpdatedAt (with now).
// The times of c are normalized with Time so that c equals what is stored.
func PrepareConversation(c *chat.Conversation, now time.Time) error {
	if c == nil {
		return errors.New("nil conversation")
	}
	if c.OwnerID == "" {
		return errors.New("conversation has no owner")
	}
	if c.ID == "" {
		c.ID = NewID()
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now
	}
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = now
	}
	c.CreatedAt, c.UpdatedAt = Time(c.CreatedAt), Time(c.UpdatedAt)
	return nil
}

// PrepareMessages checks msgs before they are added and fills in empty IDs
// and zero CreatedAt (with now). It returns the id of the conversation they
// all belong to, which is msgs[0].ConversationID; a message with an empty
// ConversationID is taken to belong to it too. An empty id names no
// conversation: the error is chat.ErrNotFound. Times are normalized with
// Time. With no messages, it returns "" and no error.
func PrepareMessages(msgs []*chat.Message, now time.Time) (string, error) {
	if len(msgs) == 0 {
		return "", nil
	}
	if msgs[0] == nil {
		return "", errors.New("nil message")
	}
	conv := msgs[0].ConversationID
	if conv == "" {
		return "", chat.ErrNotFound
	}
	for _, m := range msgs {
		if m == nil {
			return "", errors.New("nil message")
		}
		switch m.ConversationID {
		case conv:
		case "":
			m.ConversationID = conv
		default:
			return "", errors.New("messages of several conversations added at once")
		}
		if m.ID == "" {
			m.ID = NewID()
		}
		if m.CreatedAt.IsZero() {
			m.CreatedAt = now
		}
		m.CreatedAt = Time(m.CreatedAt)
		if m.CompletedAt != nil {
			t := Time(*m.CompletedAt)
			m.CompletedAt = &t
		}
	}
	return conv, nil
}

// PrepareExchange checks ex before AddExchange stores it for owner and
// fills in what the store owes it, as PrepareConversation and
// PrepareMessages do, with the same now for every time. It returns the id
// of the conversation the messages go in.
//
// A new ex.Conversation must be owner's, and the messages go in it; its
// UpdatedAt is made no earlier than their CreatedAt, as if they had
// bumped it. The answer must sort after the question (see
// chat.Message.Cursor): a zero answer CreatedAt becomes the later of now
// and the question's, and new ids are taken in order, question first, so
// that only given times or ids can break the rule, which is an error.
func PrepareExchange(owner string, ex *chat.Exchange, now time.Time) (string, error) {
	if ex == nil || ex.Question == nil || ex.Answer == nil {
		return "", errors.New("exchange without a question and an answer")
	}
	q, a := ex.Question, ex.Answer
	c := ex.Conversation
	if c != nil {
		if c.OwnerID != owner {
			return "", fmt.Errorf("new conversation of %q stored for %q", c.OwnerID, owner)
		}
		if err := PrepareConversation(c, now); err != nil {
			return "", err
		}
		switch q.ConversationID {
		case c.ID:
		case "":
			q.ConversationID = c.ID
		default:
			return "", errors.New("question not in the new conversation")
		}
	}
	if a.CreatedAt.IsZero() && q.CreatedAt.After(now) {
		a.CreatedAt = q.CreatedAt
	}
	conv, err := PrepareMessages([]*chat.Message{q, a}, now)
	if err != nil {
		return "", err
	}
	if cmp.Or(a.CreatedAt.Compare(q.CreatedAt), strings.Compare(a.ID, q.ID)) <= 0 {
		return "", errors.New("answer does not sort after its question")
	}
	if c != nil && c.UpdatedAt.Before(a.CreatedAt) {
		c.UpdatedAt = a.CreatedAt
	}
	return conv, nil
}

// PrepareAnswer checks a before UpdateAnswer writes it. Its CompletedAt is
// normalized with Time so that a equals what is stored.
func PrepareAnswer(a *chat.Message) error {
	if a == nil {
		return errors.New("nil message")
	}
	if a.CompletedAt != nil {
		t := Time(*a.CompletedAt)
		a.CompletedAt = &t
	}
	return nil
}

// LatestCreatedAt returns the latest CreatedAt among msgs, or zero.
func LatestCreatedAt(msgs []*chat.Message) time.Time {
	var t time.Time
	for _, m := range msgs {
		if m.CreatedAt.After(t) {
			t = m.CreatedAt
		}
	}
	return t
}
