package chat

import (
	"context"
	"time"
)

// Store keeps conversations, messages and the built-in directory's users.
//
// Object-level authorization lives here, in the shape of the interface:
// every method that reads or changes a conversation or a message takes the
// id of the user acting (owner) and only ever sees that user's objects.
// Another user's object behaves exactly like a missing one (ErrNotFound, or
// absent from a batch), so no caller can forget the check.
//
// Limits and validation of user input (title length, page sizes) belong to
// the caller; a Store checks only what the database enforces.
// Implementations are safe for concurrent use.
type Store interface {
	// UpsertUser creates or updates a user of the built-in directory.
	UpsertUser(ctx context.Context, u *User) error
	// UsersByID returns the built-in directory's users with the given ids,
	// in any order; unknown ids are absent.
	UsersByID(ctx context.Context, ids []string) ([]*User, error)

	// CreateConversation stores c. The store fills in an empty ID and zero
	// CreatedAt/UpdatedAt (with Now). c.OwnerID must be set.
	CreateConversation(ctx context.Context, c *Conversation) error
	// ConversationsByID returns owner's conversations among ids, in any
	// order; ids that are missing or not owner's are absent.
	ConversationsByID(ctx context.Context, owner string, ids []string) ([]*Conversation, error)
	// ListConversations returns a page of owner's conversations, most
	// recently updated first (ties broken by id, descending).
	ListConversations(ctx context.Context, owner string, p Page) (*ConversationPage, error)
	// CountConversations returns how many conversations owner has.
	CountConversations(ctx context.Context, owner string) (int, error)
	// RenameConversation sets the title of owner's conversation id and
	// bumps its UpdatedAt; ErrNotFound if there is no such conversation.
	RenameConversation(ctx context.Context, owner, id, title string) (*Conversation, error)
	// DeleteConversation removes owner's conversation id with all its
	// messages; ErrNotFound if there is no such conversation.
	DeleteConversation(ctx context.Context, owner, id string) error

	// AddMessages stores msgs, all in owner's conversation
	// msgs[0].ConversationID, in one transaction, and bumps the
	// conversation's UpdatedAt. The store fills in empty IDs and zero
	// CreatedAt. ErrNotFound if the conversation is not owner's.
	AddMessages(ctx context.Context, owner string, msgs ...*Message) error
	// MessagesByID returns the messages among ids that are in owner's
	// conversations, in any order.
	MessagesByID(ctx context.Context, owner string, ids []string) ([]*Message, error)
	// ListMessages returns, for each of owner's conversations in
	// conversationIDs, the page p of its messages in chronological order
	// (ties broken by id): one MessagePage per id, in the order of ids. A
	// conversation that is not owner's gets an empty page. It is one
	// round trip whatever the number of conversations.
	ListMessages(ctx context.Context, owner string, conversationIDs []string, p Page) ([]*MessagePage, error)
	// CountMessages returns the number of messages of each of owner's
	// conversations among conversationIDs, in one round trip.
	CountMessages(ctx context.Context, owner string, conversationIDs []string) (map[string]int, error)

	// AddExchange stores a question and its answer in one transaction:
	// ex.Question (role USER, status COMPLETE) and ex.Answer (role
	// ASSISTANT, normally STREAMING), both in owner's conversation
	// ex.Question.ConversationID, and bumps the conversation's UpdatedAt.
	// When ex.Conversation is set, that conversation is created in the
	// same transaction first (as CreateConversation would) and the
	// messages go in it. The store fills in empty IDs and zero times.
	//
	// With a non-empty ex.IdempotencyKey, only the first call of an owner
	// with that key stores anything: a later one replaces ex.Question and
	// ex.Answer with the stored pair (as they are now) and returns
	// created false. ErrNotFound if the conversation is not owner's.
	AddExchange(ctx context.Context, owner string, ex *Exchange) (created bool, err error)
	// LoadExchange fills ex.Question and ex.Answer (and ex.Conversation,
	// when set) with the pair that owner's ex.IdempotencyKey names, as
	// they are now, and reports whether the key names one.
	LoadExchange(ctx context.Context, owner string, ex *Exchange) (bool, error)
	// UpdateAnswer writes a.Content, Status, Model, Usage, Error and
	// CompletedAt to owner's answer a.ID, but only while the stored answer
	// is STREAMING: it returns false (and changes nothing) when the
	// answer has already ended or is gone, so that a late checkpoint never
	// overwrites a final state.
	UpdateAnswer(ctx context.Context, owner string, a *Message) (bool, error)
	// InterruptAnswers ends every answer still STREAMING, whoever owns it,
	// as FAILED with the given error and CompletedAt now, keeping the
	// content saved so far, and returns how many it ended. A process runs
	// it at start-up for the answers a previous one left behind.
	InterruptAnswers(ctx context.Context, errMessage string) (int, error)

	// StreamingAnswers returns up to limit answers still STREAMING, whoever
	// owns them, created before createdBefore, oldest first: the answers a
	// gateway instance checks for a dead generator (see answers.Manager).
	StreamingAnswers(ctx context.Context, createdBefore time.Time, limit int) ([]AnswerRef, error)

	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the store's connections.
	Close() error
}

// Exchange is a question and its answer, stored together by AddExchange.
type Exchange struct {
	// Conversation, when set, is a new conversation to create with the
	// messages (startConversation with a question).
	Conversation *Conversation
	// IdempotencyKey makes a retried ask store nothing new; empty means
	// none.
	IdempotencyKey string
	// NoCache keeps the answer cache out of this ask (see
	// answers.Options.Cache): the answer is neither looked up nor stored
	// there. Stores ignore it.
	NoCache  bool
	Question *Message
	Answer   *Message
}

// AnswerRef names an answer and its owner.
type AnswerRef struct {
	ID             string
	ConversationID string
	OwnerID        string
	CreatedAt      time.Time
}
