// Package llmtest provides a fake OpenAI-compatible Chat Completions server
// for tests: a real HTTP server that speaks
//
//	POST /v1/chat/completions  {"model","messages","stream":true,…} → text/event-stream
//	GET  /v1/models            → {"object":"list","data":[{"id","object","owned_by"}]}
//
// It streams a scripted reply one chunk per token, flushing each, then a
// finish chunk, a usage chunk (when asked for with stream_options) and
// "data: [DONE]". Faults can be injected for every call or for a given
// call: refusals, cut or stalled streams, error chunks. Tokens can be held
// and released one at a time, and the server records what it receives and
// notices when a client closes a stream early.
package llmtest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"askgate/internal/chat"
)

// FailureBody is the message of the error responses and error chunks of a
// failing Server. It looks like a leaked secret on purpose, so that tests
// can check it never reaches a client.
const FailureBody = "internal: db password=hunter2 at 10.0.0.7:5432 refused"

// DefaultModel is the model a Server lists when SetModels was not called.
const DefaultModel = "fake-model"

// DefaultReply is the reply a Server streams when SetReply was not called.
var DefaultReply = []string{"Hello", " from", " the", " fake", " model", "."}

// Fault changes how the Server answers a chat completion call. The zero
// Fault changes nothing: the reply streams at once, to the end.
type Fault struct {
	// Status, when not zero, refuses the call with this HTTP status and an
	// OpenAI-style error body whose message is FailureBody.
	Status int
	// RetryAfter, with Status, is the Retry-After header, e.g. "1".
	RetryAfter string
	// DelayHeaders delays the response's status and headers.
	DelayHeaders time.Duration
	// DelayFirst delays the first content chunk (the headers go at once).
	DelayFirst time.Duration
	// Pace is the wait between two content chunks.
	Pace time.Duration
	// Stall, when not zero, waits that long after StallAfter content
	// chunks.
	Stall      time.Duration
	StallAfter int
	// Cut makes the server drop the connection after CutAfter content
	// chunks, without the end of the stream or [DONE].
	Cut      bool
	CutAfter int
	// Error makes the server send an error chunk ({"error":{…}}) after
	// ErrorAfter content chunks, and end the stream there.
	Error      bool
	ErrorAfter int
}

// Request is a chat completion call the Server received.
type Request struct {
	Model        string
	Messages     []chat.PromptMessage
	MaxTokens    int
	Stream       bool
	IncludeUsage bool
	// Header holds the request's headers (Authorization, traceparent, …).
	Header http.Header
}

// Server is a fake Chat Completions server. Its methods are safe for
// concurrent use.
type Server struct {
	srv     *httptest.Server
	done    chan struct{} // closed by Close
	aborted chan struct{}

	mu         sync.Mutex
	closed     bool
	reply      []string
	models     []chat.Model
	usage      *chat.TokenUsage
	apiKey     string
	fault      Fault
	faults     map[int]Fault // by call number, from 1
	modelsFail int
	calls      int
	modelCalls int
	aborts     int
	last       Request
	holding    bool
	credits    int
	released   chan struct{} // closed and replaced when credits grow
}

// New starts a Server with the default reply and model list. It is closed
// when the test ends.
func New(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		done:     make(chan struct{}),
		aborted:  make(chan struct{}, 1024),
		reply:    slices.Clone(DefaultReply),
		models:   []chat.Model{{ID: DefaultModel, OwnedBy: "llmtest"}},
		faults:   make(map[int]Fault),
		released: make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.serveChat)
	mux.HandleFunc("GET /v1/models", s.serveModels)
	s.srv = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

// URL returns the base URL of the API, ending in /v1, for llm.NewClient.
func (s *Server) URL() string { return s.srv.URL + "/v1" }

// Close shuts the server down, ending the streams it is serving. It may be
// called more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
	s.mu.Unlock()
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// SetReply sets the tokens of the reply, one content chunk each.
func (s *Server) SetReply(tokens ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reply = slices.Clone(tokens)
}

// SetModels sets the models GET /models lists. Chat completion calls for a
// model not in the list get OpenAI's 404 model_not_found.
func (s *Server) SetModels(models ...chat.Model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.models = slices.Clone(models)
}

// SetUsage sets the usage of the final chunk. Nil (the default) reports
// the number of tokens of the reply as completion tokens and a quarter of
// the prompt's bytes as prompt tokens.
func (s *Server) SetUsage(u *chat.TokenUsage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.usage = u
}

// RequireKey makes the server refuse with 401 the calls that do not carry
// "Authorization: Bearer key". Empty accepts every call.
func (s *Server) RequireKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.apiKey = key
}

