//go:build unix

package main

// The tests in this file run askgate as a real process, built from this
// package, and check the contract's "Answers are never lost" across the
// ways a process ends: killed outright (SIGKILL) in the middle of an
// answer, then started again on the same database; and stopped with
// SIGTERM, with an answer that can finish within the grace period and
// with one that cannot.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"askgate/internal/auth"
	"askgate/internal/chat"
	"askgate/internal/llm/llmtest"
	"askgate/internal/store"
	"askgate/internal/store/postgres/pgtest"
)

// lifecycleSecret signs the tokens of the processes these tests start.
const lifecycleSecret = "lifecycle-test-secret-of-at-least-32-bytes"

// The askgate binary, built once for the whole package by askgateBinary
// and removed by TestMain.
var (
	buildOnce sync.Once
	binDir    string
	binPath   string
	buildSkip string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// askgateBinary builds cmd/askgate once (with the race detector when the
// tests have it) and returns the path of the binary. It skips the test
// when no go command is available.
func askgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		// go test puts its own GOROOT/bin first on PATH.
		goTool, err := exec.LookPath("go")
		if err != nil {
			buildSkip = "no go command to build askgate with: " + err.Error()
			return
		}
		if binDir, buildErr = os.MkdirTemp("", "askgate-lifecycle-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "askgate")
		// Without DWARF (-w) the link takes much less time; stack traces
		// and race reports do not need it.
		args := []string{"build", "-ldflags=-w", "-o", binPath}
		if raceEnabled() {
			args = append(args, "-race")
		}
		start := time.Now()
		cmd := exec.Command(goTool, append(args, ".")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			return
		}
		t.Logf("built askgate in %v (race detector: %v)", time.Since(start).Round(time.Millisecond), raceEnabled())
	})
	if buildSkip != "" {
		t.Skip(buildSkip)
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// raceEnabled reports whether this test binary has the race detector.
func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// process is an "askgate serve" process.
type process struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *lockedBuffer
	stderr *lockedBuffer
	base   string        // http://127.0.0.1:PORT
	exited chan struct{} // closed once the process has exited
	err    error         // the exit status, set before exited is closed
}

// startAskgate starts "askgate serve" on a free port with the given
// ASKGATE_* variables (and none from the test's environment), waits until
// /healthz answers and returns the process. It is killed when the test
// ends, if it is still running.
func startAskgate(t *testing.T, vars map[string]string) *process {
	t.Helper()
	bin := askgateBinary(t)
	env := []string{
		"ASKGATE_ADDR=127.0.0.1:0",
		"ASKGATE_JWT_SECRET=" + lifecycleSecret,
	}
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	// The race detector sleeps a second at exit (atexit_sleep_ms) to let
	// late reports come: it would count against the shutdown timeouts.
	gorace := "atexit_sleep_ms=0"
	for _, kv := range os.Environ() {
		switch {
		case strings.HasPrefix(kv, "ASKGATE_"):
		case strings.HasPrefix(kv, "GORACE="):
			gorace = strings.TrimPrefix(kv, "GORACE=") + " " + gorace
		default:
			env = append(env, kv)
		}
	}
	env = append(env, "GORACE="+gorace)
	p := &process{t: t, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, "serve")
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if strings.Contains(p.stderr.String(), "WARNING: DATA RACE") {
			t.Errorf("askgate (pid %d) reported a data race:\n%s", p.cmd.Process.Pid, p.stderr)
		}
		if t.Failed() {
			t.Logf("askgate (pid %d) stderr:\n%s", p.cmd.Process.Pid, p.stderr)
		}
	})

	urlRE := regexp.MustCompile(`GraphiQL: (http://\S+)/\n`)
	deadline := time.Now().Add(20 * time.Second)
	for p.base == "" {
		if m := urlRE.FindStringSubmatch(p.stdout.String()); m != nil {
			p.base = m[1]
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("askgate printed no URL within 20s:\n%s\n%s", p.stdout, p.stderr)
		}
		select {
		case <-p.exited:
			t.Fatalf("askgate exited at start-up: %v\n%s", p.err, p.stderr)
		case <-time.After(10 * time.Millisecond):
		}
	}
	for {
		if res, err := http.Get(p.base + "/healthz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/healthz never answered:\n%s", p.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signal sends sig to the process.
func (p *process) signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signal %v: %v", sig, err)
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// status.
func (p *process) wait(timeout time.Duration) error {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.err
	case <-time.After(timeout):
		p.t.Fatalf("askgate did not exit within %v:\n%s", timeout, p.stderr)
		return nil
	}
}

// kill kills the process with SIGKILL, as the OOM killer or a crash
// would, and waits for it to be gone.
func (p *process) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	err := p.wait(10 * time.Second)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		p.t.Fatalf("askgate ended with %v, want killed by SIGKILL", err)
	}
}

