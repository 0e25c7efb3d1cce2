// Package userstest provides a fake user service for tests: a real HTTP
// server that speaks the contract's
//
//	GET /users?ids=ID1,ID2,… → 200 {"users":[{"id","name","email","avatarUrl"}]}
//
// and can be made slow, failing or unreachable, and that records the calls it
// receives.
package userstest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"askgate/internal/chat"
)

// FailureBody is the body of the responses of a failing Server. It looks
// like a leaked database error on purpose, so that tests can check it never
// reaches a client.
const FailureBody = "pq: SELECT password FROM users WHERE id = $1: connection reset by peer"

// MaxRecorded is how many requests a Server remembers for Requests; Calls
// counts them all.
const MaxRecorded = 10000

// Request is a call the Server received.
type Request struct {
	// IDs are the ids asked for, in the order sent.
	IDs []string
	// Header holds the request's headers (traceparent, …).
	Header http.Header
	// URL is the request's URL, with its raw query.
	URL *url.URL
}

// Server is a fake user service. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the service, for users.NewClient.
	URL string

	srv *httptest.Server

	mu       sync.Mutex
	users    map[string]chat.User
	delay    time.Duration
	failure  int
	calls    int
	requests []Request // the latest MaxRecorded
}

// NewServer starts a user service that knows users. It is closed when the
// test ends.
func NewServer(t testing.TB, users ...chat.User) *Server {
	t.Helper()
	s := &Server{users: make(map[string]chat.User)}
	s.Add(users...)
	s.srv = httptest.NewServer(http.HandlerFunc(s.serveHTTP))
	s.URL = s.srv.URL
	t.Cleanup(s.Close)
	return s
}

// Add makes users known, replacing any with the same ids.
func (s *Server) Add(users ...chat.User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range users {
		s.users[u.ID] = u
	}
}

// SetDelay makes every response wait d before it is written (until the
// client gives up). Zero removes the delay.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// SetFailure makes every response have the given status and FailureBody as
// its body. Zero makes the service healthy again.
func (s *Server) SetFailure(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failure = status
}

// Close shuts the service down: later calls are refused at the TCP level.
// Close may be called more than once.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Calls returns the number of GET /users requests the service has received.
func (s *Server) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// Requests returns the requests the service has received, oldest first (at
// most the latest MaxRecorded).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// LastRequest returns the latest request the service has received, or the
// zero Request when there is none.
func (s *Server) LastRequest() Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.requests) == 0 {
		return Request{}
	}
	return s.requests[len(s.requests)-1]
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/users" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var ids []string
	if q := r.URL.Query().Get("ids"); q != "" {
		ids = strings.Split(q, ",")
	}

	s.mu.Lock()
	s.calls++
	if len(s.requests) == MaxRecorded {
		s.requests = slices.Delete(s.requests, 0, MaxRecorded/2)
	}
	s.requests = append(s.requests, Request{IDs: ids, Header: r.Header.Clone(), URL: r.URL})
	delay, failure := s.delay, s.failure
	var found []chat.User
	for _, id := range ids {
		if u, ok := s.users[id]; ok {
			found = append(found, u)
		}
	}
	s.mu.Unlock()

	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	if failure != 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(failure)
		w.Write([]byte(FailureBody))
		return
	}

	type user struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Email     string `json:"email"`
		AvatarURL string `json:"avatarUrl"`
	}
	body := struct {
		Users []user `json:"users"`
	}{Users: []user{}}
	for _, u := range found {
		body.Users = append(body.Users, user{u.ID, u.Name, u.Email, u.AvatarURL})
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(body)
}
