package llm_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"askgate/internal/chat"
	"askgate/internal/llm"
	"askgate/internal/llm/llmtest"
)

// The messages the contract lets clients see.
const (
	msgUnavailable = "the language model is unavailable"
	msgNoStart     = "the language model did not start answering in time"
	msgStalled     = "the language model stopped answering"
	msgCut         = "the language model's answer was cut off"
	msgFailed      = "the language model failed while answering"
)

// newClient returns a Client of baseURL with its own transport, closed at
// the end of the test, and a 1 ms backoff unless opts says otherwise.
func newClient(t testing.TB, baseURL string, opts llm.Options) *llm.Client {
	t.Helper()
	if opts.Backoff == 0 {
		opts.Backoff = time.Millisecond
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HTTPClient == nil {
		tr := &http.Transport{}
		t.Cleanup(tr.CloseIdleConnections)
		opts.HTTPClient = &http.Client{Transport: tr}
	}
	c, err := llm.NewClient(baseURL, opts)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// ask returns a request with a system message and the question.
func ask(model, question string) chat.CompletionRequest {
	return chat.CompletionRequest{Model: model, Messages: []chat.PromptMessage{
		{Role: chat.PromptSystem, Content: "Be brief."},
		{Role: chat.PromptUser, Content: question},
	}}
}

// readAll reads s to its end and returns the pieces and the final error
// (io.EOF when the stream completed).
func readAll(t testing.TB, s chat.CompletionStream) ([]string, error) {
	t.Helper()
	var pieces []string
	for {
		p, err := s.Next()
		if err != nil {
			return pieces, err
		}
		if p == "" {
			t.Errorf("Next returned an empty piece")
		}
		pieces = append(pieces, p)
	}
}

// checkError fails t unless err is a *chat.Error with the given code and
// client message, which never carries the upstream body.
func checkError(t testing.TB, err error, code chat.Code, message string) {
	t.Helper()
	var ce *chat.Error
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v (%T), want a *chat.Error", err, err)
	}
	if ce.Code != code || ce.Message != message {
		t.Errorf("error = %s %q, want %s %q", ce.Code, ce.Message, code, message)
	}
	if strings.Contains(chat.ErrorMessage(err), "hunter2") {
		t.Errorf("client message %q leaks the upstream body", chat.ErrorMessage(err))
	}
}

// waitAbort waits until srv has seen a client close a stream early.
func waitAbort(t testing.TB, srv *llmtest.Server) {
	t.Helper()
	select {
	case <-srv.Aborted():
	case <-time.After(5 * time.Second):
		t.Fatalf("the server never saw the client close the stream")
	}
}

func TestCompleteStreams(t *testing.T) {
	srv := llmtest.New(t)
	srv.SetReply("Paris", " is", " the", " capital", ".")
	srv.SetUsage(&chat.TokenUsage{PromptTokens: 12, CompletionTokens: 5})
	c := newClient(t, srv.URL(), llm.Options{})

	req := ask(llmtest.DefaultModel, "Capital of France?")
	req.MaxTokens = 64
	s, err := c.Complete(t.Context(), req)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	defer s.Close()
	pieces, err := readAll(t, s)
	if err != io.EOF {
		t.Fatalf("Next = %v, want io.EOF", err)
	}
	if got, want := strings.Join(pieces, ""), "Paris is the capital."; got != want {
		t.Errorf("text = %q, want %q", got, want)
	}
	if got, want := len(pieces), 5; got != want {
		t.Errorf("%d pieces, want %d", got, want)
	}
	if got, want := s.Model(), llmtest.DefaultModel; got != want {
		t.Errorf("Model = %q, want %q", got, want)
	}
	if got, want := s.Usage(), (&chat.TokenUsage{PromptTokens: 12, CompletionTokens: 5, TotalTokens: 17}); got == nil || *got != *want {
		t.Errorf("Usage = %+v, want %+v", got, want)
	}
	if got, want := s.(interface{ FinishReason() string }).FinishReason(), "stop"; got != want {
		t.Errorf("FinishReason = %q, want %q", got, want)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Errorf("Next after the end = %v, want io.EOF again", err)
	}

	r := srv.LastRequest()
	if r.Model != llmtest.DefaultModel || !r.Stream || !r.IncludeUsage || r.MaxTokens != 64 {
		t.Errorf("request = model %q stream %v include_usage %v max_tokens %d, want %q true true 64",
			r.Model, r.Stream, r.IncludeUsage, r.MaxTokens, llmtest.DefaultModel)
	}
	if !slices.Equal(r.Messages, req.Messages) {
		t.Errorf("messages = %+v, want %+v", r.Messages, req.Messages)
	}
	if got := r.Header.Get("Accept"); got != "text/event-stream" {
		t.Errorf("Accept = %q, want text/event-stream", got)
	}
	if got := r.Header.Get("Authorization"); got != "" {
		t.Errorf("Authorization = %q without a key, want none", got)
	}
}

func TestCompleteSendsAPIKey(t *testing.T) {
	srv := llmtest.New(t)
	srv.RequireKey("sk-test")

	s, err := newClient(t, srv.URL(), llm.Options{APIKey: "sk-test"}).Complete(t.Context(), ask(llmtest.DefaultModel, "hi"))
	if err != nil {
		t.Fatalf("Complete with the key: %v", err)
	}
	s.Close()
	if got, want := srv.LastRequest().Header.Get("Authorization"), "Bearer sk-test"; got != want {
		t.Errorf("Authorization = %q, want %q", got, want)
	}

	_, err = newClient(t, srv.URL(), llm.Options{APIKey: "wrong"}).Complete(t.Context(), ask(llmtest.DefaultModel, "hi"))
	checkError(t, err, chat.CodeUpstreamUnavailable, msgUnavailable)
}

func TestCompleteForwardsTraceparent(t *testing.T) {
	srv := llmtest.New(t)
	c := newClient(t, srv.URL(), llm.Options{})
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(t.Context(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled,
	}))

	s, err := c.Complete(ctx, ask(llmtest.DefaultModel, "hi"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	s.Close()
	if got, want := srv.LastRequest().Header.Get("traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("traceparent = %q, want %q", got, want)
	}
}

// chunk returns the event of a chunk carrying content.
func chunk(content string) string {
	return `data: {"model":"m-2024","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}` + "\n\n"
}

// TestStreamParsing feeds the client raw event streams, as various servers
// write them.
func TestStreamParsing(t *testing.T) {
	const (
		done  = "data: [DONE]\n\n"
		usage = `data: {"model":"m-2024","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":2}}` + "\n\n"
	)
	long := strings.Repeat("x", 40_000)
	tests := []struct {
		name      string
		body      string
		want      []string
		wantErr   string // the client message; empty for io.EOF
		wantModel string
		wantUsage *chat.TokenUsage
	}{
		{
			name:      "plain",
			body:      chunk("a") + chunk("b") + usage + done,
			want:      []string{"a", "b"},
			wantModel: "m-2024",
			wantUsage: &chat.TokenUsage{PromptTokens: 7, CompletionTokens: 2, TotalTokens: 9},
		},
		{
			name:      "no space after data",
			body:      strings.ReplaceAll(chunk("a")+done, "data: ", "data:"),
			want:      []string{"a"},
			wantModel: "m-2024",
		},
		{
			name:      "data on several lines",
			body:      "data: {\"model\":\"m-2024\",\ndata: \"choices\":[{\"delta\":{\"content\":\"ab\"}}]}\n\n" + done,
			want:      []string{"ab"},
			wantModel: "m-2024",
		},
		{
			name:      "comments and other fields",
			body:      ": keep-alive\n\nevent: message\nid: 1\nretry: 100\n" + chunk("a") + ": ping\n\n" + done,
			want:      []string{"a"},
			wantModel: "m-2024",
		},
		{
			name:      "CRLF line endings",
			body:      strings.ReplaceAll(chunk("a")+chunk("b")+done, "\n", "\r\n"),
			want:      []string{"a", "b"},
			wantModel: "m-2024",
		},
		{
			name: "role-only and empty deltas are skipped",
			body: `data: {"model":"m-2024","choices":[{"delta":{"role":"assistant"}}]}` + "\n\n" + chunk("") +
				`data: {"choices":[{"delta":{"content":null}}]}` + "\n\n" + chunk("x") +
				`data: {"choices":[{"delta":{},"finish_reason":"length"}]}` + "\n\n" + done,
			want:      []string{"x"},
			wantModel: "m-2024",
		},
		{
			name:      "a line longer than the read buffer",
			body:      chunk(long) + done,
			want:      []string{long},
			wantModel: "m-2024",
		},
		{
			name:      "[DONE] without its blank line",
			body:      chunk("a") + "data: [DONE]",
			want:      []string{"a"},
			wantModel: "m-2024",
		},
		{
			name:      "no model in the chunks",
			body:      `data: {"choices":[{"delta":{"content":"a"}}]}` + "\n\n" + done,
			want:      []string{"a"},
			wantModel: "requested",
		},
		{name: "ends without [DONE]", body: chunk("a") + chunk("b"), want: []string{"a", "b"}, wantErr: msgCut},
		{name: "ends inside an event", body: chunk("a") + `data: {"choices":[`, want: []string{"a"}, wantErr: msgCut},
		{name: "empty body", body: "", wantErr: msgCut},
		{
			name:    "error chunk",
			body:    chunk("a") + `data: {"error":{"message":"` + llmtest.FailureBody + `","type":"server_error"}}` + "\n\n",
			want:    []string{"a"},
			wantErr: msgFailed,
		},
		{name: "malformed chunk", body: chunk("a") + "data: {hunter2\n\n" + done, want: []string{"a"}, wantErr: msgFailed},
		{name: "event over the size limit", body: "data: " + strings.Repeat("x", 2<<20) + "\n\n", wantErr: msgFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			s, err := newClient(t, srv.URL, llm.Options{}).Complete(t.Context(), ask("requested", "q"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			defer s.Close()
			got, err := readAll(t, s)
			if !slices.Equal(got, tt.want) {
				t.Errorf("pieces = %q, want %q", got, tt.want)
			}
			if tt.wantErr != "" {
				checkError(t, err, chat.CodeUpstreamUnavailable, tt.wantErr)
				return
			}
			if err != io.EOF {
				t.Fatalf("Next = %v, want io.EOF", err)
			}
			if s.Model() != tt.wantModel {
				t.Errorf("Model = %q, want %q", s.Model(), tt.wantModel)
			}
			if u := s.Usage(); (u == nil) != (tt.wantUsage == nil) || (u != nil && *u != *tt.wantUsage) {
				t.Errorf("Usage = %+v, want %+v", u, tt.wantUsage)
			}
		})
	}
}

// TestReasoningKeepsTheStreamAlive: a reasoning model that thinks for
// longer than the timeouts before it answers is not cut off, as long as
// its reasoning keeps coming.
func TestReasoningKeepsTheStreamAlive(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for range 8 {
			io.WriteString(w, `data: {"choices":[{"delta":{"reasoning_content":"hmm"}}]}`+"\n\n")
			w.(http.Flusher).Flush()
			time.Sleep(50 * time.Millisecond)
		}
		io.WriteString(w, `data: {"choices":[{"delta":{"content":"answer"}}]}`+"\n\ndata: [DONE]\n\n")
	}))
	defer srv.Close()
	c := newClient(t, srv.URL, llm.Options{FirstTokenTimeout: 200 * time.Millisecond, IdleTimeout: 200 * time.Millisecond})
	s, err := c.Complete(t.Context(), ask("requested", "q"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := readAll(t, s)
	if err != io.EOF || !slices.Equal(got, []string{"answer"}) {
		t.Errorf("pieces %q, %v; want the answer after 400 ms of reasoning", got, err)
	}
}

func TestCompleteRetries(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		times     int
		retries   int
		wantCalls int
		wantCode  chat.Code // empty: the stream succeeds
		wantMsg   string
	}{
		{name: "500 twice then success", status: 500, times: 2, wantCalls: 3},
		{name: "429 once", status: 429, times: 1, wantCalls: 2},
		{name: "502 once", status: 502, times: 1, wantCalls: 2},
		{name: "503 once", status: 503, times: 1, wantCalls: 2},
		{name: "504 once", status: 504, times: 1, wantCalls: 2},
		{name: "500 always", status: 500, times: 100, wantCalls: 3, wantCode: chat.CodeUpstreamUnavailable, wantMsg: msgUnavailable},
		{name: "500 always, 4 retries", status: 500, times: 100, retries: 4, wantCalls: 5, wantCode: chat.CodeUpstreamUnavailable, wantMsg: msgUnavailable},
		{name: "500, no retries", status: 500, times: 100, retries: -1, wantCalls: 1, wantCode: chat.CodeUpstreamUnavailable, wantMsg: msgUnavailable},
		{name: "400 is not retried", status: 400, times: 100, wantCalls: 1, wantCode: chat.CodeUpstreamUnavailable, wantMsg: msgUnavailable},
		{name: "403 is not retried", status: 403, times: 100, wantCalls: 1, wantCode: chat.CodeUpstreamUnavailable, wantMsg: msgUnavailable},
		{name: "404 not about the model", status: 404, times: 100, wantCalls: 1, wantCode: chat.CodeUpstreamUnavailable, wantMsg: msgUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := llmtest.New(t)
			srv.Fail(tt.status, tt.times)
			c := newClient(t, srv.URL(), llm.Options{Retries: tt.retries})
			s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
			if got := srv.Requests(); got != tt.wantCalls {
				t.Errorf("%d calls, want %d", got, tt.wantCalls)
			}
			if tt.wantCode != "" {
				checkError(t, err, tt.wantCode, tt.wantMsg)
				return
			}
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			defer s.Close()
			if pieces, err := readAll(t, s); err != io.EOF || len(pieces) != len(llmtest.DefaultReply) {
				t.Errorf("stream = %q, %v; want the whole reply", pieces, err)
			}
		})
	}
}