// lifecycleToken mints a token for sub that may read and ask.
func lifecycleToken(t *testing.T, sub string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(lifecycleSecret), auth.MintClaims{Subject: sub, Scope: auth.ScopeRead + " " + auth.ScopeWrite, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do runs a GraphQL operation and decodes its data into out.
func (p *process) do(token, query string, vars map[string]any, out any) {
	p.t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, p.base+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var resp struct {
		Data   json.RawMessage
		Errors []any
	}
	if err := json.Unmarshal(raw, &resp); err != nil || res.StatusCode != http.StatusOK || resp.Errors != nil {
		p.t.Fatalf("%s: status %d: %s", query, res.StatusCode, raw)
	}
	if err := json.Unmarshal(resp.Data, out); err != nil {
		p.t.Fatal(err)
	}
}

// ask starts a conversation with question and returns its answer's id.
func (p *process) ask(token, question string) string {
	p.t.Helper()
	var out struct {
		StartConversation struct {
			Answer struct{ ID, Status string }
		}
	}
	p.do(token, `mutation($q: String!) {
  startConversation(input: {title: "lifecycle", question: $q}) { conversation { id } question { id } answer { id status } }
}`, map[string]any{"q": question}, &out)
	a := out.StartConversation.Answer
	if a.ID == "" || a.Status != "STREAMING" {
		p.t.Fatalf("startConversation's answer: %+v", a)
	}
	return a.ID
}

// savedAnswer is an answer as the node query returns it.
type savedAnswer struct {
	Status, Content string
	Error           *string
	CompletedAt     *string
}

// answer reads an answer with the node query.
func (p *process) answer(token, id string) savedAnswer {
	p.t.Helper()
	var out struct{ Node savedAnswer }
	p.do(token, `query($id: ID!) { node(id: $id) { ... on Message { status content error completedAt } } }`, map[string]any{"id": id}, &out)
	return out.Node
}

// lifecycleEvent is an AnswerEvent as a subscriber receives it.
type lifecycleEvent struct {
	Seq     int
	Delta   string
	Done    bool
	Message *savedAnswer
}

// watcher is a graphql-transport-ws client subscribed to one answer. A
// goroutine reads the connection until it ends and keeps what arrives.
type watcher struct {
	t    *testing.T
	conn *websocket.Conn

	mu       sync.Mutex
	events   []lifecycleEvent
	complete bool
	other    []string // messages of other types
	ended    chan struct{}
	endErr   error // why reading ended; set before ended is closed
}

const lifecycleSubscription = `subscription($id: ID!, $after: Int) {
  answer(messageId: $id, after: $after) { seq delta done message { status content error completedAt } }
}`

// subscribe opens a WebSocket, authenticates and subscribes to answer id
// after seq after.
func (p *process) subscribe(token, id string, after int) *watcher {
	p.t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second}
	conn, res, err := d.Dial("ws"+strings.TrimPrefix(p.base, "http")+"/graphql", nil)
	if err != nil {
		p.t.Fatalf("dial: %v (%v)", err, res)
	}
	p.t.Cleanup(func() { conn.Close() })
	w := &watcher{t: p.t, conn: conn, ended: make(chan struct{})}
	if err := conn.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + token}}); err != nil {
		p.t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ack map[string]any
	if err := conn.ReadJSON(&ack); err != nil || ack["type"] != "connection_ack" {
		p.t.Fatalf("after connection_init: %v, %v", ack, err)
	}
	conn.SetReadDeadline(time.Time{})
	if err := conn.WriteJSON(map[string]any{"id": "1", "type": "subscribe", "payload": map[string]any{
		"query": lifecycleSubscription, "variables": map[string]any{"id": id, "after": after},
	}}); err != nil {
		p.t.Fatal(err)
	}
	go w.read()
	return w
}

