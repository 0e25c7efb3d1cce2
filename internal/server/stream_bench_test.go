package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/valyala/fastjson"
	"golang.org/x/sync/errgroup"

	"askgate/internal/llm"
)

// The streaming benchmarks: what a token costs on its way through askgate,
// from the language model's server-sent events to a subscriber's WebSocket.
//
//	go test -run='^$' -bench=TokenLatency -benchtime=2000x ./internal/server/
//	go test -run='^$' -bench=FanOut100 -benchtime=3000x -cpu=1 ./internal/server/
//	go test -run='^$' -bench=IdleWebSocketMemory -benchtime=1x ./internal/server/
//	go test -run='^$' -bench=WriteFloor100 -benchtime=3000x -cpu=1 ./internal/server/
//
// The subscribers of BenchmarkFanOut100 and BenchmarkIdleWebSocketMemory,
// and the language model's server of BenchmarkFanOut100, run in a separate
// process (this test binary, started again with
// TestHelperProcessStreamClients selected), so that the server's figures
// are its own.

// BenchmarkTokenLatency measures the time a token spends in askgate: one op
// is one token, written by the language model's server and read by a
// graphql-transport-ws subscriber of its answer, then one written by the
// same server and read directly by a plain SSE client. Tokens go one at a
// time (the next is written once the previous has been read), so the figures
// are latencies, not throughput. Each token carries the time of its write,
// taken just before the write. It reports the p50 and p99 of
//
//   - gateway: the write to the subscriber's read, through askgate;
//   - direct: the write to the plain SSE client's read;
//   - added: gateway minus direct, token by token (they alternate, so that
//     both see the same load): askgate's own latency.
//
// The answer's checkpoints (every 500 ms, a store write) are part of it. The
// token log holds at most 4 MiB, about 140 000 of these tokens: keep b.N
// below that.
func BenchmarkTokenLatency(b *testing.B) {
	b.Run("memory", func(b *testing.B) { benchTokenLatency(b, false) })
	// With the token log in Redis, as several instances run.
	b.Run("redis", func(b *testing.B) { benchTokenLatency(b, true) })
}

func benchTokenLatency(b *testing.B, redisTokens bool) {
	e, llmSrv := newStreamEnv(b, redisTokens)
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "what time is it?").Ask.Answer.ID
	gen := llmSrv.next(b) // the answer's generation reads this stream

	c := e.dial("graphql-transport-ws")
	c.init(e.token("alice"))
	c.send(subscribeMsg("1", id, 0))
	viaGateway := func() time.Duration {
		gen.write(stampToken)
		_, data, err := c.conn.ReadMessage()
		at := time.Since(epoch)
		if err != nil {
			b.Fatal(err)
		}
		var msg struct {
			Type, ID string
			Payload  struct{ Data struct{ Answer answerEvent } }
		}
		if err := json.Unmarshal(data, &msg); err != nil || msg.Type != "next" || msg.ID != "1" {
			b.Fatalf("got %s (%v), want an event", data, err)
		}
		return at - sentAt(b, msg.Payload.Data.Answer.Delta)
	}

	direct := llmSrv.openDirect(b)
	viaDirect := func() time.Duration {
		direct.write(stampToken)
		delta, at := direct.read(b)
		return at - sentAt(b, delta)
	}

	// The first tokens set both paths up (the subscription starts, buffers
	// and connections warm up); only those after them count.
	for range 50 {
		viaGateway()
		viaDirect()
	}
	gateway := make([]time.Duration, 0, b.N)
	plain := make([]time.Duration, 0, b.N)
	added := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		g := viaGateway()
		d := viaDirect()
		gateway, plain, added = append(gateway, g), append(plain, d), append(added, g-d)
	}
	b.StopTimer()
	gen.end()
	direct.end()

	for _, m := range []struct {
		name string
		d    []time.Duration
	}{{"gateway", gateway}, {"direct", plain}, {"added", added}} {
		slices.Sort(m.d)
		b.ReportMetric(micros(percentile(m.d, 50)), "p50-"+m.name+"-µs")
		b.ReportMetric(micros(percentile(m.d, 99)), "p99-"+m.name+"-µs")
	}
	b.ReportMetric(0, "ns/op") // the time of both trips and of the harness: not a figure of askgate
}

