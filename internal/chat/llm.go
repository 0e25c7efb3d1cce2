package chat

import "context"

// LLM is a language model backend: an OpenAI-compatible Chat Completions
// server (internal/llm.Client) or the built-in demo backend
// (internal/llm.Demo). Implementations are safe for concurrent use.
type LLM interface {
	// Models lists the models the backend offers, the default first.
	Models(ctx context.Context) ([]Model, error)
	// Complete starts generating a reply to req and returns once the
	// backend has accepted the request, retrying a refusal (429, 5xx) or
	// a failed connection with backoff before that. The text then arrives
	// through the returned stream. Cancelling ctx stops the generation and
	// closes the upstream request. Errors are *Error values with code
	// UPSTREAM_UNAVAILABLE (or BAD_USER_INPUT for an unknown model) whose
	// messages are safe to show; upstream bodies only go in the cause.
	Complete(ctx context.Context, req CompletionRequest) (CompletionStream, error)
}

// Model is a language model a backend offers.
type Model struct {
	// ID names the model in requests, e.g. "gpt-4o-mini".
	ID string
	// OwnedBy is the organisation that owns the model, when known.
	OwnedBy string
	// Default is set on the model answers use when none is asked for.
	// Backends leave it unset; answers.Manager sets it.
	Default bool
}

// The roles of a prompt message, as Chat Completions names them.
const (
	PromptSystem    = "system"
	PromptUser      = "user"
	PromptAssistant = "assistant"
)

// PromptMessage is one message of a prompt.
type PromptMessage struct {
	// Role is PromptSystem, PromptUser or PromptAssistant.
	Role    string
	Content string
}

// CompletionRequest asks a backend for the next assistant message.
type CompletionRequest struct {
	// Model is the model id; empty means the backend's default.
	Model string
	// Messages is the prompt: an optional system message, the
	// conversation's history and the question last.
	Messages []PromptMessage
	// MaxTokens caps the reply's length; zero means the backend's default.
	MaxTokens int
}

// CompletionStream is a reply being generated. It is used by one goroutine.
type CompletionStream interface {
	// Next returns the next piece of text. After the last piece it returns
	// io.EOF; a failure (the stream was cut, no first token in time, a
	// stall between tokens, ctx cancelled) returns an *Error with code
	// UPSTREAM_UNAVAILABLE, or ctx's error when ctx ended.
	Next() (string, error)
	// Model is the model that generated the reply, as the backend named
	// it; valid once Next has returned any piece or io.EOF.
	Model() string
	// Usage is the tokens used, when the backend reported them (the final
	// chunk's usage); valid after io.EOF, nil when unknown.
	Usage() *TokenUsage
	// Close releases the stream and closes the upstream request. It is
	// safe to call more than once.
	Close() error
}
