// Package chat holds askgate's domain: users, conversations and messages, the
// errors the gateway reports (each with a code from the public contract), and
// the interfaces that have several implementations, such as Store.
//
// chat imports nothing else of askgate's; every other package depends on it.
package chat

import (
	"context"
	"time"
)

// User is a person known to the gateway, as the user service or the built-in
// directory describes them. The zero value is an anonymous user.
type User struct {
	ID        string
	Name      string
	Email     string
	AvatarURL string
}

// NodeID is the opaque global id of the user (see EncodeNodeID).
func (u *User) NodeID() string { return EncodeNodeID(KindUser, u.ID) }

// Conversation is a thread of messages owned by one user.
type Conversation struct {
	ID        string
	OwnerID   string
	Title     string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NodeID is the opaque global id of the conversation.
func (c *Conversation) NodeID() string { return EncodeNodeID(KindConversation, c.ID) }

// Cursor is the keyset position of the conversation in a list ordered by
// most recently updated first.
func (c *Conversation) Cursor() Cursor { return Cursor{Time: c.UpdatedAt, ID: c.ID} }

// Role says who wrote a message. Its values are the GraphQL enum's names.
type Role string

// The roles of a message.
const (
	RoleUser      Role = "USER"
	RoleAssistant Role = "ASSISTANT"
)

// Status is the lifecycle state of a message. Questions are COMPLETE when
// stored; answers start STREAMING and end COMPLETE, FAILED or CANCELLED.
type Status string

// The states of a message.
const (
	StatusStreaming Status = "STREAMING"
	StatusComplete  Status = "COMPLETE"
	StatusFailed    Status = "FAILED"
	StatusCancelled Status = "CANCELLED"
)

// TokenUsage counts the LLM tokens an answer consumed.
type TokenUsage struct {
	PromptTokens     int
	CompletionTokens int
	TotalTokens      int
}

// Message is one question (role USER) or answer (role ASSISTANT) in a
// conversation.
type Message struct {
	ID             string
	ConversationID string
	Role           Role
	// AuthorID is the user who wrote a question; it is empty for answers.
	AuthorID    string
	Content     string
	Status      Status
	Model       string
	CreatedAt   time.Time
	CompletedAt *time.Time
	Usage       *TokenUsage
	// Error says why an answer FAILED; it is empty otherwise.
	Error string
	// Cached is set on an answer served from the answer cache (see
	// internal/answers) instead of being generated: it is set when the
	// answer is stored and never changes. It is false for questions.
	Cached bool
}

// NodeID is the opaque global id of the message.
func (m *Message) NodeID() string { return EncodeNodeID(KindMessage, m.ID) }

// Cursor is the keyset position of the message in its conversation, which is
// ordered chronologically.
func (m *Message) Cursor() Cursor { return Cursor{Time: m.CreatedAt, ID: m.ID} }

// Now returns the current time as every store keeps it: UTC, truncated to the
// microsecond, so that a timestamp read back equals the one written and
// keyset cursors built from it match exactly.
func Now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// UserDirectory finds user profiles by id: the HTTP user service or the
// built-in directory. Unknown ids are simply absent from the result. An
// implementation that cannot reach its backend returns an error with code
// UPSTREAM_UNAVAILABLE. Implementations are safe for concurrent use.
type UserDirectory interface {
	UsersByID(ctx context.Context, ids []string) ([]*User, error)
}