// BenchmarkFanOut100 measures the delivery of one answer to 100
// graphql-transport-ws subscribers through the real server. One op is one
// token, written by the language model's server (one flushed chunk each)
// once every subscriber is receiving the answer: as fast as it can
// ("burst"), or one every 1 ms or 500 µs ("paced-1ms", "paced-500µs": 100 000
// and 200 000 events/s offered). It reports, from the first token written to
// the last subscriber's complete:
//
//   - events/s: WebSocket "next" messages received, all subscribers
//     together. A subscriber that lags gets the tokens it missed merged into
//     one event, so events/token, at most 100 (and the final event), falls
//     when the server cannot keep up;
//   - deliveries/s: tokens received, all subscribers together, merged or
//     not;
//   - tokens/s: tokens generated;
//   - server-cores, client-cores: the CPU time the server's process and the
//     client process used, divided by the elapsed time (Linux only);
//   - events/server-cpu-s: events per second of the server's CPU time: the
//     rate one core would sustain, whatever else runs on the machine;
//   - deliveries/server-cpu-s: the same for deliveries (tokens received,
//     merged or not). Where the server falls behind it merges, so events
//     fall and deliveries do not: the two together tell what a core did.
//
// The subscribers and the language model's server run in a separate
// process. Run it with -cpu=1 for the figures of one core. The token log
// holds at most 4 MiB, 200 000 of these tokens: keep b.N below that.
func BenchmarkFanOut100(b *testing.B) {
	for _, bc := range []struct {
		name  string
		every time.Duration
	}{
		{"burst", 0},
		{"paced-1ms", time.Millisecond},
		{"paced-500µs", 500 * time.Microsecond},
	} {
		b.Run(bc.name, func(b *testing.B) { benchFanOut(b, 100, bc.every, false) })
	}
	// With the token log in Redis, as several instances run.
	b.Run("paced-500µs-redis", func(b *testing.B) { benchFanOut(b, 100, 500*time.Microsecond, true) })
}

func benchFanOut(b *testing.B, subscribers int, every time.Duration, redisTokens bool) {
	clients := startClientProcess(b, clientFanOut, subscribers)
	addr, ok := strings.CutPrefix(clients.line(b), "backend ")
	if !ok {
		b.Fatal("the client process did not start a language model server")
	}
	e := newEnv(b, envOptions{llm: llm.Options{HTTPClient: dialingClient(b, addr)}, redisTokens: redisTokens})
	// Cleanups run last first: the client process, and the language model
	// server in it, end before newEnv's cleanup waits for the answer.
	b.Cleanup(func() { clients.stop(b) })
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "tell everyone").Ask.Answer.ID
	clients.subscribe(b, e, id)

	cpu, cpuOK := processCPU()
	b.ResetTimer()
	start := time.Now()
	clients.say(b, "go %d %d", b.N, every)
	line := clients.line(b)
	elapsed := time.Since(start)
	b.StopTimer()
	cpuEnd, _ := processCPU()

	var events, textBytes int
	var clientCPU time.Duration
	if _, err := fmt.Sscanf(line, "done %d %d %d", &events, &textBytes, &clientCPU); err != nil {
		b.Fatalf("client process: %q: %v", line, err)
	}
	if want := subscribers * b.N * len(fanOutToken); textBytes != want {
		b.Errorf("the subscribers received %d bytes of text, want %d", textBytes, want)
	}
	s := elapsed.Seconds()
	b.ReportMetric(float64(events)/s, "events/s")
	b.ReportMetric(float64(subscribers*b.N)/s, "deliveries/s")
	b.ReportMetric(float64(b.N)/s, "tokens/s")
	b.ReportMetric(float64(events)/float64(b.N), "events/token")
	if cpuOK {
		used := (cpuEnd - cpu).Seconds()
		b.ReportMetric(used/s, "server-cores")
		b.ReportMetric(clientCPU.Seconds()/s, "client-cores")
		if used > 0 {
			b.ReportMetric(float64(events)/used, "events/server-cpu-s")
			b.ReportMetric(float64(subscribers*b.N)/used, "deliveries/server-cpu-s")
		}
	}
}

// fanOutToken is every token of BenchmarkFanOut100's answer.
const fanOutToken = " tok"

// processCPU returns the CPU time, user and system, that this process has
// used, from /proc/self/stat; ok is false where there is no such file.
func processCPU() (d time.Duration, ok bool) {
	raw, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, false
	}
	// Field 2, the command, is in parentheses and may hold spaces; utime
	// and stime are fields 14 and 15, in clock ticks (USER_HZ, 100).
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(utime+stime) * (time.Second / 100), true
}

