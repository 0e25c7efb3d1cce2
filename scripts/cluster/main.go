// Command cluster is a tiny round-robin reverse proxy for trying several
// askgate instances on one machine (`make cluster`, scripts/cluster.sh).
//
// It is a development aid, not a production load balancer: it has no
// health checks, TLS, timeouts, limits or metrics. Each request (and each
// WebSocket connection, which is one request) goes to the next backend in
// turn, with no stickiness at all — the point is to show that a
// subscription, a reconnect or a second tab may land on any instance and
// still see the same answer stream. A backend that refuses connections
// (a stopped or killed instance) is skipped: the request goes to the next.
//
//	go run ./scripts/cluster -addr :8080 \
//	  -backend http://127.0.0.1:8081 -backend http://127.0.0.1:8082
//
// Every response carries X-Askgate-Backend, the host:port of the instance
// that served it (a WebSocket's 101 Switching Protocols too), and the proxy
// logs one line per request with the backend. GET /healthz is the proxy's
// own: it answers 200 while the proxy runs, whatever the backends do.
//
// net/http/httputil.ReverseProxy does the work: it streams server-sent
// events without buffering (it flushes text/event-stream responses at
// once) and passes WebSocket upgrades through (Go 1.12 and later).
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

// maxBody bounds a buffered request body. askgate itself takes 2 MB.
const maxBody = 8 << 20

// backendHeader names the backend that served a response.
const backendHeader = "X-Askgate-Backend"

func main() {
	addr := flag.String("addr", ":8080", "listen address")
	var backends []*url.URL
	flag.Func("backend", "base URL of an askgate instance, e.g. http://127.0.0.1:8081 (repeat the flag for each)", func(s string) error {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%q is not an http(s) URL", s)
		}
		backends = append(backends, u)
		return nil
	})
	flag.Parse()
	if len(backends) == 0 {
		fmt.Fprintln(os.Stderr, "cluster: at least one -backend is needed")
		flag.Usage()
		os.Exit(2)
	}
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	log.SetPrefix("proxy ")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/", newProxy(backends))
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		// Close, not Shutdown: hijacked WebSockets would keep Shutdown
		// waiting, and the instances behind close their streams anyway.
		srv.Close()
	}()
	log.Printf("listening on %s, round-robin over %d backends", *addr, len(backends))
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

// proxy sends each request to the next backend in turn.
type proxy struct {
	backends []*url.URL
	next     atomic.Uint64
	rp       *httputil.ReverseProxy
}

// attempt is one try of a request on one backend; the ReverseProxy's hooks
// find it in the request's context.
type attempt struct {
	backend *url.URL
	refused bool // the backend refused the connection: try the next one
}

type attemptKey struct{}

func attemptOf(r *http.Request) *attempt { return r.Context().Value(attemptKey{}).(*attempt) }

func newProxy(backends []*url.URL) *proxy {
	p := &proxy{backends: backends}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil // never send the local backends through an HTTP_PROXY
	p.rp = &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(attemptOf(pr.In).backend)
			// Keep the client's Host: askgate accepts a browser's WebSocket
			// only when its Origin matches the Host (GraphiQL through the
			// proxy), and builds its printed URLs from it.
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		ModifyResponse: func(res *http.Response) error {
			// Called for every backend response, 101 Switching Protocols
			// included, before its headers go to the client.
			a := attemptOf(res.Request)
			res.Header.Set(backendHeader, a.backend.Host)
			log.Printf("%s %s -> %s %d", res.Request.Method, res.Request.URL.RequestURI(), a.backend.Host, res.StatusCode)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			a := attemptOf(r)
			if errors.Is(err, syscall.ECONNREFUSED) {
				// Nothing was sent, nothing was written: ServeHTTP tries
				// the next backend.
				a.refused = true
				log.Printf("%s %s -> %s refused the connection, trying the next backend", r.Method, r.URL.RequestURI(), a.backend.Host)
				return
			}
			if errors.Is(err, context.Canceled) {
				return // the client went away (a closed SSE stream, say)
			}
			log.Printf("%s %s -> %s failed: %v", r.Method, r.URL.RequestURI(), a.backend.Host, err)
			w.Header().Set(backendHeader, a.backend.Host)
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		},
	}
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Read the body first (GraphQL requests are small) so that it can be
	// sent again when a backend refuses the connection.
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		var err error
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "reading the request body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
	}
	start := p.next.Add(1) - 1
	for i := range len(p.backends) {
		a := &attempt{backend: p.backends[(start+uint64(i))%uint64(len(p.backends))]}
		req := r.WithContext(context.WithValue(r.Context(), attemptKey{}, a))
		if body != nil {
			req.Body = io.NopCloser(bytes.NewReader(body))
			req.ContentLength = int64(len(body))
		}
		p.rp.ServeHTTP(w, req)
		if !a.refused {
			return
		}
	}
	log.Printf("%s %s -> no backend accepted the connection", r.Method, r.URL.RequestURI())
	http.Error(w, "bad gateway: no askgate instance is running", http.StatusBadGateway)
}
