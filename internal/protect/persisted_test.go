package protect

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/executor"
	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
)

func TestNormalizePersistedHash(t *testing.T) {
	h := persistedQueryHash(pqQueryHello)
	tests := []struct {
		in     string
		want   string
		wantOK bool
	}{
		{h, h, true},
		{strings.ToUpper(h), h, true},
		{"sha256:" + h, h, true},
		{"sha256:" + strings.ToUpper(h), h, true},
		{"", "", false},
		{"sha256:", "", false},
		{h[:63], "", false},
		{h + "0", "", false},
		{"sha1:" + h, "", false},
		{strings.Repeat("g", 64), "", false},
		{"viewer-v1", "", false},
	}
	for _, tt := range tests {
		got, ok := normalizePersistedHash(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("normalizePersistedHash(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
	// The hash of a known document, as computed by `printf %s "$doc" | sha256sum`.
	if got, want := persistedQueryHash("{ hello }"), "001c3174e099bd72b729d0c0a529ba9f5a740c446e2a6e1d71b283cb84ec3065"; got != want {
		t.Errorf("persistedQueryHash = %s; want %s", got, want)
	}
}

func TestPersistedVersionIsOne(t *testing.T) {
	for _, tt := range []struct {
		v    any
		want bool
	}{
		{json.Number("1"), true},
		{float64(1), true},
		{1, true},
		{int64(1), true},
		{json.Number("2"), false},
		{json.Number("1.0"), false},
		{float64(1.5), false},
		{"1", false},
		{nil, false},
		{true, false},
	} {
		if got := persistedVersionIsOne(tt.v); got != tt.want {
			t.Errorf("persistedVersionIsOne(%#v) = %v; want %v", tt.v, got, tt.want)
		}
	}
}

// pqTestExecutor returns gqlgen's executor over a small schema with the given
// extensions, in order, as the server adds them to its handler.
func pqTestExecutor(t *testing.T, exts ...graphql.HandlerExtension) *executor.Executor {
	t.Helper()
	schema := gqlparser.MustLoadSchema(&ast.Source{Name: "test.graphqls", Input: `
		type Query { hello: String, viewer: User }
		type User { id: ID!, name: String, email: String }
	`})
	exec := executor.New(&graphql.ExecutableSchemaMock{
		SchemaFunc: func() *ast.Schema { return schema },
		ComplexityFunc: func(context.Context, string, string, int, map[string]any) (int, bool) {
			return 0, false
		},
		ExecFunc: func(context.Context) graphql.ResponseHandler {
			return graphql.OneShot(&graphql.Response{Data: []byte(`{}`)})
		},
	})
	for _, ext := range exts {
		exec.Use(ext)
	}
	return exec
}

// TestPersistedTrustedThenAPQ runs both extensions in gqlgen's executor, in
// the order the server adds them: trusted documents, then APQ.
func TestPersistedTrustedThenAPQ(t *testing.T) {
	helloHash := persistedQueryHash(pqQueryHello)
	freeform := "query Freeform { viewer { email } }"
	freeformHash := persistedQueryHash(freeform)
	type step struct {
		req       trustedRequest
		wantCode  string
		wantQuery string // the document the operation runs, when accepted
	}
	tests := []struct {
		name          string
		persistedOnly bool
		steps         []step
		wantStored    []string // documents the APQ store holds at the end
	}{
		{
			name:          "persisted-only: manifest ids run and are not registered",
			persistedOnly: true,
			steps: []step{
				{req: trustedRequest{pqHash: helloHash}, wantQuery: pqQueryHello},
				{req: trustedRequest{pqHash: helloHash, query: pqQueryHello}, wantQuery: pqQueryHello},
				// A custom id is no SHA-256 of its document: APQ must not call it a mismatch.
				{req: trustedRequest{pqHash: "viewer-v1"}, wantQuery: pqQueryViewer},
				{req: trustedRequest{docID: "viewer-v1"}, wantQuery: pqQueryViewer},
				{req: trustedRequest{query: pqQueryViewer}, wantQuery: pqQueryViewer},
			},
		},
		{
			name:          "persisted-only: APQ cannot register an unlisted document",
			persistedOnly: true,
			steps: []step{
				{req: trustedRequest{pqHash: freeformHash}, wantCode: CodePersistedQueryNotInList},
				{req: trustedRequest{pqHash: freeformHash, query: freeform}, wantCode: CodePersistedQueryNotInList},
				{req: trustedRequest{pqHash: freeformHash}, wantCode: CodePersistedQueryNotInList},
				{req: trustedRequest{query: freeform}, wantCode: CodePersistedQueryNotInList},
			},
		},
		{
			name:          "persisted-only: a listed body with a hash that is not its own",
			persistedOnly: true,
			steps: []step{
				{req: trustedRequest{pqHash: freeformHash, query: pqQueryViewer}, wantCode: CodePersistedQueryHashMismatch},
			},
		},
		{
			name: "manifest and APQ together",
			steps: []step{
				{req: trustedRequest{pqHash: helloHash}, wantQuery: pqQueryHello},
				{req: trustedRequest{pqHash: freeformHash}, wantCode: CodePersistedQueryNotFound},
				{req: trustedRequest{pqHash: freeformHash, query: freeform}, wantQuery: freeform},
				{req: trustedRequest{pqHash: freeformHash}, wantQuery: freeform},
				{req: trustedRequest{pqHash: freeformHash, query: pqQueryViewer}, wantCode: CodePersistedQueryHashMismatch},
				{req: trustedRequest{query: "{ hello }"}, wantQuery: "{ hello }"},
				{req: trustedRequest{docID: "nope"}, wantCode: CodePersistedQueryNotFound},
			},
			wantStored: []string{freeform},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemoryAPQStore(t).(*APQMemoryStore)
			exec := pqTestExecutor(t, newTestTrusted(t, tt.persistedOnly), NewAPQ(store, nil))
			for i, s := range tt.steps {
				ctx := graphql.StartOperationTrace(context.Background())
				oc, errs := exec.CreateOperationContext(ctx, s.req.params())
				var code string
				if len(errs) > 0 {
					code, _ = errs[0].Extensions["code"].(string)
				}
				if code != s.wantCode {
					t.Fatalf("step %d: code %q (%v); want %q", i, code, errs, s.wantCode)
				}
				if len(errs) == 0 && oc.RawQuery != s.wantQuery {
					t.Errorf("step %d: runs %q; want %q", i, oc.RawQuery, s.wantQuery)
				}
				if len(errs) == 0 && oc.Operation == nil {
					t.Errorf("step %d: no operation", i)
				}
			}
			if got := store.Len(); got != len(tt.wantStored) {
				t.Errorf("APQ store holds %d documents; want %d", got, len(tt.wantStored))
			}
			for _, doc := range tt.wantStored {
				if _, ok, _ := store.Get(context.Background(), persistedQueryHash(doc)); !ok {
					t.Errorf("APQ store lacks %q", doc)
				}
			}
		})
	}
}
