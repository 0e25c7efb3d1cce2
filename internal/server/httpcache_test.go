package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/auth"
	"askgate/internal/limits"
	"askgate/internal/protect"
	"askgate/internal/redistest"
	"askgate/internal/server"
)

// cachedResponse is a response to a GET, whose body may be empty (304).
type cachedResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r *cachedResponse) cacheControl() string { return r.Header.Get("Cache-Control") }

// getStored sends GET /graphql with the query string v and the headers
// (Authorization, If-None-Match, …) given.
func (e *env) getStored(v url.Values, headers map[string]string) *cachedResponse {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.URL+"/graphql?"+v.Encode(), nil)
	req.Header.Set("Accept", "application/graphql-response+json")
	for k, val := range headers {
		req.Header.Set(k, val)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	return &cachedResponse{Status: res.StatusCode, Header: res.Header, Body: body}
}

// apqGet returns the query string of a GET naming the APQ hash of query,
// and with the document itself too when register is set.
func apqGet(query string, register bool) url.Values {
	ext, _ := json.Marshal(apqExt(sha(query)))
	v := url.Values{"extensions": {string(ext)}}
	if register {
		v.Set("query", query)
	}
	return v
}

// newCachingEnv is a gateway whose automatic persisted queries are in
// Redis, with a trusted-documents manifest holding the documents listed
// (persisted-only mode off).
func newCachingEnv(t *testing.T, listed ...string) *env {
	t.Helper()
	manifest := map[string]string{}
	for _, d := range listed {
		manifest[sha(d)] = d
	}
	path := filepath.Join(t.TempDir(), "persisted-documents.json")
	raw, _ := json.Marshal(manifest)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	trusted, err := protect.NewTrusted(path, false, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Client(t, redis.Options{})
	apq := protect.NewAPQRedisStore(rdb, protect.APQRedisOptions{KeyPrefix: redistest.Prefix(t, rdb, "httpcache")})
	return newEnv(t, envOptions{apq: apq, trusted: trusted})
}

var etagForm = regexp.MustCompile(`^W/"[A-Za-z0-9_-]{22}"$`)

// checkVary fails unless r varies on Authorization.
func checkVary(t *testing.T, name string, r *cachedResponse) {
	t.Helper()
	for _, v := range r.Header.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Authorization") {
				return
			}
		}
	}
	t.Errorf("%s: Vary = %q, want Authorization in it", name, r.Header.Values("Vary"))
}