// BenchmarkWriteFloor100 measures the least that BenchmarkFanOut100's
// events can cost on the machine it runs on: one op is one WebSocket text
// message of an event's size written to each of 100 connections, by one
// goroutine in a loop with nothing else around (gorilla/websocket, a write
// system call each), read by 100 WebSocket clients in the client process
// as BenchmarkFanOut100's subscribers are, at the same rates. On a
// loopback connection a write also pays for the receiving side, and that
// cost depends on the machine and on what else runs on it: compare
// BenchmarkFanOut100's events/server-cpu-s with this one's, run at the
// same time, to see how much of an event's cost is askgate's own. It
// reports events/s and events/server-cpu-s as BenchmarkFanOut100 does.
func BenchmarkWriteFloor100(b *testing.B) {
	for _, bc := range []struct {
		name  string
		every time.Duration
	}{
		{"burst", 0},
		{"paced-1ms", time.Millisecond},
		{"paced-500µs", 500 * time.Microsecond},
	} {
		b.Run(bc.name, func(b *testing.B) { benchWriteFloor(b, 100, bc.every) })
	}
}

func benchWriteFloor(b *testing.B, n int, every time.Duration) {
	accepted := make(chan *websocket.Conn, n)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := up.Upgrade(w, r, nil); err == nil {
			accepted <- c
		}
	}))
	b.Cleanup(srv.Close)
	clients := startClientProcess(b, clientFloor, n)
	clients.say(b, "subscribe %s - -", "ws"+strings.TrimPrefix(srv.URL, "http"))
	if line := clients.line(b); line != "ready" {
		b.Fatalf("client process: %q, want ready", line)
	}
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = <-accepted
		defer conns[i].Close()
	}
	// An event of BenchmarkFanOut100's answer, as askgate writes it.
	msg := []byte(`{"type":"next","id":"1","payload":{"data":{"answer":{"messageId":"TWVzc2FnZTowMUpCRU5DSDAwMDAwMDAwMDAwMDAwMDA","seq":1234,"delta":" tok","done":false,"message":null}}}}`)
	write := func(c *websocket.Conn, m []byte) {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(websocket.TextMessage, m); err != nil {
			b.Fatal(err)
		}
	}

	cpu, cpuOK := processCPU()
	b.ResetTimer()
	start := time.Now()
	clients.say(b, "go %d %d", b.N, every)
	for i := range b.N {
		if every > 0 {
			time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
		}
		for _, c := range conns {
			write(c, msg)
		}
	}
	for _, c := range conns {
		write(c, []byte(floorEnd))
	}
	line := clients.line(b)
	elapsed := time.Since(start)
	b.StopTimer()
	cpuEnd, _ := processCPU()

	var events int
	if _, err := fmt.Sscanf(line, "done %d", &events); err != nil {
		b.Fatalf("client process: %q: %v", line, err)
	}
	if events != n*b.N {
		b.Errorf("the clients received %d messages, want %d", events, n*b.N)
	}
	b.ReportMetric(float64(events)/elapsed.Seconds(), "events/s")
	if used := (cpuEnd - cpu).Seconds(); cpuOK && used > 0 {
		b.ReportMetric(used/elapsed.Seconds(), "server-cores")
		b.ReportMetric(float64(events)/used, "events/server-cpu-s")
	}
}

// floorEnd is the last message of each of BenchmarkWriteFloor100's
// connections.
const floorEnd = "end"