func TestCompleteRetriesRefusedConnection(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more

	start := time.Now()
	_, err := newClient(t, url+"/v1", llm.Options{Backoff: 20 * time.Millisecond}).Complete(t.Context(), ask("m", "q"))
	checkError(t, err, chat.CodeUpstreamUnavailable, msgUnavailable)
	// Two retries, after 10–20 ms and 20–40 ms.
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("failed after %v, want two backoffs of at least 30 ms in all", d)
	}
}

func TestCompleteHonoursRetryAfter(t *testing.T) {
	srv := llmtest.New(t)
	srv.On(1, llmtest.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1"})
	c := newClient(t, srv.URL(), llm.Options{})

	start := time.Now()
	s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	s.Close()
	if d := time.Since(start); d < time.Second {
		t.Errorf("retried after %v, want the 1 s of Retry-After", d)
	}
	if got := srv.Requests(); got != 2 {
		t.Errorf("%d calls, want 2", got)
	}
}

func TestCompleteRetryWaitEndsWithContext(t *testing.T) {
	srv := llmtest.New(t)
	srv.On(1, llmtest.Fault{Status: http.StatusServiceUnavailable, RetryAfter: "5"})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()

	start := time.Now()
	_, err := newClient(t, srv.URL(), llm.Options{}).Complete(ctx, ask(llmtest.DefaultModel, "q"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Complete = %v, want the context's error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Complete returned after %v, want at once when ctx ends", d)
	}
}

func TestNoRetryOnceAccepted(t *testing.T) {
	for _, n := range []int{0, 2} {
		srv := llmtest.New(t)
		srv.CutAfter(n)
		s, err := newClient(t, srv.URL(), llm.Options{}).Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
		if err != nil {
			t.Fatalf("Complete: %v", err)
		}
		pieces, err := readAll(t, s)
		s.Close()
		if want := llmtest.DefaultReply[:n]; !slices.Equal(pieces, want) {
			t.Errorf("cut after %d: pieces = %q, want %q", n, pieces, want)
		}
		checkError(t, err, chat.CodeUpstreamUnavailable, msgCut)
		if got := srv.Requests(); got != 1 {
			t.Errorf("cut after %d: %d calls, want 1 (no retry once the response is accepted)", n, got)
		}
	}
}

func TestCompleteErrorChunk(t *testing.T) {
	srv := llmtest.New(t)
	srv.ErrorAfter(3)
	s, err := newClient(t, srv.URL(), llm.Options{}).Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	defer s.Close()
	pieces, err := readAll(t, s)
	if want := llmtest.DefaultReply[:3]; !slices.Equal(pieces, want) {
		t.Errorf("pieces = %q, want %q", pieces, want)
	}
	checkError(t, err, chat.CodeUpstreamUnavailable, msgFailed)
	if !strings.Contains(err.Error(), "hunter2") {
		t.Errorf("cause %q lacks the upstream error, which the log needs", err)
	}
	if got := srv.Requests(); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
}

func TestCompleteUnknownModel(t *testing.T) {
	srv := llmtest.New(t)
	_, err := newClient(t, srv.URL(), llm.Options{}).Complete(t.Context(), ask("gpt-9", "q"))
	checkError(t, err, chat.CodeBadUserInput, `unknown model "gpt-9"`)
	if got := srv.Requests(); got != 1 {
		t.Errorf("%d calls, want 1", got)
	}
}

func TestTimeouts(t *testing.T) {
	const timeout = 100 * time.Millisecond
	tests := []struct {
		name     string
		fault    llmtest.Fault
		want     []string
		startErr bool // Complete itself fails
		wantMsg  string
	}{
		{name: "no headers", fault: llmtest.Fault{DelayHeaders: time.Minute}, startErr: true, wantMsg: msgNoStart},
		{name: "no first token", fault: llmtest.Fault{DelayFirst: time.Minute}, wantMsg: msgNoStart},
		{name: "stall after 2 tokens", fault: llmtest.Fault{StallAfter: 2, Stall: time.Minute}, want: llmtest.DefaultReply[:2], wantMsg: msgStalled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := llmtest.New(t)
			srv.SetFault(tt.fault)
			c := newClient(t, srv.URL(), llm.Options{FirstTokenTimeout: timeout, IdleTimeout: timeout})

			start := time.Now()
			s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
			if tt.startErr {
				checkError(t, err, chat.CodeUpstreamUnavailable, tt.wantMsg)
			} else {
				if err != nil {
					t.Fatalf("Complete: %v", err)
				}
				defer s.Close()
				var pieces []string
				pieces, err = readAll(t, s)
				if !slices.Equal(pieces, tt.want) {
					t.Errorf("pieces = %q, want %q", pieces, tt.want)
				}
				checkError(t, err, chat.CodeUpstreamUnavailable, tt.wantMsg)
			}
			if d := time.Since(start); d < timeout || d > 5*time.Second {
				t.Errorf("failed after %v, want about %v", d, timeout)
			}
			if got := srv.Requests(); got != 1 {
				t.Errorf("%d calls, want 1 (a timeout is not retried)", got)
			}
			if !tt.startErr {
				waitAbort(t, srv)
			}
		})
	}
}

// TestIdleTimeoutIgnoresSlowReader checks that the idle timeout measures
// the backend, not the time the caller spends between two Next calls.
func TestIdleTimeoutIgnoresSlowReader(t *testing.T) {
	srv := llmtest.New(t)
	srv.SetReply("a", "b", "c")
	c := newClient(t, srv.URL(), llm.Options{FirstTokenTimeout: time.Second, IdleTimeout: 50 * time.Millisecond})
	s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	defer s.Close()
	var got []string
	for {
		p, err := s.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		got = append(got, p)
		time.Sleep(120 * time.Millisecond)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("pieces = %q, want %q", got, want)
	}
}

func TestCancelClosesUpstream(t *testing.T) {
	srv := llmtest.New(t)
	srv.Hold()
	srv.Release(1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	s, err := newClient(t, srv.URL(), llm.Options{}).Complete(ctx, ask(llmtest.DefaultModel, "q"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	defer s.Close()
	if p, err := s.Next(); err != nil || p != llmtest.DefaultReply[0] {
		t.Fatalf("Next = %q, %v; want the first token", p, err)
	}

	time.AfterFunc(20*time.Millisecond, cancel)
	start := time.Now()
	_, err = s.Next() // blocked: the server holds the second token
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Next = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Next returned %v after the cancel, want at once", d)
	}
	waitAbort(t, srv)
}

func TestCloseClosesUpstream(t *testing.T) {
	srv := llmtest.New(t)
	srv.Hold()
	srv.Release(2)
	s, err := newClient(t, srv.URL(), llm.Options{}).Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	for range 2 {
		if _, err := s.Next(); err != nil {
			t.Fatalf("Next: %v", err)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	waitAbort(t, srv)
	if _, err := s.Next(); err == nil || err == io.EOF {
		t.Errorf("Next after Close = %v, want an error", err)
	}
	if got := srv.Aborts(); got != 1 {
		t.Errorf("Aborts = %d, want 1", got)
	}
}

// TestCloseInterruptsNext closes a stream from another goroutine while
// Next waits for a token.
func TestCloseInterruptsNext(t *testing.T) {
	srv := llmtest.New(t)
	srv.Hold()
	s, err := newClient(t, srv.URL(), llm.Options{}).Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	time.AfterFunc(20*time.Millisecond, func() { s.Close() })
	if _, err := s.Next(); err == nil {
		t.Errorf("Next = nil error, want one after Close")
	}
	waitAbort(t, srv)
}

// TestNoGoroutineLeft checks that once a stream has ended, whichever way,
// everything it started has stopped, with the server still running.
func TestNoGoroutineLeft(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, srv *llmtest.Server, c *llm.Client)
	}{
		{"read to the end", func(t *testing.T, srv *llmtest.Server, c *llm.Client) {
			s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			readAll(t, s)
			s.Close()
		}},
		{"closed mid-stream", func(t *testing.T, srv *llmtest.Server, c *llm.Client) {
			srv.Hold()
			srv.Release(1)
			s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			s.Next()
			s.Close()
			waitAbort(t, srv)
		}},
		{"cancelled", func(t *testing.T, srv *llmtest.Server, c *llm.Client) {
			srv.Hold()
			ctx, cancel := context.WithCancel(t.Context())
			s, err := c.Complete(ctx, ask(llmtest.DefaultModel, "q"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			time.AfterFunc(10*time.Millisecond, cancel)
			s.Next()
			waitAbort(t, srv)
		}},
		{"stalled", func(t *testing.T, srv *llmtest.Server, c *llm.Client) {
			srv.StallAfter(1, time.Minute)
			s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			readAll(t, s)
			waitAbort(t, srv)
		}},
		{"cut", func(t *testing.T, srv *llmtest.Server, c *llm.Client) {
			srv.CutAfter(1)
			s, err := c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			readAll(t, s)
		}},
		{"refused", func(t *testing.T, srv *llmtest.Server, c *llm.Client) {
			srv.Fail(500, 10)
			c.Complete(t.Context(), ask(llmtest.DefaultModel, "q"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := llmtest.New(t)
			tr := &http.Transport{}
			c := newClient(t, srv.URL(), llm.Options{
				HTTPClient:  &http.Client{Transport: tr},
				IdleTimeout: 50 * time.Millisecond,
			})
			ignore := goleak.IgnoreCurrent()
			tt.run(t, srv, c)
			tr.CloseIdleConnections() // the pool's connections are not the stream's
			goleak.VerifyNone(t, ignore)
		})
	}
}

func TestModelsCached(t *testing.T) {
	srv := llmtest.New(t)
	srv.SetModels(chat.Model{ID: "b", OwnedBy: "x"}, chat.Model{ID: "a", OwnedBy: "y"})
	c := newClient(t, srv.URL(), llm.Options{})

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := c.Models(t.Context()); err != nil {
				t.Errorf("Models: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := c.Models(t.Context())
	if err != nil {
		t.Fatalf("Models: %v", err)
	}
	if want := []chat.Model{{ID: "b", OwnedBy: "x"}, {ID: "a", OwnedBy: "y"}}; !slices.Equal(got, want) {
		t.Errorf("Models = %+v, want %+v", got, want)
	}
	if n := srv.ModelsRequests(); n != 1 {
		t.Errorf("%d GET /models for 11 calls, want 1", n)
	}
	got[0].ID = "changed"
	if again, _ := c.Models(t.Context()); again[0].ID != "b" {
		t.Errorf("changing a returned list changed the cache")
	}
}

func TestModelsDefault(t *testing.T) {
	listed := []chat.Model{{ID: "m1", OwnedBy: "o1"}, {ID: "m2", OwnedBy: "o2"}, {ID: "m3", OwnedBy: "o3"}}
	tests := []struct {
		name         string
		defaultModel string
		want         []chat.Model
	}{
		{"none: the backend's order", "", listed},
		{"listed: moved first", "m3", []chat.Model{{ID: "m3", OwnedBy: "o3"}, {ID: "m1", OwnedBy: "o1"}, {ID: "m2", OwnedBy: "o2"}}},
		{"not listed: added first", "private", append([]chat.Model{{ID: "private"}}, listed...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := llmtest.New(t)
			srv.SetModels(listed...)
			c := newClient(t, srv.URL(), llm.Options{DefaultModel: tt.defaultModel})
			got, err := c.Models(t.Context())
			if err != nil {
				t.Fatalf("Models: %v", err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Models = %+v, want %+v", got, tt.want)
			}

			// A request without a model goes to the default, which the
			// backend serves even when it does not list it.
			srv.SetModels(append(listed, chat.Model{ID: "private"})...)
			s, err := c.Complete(t.Context(), ask("", "q"))
			if err != nil {
				t.Fatalf("Complete: %v", err)
			}
			s.Close()
			if got, want := srv.LastRequest().Model, tt.want[0].ID; got != want {
				t.Errorf("request without a model went to %q, want %q", got, want)
			}
		})
	}
}

func TestModelsStaleOnFailure(t *testing.T) {
	srv := llmtest.New(t)
	c := newClient(t, srv.URL(), llm.Options{ModelsTTL: 10 * time.Millisecond})
	want, err := c.Models(t.Context())
	if err != nil {
		t.Fatalf("Models: %v", err)
	}

	srv.FailModels(http.StatusInternalServerError)
	time.Sleep(20 * time.Millisecond)
	got, err := c.Models(t.Context())
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("Models after a failed refresh = %+v, %v; want the cached %+v", got, err, want)
	}
	if n := srv.ModelsRequests(); n != 2 {
		t.Errorf("%d GET /models, want 2 (one refresh)", n)
	}
}

func TestModelsFailCold(t *testing.T) {
	srv := llmtest.New(t)
	srv.FailModels(http.StatusBadGateway)
	c := newClient(t, srv.URL(), llm.Options{})
	_, err := c.Models(t.Context())
	checkError(t, err, chat.CodeUpstreamUnavailable, msgUnavailable)

	// Without a default model, Complete needs the list.
	_, err = c.Complete(t.Context(), ask("", "q"))
	checkError(t, err, chat.CodeUpstreamUnavailable, msgUnavailable)
	if n := srv.Requests(); n != 0 {
		t.Errorf("%d chat calls, want none", n)
	}
}

func TestNewClientRejectsBadURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080", "ftp://x/v1", "http:///v1", "http://x/v1?k=1"} {
		if _, err := llm.NewClient(u, llm.Options{}); err == nil {
			t.Errorf("NewClient(%q) = nil error, want one", u)
		}
	}
}