func (w *watcher) read() {
	defer close(w.ended)
	for {
		var msg struct {
			Type    string
			Payload struct {
				Data struct{ Answer lifecycleEvent }
			}
		}
		_, raw, err := w.conn.ReadMessage()
		if err == nil {
			err = json.Unmarshal(raw, &msg)
		}
		w.mu.Lock()
		switch {
		case err != nil:
			w.endErr = err
		case msg.Type == "next":
			w.events = append(w.events, msg.Payload.Data.Answer)
		case msg.Type == "complete":
			w.complete = true
		default:
			w.other = append(w.other, string(raw))
		}
		w.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// seen returns the events received so far and their text.
func (w *watcher) seen() ([]lifecycleEvent, string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var b strings.Builder
	for _, ev := range w.events {
		b.WriteString(ev.Delta)
	}
	return append([]lifecycleEvent(nil), w.events...), b.String()
}

// waitText waits until the text received satisfies ok.
func (w *watcher) waitText(ok func(string) bool) string {
	w.t.Helper()
	var text string
	waitUntil(w.t, 15*time.Second, func() bool {
		_, text = w.seen()
		return ok(text)
	}, func() string { return fmt.Sprintf("subscriber has %q", text) })
	return text
}

// end waits for the connection to end and returns what was received and
// why it ended.
func (w *watcher) end(timeout time.Duration) (events []lifecycleEvent, complete bool, err error) {
	w.t.Helper()
	select {
	case <-w.ended:
	case <-time.After(timeout):
		w.t.Fatalf("the WebSocket was still open after %v", timeout)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.other) > 0 {
		w.t.Errorf("unexpected messages: %v", w.other)
	}
	return append([]lifecycleEvent(nil), w.events...), w.complete, w.endErr
}

// checkTerminal checks that events are numbered in order, that only the
// last is done, with the final message, of status wantStatus, and, when
// the events were streamed from the start, that their deltas add up to
// the final message's content. It returns the final message.
func checkTerminal(t *testing.T, events []lifecycleEvent, wantStatus string, streamed bool) *savedAnswer {
	t.Helper()
	if len(events) == 0 {
		t.Fatal("the subscriber received no event")
	}
	var text strings.Builder
	for i, ev := range events {
		if i > 0 && ev.Seq <= events[i-1].Seq {
			t.Errorf("event %d: seq %d after %d", i, ev.Seq, events[i-1].Seq)
		}
		if last := i == len(events)-1; ev.Done != last || (ev.Message != nil) != last {
			t.Fatalf("event %d of %d: done %v, message %+v", i+1, len(events), ev.Done, ev.Message)
		}
		text.WriteString(ev.Delta)
	}
	m := events[len(events)-1].Message
	if m.Status != wantStatus || m.CompletedAt == nil {
		t.Errorf("final message %+v, want status %s and completedAt", m, wantStatus)
	}
	if streamed && text.String() != m.Content {
		t.Errorf("deltas add up to %q, final message has %q", text.String(), m.Content)
	}
	return m
}

// storedAnswer reads answer gid of owner straight from the database at
// url, which no process is using.
func storedAnswer(t *testing.T, url, owner, gid string) *chat.Message {
	t.Helper()
	id, err := chat.DecodeNodeIDOf(chat.KindMessage, gid)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	msgs, err := st.MessagesByID(ctx, owner, []string{id})
	if err != nil || len(msgs) != 1 {
		t.Fatalf("MessagesByID: %v, %v", msgs, err)
	}
	return msgs[0]
}

// waitUntil polls cond until it holds, failing the test with describe()
// after timeout.
func waitUntil(t *testing.T, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v: %s", timeout, describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// numberedReply returns n tokens "w01 ", "w02 ", … and their text.
func numberedReply(n int) ([]string, string) {
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("w%02d ", i+1)
	}
	return tokens, strings.Join(tokens, "")
}

// TestKilledDuringAnAnswer: askgate is killed (SIGKILL) while it streams
// an answer. Started again on the same database, it has the answer FAILED
// (interrupted) with the content of the last checkpoint, and a subscriber
// gets that final state at once.
func TestKilledDuringAnAnswer(t *testing.T) {
	t.Run("SQLite", func(t *testing.T) {
		testKilledDuringAnAnswer(t, "sqlite:"+filepath.Join(t.TempDir(), "askgate.db"))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		testKilledDuringAnAnswer(t, pgtest.NewSchema(t))
	})
}

func testKilledDuringAnAnswer(t *testing.T, dbURL string) {
	backend := llmtest.New(t)
	tokens, full := numberedReply(40)
	backend.SetReply(tokens...)
	backend.Pace(50 * time.Millisecond) // 2 s in all; a checkpoint every 500 ms
	vars := map[string]string{"ASKGATE_DATABASE_URL": dbURL, "ASKGATE_LLM_BASE_URL": backend.URL()}
	tok := lifecycleToken(t, "alice")

	p := startAskgate(t, vars)
	id := p.ask(tok, "Count to forty, slowly.")
	w := p.subscribe(tok, id, 0)
	w.waitText(func(s string) bool { return strings.Count(s, " ") >= 3 })

	// Wait for a checkpoint to reach the store.
	var a savedAnswer
	waitUntil(t, 15*time.Second, func() bool {
		a = p.answer(tok, id)
		return a.Content != "" || a.Status != "STREAMING"
	}, func() string { return fmt.Sprintf("answer %+v", a) })
	if a.Status != "STREAMING" || !strings.HasPrefix(full, a.Content) {
		t.Fatalf("answer before the kill: %+v, want STREAMING with a prefix of %q", a, full)
	}
	p.kill()
	_, seen := w.seen()
	if seen == "" || !strings.HasPrefix(full, seen) {
		t.Errorf("the subscriber saw %q, want a prefix of %q", seen, full)
	}
	select {
	case <-backend.Aborted():
	case <-time.After(10 * time.Second):
		t.Error("the backend did not see its stream closed by the dead process")
	}

	// The database holds the last checkpoint, still STREAMING.
	crashed := storedAnswer(t, dbURL, "alice", id)
	checkpoint := crashed.Content
	if crashed.Status != chat.StatusStreaming || len(checkpoint) < len(a.Content) ||
		!strings.HasPrefix(full, checkpoint) || checkpoint == full {
		t.Fatalf("after the kill the store has %s %q, want STREAMING with a prefix of the reply, at least %q", crashed.Status, checkpoint, a.Content)
	}
	t.Logf("subscriber saw %d bytes, last checkpoint has %d of %d", len(seen), len(checkpoint), len(full))

	// Started again, askgate has ended the answer as interrupted.
	p2 := startAskgate(t, vars)
	got := p2.answer(tok, id)
	if got.Status != "FAILED" || got.Error == nil || !strings.HasPrefix(*got.Error, "interrupted") ||
		got.Content != checkpoint || got.CompletedAt == nil {
		t.Errorf("after the restart: %+v (error %v), want FAILED, interrupted, content %q", got, deref(got.Error), checkpoint)
	}

	// A subscriber gets the final state at once (not after some timeout
	// or poll), then complete.
	start := time.Now()
	w2 := p2.subscribe(tok, id, 0)
	waitUntil(t, 10*time.Second, func() bool {
		w2.mu.Lock()
		defer w2.mu.Unlock()
		return w2.complete || w2.endErr != nil
	}, func() string { evs, _ := w2.seen(); return fmt.Sprintf("events %+v", evs) })
	events, _ := w2.seen()
	t.Logf("final event after %v", time.Since(start).Round(time.Millisecond))
	if len(events) != 1 {
		t.Fatalf("subscribing after the restart: %+v, want the final event only", events)
	}
	m := checkTerminal(t, events, "FAILED", false)
	if m.Content != checkpoint || m.Error == nil || !strings.HasPrefix(*m.Error, "interrupted") {
		t.Errorf("final event's message %+v (error %v), want content %q, interrupted", m, deref(m.Error), checkpoint)
	}
	if n := backend.Requests(); n != 1 {
		t.Errorf("the backend got %d calls, want 1: a restart generates nothing", n)
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// TestSIGTERMLetsAnAnswerFinish: on SIGTERM with an answer that can end
// within the grace period, askgate lets it end and saves it COMPLETE, a
// subscriber gets its terminal event then a close frame 1001, and the
// process exits 0.
func TestSIGTERMLetsAnAnswerFinish(t *testing.T) {
	backend := llmtest.New(t)
	tokens, full := numberedReply(20)
	backend.SetReply(tokens...)
	backend.Pace(50 * time.Millisecond) // about 1 s
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "askgate.db")
	const timeout = 10 * time.Second
	p := startAskgate(t, map[string]string{
		"ASKGATE_DATABASE_URL":     dbURL,
		"ASKGATE_LLM_BASE_URL":     backend.URL(),
		"ASKGATE_SHUTDOWN_TIMEOUT": timeout.String(),
	})
	tok := lifecycleToken(t, "alice")
	id := p.ask(tok, "Count to twenty.")
	w := p.subscribe(tok, id, 0)
	seen := w.waitText(func(s string) bool { return s != "" })

	start := time.Now()
	p.signal(syscall.SIGTERM)
	if err := p.wait(timeout + 5*time.Second); err != nil {
		t.Errorf("askgate exited with %v, want 0", err)
	}
	took := time.Since(start)
	t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))
	if took > timeout {
		t.Errorf("askgate took %v to stop, more than ASKGATE_SHUTDOWN_TIMEOUT (%v)", took, timeout)
	}
	if seen == full {
		t.Fatal("the answer was complete before SIGTERM: nothing was tested")
	}

	events, _, err := w.end(10 * time.Second)
	m := checkTerminal(t, events, "COMPLETE", true)
	if m.Content != full {
		t.Errorf("terminal event's content %q, want %q", m.Content, full)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("the WebSocket ended with %v, want a close frame 1001", err)
	}

	saved := storedAnswer(t, dbURL, "alice", id)
	if saved.Status != chat.StatusComplete || saved.Content != full || saved.Error != "" {
		t.Errorf("saved answer: %s %q (error %q), want COMPLETE %q", saved.Status, saved.Content, saved.Error, full)
	}
	if n := backend.Aborts(); n != 0 {
		t.Errorf("%d upstream streams were closed early", n)
	}
}

// TestSIGTERMInterruptsALongAnswer: on SIGTERM with an answer that cannot
// end within the grace period, askgate stops it, saves it FAILED
// (interrupted) with its text so far, closes the upstream stream and exits
// within ASKGATE_SHUTDOWN_TIMEOUT.
func TestSIGTERMInterruptsALongAnswer(t *testing.T) {
	backend := llmtest.New(t)
	tokens, _ := numberedReply(10)
	backend.SetReply(tokens...)
	backend.Hold()
	backend.Release(3)
	t.Cleanup(backend.Unhold)
	sofar := strings.Join(tokens[:3], "")
	dbURL := "sqlite:" + filepath.Join(t.TempDir(), "askgate.db")
	const timeout = 1500 * time.Millisecond
	p := startAskgate(t, map[string]string{
		"ASKGATE_DATABASE_URL":     dbURL,
		"ASKGATE_LLM_BASE_URL":     backend.URL(),
		"ASKGATE_SHUTDOWN_TIMEOUT": timeout.String(),
	})
	tok := lifecycleToken(t, "alice")
	id := p.ask(tok, "Count to ten.")
	w := p.subscribe(tok, id, 0)
	w.waitText(func(s string) bool { return s == sofar })

	start := time.Now()
	p.signal(syscall.SIGTERM)
	if err := p.wait(timeout + 10*time.Second); err != nil {
		t.Errorf("askgate exited with %v, want 0", err)
	}
	took := time.Since(start)
	t.Logf("exited %v after SIGTERM", took.Round(time.Millisecond))
	// The process needs a moment beyond shutdown to exit; a second is
	// ample even on a loaded machine with the race detector.
	if took > timeout+time.Second {
		t.Errorf("askgate took %v to stop, ASKGATE_SHUTDOWN_TIMEOUT is %v", took, timeout)
	}
	select {
	case <-backend.Aborted():
	case <-time.After(5 * time.Second):
		t.Error("the backend did not see the upstream stream closed")
	}

	events, _, err := w.end(10 * time.Second)
	m := checkTerminal(t, events, "FAILED", true)
	if m.Content != sofar || m.Error == nil || !strings.HasPrefix(*m.Error, "interrupted") {
		t.Errorf("terminal event's message %+v (error %v), want %q, interrupted", m, deref(m.Error), sofar)
	}
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Errorf("the WebSocket ended with %v, want a close frame 1001", err)
	}

	saved := storedAnswer(t, dbURL, "alice", id)
	if saved.Status != chat.StatusFailed || saved.Content != sofar || !strings.HasPrefix(saved.Error, "interrupted") {
		t.Errorf("saved answer: %s %q (error %q), want FAILED %q, interrupted", saved.Status, saved.Content, saved.Error, sofar)
	}
}
