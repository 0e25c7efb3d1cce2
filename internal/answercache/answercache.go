// Package answercache keeps complete answers to first questions, so that the
// same first question, asked again of the same model with the same system
// prompt, is answered without calling the language model (see
// answers.Options.Cache). Memory keeps them in process; Redis shares them
// between instances.
//
// A cache is cache-aside: the caller looks an answer up with Get and, on a
// miss, generates it and stores it with Put. Entries expire after the
// cache's TTL. Every implementation is safe for concurrent use.
package answercache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"askgate/internal/chat"
)

// Version is the version of the keys and of the stored entries: a change
// of either (what goes into Key, the fields of Entry) takes a new version,
// so that no instance reads an entry it does not understand.
const Version = "v1"

// Cache keeps answers by key (see Key).
type Cache interface {
	// Get returns the entry stored under key, or nil on a miss (none, or
	// expired). An error means the cache could not be asked; the caller
	// treats it as a miss.
	Get(ctx context.Context, key string) (*Entry, error)
	// Put stores e under key for the cache's TTL, replacing any entry.
	Put(ctx context.Context, key string, e *Entry) error
}

// Entry is a cached answer: its text, and for information the model that
// generated it and what that cost then.
type Entry struct {
	Content string `json:"content"`
	// Model is the model that generated the answer, as the backend named
	// it.
	Model string `json:"model,omitempty"`
	// Usage is what generating the answer took, when the backend said;
	// serving it from the cache takes nothing.
	Usage *chat.TokenUsage `json:"usage,omitempty"`
	// CreatedAt is when the answer was stored.
	CreatedAt time.Time `json:"createdAt"`
}

// Question is what a cached answer answers: the first question of a
// conversation (no history), asked of Model with SystemPrompt and at most
// MaxTokens (0: the backend's default).
type Question struct {
	Model        string
	SystemPrompt string
	MaxTokens    int
	Text         string
}

// Key returns the cache key of q: the hex SHA-256 of its fields, with the
// question's text normalized by Normalize. Everything that shapes the
// answer is in it; case and punctuation are kept, so only questions that
// read the same share an answer.
func Key(q Question) string {
	b, _ := json.Marshal([]any{Version, q.Model, q.SystemPrompt, q.MaxTokens, Normalize(q.Text)})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Normalize returns question with its leading and trailing white space
// removed and every other run of white space (spaces, tabs, newlines)
// replaced by one space. Nothing else changes: "Paris?" and "paris?" are
// different questions.
func Normalize(question string) string {
	return strings.Join(strings.Fields(question), " ")
}

// size is the memory an entry takes in a Memory cache, roughly.
func (e *Entry) size(key string) int {
	return len(key) + len(e.Content) + len(e.Model) + 128
}
