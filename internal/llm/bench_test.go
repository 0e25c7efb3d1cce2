package llm_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"askgate/internal/chat"
	"askgate/internal/llm"
	"askgate/internal/llm/llmtest"
)

// roundTripper answers every request with a 200 event stream of body.
type roundTripper []byte

func (b roundTripper) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       io.NopCloser(bytes.NewReader(b)),
		Request:    r,
	}, nil
}

// BenchmarkStreamTokens measures what the client costs per token: one op
// is one token read with Next, streams being 1000 tokens long. "memory"
// reads a prepared stream without a network, so that only the client's
// parsing and timers count; "loopback" reads the llmtest server over TCP,
// one flushed chunk per token.
func BenchmarkStreamTokens(b *testing.B) {
	const tokens = 1000
	reply := make([]string, tokens)
	for i := range reply {
		reply[i] = " tok" + strconv.Itoa(i)
	}

	var body strings.Builder
	for _, tok := range reply {
		body.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m",` +
			`"choices":[{"index":0,"delta":{"content":"` + tok + `"},"finish_reason":null}]}` + "\n\n")
	}
	body.WriteString(`data: {"model":"m","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":1000,"total_tokens":1005}}` + "\n\n")
	body.WriteString("data: [DONE]\n\n")

	b.Run("memory", func(b *testing.B) {
		c := newClient(b, "http://llm.invalid/v1", llm.Options{
			HTTPClient: &http.Client{Transport: roundTripper(body.String())},
		})
		benchStream(b, c, "m")
	})
	b.Run("loopback", func(b *testing.B) {
		srv := llmtest.New(b)
		srv.SetReply(reply...)
		benchStream(b, newClient(b, srv.URL(), llm.Options{}), llmtest.DefaultModel)
	})
}

// benchStream reads b.N tokens from as many streams as it takes.
func benchStream(b *testing.B, c *llm.Client, model string) {
	req := chat.CompletionRequest{Model: model, Messages: []chat.PromptMessage{{Role: chat.PromptUser, Content: "q"}}}
	b.ReportAllocs()
	b.ResetTimer()
	for left := b.N; left > 0; {
		s, err := c.Complete(context.Background(), req)
		if err != nil {
			b.Fatalf("Complete: %v", err)
		}
		for ; left > 0; left-- {
			if _, err := s.Next(); err == io.EOF {
				break
			} else if err != nil {
				b.Fatalf("Next: %v", err)
			}
		}
		s.Close()
	}
}
