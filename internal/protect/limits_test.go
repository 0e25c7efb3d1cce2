package protect

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// screenQuery is what the chat screen asks for: a page of conversations
// with their last messages.
const screenQuery = `{ conversations(first:20){ totalCount nodes{ id title updatedAt owner{ name avatarUrl } messages(last:10){ totalCount nodes{ id role content createdAt author{ name } } } } } }`

// graphiQLIntrospectionQuery is the introspection query of the GraphiQL
// that askgate serves (internal/server/graphiql), with descriptions.
const graphiQLIntrospectionQuery = `query IntrospectionQuery {
  __schema {
    queryType { name kind }
    mutationType { name kind }
    subscriptionType { name kind }
    types { ...FullType }
    directives {
      name
      description
      locations
      args { ...InputValue }
    }
  }
}

fragment FullType on __Type {
  kind
  name
  description
  fields(includeDeprecated: true) {
    name
    description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated
    deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) {
    name
    description
    isDeprecated
    deprecationReason
  }
  possibleTypes { ...TypeRef }
}

fragment InputValue on __InputValue {
  name
  description
  type { ...TypeRef }
  defaultValue
}

fragment TypeRef on __Type {
  kind
  name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name ofType {
    kind name ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }
}`

var (
	realSchemaOnce sync.Once
	realSchema     *ast.Schema
	realSchemaErr  error
)

// loadRealSchema loads askgate's schema from schema/*.graphqls, with its
// @cost and @listSize annotations.
func loadRealSchema(tb testing.TB) *ast.Schema {
	tb.Helper()
	s, err := readRealSchema()
	if err != nil {
		tb.Fatalf("loading schema/*.graphqls: %v", err)
	}
	return s
}

func readRealSchema() (*ast.Schema, error) {
	realSchemaOnce.Do(func() {
		paths, err := filepath.Glob(filepath.Join("..", "..", "schema", "*.graphqls"))
		if err != nil || len(paths) == 0 {
			realSchemaErr = fmt.Errorf("no schema files (%v)", err)
			return
		}
		var sources []*ast.Source
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				realSchemaErr = err
				return
			}
			sources = append(sources, &ast.Source{Name: p, Input: string(b)})
		}
		s, gerr := gqlparser.LoadSchema(sources...)
		if gerr != nil {
			realSchemaErr = gerr
			return
		}
		realSchema = s
	})
	return realSchema, realSchemaErr
}

// validQuery parses and validates query against schema, as the server
// does, and returns its document and only operation.
func validQuery(tb testing.TB, schema *ast.Schema, query string) (*ast.QueryDocument, *ast.OperationDefinition) {
	tb.Helper()
	doc, errs := gqlparser.LoadQueryWithRules(schema, query, rules.NewDefaultRules())
	if errs != nil {
		tb.Fatalf("invalid query: %v\n%s", errs, query)
	}
	return doc, doc.Operations[0]
}

// parsedQuery parses query without validating it and returns its document
// and first operation.
func parsedQuery(tb testing.TB, query string) (*ast.QueryDocument, *ast.OperationDefinition) {
	tb.Helper()
	doc, err := parser.ParseQuery(&ast.Source{Input: query})
	if err != nil {
		tb.Fatalf("parse: %v\n%.200s", err, query)
	}
	if len(doc.Operations) == 0 {
		tb.Fatalf("no operation in %.200s", query)
	}
	return doc, doc.Operations[0]
}

// nested returns `{ f { f { … leaf … } } }` with levels fields named f
// around leaf.
func nested(f string, levels int, leaf string) string {
	return "{ " + strings.Repeat(f+" { ", levels) + leaf + strings.Repeat(" }", levels) + " }"
}

// repeated returns n copies of format, each formatted with its index when
// format has a verb, joined by spaces.
func repeated(n int, format string) string {
	parts := make([]string, n)
	for i := range parts {
		if strings.Contains(format, "%") {
			parts[i] = fmt.Sprintf(format, i)
		} else {
			parts[i] = format
		}
	}
	return strings.Join(parts, " ")
}