// TestHTTPCachingETag: a GET of a persisted query gets a weak ETag; the
// same request with If-None-Match gets 304 without a body; once the data
// changes (a rename), 200 with another ETag.
func TestHTTPCachingETag(t *testing.T) {
	e := newCachingEnv(t)
	var started struct {
		StartConversation struct{ Conversation struct{ ID string } }
	}
	e.do("alice", `mutation { startConversation(input: {title: "Before"}) { conversation { id } } }`, nil, &started)
	id := started.StartConversation.Conversation.ID
	aliceAuth := map[string]string{"Authorization": "Bearer " + e.token("alice")}
	with := func(h map[string]string, k, v string) map[string]string {
		out := map[string]string{k: v}
		for hk, hv := range h {
			out[hk] = hv
		}
		return out
	}

	const q = `query Titles { conversations { nodes { id title } } }`
	// Registering it sends the document: not a persisted query yet.
	reg := e.getStored(apqGet(q, true), aliceAuth)
	if reg.Status != 200 || reg.Header.Get("ETag") != "" || reg.cacheControl() != "no-store" {
		t.Fatalf("registration: %d ETag %q Cache-Control %q %s", reg.Status, reg.Header.Get("ETag"), reg.cacheControl(), reg.Body)
	}
	first := e.getStored(apqGet(q, false), aliceAuth)
	tag := first.Header.Get("ETag")
	if first.Status != 200 || !etagForm.MatchString(tag) || !strings.Contains(string(first.Body), `"Before"`) {
		t.Fatalf("persisted GET: %d ETag %q %s", first.Status, tag, first.Body)
	}
	checkVary(t, "persisted GET", first)
	if again := e.getStored(apqGet(q, false), aliceAuth); again.Header.Get("ETag") != tag || string(again.Body) != string(first.Body) {
		t.Errorf("the same response got ETag %q, then %q", tag, again.Header.Get("ETag"))
	}

	for _, inm := range []string{tag, strings.TrimPrefix(tag, "W/"), `"nope", ` + tag, `W/"nope",` + tag + `, "other"`, "*"} {
		r := e.getStored(apqGet(q, false), with(aliceAuth, "If-None-Match", inm))
		if r.Status != http.StatusNotModified || len(r.Body) != 0 {
			t.Errorf("If-None-Match %s: %d %q, want 304 without a body", inm, r.Status, r.Body)
			continue
		}
		if r.Header.Get("ETag") != tag || r.cacheControl() != first.cacheControl() {
			t.Errorf("If-None-Match %s: 304 with ETag %q Cache-Control %q, want %q %q", inm, r.Header.Get("ETag"), r.cacheControl(), tag, first.cacheControl())
		}
		checkVary(t, "304", r)
	}
	for _, inm := range []string{`"nope"`, strings.Trim(tag, `"`), `"` + tag + `"`} {
		if r := e.getStored(apqGet(q, false), with(aliceAuth, "If-None-Match", inm)); r.Status != 200 || r.Header.Get("ETag") != tag {
			t.Errorf("If-None-Match %s: %d, want 200 with the ETag", inm, r.Status)
		}
	}
	// Another viewer's response to the same request is another one.
	if r := e.getStored(apqGet(q, false), map[string]string{"Authorization": "Bearer " + e.token("bob"), "If-None-Match": tag}); r.Status != 200 || r.Header.Get("ETag") == tag {
		t.Errorf("bob with alice's ETag: %d ETag %q", r.Status, r.Header.Get("ETag"))
	}
	// A 304 does not skip authentication.
	if r := e.getStored(apqGet(q, false), map[string]string{"If-None-Match": tag}); r.Status != http.StatusUnauthorized {
		t.Errorf("If-None-Match without a token: %d, want 401", r.Status)
	}

	// A mutation is never cached.
	rename := e.post(aliceAuth["Authorization"], `mutation($id: ID!) { renameConversation(input: {id: $id, title: "After"}) { title } }`, map[string]any{"id": id})
	if len(rename.Errors) > 0 || rename.Header.Get("Cache-Control") != "no-store" || rename.Header.Get("ETag") != "" {
		t.Fatalf("rename: Cache-Control %q ETag %q %s", rename.Header.Get("Cache-Control"), rename.Header.Get("ETag"), rename.Body)
	}
	changed := e.getStored(apqGet(q, false), with(aliceAuth, "If-None-Match", tag))
	if changed.Status != 200 || !strings.Contains(string(changed.Body), `"After"`) {
		t.Fatalf("after the rename: %d %s, want 200 with the new title", changed.Status, changed.Body)
	}
	if nt := changed.Header.Get("ETag"); !etagForm.MatchString(nt) || nt == tag {
		t.Errorf("after the rename: ETag %q, want a new one (was %q)", nt, tag)
	}
}

