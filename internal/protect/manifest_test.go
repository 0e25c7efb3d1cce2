package protect

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
)

// apolloTestOp is one operation of an Apollo persisted query manifest.
type apolloTestOp struct {
	ID   string `json:"id"`
	Body string `json:"body"`
	Name string `json:"name"`
	Type string `json:"type"`
}

// apolloManifestJSON returns an Apollo persisted query manifest.
func apolloManifestJSON(t *testing.T, ops ...apolloTestOp) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{
		"format":     "apollo-persisted-query-manifest",
		"version":    1,
		"operations": ops,
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// documentMapJSON returns a graphql-codegen persisted-documents.json with
// the documents under their SHA-256.
func documentMapJSON(t *testing.T, docs ...string) string {
	t.Helper()
	m := map[string]string{}
	for _, d := range docs {
		m[persistedQueryHash(d)] = d
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeTestManifest writes content to a file in a temporary directory (the
// same file each time for the same test and name) and returns its path.
// It writes a new file and renames it, as deployment tools do, so that a
// reload never reads half a file.
func writeTestManifest(t *testing.T, dir, content string) string {
	t.Helper()
	path := filepath.Join(dir, "manifest.json")
	tmp, err := os.CreateTemp(dir, "manifest-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadManifestFormats(t *testing.T) {
	helloHash := persistedQueryHash(pqQueryHello)
	viewerHash := persistedQueryHash(pqQueryViewer)
	tests := []struct {
		name    string
		content string
		wantLen int
		ids     map[string]string // id → document ByID must return
	}{
		{
			name: "apollo",
			content: apolloManifestJSON(t,
				apolloTestOp{ID: helloHash, Body: pqQueryHello, Name: "Hello", Type: "query"},
				apolloTestOp{ID: "viewer-v1", Body: pqQueryViewer, Name: "Viewer", Type: "query"},
			),
			wantLen: 2,
			ids: map[string]string{
				helloHash:                   pqQueryHello,
				strings.ToUpper(helloHash):  pqQueryHello,
				"sha256:" + helloHash:       pqQueryHello,
				"viewer-v1":                 pqQueryViewer,
				viewerHash:                  pqQueryViewer, // also by the SHA-256 of the body
				"sha256:" + viewerHash:      pqQueryViewer,
				strings.ToUpper(viewerHash): pqQueryViewer,
			},
		},
		{
			name: "apollo with the same operation twice",
			content: apolloManifestJSON(t,
				apolloTestOp{ID: helloHash, Body: pqQueryHello, Name: "Hello", Type: "query"},
				apolloTestOp{ID: helloHash, Body: pqQueryHello, Name: "Hello", Type: "query"},
			),
			wantLen: 1,
			ids:     map[string]string{helloHash: pqQueryHello},
		},
		{
			name:    "apollo with no operations",
			content: `{"format":"apollo-persisted-query-manifest","version":1,"operations":[]}`,
			wantLen: 0,
		},
		{
			name:    "document map",
			content: documentMapJSON(t, pqQueryHello, pqQueryViewer),
			wantLen: 2,
			ids: map[string]string{
				helloHash:             pqQueryHello,
				viewerHash:            pqQueryViewer,
				"sha256:" + helloHash: pqQueryHello,
			},
		},
		{
			name:    "document map with upper-case and prefixed keys",
			content: `{"` + strings.ToUpper(helloHash) + `":"` + pqQueryHello + `","sha256:` + viewerHash + `":"` + pqQueryViewer + `"}`,
			wantLen: 2,
			ids:     map[string]string{helloHash: pqQueryHello, viewerHash: pqQueryViewer},
		},
		{
			name:    "empty document map",
			content: `{}`,
			wantLen: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := LoadManifest(writeTestManifest(t, t.TempDir(), tt.content))
			if err != nil {
				t.Fatal(err)
			}
			if got := m.Len(); got != tt.wantLen {
				t.Errorf("Len = %d; want %d", got, tt.wantLen)
			}
			for id, want := range tt.ids {
				if got, ok := m.ByID(id); !ok || got != want {
					t.Errorf("ByID(%q) = %q, %v; want %q", id, got, ok, want)
				}
				if !m.HasBody(want) {
					t.Errorf("HasBody(%q) = false", want)
				}
				if m.HasBody(want + " ") {
					t.Errorf("HasBody(%q + a space) = true; documents compare as exact text", want)
				}
			}
			for _, id := range []string{"", "unknown", persistedQueryHash("query Other { hello }"), "sha256:"} {
				if got, ok := m.ByID(id); ok {
					t.Errorf("ByID(%q) = %q; want no document", id, got)
				}
			}
			if m.HasBody("query Other { hello }") || m.HasBody("") {
				t.Error("HasBody is true for a document not in the manifest")
			}
		})
	}
}

func TestLoadManifestRefuses(t *testing.T) {
	helloHash := persistedQueryHash(pqQueryHello)
	wrongKey := persistedQueryHash(pqQueryViewer) // the hash of another document
	badKey := strings.Repeat("0", 64)
	tests := []struct {
		name    string
		content string
		want    []string // substrings of the error
	}{
		{"one wrong hash among good entries",
			`{"` + wrongKey + `":"` + pqQueryViewer + `","` + badKey + `":"` + pqQueryHello + `"}`,
			[]string{`entry "` + badKey + `"`, "not the SHA-256 of its document", "(that is " + helloHash + ")"}},
		{"hash of another document",
			`{"` + wrongKey + `":"` + pqQueryHello + `"}`,
			[]string{`entry "` + wrongKey + `"`, "not the SHA-256 of its document"}},
		{"key not a hash", `{"Hello":"` + pqQueryHello + `"}`, []string{`entry "Hello"`, "not a SHA-256"}},
		{"document not a string", `{"` + helloHash + `":{"query":"{ hello }"}}`, []string{`entry "` + helloHash + `"`, "JSON string"}},
		{"empty document", `{"` + persistedQueryHash("") + `":""}`, []string{"empty document"}},
		{"not JSON", `{"a":`, []string{"not a JSON object"}},
		{"JSON array", `["` + pqQueryHello + `"]`, []string{"not a JSON object"}},
		{"JSON null", `null`, []string{"not a JSON object"}},
		{"unknown format", `{"format":"relay","version":1,"operations":[]}`, []string{`unsupported manifest format "relay"`}},
		{"unknown version", `{"format":"apollo-persisted-query-manifest","version":2,"operations":[]}`, []string{"version 2"}},
		{"operations not a list", `{"format":"apollo-persisted-query-manifest","version":1,"operations":{}}`, []string{"not a valid Apollo persisted query manifest"}},
		{"operation without id",
			apolloManifestJSON(t, apolloTestOp{Body: pqQueryHello, Name: "Hello", Type: "query"}),
			[]string{`operation 0 ("Hello"): no id`}},
		{"operation without body",
			apolloManifestJSON(t, apolloTestOp{ID: helloHash, Name: "Hello", Type: "query"}),
			[]string{"operation 0", "no body"}},
		{"one id, two documents",
			apolloManifestJSON(t,
				apolloTestOp{ID: "op", Body: pqQueryHello, Name: "Hello", Type: "query"},
				apolloTestOp{ID: "op", Body: pqQueryViewer, Name: "Viewer", Type: "query"}),
			[]string{"operation 1", `id "op" names two different documents`}},
		{"an id that is the hash of another document",
			apolloManifestJSON(t,
				apolloTestOp{ID: helloHash, Body: pqQueryViewer, Name: "Viewer", Type: "query"},
				apolloTestOp{ID: "hello", Body: pqQueryHello, Name: "Hello", Type: "query"}),
			[]string{"operation 1", "names two different documents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeTestManifest(t, t.TempDir(), tt.content)
			m, err := LoadManifest(path)
			if err == nil {
				t.Fatalf("loaded (%d documents); want an error", m.Len())
			}
			for _, want := range append(tt.want, path) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}

	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.json")
		if _, err := LoadManifest(path); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("error %v; want one naming %s", err, path)
		}
	})
}

// trustedRequest is a request for the trusted-documents tests.
type trustedRequest struct {
	query    string
	pqHash   string // extensions.persistedQuery.sha256Hash
	docID    any    // extensions.documentId, when not nil
	pqExtRaw any    // extensions.persistedQuery as it is, when not nil
}

func (r trustedRequest) params() *graphql.RawParams {
	p := &graphql.RawParams{Query: r.query, Extensions: map[string]any{}}
	if r.pqHash != "" {
		p.Extensions["persistedQuery"] = map[string]any{"version": json.Number("1"), "sha256Hash": r.pqHash}
	}
	if r.pqExtRaw != nil {
		p.Extensions["persistedQuery"] = r.pqExtRaw
	}
	if r.docID != nil {
		p.Extensions["documentId"] = r.docID
	}
	return p
}

// newTestTrusted returns a Trusted over a manifest with pqQueryHello (id: its
// SHA-256) and pqQueryViewer (id: "viewer-v1").
func newTestTrusted(t *testing.T, persistedOnly bool) *Trusted {
	t.Helper()
	path := writeTestManifest(t, t.TempDir(), apolloManifestJSON(t,
		apolloTestOp{ID: persistedQueryHash(pqQueryHello), Body: pqQueryHello, Name: "Hello", Type: "query"},
		apolloTestOp{ID: "viewer-v1", Body: pqQueryViewer, Name: "Viewer", Type: "query"},
	))
	tr, err := NewTrusted(path, persistedOnly, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func TestTrustedPersistedOnly(t *testing.T) {
	helloHash := persistedQueryHash(pqQueryHello)
	freeform := "query Freeform { viewer { email } }"
	tests := []struct {
		name      string
		req       trustedRequest
		wantCode  string
		wantQuery string
	}{
		{"known id (APQ style)", trustedRequest{pqHash: helloHash}, "", pqQueryHello},
		{"known custom id", trustedRequest{pqHash: "viewer-v1"}, "", pqQueryViewer},
		{"known documentId", trustedRequest{docID: "viewer-v1"}, "", pqQueryViewer},
		{"known documentId with sha256: prefix", trustedRequest{docID: "sha256:" + helloHash}, "", pqQueryHello},
		{"documentId and the same persistedQuery hash", trustedRequest{docID: helloHash, pqHash: helloHash}, "", pqQueryHello},
		{"known id and its own query", trustedRequest{pqHash: helloHash, query: pqQueryHello}, "", pqQueryHello},
		{"known body", trustedRequest{query: pqQueryViewer}, "", pqQueryViewer},
		{"known body, unknown id", trustedRequest{query: pqQueryViewer, docID: "viewer-v0"}, "", pqQueryViewer},
		{"empty request", trustedRequest{}, "", ""},

		{"freeform", trustedRequest{query: freeform}, CodePersistedQueryNotInList, ""},
		{"introspection", trustedRequest{query: "{ __schema { types { name } } }"}, CodePersistedQueryNotInList, ""},
		{"known body with other whitespace", trustedRequest{query: pqQueryHello + "\n"}, CodePersistedQueryNotInList, ""},
		{"unknown id", trustedRequest{pqHash: persistedQueryHash(freeform)}, CodePersistedQueryNotInList, ""},
		{"unknown documentId", trustedRequest{docID: "nope"}, CodePersistedQueryNotInList, ""},
		{"APQ registration of an unlisted query", trustedRequest{pqHash: persistedQueryHash(freeform), query: freeform}, CodePersistedQueryNotInList, ""},
		{"known id, other query", trustedRequest{pqHash: helloHash, query: freeform}, CodePersistedQueryHashMismatch, ""},
		{"documentId not a string", trustedRequest{docID: json.Number("7")}, "BAD_REQUEST", ""},
		{"documentId and persistedQuery disagree", trustedRequest{docID: "viewer-v1", pqHash: helloHash}, "BAD_REQUEST", ""},
		{"persistedQuery version 2", trustedRequest{pqExtRaw: map[string]any{"version": json.Number("2"), "sha256Hash": helloHash}}, "BAD_REQUEST", ""},
	}
	tr := newTestTrusted(t, true)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.req.params()
			err := tr.MutateOperationParameters(pqOperationContext(), p)
			if got := pqCode(err); got != tt.wantCode {
				t.Fatalf("code %q (%v); want %q", got, err, tt.wantCode)
			}
			if err != nil {
				if tt.wantCode == CodePersistedQueryNotInList && err.Message != "operation not in the persisted query list" {
					t.Errorf("message %q", err.Message)
				}
				return
			}
			if p.Query != tt.wantQuery {
				t.Errorf("query %q; want %q", p.Query, tt.wantQuery)
			}
		})
	}
}

func TestTrustedNotPersistedOnly(t *testing.T) {
	helloHash := persistedQueryHash(pqQueryHello)
	freeform := "query Freeform { viewer { email } }"
	tests := []struct {
		name      string
		req       trustedRequest
		wantCode  string
		wantQuery string
	}{
		{"freeform passes", trustedRequest{query: freeform}, "", freeform},
		{"known id", trustedRequest{pqHash: helloHash}, "", pqQueryHello},
		{"known documentId", trustedRequest{docID: "viewer-v1"}, "", pqQueryViewer},
		{"unknown APQ hash is left to APQ", trustedRequest{pqHash: persistedQueryHash(freeform)}, "", ""},
		{"APQ registration is left to APQ", trustedRequest{pqHash: persistedQueryHash(freeform), query: freeform}, "", freeform},
		{"unknown documentId with a query", trustedRequest{docID: "nope", query: freeform}, "", freeform},
		{"unknown documentId alone", trustedRequest{docID: "nope"}, CodePersistedQueryNotFound, ""},
		{"known id, other query", trustedRequest{pqHash: "viewer-v1", query: freeform}, CodePersistedQueryHashMismatch, ""},
	}
	tr := newTestTrusted(t, false)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.req.params()
			err := tr.MutateOperationParameters(pqOperationContext(), p)
			if got := pqCode(err); got != tt.wantCode {
				t.Fatalf("code %q (%v); want %q", got, err, tt.wantCode)
			}
			if err == nil && p.Query != tt.wantQuery {
				t.Errorf("query %q; want %q", p.Query, tt.wantQuery)
			}
		})
	}
}

