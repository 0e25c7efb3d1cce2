package llm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"askgate/internal/chat"
	"askgate/internal/llm"
)

// demoText streams the demo's reply to question and returns it.
func demoText(t testing.TB, d *llm.Demo, question string) (string, chat.CompletionStream) {
	t.Helper()
	s, err := d.Complete(t.Context(), ask("", question))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	pieces, err := readAll(t, s)
	if err != io.EOF {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
	for i, p := range pieces[1:] {
		if p[0] != ' ' && p[0] != '\n' {
			t.Fatalf("piece %d = %q, want a word piece led by white space", i+1, p)
		}
	}
	return strings.Join(pieces, ""), s
}

func TestDemoReply(t *testing.T) {
	d := llm.NewDemo(llm.DemoOptions{Pace: -1})
	questions := []string{
		"What is the capital of France?",
		"hi",
		"",
		"Why is the sky blue? " + strings.Repeat("Please explain in great detail. ", 40),
		"Écris-moi un poème sur la mer, s'il te plaît.",
		"How do I configure the gateway?",
		"1 + 1 = ?",
		"Tell me a joke",
	}
	replies := make(map[string]bool)
	for _, q := range questions {
		t.Run(fmt.Sprintf("%.20s", q), func(t *testing.T) {
			text, s := demoText(t, d, q)
			again, _ := demoText(t, d, q)
			if text != again {
				t.Errorf("two replies to the same question differ:\n%s\n%s", text, again)
			}
			if want := llm.DemoReply(ask("", q).Messages); text != want {
				t.Errorf("streamed text = %q, DemoReply = %q", text, want)
			}
			for _, want := range []string{"askgate's built-in demo backend", "ASKGATE_LLM_BASE_URL"} {
				if !strings.Contains(text, want) {
					t.Errorf("reply lacks %q:\n%s", want, text)
				}
			}
			if !strings.Contains(strings.Join(strings.Fields(text), " "), "not a real language model") {
				t.Errorf("reply does not say it is not a real language model:\n%s", text)
			}
			if words := strings.Fields(q); len(words) > 0 && !strings.Contains(text, words[0]) {
				t.Errorf("reply does not quote the question %q:\n%s", q, text)
			}
			if n := len(strings.Fields(text)); n < 60 || n > 150 {
				t.Errorf("reply has %d words, want 60 to 150", n)
			}
			u := s.Usage()
			if u == nil {
				t.Fatal("Usage = nil after the end")
			}
			prompt := (len("Be brief.") + len(q) + 3) / 4
			if want := (chat.TokenUsage{PromptTokens: prompt, CompletionTokens: len(strings.Fields(text)), TotalTokens: prompt + len(strings.Fields(text))}); *u != want {
				t.Errorf("Usage = %+v, want %+v", *u, want)
			}
			if s.Model() != llm.DemoModel {
				t.Errorf("Model = %q, want %q", s.Model(), llm.DemoModel)
			}
			replies[text[:30]] = true
		})
	}
	if len(replies) < 2 {
		t.Errorf("%d questions got %d distinct replies, want several templates used", len(questions), len(replies))
	}
}

func TestDemoPace(t *testing.T) {
	d := llm.NewDemo(llm.DemoOptions{Pace: 2 * time.Millisecond})
	start := time.Now()
	text, _ := demoText(t, d, "q")
	if min := time.Duration(len(strings.Fields(text))) * 2 * time.Millisecond; time.Since(start) < min {
		t.Errorf("reply took %v, want at least %v at 2 ms a piece", time.Since(start), min)
	}
}

func TestDemoCancel(t *testing.T) {
	d := llm.NewDemo(llm.DemoOptions{Pace: time.Hour})
	ctx, cancel := context.WithCancel(t.Context())
	s, err := d.Complete(ctx, ask("", "q"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	defer s.Close()
	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	if _, err := s.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Next returned %v after the cancel, want at once", d)
	}
	if _, err := s.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next again = %v, want context.Canceled", err)
	}
}

func TestDemoRequests(t *testing.T) {
	d := llm.NewDemo(llm.DemoOptions{})
	models, err := d.Models(t.Context())
	if err != nil || len(models) != 1 || models[0].ID != llm.DemoModel {
		t.Errorf("Models = %+v, %v; want only %q", models, err, llm.DemoModel)
	}
	if _, err := d.Complete(t.Context(), ask("gpt-4o", "q")); chat.ErrorCode(err) != chat.CodeBadUserInput {
		t.Errorf("Complete with another model = %v, want BAD_USER_INPUT", err)
	}
	s, err := d.Complete(t.Context(), ask(llm.DemoModel, "q"))
	if err != nil {
		t.Fatalf("Complete with %q: %v", llm.DemoModel, err)
	}
	s.Close()
	if _, err := s.Next(); err == nil {
		t.Errorf("Next after Close = nil error, want one")
	}
	req := ask("", "q")
	req.MaxTokens = 5
	s, _ = d.Complete(t.Context(), req)
	defer s.Close()
	if pieces, _ := readAll(t, s); len(pieces) != 5 {
		t.Errorf("%d pieces with MaxTokens 5, want 5", len(pieces))
	}
}

func ExampleDemo() {
	d := llm.NewDemo(llm.DemoOptions{Pace: -1}) // no pause between pieces
	s, err := d.Complete(context.Background(), chat.CompletionRequest{
		Messages: []chat.PromptMessage{{Role: chat.PromptUser, Content: "What is askgate?"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	var b strings.Builder
	for {
		piece, err := s.Next()
		if err != nil {
			break
		}
		b.WriteString(piece)
	}
	fmt.Println(s.Model())
	fmt.Println(b.String())
	// Output:
	// askgate-demo
	// You asked: “What is askgate?”. This reply comes from askgate's built-in demo backend, not a real language model, so it cannot answer your question. What it can do is show how an answer travels: streamed piece by piece, saved as it arrives, and replayed to every tab that watches it.
	//
	// To get real answers, point askgate at any OpenAI-compatible Chat Completions server: set ASKGATE_LLM_BASE_URL (for example https://api.openai.com/v1, or http://localhost:11434/v1 for a local Ollama), plus ASKGATE_LLM_API_KEY and ASKGATE_LLM_MODEL when the server needs them, then restart the gateway.
}
