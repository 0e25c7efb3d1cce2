package protect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// apolloManifestFormat is the "format" of Apollo's persisted query
// manifest.
const apolloManifestFormat = "apollo-persisted-query-manifest"

// Manifest is a list of trusted documents, read from a manifest file. Each
// document can be found by its manifest id and by its SHA-256.
//
// Documents are compared as exact text: no whitespace or comment is
// normalized away, because the manifest is generated from the same source
// text the clients send, and a normalization that differs from the client
// tooling's would trust documents nobody listed. A Manifest is immutable and
// safe for concurrent use; the nil *Manifest is empty.
type Manifest struct {
	// docs maps every manifest id, and the SHA-256 (lowercase hex) of
	// every document, to the document.
	docs map[string]string
	// n is the number of distinct documents.
	n int
}

// LoadManifest reads a trusted-documents manifest in either of two formats:
//
//   - Apollo's persisted query manifest,
//     {"format": "apollo-persisted-query-manifest", "version": 1,
//     "operations": [{"id", "body", "name", "type"}, …]}. Ids are taken as
//     given (Apollo's tooling makes them the SHA-256 of the body); every
//     body can also be found by its SHA-256.
//   - A map from SHA-256 to document, {"<sha256>": "<document>", …}, as
//     graphql-codegen writes persisted-documents.json. Every key must be
//     the SHA-256 (hex) of its document; a file with a wrong key is refused
//     with an error that names the entry.
//
// A file where one id would name two different documents is refused too.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("persisted query manifest: %w", err)
	}
	m, err := ParseManifest(data)
	if err != nil {
		return nil, fmt.Errorf("persisted query manifest %s: %w", path, err)
	}
	return m, nil
}

// ParseManifest is LoadManifest for a manifest already in memory.
func ParseManifest(data []byte) (*Manifest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		return nil, errors.New("not a JSON object (expected Apollo's persisted query manifest or a {\"<sha256>\": \"<document>\"} map)")
	}
	m := &Manifest{docs: make(map[string]string, 2*len(top))}
	if _, ok := top["format"]; ok {
		if err := m.addApollo(data); err != nil {
			return nil, err
		}
		return m, nil
	}
	if err := m.addDocumentMap(top); err != nil {
		return nil, err
	}
	return m, nil
}