func TestTrustedStats(t *testing.T) {
	tr := newTestTrusted(t, true)
	ctx := pqOperationContext()
	if err := tr.MutateOperationParameters(ctx, trustedRequest{docID: "viewer-v1"}.params()); err != nil {
		t.Fatal(err)
	}
	if got, want := PersistedQueryStatsFrom(ctx), (&PersistedQueryStats{ManifestID: "viewer-v1", Trusted: true}); got == nil || *got != *want {
		t.Errorf("stats by id = %+v; want %+v", got, want)
	}
	ctx = pqOperationContext()
	if err := tr.MutateOperationParameters(ctx, trustedRequest{query: pqQueryViewer}.params()); err != nil {
		t.Fatal(err)
	}
	if got, want := PersistedQueryStatsFrom(ctx), (&PersistedQueryStats{Trusted: true}); got == nil || *got != *want {
		t.Errorf("stats by body = %+v; want %+v", got, want)
	}
}

func TestNewTrustedRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, path := range map[string]string{
		"no path":      "",
		"missing file": filepath.Join(dir, "missing.json"),
		"bad file":     writeTestManifest(t, dir, `{"nope":"query { hello }"}`),
	} {
		if tr, err := NewTrusted(path, true, nil); err == nil {
			t.Errorf("%s: NewTrusted(%q) = %v; want an error", name, path, tr)
		}
	}
}