// TestHTTPCachingPolicy: Cache-Control follows the schema's @cacheControl
// hints for persisted queries sent with GET (private, max-age=N, or
// no-store for max age 0), is no-store for anything else, and is never
// public, whatever the data.
func TestHTTPCachingPolicy(t *testing.T) {
	const (
		models   = `query Models { models { id isDefault } }`
		byDocID  = `query ModelsByID { models { id } }`
		me       = `query Me { viewer { id name email } }`
		both     = `query Both { models { id } viewer { name } }`
		convs    = `query Convs { conversations { totalCount nodes { title owner { email } } } }`
		missing  = `query Missing { viewer { name } conversation(id: "Q29udmVyc2F0aW9uOm5vcGU") { title } }`
		typename = `query T { __typename }`
	)
	e := newCachingEnv(t, byDocID)
	e.do("alice", `mutation { startConversation(input: {title: "Mine"}) { conversation { id } } }`, nil, nil)
	authz := map[string]string{"Authorization": "Bearer " + e.token("alice")}
	for _, q := range []string{models, me, both, convs, missing, typename} {
		e.getStored(apqGet(q, true), authz)
	}
	check := func(name string, r *cachedResponse, wantCC string, wantETag bool) {
		t.Helper()
		if r.Status != 200 {
			t.Errorf("%s: status %d %s", name, r.Status, r.Body)
		}
		if got := r.cacheControl(); got != wantCC {
			t.Errorf("%s: Cache-Control %q, want %q", name, got, wantCC)
		}
		if strings.Contains(strings.ToLower(r.cacheControl()), "public") {
			t.Errorf("%s: public: %q", name, r.cacheControl())
		}
		if got := r.Header.Get("ETag") != ""; got != wantETag {
			t.Errorf("%s: ETag %q, want one: %v", name, r.Header.Get("ETag"), wantETag)
		}
		checkVary(t, name, r)
	}
	check("models", e.getStored(apqGet(models, false), authz), "private, max-age=300", true)
	check("trusted documentId", e.getStored(url.Values{"documentId": {sha(byDocID)}}, authz), "private, max-age=300", true)
	viewer := e.getStored(apqGet(me, false), authz)
	check("viewer with email", viewer, "private, max-age=60", true)
	if !strings.Contains(string(viewer.Body), alice.Email) {
		t.Errorf("viewer: %s", viewer.Body)
	}
	check("models and viewer", e.getStored(apqGet(both, false), authz), "private, max-age=60", true)
	check("conversations", e.getStored(apqGet(convs, false), authz), "no-store", true)
	check("__typename alone", e.getStored(apqGet(typename, false), authz), "no-store", true)

	// Errors are never cached.
	r := e.getStored(apqGet(missing, false), authz)
	check("errors", r, "no-store", false)
	if !strings.Contains(string(r.Body), "NOT_FOUND") {
		t.Errorf("errors: %s", r.Body)
	}
	// Neither is a GET with the document, nor a POST.
	check("GET with the document", e.getStored(url.Values{"query": {models}}, authz), "no-store", false)
	post := e.post(authz["Authorization"], models, nil)
	check("POST", &cachedResponse{Status: post.Status, Header: post.Header}, "no-store", false)
	postAPQ := e.postExt("", apqExt(sha(models)), nil)
	check("POST of an APQ hash", &cachedResponse{Status: postAPQ.Status, Header: postAPQ.Header}, "no-store", false)

	// A stored response does not outlive the token it was read with.
	short, err := auth.Mint(e.Secret, auth.MintClaims{Subject: "alice", Scope: auth.ScopeRead, TTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cc := e.getStored(apqGet(models, false), map[string]string{"Authorization": "Bearer " + short}).cacheControl()
	n, err := strconv.Atoi(strings.TrimPrefix(cc, "private, max-age="))
	if err != nil || n <= 0 || n > 30 {
		t.Errorf("a token valid for 30 s: Cache-Control %q, want private, max-age of at most 30", cc)
	}
}

// TestHTTPCachingNotModifiedIsRateLimited: a request that would get 304 is
// an operation like any other: over the viewer's request rate (on Redis),
// it gets 429, not 304. Within it, a cost budget, whose state in each
// response's extensions changes from one request to the next, does not
// stop the 304.
func TestHTTPCachingNotModifiedIsRateLimited(t *testing.T) {
	rdb := redistest.Client(t, redis.Options{})
	cfg := server.RequestLimitsConfig{Rate: limits.Rate{Events: 3, Per: time.Minute}, Budget: limits.Bucket{Size: 1000, RestoreRate: 1}}
	e := newEnv(t, envOptions{limits: redisLimits(t, rdb, redistest.Prefix(t, rdb, "httpcache-limits"), cfg)})
	authz := map[string]string{"Authorization": "Bearer " + e.token("alice")}
	const q = `query Models { models { id } }`
	e.getStored(apqGet(q, true), authz)
	tag := e.getStored(apqGet(q, false), authz).Header.Get("ETag")
	if tag == "" {
		t.Fatal("no ETag")
	}
	authz["If-None-Match"] = tag
	if r := e.getStored(apqGet(q, false), authz); r.Status != http.StatusNotModified {
		t.Fatalf("within the rate: %d, want 304", r.Status)
	}
	if r := e.getStored(apqGet(q, false), authz); r.Status != http.StatusTooManyRequests || !strings.Contains(string(r.Body), "RATE_LIMITED") {
		t.Errorf("over the rate: %d %s, want 429 RATE_LIMITED", r.Status, r.Body)
	}
}