// addApollo adds the operations of an Apollo persisted query manifest.
func (m *Manifest) addApollo(data []byte) error {
	var am struct {
		Format     string `json:"format"`
		Version    int    `json:"version"`
		Operations []struct {
			ID   string `json:"id"`
			Body string `json:"body"`
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"operations"`
	}
	if err := json.Unmarshal(data, &am); err != nil {
		return fmt.Errorf("not a valid Apollo persisted query manifest: %w", err)
	}
	if am.Format != apolloManifestFormat || am.Version != 1 {
		return fmt.Errorf("unsupported manifest format %q version %d (supported: %q version 1)", am.Format, am.Version, apolloManifestFormat)
	}
	for i, op := range am.Operations {
		switch {
		case op.ID == "":
			return fmt.Errorf("operation %d (%q): no id", i, op.Name)
		case op.Body == "":
			return fmt.Errorf("operation %d (id %q): no body", i, op.ID)
		}
		if err := m.add(op.ID, op.Body); err != nil {
			return fmt.Errorf("operation %d: %w", i, err)
		}
	}
	return nil
}

// addDocumentMap adds the entries of a {"<sha256>": "<document>"} map,
// checking every key.
func (m *Manifest) addDocumentMap(top map[string]json.RawMessage) error {
	keys := make([]string, 0, len(top))
	for k := range top {
		keys = append(keys, k)
	}
	slices.Sort(keys) // so that the first bad entry reported is always the same
	for _, key := range keys {
		var doc string
		if err := json.Unmarshal(top[key], &doc); err != nil {
			return fmt.Errorf("entry %q: the document must be a JSON string", key)
		}
		if doc == "" {
			return fmt.Errorf("entry %q: empty document", key)
		}
		hash, ok := normalizePersistedHash(key)
		if !ok {
			return fmt.Errorf("entry %q: the key is not a SHA-256 in hex", key)
		}
		if got := persistedQueryHash(doc); got != hash {
			return fmt.Errorf("entry %q: the key is not the SHA-256 of its document (that is %s)", key, got)
		}
		if err := m.add(hash, doc); err != nil {
			return err
		}
	}
	return nil
}

// add indexes doc under id and under its SHA-256.
func (m *Manifest) add(id, doc string) error {
	hash := persistedQueryHash(doc)
	for _, key := range []string{id, hash} {
		if old, ok := m.docs[key]; ok && old != doc {
			return fmt.Errorf("id %q names two different documents", key)
		}
	}
	if _, ok := m.docs[hash]; !ok {
		m.n++
	}
	m.docs[id] = doc
	m.docs[hash] = doc
	return nil
}

// ByID returns the document with the manifest id id. A SHA-256 id matches
// in either case of hex and with or without a "sha256:" prefix.
func (m *Manifest) ByID(id string) (string, bool) {
	if m == nil {
		return "", false
	}
	if doc, ok := m.docs[id]; ok {
		return doc, true
	}
	if hash, ok := normalizePersistedHash(id); ok && hash != id {
		doc, ok := m.docs[hash]
		return doc, ok
	}
	return "", false
}

// HasBody reports whether body is, as exact text, a document of the
// manifest.
func (m *Manifest) HasBody(body string) bool {
	if m == nil || body == "" {
		return false
	}
	doc, ok := m.docs[persistedQueryHash(body)]
	return ok && doc == body
}

// Len returns the number of distinct documents.
func (m *Manifest) Len() int {
	if m == nil {
		return 0
	}
	return m.n
}

// Trusted is the gqlgen handler extension for trusted documents (persisted
// documents from a manifest file).
//
// A request names a document by id with extensions.persistedQuery.sha256Hash
// (Apollo clients) or extensions.documentId (where the HTTP transport puts
// the top-level "documentId" graphql-codegen clients send). A known id gets
// its query from the manifest; a request that names a known id and also
// sends a different query is refused (PERSISTED_QUERY_HASH_MISMATCH).
//
// In persisted-only mode every other operation is refused with
// PERSISTED_QUERY_NOT_IN_LIST ("operation not in the persisted query list")
// unless its query is, as exact text, a document of the manifest. Otherwise
// unknown ids and free-form queries pass on: extensions.persistedQuery to
// the APQ extension, which must be added after this one; an unknown
// documentId without a query fails with PERSISTED_QUERY_NOT_FOUND.
//
// Reload and WatchSIGHUP swap the manifest while requests run. A Trusted is
// safe for concurrent use.
type Trusted struct {
	path          string
	persistedOnly bool
	log           *slog.Logger

	reloadMu sync.Mutex // serializes Reload
	manifest atomic.Pointer[Manifest]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationParameterMutator
} = (*Trusted)(nil)

// NewTrusted loads the manifest at path (see LoadManifest). persistedOnly
// refuses every operation outside the manifest. Reloads are logged to log
// (nil discards them).
func NewTrusted(path string, persistedOnly bool, log *slog.Logger) (*Trusted, error) {
	if path == "" {
		return nil, errors.New("protect: trusted documents need the path of a manifest")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Trusted{path: path, persistedOnly: persistedOnly, log: log}
	m, err := LoadManifest(path)
	if err != nil {
		return nil, err
	}
	t.manifest.Store(m)
	log.LogAttrs(context.Background(), slog.LevelInfo, "persisted query manifest loaded",
		slog.String("path", path), slog.Int("documents", m.Len()), slog.Bool("persisted_only", persistedOnly))
	return t, nil
}

// Manifest returns the manifest in use.
func (t *Trusted) Manifest() *Manifest { return t.manifest.Load() }

// PersistedOnly reports whether operations outside the manifest are
// refused.
func (t *Trusted) PersistedOnly() bool { return t.persistedOnly }

// Reload reads the manifest file again and, when it is valid, puts it in
// use at once; requests already past this extension keep the document they
// got. When the file cannot be read or is invalid, the manifest in use is
// kept and the error is returned.
func (t *Trusted) Reload() error {
	t.reloadMu.Lock()
	defer t.reloadMu.Unlock()
	m, err := LoadManifest(t.path)
	if err != nil {
		return err
	}
	t.manifest.Store(m)
	return nil
}

// WatchSIGHUP reloads the manifest each time the process receives SIGHUP,
// until ctx is done, and logs each reload and each failure (a failed reload
// keeps the manifest in use). It registers for the signal before it
// returns, so no SIGHUP sent after the call is missed, and it stops
// receiving it when ctx is done. The returned channel is closed once the
// watching goroutine has ended.
func (t *Trusted) WatchSIGHUP(ctx context.Context) <-chan struct{} {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer signal.Stop(sig)
		for {
			select {
			case <-ctx.Done():
				return
			case <-sig:
				if err := t.Reload(); err != nil {
					t.log.LogAttrs(ctx, slog.LevelError, "persisted query manifest not reloaded; keeping the one in use",
						slog.String("path", t.path), slog.String("error", err.Error()))
					continue
				}
				t.log.LogAttrs(ctx, slog.LevelInfo, "persisted query manifest reloaded",
					slog.String("path", t.path), slog.Int("documents", t.Manifest().Len()))
			}
		}
	}()
	return done
}

// ExtensionName implements graphql.HandlerExtension.
func (t *Trusted) ExtensionName() string { return "TrustedDocuments" }

// Validate implements graphql.HandlerExtension.
func (t *Trusted) Validate(graphql.ExecutableSchema) error {
	if t == nil || t.manifest.Load() == nil {
		return errors.New("protect: Trusted has no manifest (use NewTrusted)")
	}
	return nil
}

// MutateOperationParameters implements graphql.OperationParameterMutator:
// it fills in the query of a request that names a manifest id and, in
// persisted-only mode, refuses operations outside the manifest.
func (t *Trusted) MutateOperationParameters(ctx context.Context, p *graphql.RawParams) *gqlerror.Error {
	id, fromDocID, gerr := readDocumentID(p.Extensions)
	if gerr != nil {
		return gerr
	}
	m := t.manifest.Load()
	if id != "" {
		if doc, ok := m.ByID(id); ok {
			if p.Query != "" && p.Query != doc {
				return persistedError(CodePersistedQueryHashMismatch,
					"the query is not the persisted document with this id")
			}
			p.Query = doc
			stats := persistedStats(ctx)
			stats.ManifestID = id
			stats.Trusted = true
			return nil
		}
	}
	if t.persistedOnly {
		if p.Query == "" && id == "" {
			return nil // no operation at all: the executor says so
		}
		if !m.HasBody(p.Query) {
			return persistedError(CodePersistedQueryNotInList, persistedNotInListMessage)
		}
		persistedStats(ctx).Trusted = true
		return nil
	}
	if fromDocID && p.Query == "" {
		return persistedError(CodePersistedQueryNotFound, persistedQueryNotFoundMessage)
	}
	return nil
}