// TestTrustedReload: a valid file replaces the manifest at once, an invalid
// one leaves it in place, while requests keep running.
func TestTrustedReload(t *testing.T) {
	dir := t.TempDir()
	path := writeTestManifest(t, dir, documentMapJSON(t, pqQueryHello))
	tr, err := NewTrusted(path, true, nil)
	if err != nil {
		t.Fatal(err)
	}

	// Requests run throughout, for the race detector.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				p := trustedRequest{pqHash: persistedQueryHash(pqQueryHello)}.params()
				_ = tr.MutateOperationParameters(pqOperationContext(), p)
			}
		})
	}
	defer wg.Wait()
	defer cancel()

	writeTestManifest(t, dir, documentMapJSON(t, pqQueryHello, pqQueryViewer))
	if err := tr.Reload(); err != nil {
		t.Fatalf("Reload of a valid file: %v", err)
	}
	if !tr.Manifest().HasBody(pqQueryViewer) || tr.Manifest().Len() != 2 {
		t.Fatal("the reloaded manifest is not in use")
	}
	good := tr.Manifest()

	for _, bad := range []string{`{"broken`, `{"` + persistedQueryHash(pqQueryHello) + `":"` + pqQueryViewer + `"}`} {
		writeTestManifest(t, dir, bad)
		err := tr.Reload()
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Reload of %s: %v; want an error naming the file", bad, err)
		}
		if tr.Manifest() != good {
			t.Errorf("a failed reload replaced the manifest")
		}
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := tr.Reload(); err == nil || tr.Manifest() != good {
		t.Errorf("Reload of a removed file: %v; want an error and the manifest kept", err)
	}
}