// chainFragments returns n fragments F0…F(n-1) on T, each selecting body
// with %s replaced by the spread of the next one; the last selects leaf.
func chainFragments(n int, body, leaf string) string {
	var b strings.Builder
	for i := range n {
		next := leaf
		if i+1 < n {
			next = fmt.Sprintf("...F%d", i+1)
		}
		fmt.Fprintf(&b, "fragment F%d on T { %s }\n", i, strings.ReplaceAll(body, "%s", next))
	}
	return b.String()
}

// codes returns the extensions.code of each error.
func codes(errs gqlerror.List) []string {
	var out []string
	for _, e := range errs {
		code, _ := e.Extensions["code"].(string)
		out = append(out, code)
	}
	return out
}

func TestDefaultLimits(t *testing.T) {
	got := DefaultLimits()
	want := Limits{MaxDepth: 10, MaxIntrospectionDepth: 20, MaxAliases: 15, MaxRootFields: 10,
		MaxDirectives: 50, MaxTokens: 5000, MaxDocumentBytes: 100 << 10, MaxCost: 5000}
	if got != want {
		t.Errorf("DefaultLimits() = %+v, want %+v", got, want)
	}
	// The zero Limits checks like the defaults.
	doc, op := parsedQuery(t, nested("a", 10, "b"))
	if got, want := codes(Limits{}.Check(doc, op)), codes(DefaultLimits().Check(doc, op)); !slices.Equal(got, want) || len(got) != 1 {
		t.Errorf("Limits{}.Check = %v, DefaultLimits().Check = %v, want one MAX_DEPTH_LIMIT from both", got, want)
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		name   string
		query  string
		limits Limits // zero: the defaults
		want   []string
		msg    string // when set, the first error's message
	}{
		{name: "the chat screen", query: screenQuery},
		{name: "the GraphiQL introspection query", query: graphiQLIntrospectionQuery},

		// Depth.
		{name: "depth at the limit", query: nested("a", 9, "b")},
		{name: "depth over the limit", query: nested("a", 10, "b"),
			want: []string{CodeMaxDepth}, msg: "operation depth 11 exceeds the limit of 10"},
		{name: "__typename does not count", query: nested("a", 10, "__typename")},
		{name: "depth through fragment spreads",
			query:  `{ a { ...F } } fragment F on T { b { ...G } } fragment G on T { c { d } }`,
			limits: Limits{MaxDepth: 3}, want: []string{CodeMaxDepth}, msg: "operation depth 4 exceeds the limit of 3"},
		{name: "depth through inline fragments",
			query:  `{ a { ... on T { b { ... @include(if: true) { c { d } } } } } }`,
			limits: Limits{MaxDepth: 3}, want: []string{CodeMaxDepth}, msg: "operation depth 4 exceeds the limit of 3"},
		{name: "depth of a fragment reused at different depths",
			query:  `{ x { ...F } a { b { c { ...F } } } } fragment F on T { y { z } }`,
			limits: Limits{MaxDepth: 4}, want: []string{CodeMaxDepth}, msg: "operation depth 5 exceeds the limit of 4"},
		{name: "depth through a root fragment",
			query:  `{ ...Q } fragment Q on Query { a { b { c } } }`,
			limits: Limits{MaxDepth: 2}, want: []string{CodeMaxDepth}, msg: "operation depth 3 exceeds the limit of 2"},
		{name: "depth off", query: nested("a", 500, "b"), limits: Limits{MaxDepth: -1}},

		// Fragment cycles, which only an unvalidated document has.
		{name: "fragment cycle through fields",
			query: `{ ...A } fragment A on Query { a { ...B } } fragment B on T { b { ...A } }`,
			want:  []string{CodeMaxDepth}},
		{name: "fragment spreading itself at the root",
			query: `{ ...A } fragment A on Query { viewer { id } ...A }`,
			want:  []string{CodeMaxDepth}, msg: `operation depth is unbounded: fragment "A" spreads itself; the limit is 10`},
		{name: "fragment cycle without fields",
			query: `{ a { ...A } } fragment A on T { ...B } fragment B on T { ...A }`,
			want:  []string{CodeMaxDepth}},
		{name: "spread of an unknown fragment", query: `{ a { ...Missing } }`},

		// Aliases.
		{name: "aliases at the limit", query: "{ viewer { " + repeated(15, "a%d: name") + " } }"},
		{name: "alias bomb", query: "{ viewer { " + repeated(16, "a%d: name") + " } }",
			want: []string{CodeMaxAliases}, msg: "operation has 16 aliases, more than the limit of 15"},
		{name: "aliases count once per spread",
			query: `{ a { ...F } b { ...F } } fragment F on T { ` + repeated(8, "x%d: x") + ` }`,
			want:  []string{CodeMaxAliases}, msg: "operation has 16 aliases, more than the limit of 15"},
		{name: "a field named as itself is no alias", query: "{ viewer { " + repeated(20, "name: name") + " } }"},
		{name: "5000 spreads of a fragment with an alias",
			query: `{ viewer { ` + repeated(5000, "...F") + ` } } fragment F on User { n: name }`,
			want:  []string{CodeMaxAliases}, msg: "operation has 5000 aliases, more than the limit of 15"},
		{name: "fragment bomb: 2⁴⁰ expanded spreads",
			query: `{ a { ...F0 } } ` + chainFragments(41, "%s %s", "x: y"),
			want:  []string{CodeMaxAliases}, msg: "operation has over 1073741824 aliases, more than the limit of 15"},

		// Root fields.
		{name: "root fields at the limit", query: "{ " + repeated(10, "f%d") + " }"},
		{name: "root fields over the limit", query: "{ " + repeated(11, "f%d") + " }",
			want: []string{CodeMaxRootFields}, msg: "operation has 11 root fields, more than the limit of 10"},
		{name: "5000 duplicated root fields merge into one", query: "{ " + repeated(5000, "viewer { id }") + " }"},
		{name: "aliased root fields are distinct",
			query: "{ " + repeated(11, "v%d: viewer { id }") + " }",
			want:  []string{CodeMaxRootFields}},
		{name: "root fields of fragments and inline fragments",
			query: `{ a ...F ... on Query { b ... @skip(if: false) { c } } } fragment F on Query { d e f g h i j ...G } fragment G on Query { a k }`,
			want:  []string{CodeMaxRootFields}, msg: "operation has 11 root fields, more than the limit of 10"},
		{name: "__typename is not a root field", query: "{ __typename " + repeated(10, "f%d") + " }"},
		{name: "a root fragment spread 5000 times",
			query: `{ ` + repeated(5000, "...F") + ` } fragment F on Query { ` + repeated(10, "f%d") + ` }`},

		// Directives.
		{name: "directives at the limit", query: "{ viewer " + repeated(50, "@d") + " { id } }"},
		{name: "directives over the limit", query: "{ viewer " + repeated(51, "@d") + " { id } }",
			want: []string{CodeMaxDirectives}, msg: "operation has 51 directives, more than the limit of 50"},
		{name: "directives everywhere",
			query:  `query Q($v: Int @d) @d { a @d { ...F @d ... @d { b @d } } } fragment F on T @d { c @d }`,
			limits: Limits{MaxDirectives: 7}, want: []string{CodeMaxDirectives},
			msg: "operation has 8 directives, more than the limit of 7"},
		{name: "directives count once per spread",
			query: `{ a { ...F } b { ...F } } fragment F on T { c ` + repeated(26, "@d") + ` }`,
			want:  []string{CodeMaxDirectives}, msg: "operation has 52 directives, more than the limit of 50"},

		// Everything at once: every limit is reported.
		{name: "all limits together",
			query:  `{ r1 r2 r3 x: a @d @d { y: b { c { d } } } }`,
			limits: Limits{MaxDepth: 3, MaxAliases: 1, MaxRootFields: 3, MaxDirectives: 1},
			want:   []string{CodeMaxDepth, CodeMaxAliases, CodeMaxRootFields, CodeMaxDirectives}},

		// Introspection is bounded too.
		{name: "introspection depth bomb",
			query: `{ __schema { types { fields { type { ` + strings.Repeat("ofType { ", 30) + "name" + strings.Repeat(" }", 30) + ` } } } } }`,
			want:  []string{CodeMaxDepth}, msg: "introspection depth 35 exceeds the limit of 20"},
		{name: "introspection depth bomb through fragments",
			query: `{ __type(name: "Query") { ...F0 } } ` + strings.ReplaceAll(chainFragments(30, "ofType { %s }", "name"), " on T ", " on __Type "),
			want:  []string{CodeMaxDepth}, msg: "introspection depth 32 exceeds the limit of 20"},
		{name: "introspection does not use the operation's depth",
			query: `{ viewer { id } __schema { types { fields { type { ofType { ofType { ofType { ofType { ofType { ofType { name } } } } } } } } } } }`},
		{name: "introspection next to a deep field",
			query:  `{ a { b { c } } __schema { queryType { name } } }`,
			limits: Limits{MaxDepth: 2, MaxIntrospectionDepth: 2},
			want:   []string{CodeMaxDepth, CodeMaxDepth}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, op := parsedQuery(t, tt.query)
			errs := tt.limits.Check(doc, op)
			if got := codes(errs); !slices.Equal(got, tt.want) {
				t.Fatalf("codes = %v, want %v (errors: %v)", got, tt.want, errs)
			}
			if tt.msg != "" {
				if got := errs[0].Message; got != tt.msg {
					t.Errorf("message = %q, want %q", got, tt.msg)
				}
			}
			for _, e := range errs {
				if len(e.Locations) != 1 || e.Locations[0] != (gqlerror.Location{Line: op.Position.Line, Column: op.Position.Column}) {
					t.Errorf("%q: locations = %v, want the operation's", e.Message, e.Locations)
				}
				if e.Err != nil || len(e.Path) != 0 {
					t.Errorf("%q: has a cause or a path", e.Message)
				}
			}
		})
	}
}