// BenchmarkIdleWebSocketMemory measures the server's memory per idle
// graphql-transport-ws connection holding one answer subscription: heap in
// use plus goroutine stacks, after garbage collection, divided by the number
// of connections. Every connection watches the same answer, which is
// streaming and stalled after its first token (the backend holds the rest),
// and has received that token: what one answer costs (its generation, its
// log, the backend's connection) is not counted. The clients run in a
// separate process. The growth of the test's log buffer (newEnv keeps the
// server's log lines, one per upgrade request, in memory) is left out of
// bytes/conn and reported as test-log-bytes/conn.
//
//	go test -run='^$' -bench=IdleWebSocketMemory -benchtime=1x ./internal/server/
//
// ASKGATE_WS_BENCH_N sets the number of connections (default 2000);
// ASKGATE_WS_BENCH_PROFILE=path writes heap profiles of the server before
// (path.before) and after (path) the connections, recording every
// allocation, and a goroutine profile (path.goroutines).
func BenchmarkIdleWebSocketMemory(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv("ASKGATE_WS_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	profile := os.Getenv("ASKGATE_WS_BENCH_PROFILE")
	if profile != "" {
		defer func(rate int) { runtime.MemProfileRate = rate }(runtime.MemProfileRate)
		runtime.MemProfileRate = 1
	}
	e := newEnv(b, envOptions{})
	e.Backend.Hold()
	e.Backend.Release(1)
	conv := e.startConversation("alice")
	id := e.ask("alice", conv, "wait for it").Ask.Answer.ID

	before, beforeStack := memInUse()
	logBefore := logCap(e)
	goroutines := runtime.NumGoroutine()
	if profile != "" {
		writeProfile(b, "heap", profile+".before")
	}
	clients := startClientProcess(b, clientIdle, n)
	clients.subscribe(b, e, id)
	time.Sleep(200 * time.Millisecond) // the writers of the first events end
	after, afterStack := memInUse()
	logGrowth := logCap(e) - logBefore
	if profile != "" {
		writeProfile(b, "heap", profile)
		writeProfile(b, "goroutine", profile+".goroutines")
	}
	b.ReportMetric((float64(after-before)-float64(logGrowth))/float64(n), "bytes/conn")
	b.ReportMetric(float64(afterStack-beforeStack)/float64(n), "stack-bytes/conn")
	b.ReportMetric(float64(logGrowth)/float64(n), "test-log-bytes/conn")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/float64(n), "goroutines/conn")
	b.ReportMetric(0, "ns/op")
}

// logCap returns the memory that the test's log buffer holds.
func logCap(e *env) int {
	e.Logs.mu.Lock()
	defer e.Logs.mu.Unlock()
	return e.Logs.buf.Cap()
}

// memInUse returns the heap and the goroutine stacks in use, after
// garbage collection, and the stacks alone.
func memInUse() (total, stack uint64) {
	// A collection shrinks the stack of a goroutine that uses little of it
	// by half at most: a few let idle goroutines reach the size they keep
	// in a long-running server.
	for range 6 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse, m.StackInuse
}

func writeProfile(b *testing.B, name, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	debug := 0
	if name == "goroutine" {
		debug = 1
	}
	if err := pprof.Lookup(name).WriteTo(f, debug); err != nil {
		b.Fatal(err)
	}
}

// epoch is the origin of the times that tokens carry: every process has
// its own, so the times are only compared within one.
var epoch = time.Now()

// stampToken, sent to a benchStream, is written as the time of its write
// (since epoch, in nanoseconds, on the monotonic clock).
const stampToken = "\x00stamp"

// sentAt returns the time a stamped token was written.
func sentAt(b *testing.B, delta string) time.Duration {
	b.Helper()
	ns, err := strconv.ParseInt(strings.TrimPrefix(delta, "t"), 10, 64)
	if err != nil || !strings.HasPrefix(delta, "t") {
		b.Fatalf("token %q is not one stamped token", delta)
	}
	return time.Duration(ns)
}

// percentile returns the p-th percentile of sorted (nearest rank).
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := (len(sorted)*p+99)/100 - 1
	return sorted[max(i, 0)]
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// newStreamEnv returns a gateway whose language model is a benchBackend,
// and the backend.
func newStreamEnv(b *testing.B, redisTokens bool) (*env, *benchBackend) {
	b.Helper()
	llmSrv := newBenchBackend(b)
	e := newEnv(b, envOptions{llm: llm.Options{HTTPClient: dialingClient(b, llmSrv.srv.Listener.Addr().String())}, redisTokens: redisTokens})
	// Cleanups run last first: the backend's streams end before newEnv's
	// cleanup waits for the answers that read them.
	b.Cleanup(llmSrv.stop)
	return e, llmSrv
}

// benchBackend is an OpenAI-compatible Chat Completions server whose
// streams write what the benchmark gives them, when it gives it. It lists
// one model, benchModel.
type benchBackend struct {
	srv     *httptest.Server
	streams chan *benchStream
	done    chan struct{}
	once    sync.Once
}

const benchModel = "bench-model"

