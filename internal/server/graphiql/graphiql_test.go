package graphiql

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// get serves one GET request for target with h and returns the response.
func get(t *testing.T, h http.Handler, target string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var configRE = regexp.MustCompile(`(?s)<script id="graphiql-config" type="application/json">(.*?)</script>`)

// pageConfigOf extracts and decodes the configuration the page's script reads.
func pageConfigOf(t *testing.T, page string) pageConfig {
	t.Helper()
	m := configRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no graphiql-config script in page:\n%s", page)
	}
	var c pageConfig
	if err := json.Unmarshal([]byte(m[1]), &c); err != nil {
		t.Fatalf("graphiql-config is not JSON: %v\n%s", err, m[1])
	}
	return c
}

func TestPageCarriesEscapedTokenAndEndpoint(t *testing.T) {
	opts := Options{
		Title:    `askgate <dev> & "friends"`,
		Endpoint: `/graphql?x="<y>"&z='1'`,
		Token:    `eyJ.abc"<b>&'def`,
	}
	resp := get(t, Handler(opts), "/")
	page := body(t, resp)

	if got, want := resp.StatusCode, http.StatusOK; got != want {
		t.Fatalf("status = %d, want %d", got, want)
	}
	got := pageConfigOf(t, page)
	if got.Endpoint != opts.Endpoint || got.Token != opts.Token || got.Query != DefaultQuery {
		t.Errorf("config = %+v, want endpoint %q, token %q and the default query", got, opts.Endpoint, opts.Token)
	}
	for _, raw := range []string{`<b>`, `<y>`, `<dev>`, `"friends"`} {
		if strings.Contains(page, raw) {
			t.Errorf("page contains %s unescaped", raw)
		}
	}
	if want := `<title>askgate &lt;dev&gt; &amp; &#34;friends&#34;</title>`; !strings.Contains(page, want) {
		t.Errorf("page lacks %s", want)
	}
}

func TestTokenCannotCloseTheScript(t *testing.T) {
	token := `</script><script>alert(1)</script><!--`
	page := body(t, get(t, Handler(Options{Token: token, Endpoint: "</script>"}), "/"))

	if strings.Contains(page, "alert(1)</script>") || strings.Contains(page, "<!--") {
		t.Fatalf("the token broke out of its script element:\n%s", page)
	}
	// One script element for the configuration, four that load files.
	if got, want := strings.Count(page, "<script"), 5; got != want {
		t.Errorf("page has %d <script elements, want %d", got, want)
	}
	c := pageConfigOf(t, page)
	if c.Token != token || c.Endpoint != "</script>" {
		t.Errorf("config = %+v, want the token and endpoint back unchanged", c)
	}
}

func TestPageDefaults(t *testing.T) {
	page := body(t, get(t, Handler(Options{}), "/"))
	c := pageConfigOf(t, page)
	if got, want := c.Endpoint, "/graphql"; got != want {
		t.Errorf("endpoint = %q, want %q", got, want)
	}
	if c.Token != "" {
		t.Errorf("token = %q, want none", c.Token)
	}
	if strings.Contains(page, `"token"`) {
		t.Errorf("page mentions a token though none was given")
	}
	if !strings.Contains(page, `src="/graphiql/graphiql.min.js?v=`) {
		t.Errorf("page does not load /graphiql/graphiql.min.js:\n%s", page)
	}
	if !strings.Contains(page, "<title>askgate</title>") {
		t.Errorf("page lacks the default title")
	}
}

func TestPageSecurityHeaders(t *testing.T) {
	resp := get(t, Handler(Options{Token: "t"}), "/")
	h := resp.Header
	for name, want := range map[string]string{
		"Content-Type":           "text/html; charset=utf-8",
		"X-Content-Type-Options": "nosniff",
		"Cache-Control":          "no-store",
		"Referrer-Policy":        "no-referrer",
	} {
		if got := h.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{
		"default-src 'none'",
		"script-src 'self';",
		"style-src 'self';",
		"connect-src 'self' ws://example.com wss://example.com;",
		"frame-ancestors 'none'",
	} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
		}
	}
	for _, bad := range []string{"unsafe-inline", "unsafe-eval", "*"} {
		if strings.Contains(csp, bad) {
			t.Errorf("Content-Security-Policy %q allows %s", csp, bad)
		}
	}
}

func TestCSPAllowsAnEndpointOnAnotherOrigin(t *testing.T) {
	h := Handler(Options{Endpoint: "https://api.example.net:8443/graphql"})
	csp := get(t, h, "/").Header.Get("Content-Security-Policy")
	if want := "connect-src 'self' ws://example.com wss://example.com https://api.example.net:8443 wss://api.example.net:8443;"; !strings.Contains(csp, want) {
		t.Errorf("Content-Security-Policy = %q, want it to contain %q", csp, want)
	}
}

func TestCSPIgnoresAStrangeHost(t *testing.T) {
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Host = "evil.example; script-src *"
	rec := httptest.NewRecorder()
	Handler(Options{}).ServeHTTP(rec, req)
	csp := rec.Header().Get("Content-Security-Policy")
	if strings.Contains(csp, "evil") || !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("Content-Security-Policy = %q, want connect-src 'self' alone", csp)
	}
}

func TestPageRejectsOtherMethods(t *testing.T) {
	for _, h := range []http.Handler{Handler(Options{}), Assets()} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/graphiql/init.js", nil))
		if got, want := rec.Code, http.StatusMethodNotAllowed; got != want {
			t.Errorf("POST: status = %d, want %d", got, want)
		}
	}
}

var assetURLRE = regexp.MustCompile(`(?:src|href)="(/[^"]+)"`)