// SetFault sets the fault of every chat completion call that has no fault
// of its own (see On). The zero Fault heals the server.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// On sets the fault of chat completion call number call, counted from 1
// since the server started; it replaces the fault set by SetFault.
func (s *Server) On(call int, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[call] = f
}

// Fail refuses the next times chat completion calls with status.
func (s *Server) Fail(status, times int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i <= times; i++ {
		s.faults[s.calls+i] = Fault{Status: status}
	}
}

// CutAfter makes every call drop its connection after n content chunks.
func (s *Server) CutAfter(n int) { s.update(func(f *Fault) { f.Cut, f.CutAfter = true, n }) }

// DelayFirst makes every call wait d before its first content chunk.
func (s *Server) DelayFirst(d time.Duration) { s.update(func(f *Fault) { f.DelayFirst = d }) }

// StallAfter makes every call wait d after n content chunks.
func (s *Server) StallAfter(n int, d time.Duration) {
	s.update(func(f *Fault) { f.StallAfter, f.Stall = n, d })
}

// Pace makes every call wait d between two content chunks.
func (s *Server) Pace(d time.Duration) { s.update(func(f *Fault) { f.Pace = d }) }

// ErrorAfter makes every call end with an error chunk after n content
// chunks.
func (s *Server) ErrorAfter(n int) { s.update(func(f *Fault) { f.Error, f.ErrorAfter = true, n }) }

func (s *Server) update(change func(*Fault)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.fault)
}

// FailModels makes GET /models answer with status; zero heals it.
func (s *Server) FailModels(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.modelsFail = status
}

// Hold makes every stream wait before each content chunk until Release
// lets it through; the headers and the chunks after the last token (finish,
// usage, [DONE]) are not held.
func (s *Server) Hold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = true
}

// Release lets n more held content chunks through, whichever streams they
// belong to.
func (s *Server) Release(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.credits += n
	close(s.released)
	s.released = make(chan struct{})
}

// Unhold stops holding content chunks.
func (s *Server) Unhold() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.holding = false
	close(s.released)
	s.released = make(chan struct{})
}

// Requests returns the number of chat completion calls received.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// ModelsRequests returns the number of GET /models calls received.
func (s *Server) ModelsRequests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.modelCalls
}

// LastRequest returns the latest chat completion call, or the zero Request
// when there is none.
func (s *Server) LastRequest() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.last
	r.Messages = slices.Clone(r.Messages)
	r.Header = r.Header.Clone()
	return r
}

// Aborts returns the number of streams the client closed before the server
// had sent [DONE].
func (s *Server) Aborts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.aborts
}

// Aborted returns a channel that receives a value each time a client
// closes a stream before the server has sent [DONE] (up to 1024 unread).
func (s *Server) Aborted() <-chan struct{} { return s.aborted }

// abort records that the client of a stream left early.
func (s *Server) abort() {
	s.mu.Lock()
	s.aborts++
	s.mu.Unlock()
	select {
	case s.aborted <- struct{}{}:
	default:
	}
}

// chatRequest is the body of a chat completion call.
type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	MaxTokens int `json:"max_tokens"`
}