// benchStream is one stream of a benchBackend.
type benchStream struct {
	send chan writes
}

// writes are tokens for a stream to write.
type writes struct {
	tokens []string
	every  time.Duration // between two tokens; zero is as fast as possible
}

// write has the stream write tokens, each as a chunk of its own, flushed,
// as fast as it can; stampToken is written as the time of its write. It
// returns once the stream has taken them.
func (st *benchStream) write(tokens ...string) { st.send <- writes{tokens: tokens} }

// writePaced is write with a token every d (d after the previous one was
// due, so that a late one does not delay the others).
func (st *benchStream) writePaced(d time.Duration, tokens []string) {
	st.send <- writes{tokens: tokens, every: d}
}

// end ends the stream: a finish chunk, then [DONE].
func (st *benchStream) end() { close(st.send) }

func newBenchBackend(tb testing.TB) *benchBackend {
	tb.Helper()
	s := &benchBackend{streams: make(chan *benchStream), done: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.serveChat)
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"object":"list","data":[{"id":"`+benchModel+`","object":"model","owned_by":"bench"}]}`)
	})
	s.srv = httptest.NewServer(mux)
	tb.Cleanup(func() {
		s.stop()
		s.srv.Close()
	})
	return s
}

// stop ends every stream.
func (s *benchBackend) stop() { s.once.Do(func() { close(s.done) }) }

// dialingClient returns an HTTP client for llm.Options whose connections
// all go to addr, whatever the URL says: newEnv points its language model
// client at the llmtest server, and a benchBackend at addr takes its place.
// The transport is set up as the llm package's own.
func dialingClient(b *testing.B, addr string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// next returns the next stream the backend serves, once its headers and
// first chunk (the role, no text) are written.
func (s *benchBackend) next(tb testing.TB) *benchStream {
	tb.Helper()
	select {
	case st := <-s.streams:
		return st
	case <-time.After(10 * time.Second):
		tb.Fatal("no request reached the language model's server")
		return nil
	}
}

func (s *benchBackend) serveChat(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	write := func(s string) bool {
		_, err := io.WriteString(w, s)
		return err == nil && rc.Flush() == nil
	}
	if !write(chunk(`{"role":"assistant","content":""}`, "null")) {
		return
	}
	st := &benchStream{send: make(chan writes)}
	select {
	case s.streams <- st:
	case <-r.Context().Done():
		return
	case <-s.done:
		return
	}
	for {
		select {
		case ws, ok := <-st.send:
			if !ok {
				write(chunk(`{}`, `"stop"`) + "data: [DONE]\n\n")
				return
			}
			start := time.Now()
			for i, tok := range ws.tokens {
				if ws.every > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * ws.every)))
				}
				if tok == stampToken {
					tok = "t" + strconv.FormatInt(int64(time.Since(epoch)), 10)
				}
				text, _ := json.Marshal(tok)
				if !write(chunk(`{"content":`+string(text)+`}`, "null")) {
					return
				}
			}
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		}
	}
}

// chunk returns the server-sent event of a chat.completion.chunk with one
// choice.
func chunk(delta, finish string) string {
	return `data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1700000000,"model":"` + benchModel +
		`","choices":[{"index":0,"delta":` + delta + `,"finish_reason":` + finish + `}]}` + "\n\n"
}

// directStream is a plain SSE client of a benchBackend stream.
type directStream struct {
	*benchStream
	r *bufio.Reader
}