// TestCheckValidDocuments checks the real documents after validation, as
// the server runs them.
func TestCheckValidDocuments(t *testing.T) {
	schema := loadRealSchema(t)
	for name, query := range map[string]string{
		"the chat screen":                  screenQuery,
		"the GraphiQL introspection query": graphiQLIntrospectionQuery,
	} {
		doc, op := validQuery(t, schema, query)
		if errs := DefaultLimits().Check(doc, op); errs != nil {
			t.Errorf("%s: Check = %v, want nil", name, errs)
		}
	}
}

func TestCheckNilOperation(t *testing.T) {
	if errs := DefaultLimits().Check(nil, nil); errs != nil {
		t.Errorf("Check(nil, nil) = %v", errs)
	}
}

func TestCheckSize(t *testing.T) {
	tests := []struct {
		name   string
		size   int
		limits Limits
		want   string // the error's message, "" for none
	}{
		{name: "small", size: 100},
		{name: "at the default limit", size: 100 << 10},
		{name: "over the default limit", size: 100<<10 + 1,
			want: "document size 102401 bytes exceeds the limit of 102400 bytes"},
		{name: "over a set limit", size: 2000, limits: Limits{MaxDocumentBytes: 1000},
			want: "document size 2000 bytes exceeds the limit of 1000 bytes"},
		{name: "no limit", size: 1 << 20, limits: Limits{MaxDocumentBytes: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckSize(strings.Repeat(" ", tt.size), tt.limits)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckSize = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("CheckSize = nil, want %q", tt.want)
			}
			if err.Message != tt.want || err.Extensions["code"] != CodeMaxDocumentSize {
				t.Errorf("CheckSize = %q (%v), want %q (%s)", err.Message, err.Extensions["code"], tt.want, CodeMaxDocumentSize)
			}
		})
	}
}