func (s *Server) serveChat(w http.ResponseWriter, r *http.Request) {
	// Read the whole body so that the server notices when the client
	// goes away (r.Context() ends).
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var req chatRequest
	if err == nil {
		err = json.Unmarshal(body, &req)
	}

	s.mu.Lock()
	s.calls++
	f, ok := s.faults[s.calls]
	if !ok {
		f = s.fault
	}
	rec := Request{Model: req.Model, MaxTokens: req.MaxTokens, Stream: req.Stream, Header: r.Header.Clone()}
	rec.IncludeUsage = req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	prompt := 0
	for _, m := range req.Messages {
		rec.Messages = append(rec.Messages, chat.PromptMessage{Role: m.Role, Content: m.Content})
		prompt += len(m.Content)
	}
	s.last = rec
	tokens := slices.Clone(s.reply)
	known := slices.ContainsFunc(s.models, func(m chat.Model) bool { return m.ID == req.Model })
	key := s.apiKey
	usage := chat.TokenUsage{PromptTokens: (prompt + 3) / 4, CompletionTokens: len(tokens)}
	if s.usage != nil {
		usage = *s.usage
	}
	s.mu.Unlock()

	if !s.wait(r, f.DelayHeaders) {
		return
	}
	switch {
	case err != nil:
		writeError(w, http.StatusBadRequest, "invalid_request_error", nil, "invalid JSON body: "+err.Error())
		return
	case key != "" && r.Header.Get("Authorization") != "Bearer "+key:
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
		return
	case f.Status != 0:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		writeError(w, f.Status, "server_error", nil, FailureBody)
		return
	case !req.Stream:
		writeError(w, http.StatusBadRequest, "invalid_request_error", nil, "llmtest only serves streams")
		return
	case !known:
		writeError(w, http.StatusNotFound, "invalid_request_error", "model_not_found",
			fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", req.Model))
		return
	}

	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	id := fmt.Sprintf("chatcmpl-%d", time.Now().UnixNano())
	created := time.Now().Unix()
	send := func(event string) bool {
		_, err := io.WriteString(w, event)
		return err == nil && rc.Flush() == nil
	}
	chunk := func(delta map[string]string, finish any) string {
		b, _ := json.Marshal(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model,
			"choices": []any{map[string]any{"index": 0, "delta": delta, "finish_reason": finish}},
		})
		return "data: " + string(b) + "\n\n"
	}

	if !send(": keep-alive\n\n" + chunk(map[string]string{"role": "assistant", "content": ""}, nil)) {
		s.leftEarly(r)
		return
	}
	for i, tok := range tokens {
		if f.Cut && i == f.CutAfter {
			panic(http.ErrAbortHandler) // drops the connection
		}
		if f.Error && i == f.ErrorAfter {
			b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": FailureBody, "type": "server_error"}})
			send("data: " + string(b) + "\n\n")
			return
		}
		wait := f.Pace
		if i == 0 {
			wait = f.DelayFirst
		}
		if f.Stall > 0 && i == f.StallAfter {
			wait += f.Stall
		}
		if !s.wait(r, wait) || !s.take(r) || !send(chunk(map[string]string{"content": tok}, nil)) {
			s.leftEarly(r)
			return
		}
	}
	if f.Cut && f.CutAfter >= len(tokens) {
		panic(http.ErrAbortHandler)
	}
	if f.Error {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": FailureBody, "type": "server_error"}})
		send("data: " + string(b) + "\n\n")
		return
	}
	end := chunk(map[string]string{}, "stop")
	if rec.IncludeUsage {
		b, _ := json.Marshal(map[string]any{
			"id": id, "object": "chat.completion.chunk", "created": created, "model": req.Model, "choices": []any{},
			"usage": map[string]int{
				"prompt_tokens":     usage.PromptTokens,
				"completion_tokens": usage.CompletionTokens,
				"total_tokens":      usage.PromptTokens + usage.CompletionTokens,
			},
		})
		end += "data: " + string(b) + "\n\n"
	}
	if !send(end + "data: [DONE]\n\n") {
		s.leftEarly(r)
	}
}

// leftEarly records an abort if the client, not the server's shutdown,
// ended the stream.
func (s *Server) leftEarly(r *http.Request) {
	select {
	case <-s.done:
	default:
		if r.Context().Err() != nil {
			s.abort()
		}
	}
}

// wait sleeps d, and reports false if the client or the server's shutdown
// ended the call first.
func (s *Server) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return r.Context().Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
	case <-s.done:
	}
	return false
}

// take waits, while chunks are held, until Release lets one through, and
// reports false if the client or the server's shutdown ended the call first.
func (s *Server) take(r *http.Request) bool {
	for {
		s.mu.Lock()
		if !s.holding || s.credits > 0 {
			if s.holding {
				s.credits--
			}
			s.mu.Unlock()
			return true
		}
		released := s.released
		s.mu.Unlock()
		select {
		case <-released:
		case <-r.Context().Done():
			return false
		case <-s.done:
			return false
		}
	}
}

func (s *Server) serveModels(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.modelCalls++
	fail, key := s.modelsFail, s.apiKey
	type model struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		OwnedBy string `json:"owned_by"`
	}
	data := make([]model, 0, len(s.models))
	for _, m := range s.models {
		data = append(data, model{ID: m.ID, Object: "model", OwnedBy: m.OwnedBy})
	}
	s.mu.Unlock()

	switch {
	case key != "" && r.Header.Get("Authorization") != "Bearer "+key:
		writeError(w, http.StatusUnauthorized, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.")
	case fail != 0:
		writeError(w, fail, "server_error", nil, FailureBody)
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"object": "list", "data": data})
	}
}

// writeError writes an OpenAI-style error response.
func writeError(w http.ResponseWriter, status int, typ string, code any, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{
		"error": map[string]any{"message": message, "type": typ, "param": nil, "code": code},
	})
}
