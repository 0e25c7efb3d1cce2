// Package graphiql serves GraphiQL, the in-browser GraphQL IDE, entirely from
// the binary: the page, GraphiQL's build and React are embedded, so the IDE
// works with no network beyond the gateway itself.
//
// Two handlers make it up. [Handler] renders the page, configured with the
// GraphQL endpoint and an optional bearer token to prefill; [Assets] serves
// the scripts and styles the page loads, and must be mounted at the page's
// [Options.AssetPrefix]:
//
//	mux.Handle("GET /{$}", graphiql.Handler(graphiql.Options{Endpoint: "/graphql", Token: devToken}))
//	mux.Handle("GET /graphiql/", graphiql.Assets())
//
// The page sends a strict Content-Security-Policy: it runs only the embedded
// scripts (no inline script, no eval) and connects only to its own origin
// (HTTP and WebSocket) and to the endpoint's.
package graphiql

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"strings"
	"sync"
	"time"
)

// DefaultQuery is the query a new editor tab starts with when
// [Options.Query] is empty.
const DefaultQuery = `# Run it with Ctrl-Enter.
{
  viewer {
    id
    name
  }
  conversations(first: 5) {
    totalCount
    nodes {
      id
      title
    }
  }
}
`

// Options configures the GraphiQL page. The zero value serves a page for the
// endpoint /graphql, with no token, loading its assets from /graphiql/.
type Options struct {
	// Title is the page title; "askgate" when empty.
	Title string
	// Endpoint is the GraphQL endpoint the IDE talks to: a path on the page's
	// origin ("/graphql" when empty) or an absolute http(s) URL.
	// Subscriptions use graphql-transport-ws on the same URL with ws(s)://.
	Endpoint string
	// Token is a bearer token to prefill in the request headers editor as
	// {"Authorization": "Bearer <Token>"}; empty for none. The page carries it,
	// so set it only where anyone who can load the page may have it (the
	// development mode).
	Token string
	// AssetPrefix is the URL path at which [Assets] is mounted; "/graphiql/"
	// when empty.
	AssetPrefix string
	// Query is the query a new editor tab starts with; [DefaultQuery] when
	// empty.
	Query string
}

//go:embed page.html init.js init.css
var pageFiles embed.FS

//go:embed assets/*.js assets/*.css
var vendorFiles embed.FS

var pageTemplate = template.Must(template.ParseFS(pageFiles, "page.html"))

// pageConfig is what the page's script reads from the page.
type pageConfig struct {
	Endpoint string `json:"endpoint"`
	Token    string `json:"token,omitempty"`
	Query    string `json:"query"`
}

type pageData struct {
	Title  string
	Config pageConfig
	Assets map[string]string // asset name → URL
}

type page struct {
	body       []byte
	connectSrc string // extra connect-src sources for an endpoint on another origin
}

// Handler returns a handler that serves the GraphiQL page for GET and HEAD
// requests, whatever their path; mount it where the page belongs. The page is
// rendered once, here; the handler is safe for concurrent use.
func Handler(opts Options) http.Handler {
	if opts.Title == "" {
		opts.Title = "askgate"
	}
	if opts.Endpoint == "" {
		opts.Endpoint = "/graphql"
	}
	if opts.AssetPrefix == "" {
		opts.AssetPrefix = "/graphiql/"
	}
	if !strings.HasSuffix(opts.AssetPrefix, "/") {
		opts.AssetPrefix += "/"
	}
	if opts.Query == "" {
		opts.Query = DefaultQuery
	}

	data := pageData{
		Title:  opts.Title,
		Config: pageConfig{Endpoint: opts.Endpoint, Token: opts.Token, Query: opts.Query},
		Assets: make(map[string]string),
	}
	for name, a := range loadAssets() {
		data.Assets[name] = opts.AssetPrefix + name + "?v=" + a.version
	}
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, data); err != nil {
		// The template and its data are fixed: this is a programming error.
		panic("graphiql: rendering the page: " + err.Error())
	}
	return &page{body: buf.Bytes(), connectSrc: endpointSources(opts.Endpoint)}
}

func (p *page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", p.csp(r))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	// The page may carry a token: keep it out of every cache.
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(p.body)
	}
}

// validHost matches a Host header that is safe to repeat in a header value.
var validHost = regexp.MustCompile(`^[A-Za-z0-9.\-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$`)