// openDirect starts a stream and reads it as a plain SSE client would.
func (s *benchBackend) openDirect(b *testing.B) *directStream {
	b.Helper()
	body := `{"model":"` + benchModel + `","stream":true,"messages":[{"role":"user","content":"what time is it?"}]}`
	tr := &http.Transport{}
	b.Cleanup(tr.CloseIdleConnections)
	res, err := (&http.Client{Transport: tr}).Post(s.srv.URL+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != http.StatusOK {
		b.Fatalf("status %d", res.StatusCode)
	}
	return &directStream{benchStream: s.next(b), r: bufio.NewReader(res.Body)}
}

// read returns the text of the next chunk that has some, and when its line
// was read.
func (d *directStream) read(b *testing.B) (string, time.Duration) {
	b.Helper()
	for {
		line, err := d.r.ReadSlice('\n')
		at := time.Since(epoch)
		if err != nil {
			b.Fatal(err)
		}
		data, ok := bytes.CutPrefix(line, []byte("data: "))
		if !ok {
			continue
		}
		var c struct {
			Choices []struct{ Delta struct{ Content string } }
		}
		if err := json.Unmarshal(data, &c); err != nil {
			b.Fatal(err)
		}
		if len(c.Choices) > 0 && c.Choices[0].Delta.Content != "" {
			return c.Choices[0].Delta.Content, at
		}
	}
}

// The client process of BenchmarkFanOut100 and BenchmarkIdleWebSocketMemory
// takes its mode and number of connections from its environment, then
// talks with the benchmark by lines, on its standard input and output:
//
//	fanout: → "backend <address of its language model server>"
//	all:    ← "subscribe <WebSocket URL> <token> <answer id>"
//	        → "ready", once every connection has its subscription's first event
//	          (floor: once every connection is open)
//	fanout: ← "go <tokens> <ns between two>"
//	        → "done <events> <bytes of text> <its CPU time meanwhile, ns>"
//	floor:  ← "go <messages> <ns between two>"
//	        → "done <messages>", once each connection has read floorEnd
//
// and it exits when its standard input closes.
const (
	envClientMode  = "ASKGATE_STREAM_BENCH_CLIENT"
	envClientConns = "ASKGATE_STREAM_BENCH_CONNS"

	// clientFanOut serves the language model's stream, and its
	// subscribers read the answer to its end.
	clientFanOut = "fanout"
	// clientIdle subscribers hold their subscriptions.
	clientIdle = "idle"
	// clientFloor connections (BenchmarkWriteFloor100's) read messages
	// until floorEnd.
	clientFloor = "floor"
)

// clientProcess is the client process of a benchmark.
type clientProcess struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	once sync.Once
}