// TestTrustedWatchSIGHUP: SIGHUP reloads the manifest; a broken file on
// SIGHUP keeps the manifest in use; the watcher stops with its context.
func TestTrustedWatchSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := writeTestManifest(t, dir, documentMapJSON(t, pqQueryHello))
	log, logs := pqTestLogger()
	tr, err := NewTrusted(path, true, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := tr.WatchSIGHUP(ctx) // registered for SIGHUP once it returns
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("the watcher did not stop with its context")
		}
	}
	t.Cleanup(stop)

	hup := func() {
		t.Helper()
		p, err := os.FindProcess(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; log:\n%s", what, logs)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	first := tr.Manifest()
	writeTestManifest(t, dir, documentMapJSON(t, pqQueryViewer))
	hup()
	waitFor("the reload", func() bool { return tr.Manifest() != first })
	if m := tr.Manifest(); !m.HasBody(pqQueryViewer) || m.HasBody(pqQueryHello) {
		t.Fatal("after SIGHUP the manifest is not the new file's")
	}
	p := trustedRequest{pqHash: persistedQueryHash(pqQueryViewer)}.params()
	if err := tr.MutateOperationParameters(pqOperationContext(), p); err != nil || p.Query != pqQueryViewer {
		t.Fatalf("a request for the new document: %v, query %q", err, p.Query)
	}
	if err := tr.MutateOperationParameters(pqOperationContext(), trustedRequest{query: pqQueryHello}.params()); pqCode(err) != CodePersistedQueryNotInList {
		t.Fatalf("a document removed from the manifest: %v; want %s", err, CodePersistedQueryNotInList)
	}

	second := tr.Manifest()
	writeTestManifest(t, dir, `{"format":"apollo-persisted-query-manifest"`)
	hup()
	waitFor("the failed reload to be logged", func() bool { return strings.Contains(logs.String(), "not reloaded") })
	if tr.Manifest() != second {
		t.Fatal("a broken file on SIGHUP replaced the manifest")
	}

	// No SIGHUP may be sent after stop: with the watcher's Notify gone, it
	// would end the test process.
	stop()
	if !strings.Contains(logs.String(), "persisted query manifest reloaded") {
		t.Errorf("the reload was not logged; log:\n%s", logs)
	}
}