func TestParserTokenLimit(t *testing.T) {
	for _, tt := range []struct {
		limits Limits
		want   int
	}{
		{Limits{}, 5000},
		{Limits{MaxTokens: 7}, 7},
		{Limits{MaxTokens: -1}, 0},
	} {
		if got := tt.limits.ParserTokenLimit(); got != tt.want {
			t.Errorf("%+v.ParserTokenLimit() = %d, want %d", tt.limits, got, tt.want)
		}
	}
}

// TestTokenLimit checks how the parser refuses a document over the token
// limit and that IsTokenLimitError recognises it, so that the server can
// give it MAX_TOKENS_LIMIT.
func TestTokenLimit(t *testing.T) {
	limit := DefaultLimits().ParserTokenLimit()
	parse := func(query string) *gqlerror.Error {
		t.Helper()
		_, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, limit)
		if err == nil {
			return nil
		}
		gerr, ok := err.(*gqlerror.Error)
		if !ok {
			t.Fatalf("parse error %T %v, want a *gqlerror.Error", err, err)
		}
		return gerr
	}

	for name, query := range map[string]string{
		"5000 directives":          "{ viewer " + repeated(5000, "@d") + " { id } }",
		"5000 duplicated fields":   "{ " + repeated(5000, "viewer { id }") + " }",
		"100 kB of tokens":         "{ " + strings.Repeat("a ", 50<<10) + "}",
		"comments count as tokens": "{ viewer { id } }\n" + strings.Repeat("#\n", limit),
	} {
		err := parse(query)
		if err == nil {
			t.Errorf("%s: parsed with the token limit", name)
			continue
		}
		if !IsTokenLimitError(err) {
			t.Errorf("%s: IsTokenLimitError(%q) = false", name, err.Message)
		}
		if err.Message != fmt.Sprintf("exceeded token limit of %d", limit) {
			t.Errorf("%s: message %q; gqlparser changed its error (update tokenLimitPrefix)", name, err.Message)
		}
		// gqlgen's executor marks every parse error GRAPHQL_PARSE_FAILED.
		err.Extensions = map[string]any{"code": "GRAPHQL_PARSE_FAILED"}
		if !IsTokenLimitError(err) {
			t.Errorf("%s: IsTokenLimitError after gqlgen's code = false", name)
		}
	}

	for name, query := range map[string]string{
		"the chat screen":                  screenQuery,
		"the GraphiQL introspection query": graphiQLIntrospectionQuery,
	} {
		if err := parse(query); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := parse("{ viewer { id }"); err == nil || IsTokenLimitError(err) {
		t.Errorf("a syntax error: IsTokenLimitError(%v) = true", err)
	}
	if IsTokenLimitError(nil) {
		t.Error("IsTokenLimitError(nil) = true")
	}

	err := TokenLimitError(5000)
	if !IsTokenLimitError(err) || err.Extensions["code"] != CodeMaxTokens || err.Message != "document exceeds the limit of 5000 tokens" {
		t.Errorf("TokenLimitError(5000) = %q %v", err.Message, err.Extensions)
	}
}

