package subscriptions

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
)

// Environment of the client process of BenchmarkIdleWebSocketMemory.
const (
	envBenchClientURL = "ASKGATE_WS_BENCH_CLIENT_URL"
	envBenchN         = "ASKGATE_WS_BENCH_N"
)

// BenchmarkIdleWebSocketMemory measures the server's memory per idle
// WebSocket connection holding one waiting subscription: heap in use plus
// goroutine stacks, after garbage collection, divided by the number of
// connections. The clients run in a separate process (this test binary,
// started again), so that only the server's side is counted.
//
//	go test -run='^$' -bench=IdleWebSocketMemory -benchtime=1x ./internal/server/subscriptions/
//
// ASKGATE_WS_BENCH_N sets the number of connections (default 2000).
func BenchmarkIdleWebSocketMemory(b *testing.B) {
	n := 2000
	if v, err := strconv.Atoi(os.Getenv(envBenchN)); err == nil && v > 0 {
		n = v
	}
	h := newHarness(b, nil)
	// askgate keeps parsed documents in a cache, as here: a subscription
	// does not hold a document of its own.
	h.gql.SetQueryCache(lru.New[*ast.QueryDocument](100))

	before, beforeStack := memInUse()
	goroutines := runtime.NumGoroutine()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envBenchClientURL+"="+h.url, envBenchN+"="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		stdin.Close() // the client process exits and its connections close
		_ = cmd.Wait()
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		b.Fatalf("client process: %q, %v", line, err)
	}
	h.opContext(b, n-1) // every subscription is running
	time.Sleep(200 * time.Millisecond)

	after, afterStack := memInUse()
	if p := os.Getenv("ASKGATE_WS_BENCH_HEAPPROFILE"); p != "" {
		f, err := os.Create(p)
		if err == nil {
			_ = pprof.WriteHeapProfile(f)
			f.Close()
		}
		if f, err := os.Create(p + ".goroutines"); err == nil {
			_ = pprof.Lookup("goroutine").WriteTo(f, 1)
			f.Close()
		}
	}
	b.ReportMetric(float64(after-before)/float64(n), "bytes/conn")
	b.ReportMetric(float64(afterStack-beforeStack)/float64(n), "stack-bytes/conn")
	b.ReportMetric(float64(runtime.NumGoroutine()-goroutines)/float64(n), "goroutines/conn")
	b.ReportMetric(0, "ns/op")
}

// memInUse returns the heap and stack memory in use after a full
// collection, and the stack memory alone.
func memInUse() (total, stack uint64) {
	// Each collection may halve an idle goroutine's stack: collect until
	// they have settled, as they do in a server that runs for a while.
	for range 6 {
		runtime.GC()
	}
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse, m.StackInuse
}

// runBenchClient is the client process of BenchmarkIdleWebSocketMemory:
// when the environment names a server, it opens the connections, each
// with one subscription, says "ready" and holds them until its standard
// input closes. It reports whether it ran.
func runBenchClient() bool {
	url := os.Getenv(envBenchClientURL)
	if url == "" {
		return false
	}
	n, _ := strconv.Atoi(os.Getenv(envBenchN))
	d := websocket.Dialer{Subprotocols: []string{SubprotocolTransportWS}, ReadBufferSize: 256, WriteBufferSize: 256}
	conns := make([]*websocket.Conn, 0, n)
	fail := func(err error) bool {
		fmt.Fprintln(os.Stderr, "bench client:", err)
		os.Exit(1)
		return true
	}
	for range n {
		c, _, err := d.Dial(url, nil)
		if err != nil {
			return fail(err)
		}
		if err := c.WriteJSON(map[string]any{"type": "connection_init", "payload": map[string]any{"authorization": "Bearer good"}}); err != nil {
			return fail(err)
		}
		if _, _, err := c.ReadMessage(); err != nil {
			return fail(err)
		}
		if err := c.WriteJSON(subscribeMsg("s", "subscription { name }")); err != nil {
			return fail(err)
		}
		conns = append(conns, c)
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	return true
}
