package llm

import (
	"context"
	"fmt"
	"hash/fnv"
	"io"
	"strings"
	"time"
	"unicode"

	"askgate/internal/chat"
)

// DemoModel is the id of the demo backend's only model.
const DemoModel = "askgate-demo"

// DefaultDemoPace is the demo backend's default time between two pieces of
// a reply, about the pace of a hosted model.
const DefaultDemoPace = 25 * time.Millisecond

// demoQuoteWords is how many words of the question a demo reply quotes.
const demoQuoteWords = 12

// DemoOptions configure a Demo. The zero value gives the defaults.
type DemoOptions struct {
	// Pace is the time before each piece of a reply: zero means
	// DefaultDemoPace, a negative value no wait at all (for tests).
	Pace time.Duration
}

// Demo is askgate's built-in offline backend, used when no LLM base URL is
// configured. It is not a language model: its reply, 60 to 150 words
// streamed word by word, quotes the question, says plainly that it comes
// from the demo backend and explains how to configure a real one. The
// reply depends only on the prompt.
//
// The zero Demo uses the default options. A Demo is safe for concurrent
// use; its streams start no goroutine.
type Demo struct {
	opts DemoOptions
}

// NewDemo returns a demo backend.
func NewDemo(opts DemoOptions) *Demo {
	return &Demo{opts: opts}
}

// Models returns the only model, DemoModel.
func (d *Demo) Models(ctx context.Context) ([]chat.Model, error) {
	return []chat.Model{{ID: DemoModel, OwnedBy: "askgate"}}, nil
}

// Complete returns the reply to req's last user message. req.Model must be
// empty or DemoModel. ctx governs the whole reply.
func (d *Demo) Complete(ctx context.Context, req chat.CompletionRequest) (chat.CompletionStream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Model != "" && req.Model != DemoModel {
		return nil, chat.Errorf(chat.CodeBadUserInput, "unknown model %q", req.Model)
	}
	if len(req.Messages) == 0 {
		return nil, chat.Errorf(chat.CodeBadUserInput, "the prompt is empty")
	}
	chars := 0
	for _, m := range req.Messages {
		chars += len(m.Content)
	}
	pieces := splitPieces(DemoReply(req.Messages))
	if req.MaxTokens > 0 && len(pieces) > req.MaxTokens {
		pieces = pieces[:req.MaxTokens]
	}
	pace := d.opts.Pace
	if pace == 0 {
		pace = DefaultDemoPace
	}
	return &demoStream{
		ctx:    ctx,
		pieces: pieces,
		pace:   pace,
		usage: chat.TokenUsage{
			PromptTokens:     max((chars+3)/4, 1),
			CompletionTokens: len(pieces),
			TotalTokens:      max((chars+3)/4, 1) + len(pieces),
		},
	}, nil
}

// demoTemplates are the demo replies; %s is the quoted question.
var demoTemplates = []string{
	"You asked: %s. This reply comes from askgate's built-in demo backend, not a real language model, so it cannot answer your question. " +
		"What it can do is show how an answer travels: streamed piece by piece, saved as it arrives, and replayed to every tab that watches it.\n\n" +
		"To get real answers, point askgate at any OpenAI-compatible Chat Completions server: set ASKGATE_LLM_BASE_URL (for example https://api.openai.com/v1, " +
		"or http://localhost:11434/v1 for a local Ollama), plus ASKGATE_LLM_API_KEY and ASKGATE_LLM_MODEL when the server needs them, then restart the gateway.",
	"Thanks for asking %s. I am askgate's built-in demo backend, not a real language model: every reply I give is one of a few fixed texts, picked by a hash of your question, " +
		"so asking again gives the same words.\n\n" +
		"Everything around me is real, though: the question is stored, this answer streams token by token over your subscription, and it is kept even if you close the page. " +
		"Set ASKGATE_LLM_BASE_URL to the base URL of an OpenAI-compatible server (and ASKGATE_LLM_API_KEY if it needs a key) to talk to a real model instead.",
	"Here is what an answer to %s would look like if a model were connected. It is not: this text comes from askgate's built-in demo backend, which is not a real " +
		"language model and makes no attempt to understand your question.\n\n" +
		"The demo exists so that the gateway works offline, out of the box, for development and tests. To switch to a real model, configure ASKGATE_LLM_BASE_URL with an " +
		"OpenAI-compatible Chat Completions endpoint, optionally ASKGATE_LLM_API_KEY and ASKGATE_LLM_MODEL, and start askgate again.",
	"Demo mode: you asked %s, and this is askgate's built-in demo backend replying, not a real language model. No model was consulted and nothing here answers the question; " +
		"the words are a template chosen by a hash of what you typed.\n\n" +
		"The streaming, storage and replay you are watching are the real thing, though. To connect a real model, set ASKGATE_LLM_BASE_URL to an OpenAI-compatible " +
		"base URL (such as https://api.openai.com/v1) and ASKGATE_LLM_API_KEY to its key.",
}

// DemoReply returns the whole reply the demo backend gives to a prompt: the
// text its stream delivers.
func DemoReply(prompt []chat.PromptMessage) string {
	question := ""
	for i := len(prompt) - 1; i >= 0; i-- {
		if prompt[i].Role == chat.PromptUser {
			question = prompt[i].Content
			break
		}
	}
	words := strings.Fields(question)
	quoted := strings.Join(words[:min(len(words), demoQuoteWords)], " ")
	if len(words) > demoQuoteWords {
		quoted += "…"
	}
	h := fnv.New32a()
	h.Write([]byte(strings.Join(words, " ")))
	return fmt.Sprintf(demoTemplates[h.Sum32()%uint32(len(demoTemplates))], "“"+quoted+"”")
}

// splitPieces cuts text into word pieces, each a word with the white space
// before it (" word"), as a tokenizer streams them; joined, they are text.
func splitPieces(text string) []string {
	var pieces []string
	start, inWord := 0, false
	for i, r := range text {
		space := unicode.IsSpace(r)
		if space && inWord {
			pieces = append(pieces, text[start:i])
			start = i
		}
		inWord = !space
	}
	if start < len(text) {
		pieces = append(pieces, text[start:])
	}
	return pieces
}

// demoStream streams a demo reply from the caller's goroutine.
type demoStream struct {
	ctx    context.Context
	pieces []string
	next   int
	pace   time.Duration
	timer  *time.Timer
	usage  chat.TokenUsage
	closed bool
}

// Next waits for the pace, then returns the next piece.
func (s *demoStream) Next() (string, error) {
	if s.closed {
		return "", errClosed
	}
	if err := s.ctx.Err(); err != nil {
		return "", err
	}
	if s.next == len(s.pieces) {
		return "", io.EOF
	}
	if s.pace > 0 {
		if s.timer == nil {
			s.timer = time.NewTimer(s.pace)
		} else {
			s.timer.Reset(s.pace)
		}
		select {
		case <-s.timer.C:
		case <-s.ctx.Done():
			return "", s.ctx.Err()
		}
	}
	s.next++
	return s.pieces[s.next-1], nil
}

// Model returns DemoModel.
func (s *demoStream) Model() string { return DemoModel }

// Usage returns the estimated usage once the reply is complete.
func (s *demoStream) Usage() *chat.TokenUsage {
	if s.next < len(s.pieces) {
		return nil
	}
	u := s.usage
	return &u
}

// Close stops the stream.
func (s *demoStream) Close() error {
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	return nil
}