// csp returns the page's Content-Security-Policy. GraphiQL needs no inline
// script and no eval; it sets styles only through the DOM (which CSP allows),
// and its stylesheet embeds its fonts and a few images as data: URLs.
func (p *page) csp(r *http.Request) string {
	// 'self' covers ws: and wss: of the same host in CSP Level 3 browsers;
	// name them for the others.
	connect := "'self'"
	if validHost.MatchString(r.Host) {
		connect += " ws://" + r.Host + " wss://" + r.Host
	}
	connect += p.connectSrc
	return strings.Join([]string{
		"default-src 'none'",
		"script-src 'self'",
		"style-src 'self'",
		"img-src 'self' data:",
		"font-src 'self' data:",
		"connect-src " + connect,
		"base-uri 'none'",
		"form-action 'none'",
		"frame-ancestors 'none'",
	}, "; ")
}

// endpointSources returns the connect-src sources an endpoint on another
// origin needs (its http(s) and ws(s) origins), with a leading space, or "".
func endpointSources(endpoint string) string {
	u, err := url.Parse(endpoint)
	if err != nil || u.Host == "" || !validHost.MatchString(u.Host) {
		return ""
	}
	switch u.Scheme {
	case "http":
		return " http://" + u.Host + " ws://" + u.Host
	case "https":
		return " https://" + u.Host + " wss://" + u.Host
	}
	return ""
}

// An asset is one embedded file, with its gzip encoding made on first use.
type asset struct {
	name        string
	contentType string
	data        []byte
	version     string // a short hash of data, for cache busting
	etag        string

	gzipOnce sync.Once
	gzipped  []byte // nil when compressing does not pay
}

var (
	assetsOnce sync.Once
	assetsByID map[string]*asset
)

// loadAssets indexes the embedded files by name: the vendored build from
// assets/ and the page's own script and stylesheet.
func loadAssets() map[string]*asset {
	assetsOnce.Do(func() {
		assetsByID = make(map[string]*asset)
		add := func(fsys fs.FS, file string) {
			data, err := fs.ReadFile(fsys, file)
			if err != nil {
				panic("graphiql: reading embedded " + file + ": " + err.Error())
			}
			sum := sha256.Sum256(data)
			v := hex.EncodeToString(sum[:8])
			name := path.Base(file)
			assetsByID[name] = &asset{
				name:        name,
				contentType: contentType(name),
				data:        data,
				version:     v,
				etag:        `"` + v + `"`,
			}
		}
		for _, pattern := range []string{"assets/*.js", "assets/*.css"} {
			files, _ := fs.Glob(vendorFiles, pattern)
			for _, f := range files {
				add(vendorFiles, f)
			}
		}
		add(pageFiles, "init.js")
		add(pageFiles, "init.css")
	})
	return assetsByID
}

func contentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	}
	return "application/octet-stream"
}

// Assets returns a handler that serves the page's scripts and styles by the
// last element of the request path (so it works with or without
// http.StripPrefix), with their content type, an ETag, gzip when the client
// accepts it, and a year's caching when the URL carries the current version
// (?v=…, as the page's links do). Unknown names get 404. The handler is safe
// for concurrent use.
func Assets() http.Handler {
	assets := loadAssets()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		a, ok := assets[path.Base(r.URL.Path)]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h := w.Header()
		h.Set("Content-Type", a.contentType)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Vary", "Accept-Encoding")
		if r.URL.Query().Get("v") == a.version {
			h.Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			h.Set("Cache-Control", "no-cache")
		}
		body, etag := a.data, a.etag
		if gz := a.gzip(); gz != nil && acceptsGzip(r) {
			body, etag = gz, `"`+a.version+`-gzip"`
			h.Set("Content-Encoding", "gzip")
		}
		h.Set("ETag", etag)
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(body))
	})
}

// gzip returns the asset gzip-compressed, compressing it on first use, or
// nil if compression saves too little to bother.
func (a *asset) gzip() []byte {
	a.gzipOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		zw.Write(a.data)
		zw.Close()
		if buf.Len() < len(a.data)*9/10 {
			a.gzipped = buf.Bytes()
		}
	})
	return a.gzipped
}

// acceptsGzip reports whether the request's Accept-Encoding allows gzip.
func acceptsGzip(r *http.Request) bool {
	for _, field := range r.Header.Values("Accept-Encoding") {
		for _, part := range strings.Split(field, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := strings.ReplaceAll(params, " ", "")
			return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
		}
	}
	return false
}
