package llmtest_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"askgate/internal/chat"
	"askgate/internal/llm"
	"askgate/internal/llm/llmtest"
)

// post sends a raw chat completion call and returns the status and body.
func post(t *testing.T, srv *llmtest.Server, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(srv.URL()+"/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return resp.StatusCode, string(b)
}

func TestServerSpeaksTheProtocol(t *testing.T) {
	srv := llmtest.New(t)
	srv.SetReply("a", "b")
	tests := []struct {
		name       string
		body       string
		wantStatus int
		want, not  []string
	}{
		{
			name:       "stream with usage",
			body:       `{"model":"fake-model","messages":[{"role":"user","content":"12345678"}],"stream":true,"stream_options":{"include_usage":true}}`,
			wantStatus: 200,
			want: []string{`"delta":{"content":"a"}`, `"delta":{"content":"b"}`, `"finish_reason":"stop"`,
				`"usage":{"completion_tokens":2,"prompt_tokens":2,"total_tokens":4}`, "data: [DONE]\n\n"},
		},
		{
			name:       "stream without usage",
			body:       `{"model":"fake-model","messages":[{"role":"user","content":"hi"}],"stream":true}`,
			wantStatus: 200,
			want:       []string{"data: [DONE]\n\n"},
			not:        []string{`"usage"`},
		},
		{name: "unknown model", body: `{"model":"gpt-9","stream":true}`, wantStatus: 404, want: []string{"model_not_found"}},
		{name: "not streaming", body: `{"model":"fake-model"}`, wantStatus: 400},
		{name: "not JSON", body: `{`, wantStatus: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(t, srv, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", status, tt.wantStatus, body)
			}
			for _, w := range tt.want {
				if !strings.Contains(body, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			for _, w := range tt.not {
				if strings.Contains(body, w) {
					t.Errorf("body has %q:\n%s", w, body)
				}
			}
		})
	}
	if got, want := srv.Requests(), len(tests); got != want {
		t.Errorf("Requests = %d, want %d", got, want)
	}
}

func TestServerFaultsByCall(t *testing.T) {
	srv := llmtest.New(t)
	srv.Fail(http.StatusServiceUnavailable, 2)
	srv.On(4, llmtest.Fault{Status: http.StatusTooManyRequests})
	want := []int{503, 503, 200, 429, 200}
	for i, w := range want {
		status, body := post(t, srv, `{"model":"fake-model","stream":true}`)
		if status != w {
			t.Errorf("call %d: status %d, want %d", i+1, status, w)
		}
		if w != 200 && !strings.Contains(body, llmtest.FailureBody) {
			t.Errorf("call %d: body %q lacks FailureBody", i+1, body)
		}
	}
}

// TestServerHold lets a reply through one token at a time, then cancels
// the answer and sees the upstream request closed.
func TestServerHold(t *testing.T) {
	srv := llmtest.New(t)
	srv.SetReply("one", " two", " three")
	srv.Hold()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	c, err := llm.NewClient(srv.URL(), llm.Options{HTTPClient: &http.Client{Transport: tr}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := c.Complete(ctx, chat.CompletionRequest{Messages: []chat.PromptMessage{{Role: chat.PromptUser, Content: "Count."}}})
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	defer s.Close()

	next := make(chan string)
	go func() {
		p, _ := s.Next()
		next <- p
	}()
	select {
	case p := <-next:
		t.Fatalf("Next = %q before any Release", p)
	case <-time.After(50 * time.Millisecond):
	}
	srv.Release(1)
	if p := <-next; p != "one" {
		t.Errorf("Next = %q, want %q", p, "one")
	}

	time.AfterFunc(20*time.Millisecond, cancel) // the second token is still held
	if _, err := s.Next(); !errors.Is(err, context.Canceled) {
		t.Errorf("Next = %v, want context.Canceled", err)
	}
	select {
	case <-srv.Aborted():
	case <-time.After(5 * time.Second):
		t.Fatal("the server never saw the stream closed")
	}
	if got := srv.Aborts(); got != 1 {
		t.Errorf("Aborts = %d, want 1", got)
	}

	srv.Unhold()
	s2, err := c.Complete(t.Context(), chat.CompletionRequest{Messages: []chat.PromptMessage{{Role: chat.PromptUser, Content: "Count."}}})
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	defer s2.Close()
	var text strings.Builder
	for {
		p, err := s2.Next()
		if err != nil {
			if err != io.EOF {
				t.Errorf("Next = %v, want io.EOF", err)
			}
			break
		}
		text.WriteString(p)
	}
	if text.String() != "one two three" {
		t.Errorf("text after Unhold = %q, want %q", text.String(), "one two three")
	}
}

func TestServerModels(t *testing.T) {
	srv := llmtest.New(t)
	srv.SetModels(chat.Model{ID: "x", OwnedBy: "me"})
	srv.RequireKey("k")
	c, err := llm.NewClient(srv.URL(), llm.Options{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	models, err := c.Models(t.Context())
	if err != nil || len(models) != 1 || models[0] != (chat.Model{ID: "x", OwnedBy: "me"}) {
		t.Errorf("Models = %+v, %v; want [x owned by me]", models, err)
	}
	if got := srv.ModelsRequests(); got != 1 {
		t.Errorf("ModelsRequests = %d, want 1", got)
	}
}