// startClientProcess starts the client process in mode with n
// connections. It ends with the benchmark.
func startClientProcess(b *testing.B, mode string, n int) *clientProcess {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcessStreamClients$")
	cmd.Env = append(os.Environ(), envClientMode+"="+mode, envClientConns+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	p := &clientProcess{cmd: cmd, in: in, out: bufio.NewReader(out)}
	b.Cleanup(func() { p.stop(b) })
	return p
}

// subscribe has every connection subscribe to the answer id as alice, and
// returns once each has received its first event.
func (p *clientProcess) subscribe(b *testing.B, e *env, id string) {
	b.Helper()
	p.say(b, "subscribe %s %s %s", "ws"+strings.TrimPrefix(e.URL, "http")+"/graphql", e.token("alice"), id)
	if line := p.line(b); line != "ready" {
		b.Fatalf("client process: %q, want ready", line)
	}
}

// say writes a line to the client process.
func (p *clientProcess) say(b *testing.B, format string, args ...any) {
	b.Helper()
	if _, err := fmt.Fprintf(p.in, format+"\n", args...); err != nil {
		b.Fatal(err)
	}
}

// line returns the next line the client process writes.
func (p *clientProcess) line(b *testing.B) string {
	b.Helper()
	line, err := p.out.ReadString('\n')
	if err != nil {
		b.Fatalf("client process: %q: %v", line, err)
	}
	return strings.TrimSuffix(line, "\n")
}

// stop closes the process's standard input and waits for it to exit.
func (p *clientProcess) stop(b *testing.B) {
	p.once.Do(func() {
		p.in.Close()
		if err := p.cmd.Wait(); err != nil {
			b.Errorf("client process: %v", err)
		}
	})
}

// TestHelperProcessStreamClients is not a test: it is the client process of
// BenchmarkFanOut100, BenchmarkWriteFloor100 and
// BenchmarkIdleWebSocketMemory, which start this
// test binary again with it selected and their settings in the
// environment. Otherwise it skips.
func TestHelperProcessStreamClients(t *testing.T) {
	mode := os.Getenv(envClientMode)
	if mode == "" {
		t.Skip("the client process of the streaming benchmarks")
	}
	n, _ := strconv.Atoi(os.Getenv(envClientConns))
	in := bufio.NewReader(os.Stdin)
	command := func(verb string) []string {
		line, err := in.ReadString('\n')
		f := strings.Fields(line)
		if err != nil || len(f) == 0 || f[0] != verb {
			t.Fatalf("got %q (%v), want %s", line, err, verb)
		}
		return f[1:]
	}

	var llmSrv *benchBackend
	if mode == clientFanOut {
		llmSrv = newBenchBackend(t)
		defer llmSrv.stop()
		fmt.Println("backend", llmSrv.srv.Listener.Addr())
	}
	args := command("subscribe")
	if len(args) != 3 {
		t.Fatalf("subscribe %q", args)
	}
	url, token, answerID := args[0], args[1], args[2]
	var gen *benchStream
	if mode == clientFanOut {
		gen = llmSrv.next(t)
		// Each subscription's first event, which tells that it runs.
		gen.write("first")
	}
	conns := make([]*websocket.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var g errgroup.Group
	g.SetLimit(8)
	for i := range conns {
		g.Go(func() (err error) {
			if mode == clientFloor {
				d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 1024, WriteBufferSize: 1024}
				conns[i], _, err = d.Dial(url, nil)
				return err
			}
			conns[i], err = subscribeOne(url, token, answerID)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")

	if mode == clientFanOut {
		args := command("go")
		count, err1 := strconv.Atoi(args[0])
		every, err2 := strconv.ParseInt(args[1], 10, 64)
		if len(args) != 2 || err1 != nil || err2 != nil {
			t.Fatalf("go %q", args)
		}
		tokens := make([]string, count)
		for i := range tokens {
			tokens[i] = fanOutToken
		}
		cpu, _ := processCPU()
		var events, text atomic.Int64
		var readers errgroup.Group // every subscriber reads at once
		for _, c := range conns {
			readers.Go(func() error {
				e, n, err := readToEnd(c)
				events.Add(int64(e))
				text.Add(int64(n))
				return err
			})
		}
		gen.writePaced(time.Duration(every), tokens)
		gen.end()
		if err := readers.Wait(); err != nil {
			t.Fatal(err)
		}
		cpuEnd, _ := processCPU()
		fmt.Println("done", events.Load(), text.Load(), int64(cpuEnd-cpu))
	}
	if mode == clientFloor {
		command("go")
		var messages atomic.Int64
		var readers errgroup.Group
		for _, c := range conns {
			readers.Go(func() error {
				c.SetReadDeadline(time.Now().Add(5 * time.Minute))
				for {
					_, data, err := c.ReadMessage()
					if err != nil {
						return err
					}
					if string(data) == floorEnd {
						return nil
					}
					messages.Add(1)
				}
			})
		}
		if err := readers.Wait(); err != nil {
			t.Fatal(err)
		}
		fmt.Println("done", messages.Load())
	}
	_, _ = io.Copy(io.Discard, in)
}

// subscribeOne opens a graphql-transport-ws connection, subscribes to the
// answer and waits for its first event.
func subscribeOne(url, token, answerID string) (*websocket.Conn, error) {
	d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}, HandshakeTimeout: 10 * time.Second,
		ReadBufferSize: 1024, WriteBufferSize: 1024}
	c, _, err := d.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if err := c.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer " + token}}); err != nil {
		c.Close()
		return nil, err
	}
	var msg struct{ Type string }
	if err := c.ReadJSON(&msg); err != nil || msg.Type != "connection_ack" {
		c.Close()
		return nil, fmt.Errorf("after connection_init: %q, %v", msg.Type, err)
	}
	if err := c.WriteJSON(subscribeMsg("1", answerID, 0)); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.ReadJSON(&msg); err != nil || msg.Type != "next" {
		c.Close()
		return nil, fmt.Errorf("after subscribe: %q, %v", msg.Type, err)
	}
	c.SetReadDeadline(time.Time{})
	return c, nil
}

// readToEnd reads a subscription's events until complete and returns how
// many there were and the bytes of their text. It reads the two fields it
// needs with a fastjson parser rather than decoding each message with
// encoding/json: the client process shares the machine with the server,
// and a client that falls behind makes the server merge events and take
// its slower paths, which is not what the benchmark measures.
func readToEnd(c *websocket.Conn) (events, text int, err error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Minute))
	var p fastjson.Parser
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			return events, text, err
		}
		msg, err := p.ParseBytes(data)
		if err != nil {
			return events, text, err
		}
		switch typ := string(msg.GetStringBytes("type")); typ {
		case "next":
			events++
			text += len(msg.GetStringBytes("payload", "data", "answer", "delta"))
		case "complete":
			return events, text, nil
		default:
			return events, text, errors.New("unexpected message " + typ)
		}
	}
}