// TestCheckTokens checks that CheckTokens counts tokens exactly as the
// parser does: for each document, the smallest limit the parser accepts is
// the smallest CheckTokens accepts.
func TestCheckTokens(t *testing.T) {
	docs := map[string]string{
		"the chat screen":                  screenQuery,
		"the GraphiQL introspection query": graphiQLIntrospectionQuery,
		"comments":                         "# one\n{ viewer { # two\n id } } # three\n#four",
		"strings and block strings":        `query ($a: String = "x\"y") { a(s: """block""" t: "") @d(if: [1, 2.5, true, null, {o: ENUM}]) }`,
		"a description":                    `"described" query Q { a }`,
	}
	for name, query := range docs {
		parses := func(limit int) bool {
			_, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, limit)
			return err == nil
		}
		if !parses(0) {
			t.Fatalf("%s does not parse", name)
		}
		threshold := 1
		for !parses(threshold) {
			threshold++
		}
		if err := CheckTokens(query, Limits{MaxTokens: threshold}); err != nil {
			t.Errorf("%s: the parser takes %d tokens, CheckTokens refuses: %v", name, threshold, err)
		}
		if threshold > 1 {
			err := CheckTokens(query, Limits{MaxTokens: threshold - 1})
			if err == nil || !IsTokenLimitError(err) || err.Extensions["code"] != CodeMaxTokens {
				t.Errorf("%s: the parser refuses %d tokens, CheckTokens(%d) = %v", name, threshold-1, threshold-1, err)
			}
		}
	}

	for name, tt := range map[string]struct {
		query   string
		limits  Limits
		refused bool
	}{
		"5000 directives":        {query: "{ viewer " + repeated(5000, "@d") + " { id } }", refused: true},
		"100 kB of tokens":       {query: "{ " + strings.Repeat("a ", 50<<10) + "}", refused: true},
		"100 kB of one string":   {query: `{ a(s: "` + strings.Repeat("x", 100<<10) + `") }`},
		"no limit":               {query: "{ " + strings.Repeat("a ", 50<<10) + "}", limits: Limits{MaxTokens: -1}},
		"a lexical error first":  {query: "{ a ^ " + strings.Repeat("a ", 50<<10) + "}"},
		"a syntax error, lexes":  {query: strings.Repeat("}", 6000), refused: true},
		"short enough to be ok":  {query: strings.Repeat("}", 5000)},
		"just over, in one byte": {query: strings.Repeat("}", 5001), refused: true},
	} {
		err := CheckTokens(tt.query, tt.limits)
		if (err != nil) != tt.refused {
			t.Errorf("%s: CheckTokens = %v, want refused %v", name, err, tt.refused)
		}
	}
}