func TestEveryLinkedAssetIsServed(t *testing.T) {
	page := body(t, get(t, Handler(Options{AssetPrefix: "/ide/static"}), "/"))
	links := assetURLRE.FindAllStringSubmatch(page, -1)
	if got, want := len(links), 6; got != want {
		t.Fatalf("page links %d files, want %d (2 stylesheets, 4 scripts)", got, want)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /ide/static/", http.StripPrefix("/ide/static/", Assets()))
	for _, l := range links {
		target := strings.ReplaceAll(l[1], "&amp;", "&")
		if !strings.HasPrefix(target, "/ide/static/") {
			t.Errorf("link %q is not under the asset prefix", target)
			continue
		}
		resp := get(t, mux, target)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", target, resp.StatusCode)
			continue
		}
		if got, want := resp.Header.Get("Cache-Control"), "public, max-age=31536000, immutable"; got != want {
			t.Errorf("GET %s: Cache-Control = %q, want %q", target, got, want)
		}
	}
}

func TestAssetsContentTypes(t *testing.T) {
	tests := []struct {
		path, contentType string
		minSize           int
	}{
		{"/graphiql/graphiql.min.js", "text/javascript; charset=utf-8", 500_000},
		{"/graphiql/graphiql.min.css", "text/css; charset=utf-8", 100_000},
		{"/graphiql/react.production.min.js", "text/javascript; charset=utf-8", 5_000},
		{"/graphiql/react-dom.production.min.js", "text/javascript; charset=utf-8", 100_000},
		{"/graphiql/init.js", "text/javascript; charset=utf-8", 500},
		{"/graphiql/init.css", "text/css; charset=utf-8", 50},
		// StripPrefix or not: only the last element counts.
		{"/init.js", "text/javascript; charset=utf-8", 500},
	}
	for _, tt := range tests {
		resp := get(t, Assets(), tt.path)
		b := body(t, resp)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", tt.path, resp.StatusCode)
			continue
		}
		if got := resp.Header.Get("Content-Type"); got != tt.contentType {
			t.Errorf("GET %s: Content-Type = %q, want %q", tt.path, got, tt.contentType)
		}
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options = %q, want nosniff", tt.path, got)
		}
		if len(b) < tt.minSize {
			t.Errorf("GET %s: %d bytes, want at least %d", tt.path, len(b), tt.minSize)
		}
	}
}

func TestAssetsUnknownNames(t *testing.T) {
	for _, p := range []string{"/graphiql/", "/graphiql/README.md", "/graphiql/LICENSE.react", "/graphiql/page.html", "/graphiql/../graphiql.go", "/graphiql/nope.js"} {
		if got := get(t, Assets(), p).StatusCode; got != http.StatusNotFound {
			t.Errorf("GET %s: status %d, want 404", p, got)
		}
	}
}

func TestAssetsCaching(t *testing.T) {
	a := loadAssets()["graphiql.min.css"]

	resp := get(t, Assets(), "/graphiql/graphiql.min.css")
	if got, want := resp.Header.Get("Cache-Control"), "no-cache"; got != want {
		t.Errorf("unversioned URL: Cache-Control = %q, want %q", got, want)
	}
	etag := resp.Header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	resp = get(t, Assets(), "/graphiql/graphiql.min.css?v=stale")
	if got, want := resp.Header.Get("Cache-Control"), "no-cache"; got != want {
		t.Errorf("stale version: Cache-Control = %q, want %q", got, want)
	}
	resp = get(t, Assets(), "/graphiql/graphiql.min.css?v="+a.version)
	if got, want := resp.Header.Get("Cache-Control"), "public, max-age=31536000, immutable"; got != want {
		t.Errorf("current version: Cache-Control = %q, want %q", got, want)
	}
	resp = get(t, Assets(), "/graphiql/graphiql.min.css", "If-None-Match", etag)
	if got, want := resp.StatusCode, http.StatusNotModified; got != want {
		t.Errorf("If-None-Match: status = %d, want %d", got, want)
	}
}

func TestAssetsGzip(t *testing.T) {
	raw := body(t, get(t, Assets(), "/graphiql/graphiql.min.js"))

	resp := get(t, Assets(), "/graphiql/graphiql.min.js", "Accept-Encoding", "br, gzip;q=0.8")
	if got, want := resp.Header.Get("Content-Encoding"), "gzip"; got != want {
		t.Fatalf("Content-Encoding = %q, want %q", got, want)
	}
	if got, want := resp.Header.Get("Content-Type"), "text/javascript; charset=utf-8"; got != want {
		t.Errorf("Content-Type = %q, want %q", got, want)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(unzipped, []byte(raw)) {
		t.Errorf("gzipped body does not decompress to the file")
	}

	resp = get(t, Assets(), "/graphiql/graphiql.min.js", "Accept-Encoding", "gzip;q=0")
	if got := resp.Header.Get("Content-Encoding"); got != "" {
		t.Errorf("gzip;q=0: Content-Encoding = %q, want none", got)
	}
}

func TestAcceptsGzip(t *testing.T) {
	tests := []struct {
		header string
		want   bool
	}{
		{"", false},
		{"gzip", true},
		{"GZIP", true},
		{"deflate, gzip", true},
		{"gzip;q=0.5", true},
		{"gzip; q=0", false},
		{"gzip;q=0.000", false},
		{"br", false},
		{"x-gzip", false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		if tt.header != "" {
			req.Header.Set("Accept-Encoding", tt.header)
		}
		if got := acceptsGzip(req); got != tt.want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", tt.header, got, tt.want)
		}
	}
}
