package cachecontrol_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/validator/rules"

	"askgate/internal/cachecontrol"
)

// testSchema exercises each rule of the package documentation.
const testSchema = `
directive @cacheControl(maxAge: Int, scope: CacheControlScope, inheritMaxAge: Boolean) on FIELD_DEFINITION | OBJECT | INTERFACE | UNION
enum CacheControlScope { PUBLIC PRIVATE }

type Query {
  long: Long @cacheControl(maxAge: 600)
  unhinted: Long
  typed: Short
  secret: Secret @cacheControl(maxAge: 120)
  count: Int
  inheriting: Long @cacheControl(inheritMaxAge: true)
}
type Mutation { touch: Long @cacheControl(maxAge: 600) }
type Long { n: Int  short: Short  plain: Plain  edge: Edge  override: Short @cacheControl(maxAge: 500)  mine: String @cacheControl(scope: PRIVATE)  publicSecret: Secret @cacheControl(scope: PUBLIC)  thing: Thing }
type Short @cacheControl(maxAge: 30) { n: Int }
type Plain { n: Int }
type Edge @cacheControl(inheritMaxAge: true) { n: Int  short: Short }
type Secret @cacheControl(maxAge: 300, scope: PRIVATE) { n: Int }
interface Thing @cacheControl(maxAge: 900) { n: Int }
type A implements Thing @cacheControl(maxAge: 100) { n: Int }
type B implements Thing @cacheControl(maxAge: 200, scope: PRIVATE) { n: Int }
`

func load(t *testing.T, sources ...*ast.Source) *ast.Schema {
	t.Helper()
	s, err := gqlparser.LoadSchema(sources...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func policy(t *testing.T, schema *ast.Schema, query string) cachecontrol.Policy {
	t.Helper()
	doc, errs := gqlparser.LoadQueryWithRules(schema, query, rules.NewDefaultRules())
	if errs != nil {
		t.Fatalf("%s: %v", query, errs)
	}
	return cachecontrol.Compute(schema, doc, doc.Operations[0])
}

func TestCompute(t *testing.T) {
	schema := load(t, &ast.Source{Name: "test.graphqls", Input: testSchema})
	pub := func(n int) cachecontrol.Policy { return cachecontrol.Policy{MaxAge: n, Scope: cachecontrol.Public} }
	priv := func(n int) cachecontrol.Policy { return cachecontrol.Policy{MaxAge: n, Scope: cachecontrol.Private} }
	for _, tc := range []struct {
		name, query string
		want        cachecontrol.Policy
	}{
		{"a hinted root field; scalars inherit", `{ long { n } }`, pub(600)},
		{"the smallest max age", `{ long { n short { n } } }`, pub(30)},
		{"an unhinted object field is 0", `{ long { plain { n } } }`, pub(0)},
		{"an unhinted root field is 0", `{ unhinted { n } }`, pub(0)},
		{"an unhinted root scalar is 0", `{ count }`, pub(0)},
		{"a root field takes its type's hint", `{ typed { n } }`, pub(30)},
		{"the field's hint wins over its type's", `{ long { override { n } } }`, pub(500)},
		{"inheritMaxAge on a type", `{ long { edge { n } } }`, pub(600)},
		{"inheritMaxAge under it, then a hint", `{ long { edge { short { n } } } }`, pub(30)},
		{"inheritMaxAge on a root field is 0", `{ inheriting { n } }`, pub(0)},
		{"a private scalar", `{ long { n mine } }`, priv(600)},
		{"a private type", `{ secret { n } }`, priv(120)},
		{"a field cannot make a private type public", `{ long { publicSecret { n } } }`, priv(300)},
		{"through fragments", `query { ...F } fragment F on Query { long { ... on Long { short { n } } } }`, pub(30)},
		{"an abstract type counts its possible types", `{ long { thing { n } } }`, priv(100)},
		{"__typename changes nothing", `{ long { __typename n } }`, pub(600)},
		{"__typename alone", `{ __typename }`, pub(0)},
		{"@skip still counts", `{ long { n } secret @skip(if: true) { n } }`, priv(120)},
		{"introspection", `{ long { n } __schema { queryType { name } } }`, pub(0)},
		{"a mutation", `mutation { touch { n } }`, cachecontrol.NoStore},
	} {
		if got := policy(t, schema, tc.query); got != tc.want {
			t.Errorf("%s: %s = %+v, want %+v", tc.name, tc.query, got, tc.want)
		}
	}
}

// TestAskgateSchema: the policies of askgate's own schema that the README
// states.
func TestAskgateSchema(t *testing.T) {
	files, err := filepath.Glob("../../schema/*.graphqls")
	if err != nil || len(files) == 0 {
		t.Fatalf("schema files: %v %v", files, err)
	}
	var sources []*ast.Source
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sources = append(sources, &ast.Source{Name: f, Input: string(b)})
	}
	schema := load(t, sources...)
	for q, want := range map[string]cachecontrol.Policy{
		`{ models { id ownedBy isDefault } }`:                                     {MaxAge: 300, Scope: cachecontrol.Public},
		`{ viewer { name } }`:                                                     {MaxAge: 60, Scope: cachecontrol.Private},
		`{ viewer { email } models { id } }`:                                      {MaxAge: 60, Scope: cachecontrol.Private},
		`{ conversations { totalCount pageInfo { hasNextPage } } }`:               {MaxAge: 0, Scope: cachecontrol.Private},
		`{ conversations { edges { node { lastMessage { content } } } } }`:        {MaxAge: 0, Scope: cachecontrol.Private},
		`{ node(id: "x") { ... on User { name } } }`:                              {MaxAge: 0, Scope: cachecontrol.Private},
		`query($id: ID!) { conversation(id: $id) { messages { nodes { id } } } }`: {MaxAge: 0, Scope: cachecontrol.Private},
	} {
		if got := policy(t, schema, q); got != want {
			t.Errorf("%s = %+v, want %+v", q, got, want)
		}
	}
}