func ExampleLimits_Check() {
	doc, _ := parser.ParseQuery(&ast.Source{Input: `{
		a: viewer { name }
		b: viewer { name }
		conversations { nodes { messages { nodes { conversation { owner { name } } } } } }
	}`})
	limits := Limits{MaxDepth: 6, MaxAliases: 1}
	for _, err := range limits.Check(doc, doc.Operations[0]) {
		fmt.Println(err.Extensions["code"], err.Message)
	}
	// Output:
	// MAX_DEPTH_LIMIT operation depth 7 exceeds the limit of 6
	// MAX_ALIASES_LIMIT operation has 2 aliases, more than the limit of 1
}

func BenchmarkCheckScreenQuery(b *testing.B) {
	doc, op := validQuery(b, loadRealSchema(b), screenQuery)
	limits := DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if errs := limits.Check(doc, op); errs != nil {
			b.Fatal(errs)
		}
	}
}

func BenchmarkCheckRepeatedSpreads(b *testing.B) {
	doc, op := parsedQuery(b, `{ viewer { `+repeated(5000, "...F")+` } } fragment F on User { name }`)
	limits := DefaultLimits()
	b.ReportAllocs()
	for b.Loop() {
		if errs := limits.Check(doc, op); errs != nil {
			b.Fatal(errs)
		}
	}
}

// BenchmarkCheckTokens shows what CheckTokens costs: nothing for a
// document shorter than the limit, and a lexer pass up to the limit for a
// huge one.
func BenchmarkCheckTokens(b *testing.B) {
	docs := []struct {
		name, query string
		refused     bool
	}{
		{"the chat screen", screenQuery, false},
		{"the GraphiQL introspection query", graphiQLIntrospectionQuery, false},
		{"5000 directives", "{ viewer " + repeated(5000, "@d") + " { id } }", true},
		{"100 kB of tokens", "{ " + strings.Repeat("a ", 50<<10) + "}", true},
	}
	limits := DefaultLimits()
	for _, d := range docs {
		b.Run(d.name, func(b *testing.B) {
			b.SetBytes(int64(len(d.query)))
			b.ReportAllocs()
			for b.Loop() {
				if err := CheckTokens(d.query, limits); (err != nil) != d.refused {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParseTokenLimit shows that the parser refuses a huge document
// after reading no more than the token limit: its time does not grow with
// the document. The unlimited cases parse the same documents in full.
func BenchmarkParseTokenLimit(b *testing.B) {
	docs := []struct{ name, query string }{
		{"5000 directives", "{ viewer " + repeated(5000, "@d") + " { id } }"},
		{"100 kB of tokens", "{ " + strings.Repeat("a ", 50<<10) + "}"},
	}
	for _, d := range docs {
		for _, limit := range []int{DefaultMaxTokens, 0} {
			name := d.name + "/limit"
			if limit == 0 {
				name = d.name + "/unlimited"
			}
			b.Run(name, func(b *testing.B) {
				src := &ast.Source{Input: d.query}
				b.SetBytes(int64(len(d.query)))
				b.ReportAllocs()
				for b.Loop() {
					_, err := parser.ParseQueryWithTokenLimit(src, limit)
					if (err != nil) != (limit != 0) {
						b.Fatalf("limit %d: err = %v", limit, err)
					}
				}
			})
		}
	}
}
