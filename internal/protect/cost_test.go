package protect

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vektah/gqlparser/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// TestSchemaAnnotations checks that askgate's schema declares the cost
// directives and carries the weights the cost formula relies on.
func TestSchemaAnnotations(t *testing.T) {
	schema := loadRealSchema(t)

	for name, args := range map[string][]string{
		"cost":     {"weight"},
		"listSize": {"assumedSize", "slicingArguments", "sizedFields"},
	} {
		d := schema.Directives[name]
		if d == nil {
			t.Errorf("@%s is not declared", name)
			continue
		}
		if d.Description == "" {
			t.Errorf("@%s has no description", name)
		}
		for _, a := range args {
			if d.Arguments.ForName(a) == nil {
				t.Errorf("@%s has no argument %s", name, a)
			}
		}
	}

	connection := `@listSize(assumedSize: 20, slicingArguments: ["first","last"], sizedFields: ["edges","nodes"])`
	for _, tt := range []struct{ typ, field, want string }{
		{"Query", "conversations", connection},
		{"Conversation", "messages", connection},
		{"Mutation", "startConversation", "@cost(weight: 10)"},
		{"Mutation", "renameConversation", "@cost(weight: 10)"},
		{"Mutation", "deleteConversation", "@cost(weight: 10)"},
	} {
		f := schema.Types[tt.typ].Fields.ForName(tt.field)
		if f == nil {
			t.Errorf("no field %s.%s", tt.typ, tt.field)
			continue
		}
		name := strings.TrimPrefix(tt.want[:strings.Index(tt.want, "(")], "@")
		d := f.Directives.ForName(name)
		if d == nil {
			t.Errorf("%s.%s has no @%s", tt.typ, tt.field, name)
			continue
		}
		if got := directiveString(d); got != tt.want {
			t.Errorf("%s.%s: %s, want %s", tt.typ, tt.field, got, tt.want)
		}
	}
}

// directiveString writes a directive as SDL.
func directiveString(d *ast.Directive) string {
	args := make([]string, len(d.Arguments))
	for i, a := range d.Arguments {
		args[i] = a.Name + ": " + a.Value.String()
	}
	return "@" + d.Name + "(" + strings.Join(args, ", ") + ")"
}

func TestCostScreenQuery(t *testing.T) {
	schema := loadRealSchema(t)
	doc, op := validQuery(t, schema, screenQuery)

	// conversations(first: 20): 1, and per conversation (nodes: 1):
	//   owner: 1
	//   messages(last: 10): 1, and per message (nodes: 1): author: 1
	// Scalars and totalCount cost nothing.
	want := 1 + 20*(1+1+(1+10*(1+1)))
	if want != 461 {
		t.Fatalf("the formula gives %d; update the figure in DefaultMaxCost's comment", want)
	}
	if got := Cost(schema, doc, op, nil); got != want {
		t.Errorf("Cost(screen query) = %d, want %d", got, want)
	}
	if err := CheckCost(want, DefaultMaxCost); err != nil {
		t.Errorf("the screen query is refused: %v", err)
	}
}

func TestCostNestedConnectionsRefused(t *testing.T) {
	schema := loadRealSchema(t)
	doc, op := validQuery(t, schema, `{ conversations(first:100){ nodes { messages(first:100) { nodes { id } } } } }`)
	want := 1 + 100*(1+(1+100*1))
	got := Cost(schema, doc, op, nil)
	if got != want {
		t.Fatalf("Cost = %d, want %d", got, want)
	}
	err := CheckCost(got, DefaultMaxCost)
	if err == nil {
		t.Fatalf("CheckCost(%d, default) = nil, want COST_LIMIT", got)
	}
	if err.Extensions["code"] != CodeCostLimit || err.Message != "operation cost 10201 exceeds the limit of 5000" {
		t.Errorf("CheckCost = %q %v", err.Message, err.Extensions)
	}
}

func TestCost(t *testing.T) {
	schema := loadRealSchema(t)
	tests := []struct {
		name  string
		query string
		vars  map[string]any
		want  int
	}{
		{name: "a scalar", query: `{ viewer { name } }`, want: 1},
		{name: "scalars and __typename are free", query: `{ __typename viewer { __typename id name email avatarUrl } }`, want: 1},
		{name: "a connection without first or last: assumedSize",
			query: `{ conversations { nodes { id } } }`, want: 1 + 20*1},
		{name: "pageInfo and totalCount count once, edges once per item",
			query: `{ conversations(first: 5) { totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id title } } } }`,
			want:  1 + 1 + 5*(1+1)},
		{name: "edges and nodes both",
			query: `{ conversations(first: 5) { edges { node { id } } nodes { id } } }`, want: 1 + 5*(1+1) + 5*1},
		{name: "an aliased nodes is still sized",
			query: `{ conversations(first: 5) { items: nodes { owner { name } } } }`, want: 1 + 5*(1+1)},
		{name: "first and last: the largest",
			query: `{ conversations(first: 3, last: 8) { nodes { id } } }`, want: 1 + 8*1},
		{name: "first from a variable",
			query: `query($n: Int) { conversations(first: $n) { nodes { id } } }`,
			vars:  map[string]any{"n": 50}, want: 1 + 50*1},
		{name: "first from a JSON variable",
			query: `query($n: Int) { conversations(first: $n) { nodes { id } } }`,
			vars:  map[string]any{"n": json.Number("50")}, want: 1 + 50*1},
		{name: "first from a coerced variable",
			query: `query($n: Int) { conversations(first: $n) { nodes { id } } }`,
			vars:  map[string]any{"n": int64(50)}, want: 1 + 50*1},
		{name: "a null variable: assumedSize",
			query: `query($n: Int) { conversations(first: $n) { nodes { id } } }`,
			vars:  map[string]any{"n": nil}, want: 1 + 20*1},
		{name: "an absent variable: assumedSize",
			query: `query($n: Int) { conversations(first: $n) { nodes { id } } }`, want: 1 + 20*1},
		{name: "an absent variable: its default",
			query: `query($n: Int = 7) { conversations(first: $n) { nodes { id } } }`, want: 1 + 7*1},
		{name: "first over the API's maximum costs what it asks",
			query: `{ conversations(first: 1000) { nodes { id } } }`, want: 1 + 1000*1},
		{name: "nested connections multiply",
			query: `{ conversations(first: 10) { nodes { messages(first: 30) { nodes { author { name } } } } } }`,
			want:  1 + 10*(1+(1+30*(1+1)))},
		{name: "lastMessage is one object",
			query: `{ conversations(first: 10) { nodes { lastMessage { content author { name } } } } }`,
			want:  1 + 10*(1+(1+1))},
		{name: "fields selected twice cost once",
			query: `{ viewer { name } viewer { email } conversations(first: 2) { nodes { owner { name } } nodes { owner { email } } } }`,
			want:  1 + (1 + 2*(1+1))},
		{name: "aliases cost apart",
			query: `{ a: viewer { name } b: viewer { name } }`, want: 2},
		{name: "fragments cost as written in place",
			query: `{ conversations(first: 10) { ...Page } } fragment Page on ConversationConnection { nodes { ...Item } } fragment Item on Conversation { owner { ...U } } fragment U on User { name }`,
			want:  1 + 10*(1+1)},
		{name: "a fragment spread 5000 times costs once",
			query: `{ conversations(first: 10) { nodes { ` + repeated(5000, "...F") + ` } } } fragment F on Conversation { owner { name } }`,
			want:  1 + 10*(1+1)},
		{name: "@skip and @include",
			query: `query($yes: Boolean!, $no: Boolean!) { a: viewer @skip(if: true) { id } b: viewer @include(if: false) { id } c: viewer @skip(if: $yes) { id } d: viewer @include(if: $no) { id } e: viewer @skip(if: $no) { id } conversations(first: 3) { nodes { ... @include(if: $yes) { owner { id } } ... @skip(if: $yes) { lastMessage { id } } } } }`,
			vars:  map[string]any{"yes": true, "no": false},
			want:  1 + (1 + 3*(1+1))},
		{name: "node costs its most expensive type",
			query: `{ node(id: "x") { id ... on Conversation { messages(first: 5) { nodes { author { name } } } } ... on User { name } ... on Message { author { id } } } }`,
			want:  1 + (1 + 5*(1+1))},
		{name: "a fragment on an interface applies to its types",
			query: `{ conversations(first: 4) { nodes { ...N } } } fragment N on Node { ... on Conversation { owner { id } } }`,
			want:  1 + 4*(1+1)},
		{name: "a mutation's weight",
			query: `mutation { renameConversation(input: {id: "x", title: "t"}) { id title } }`, want: 10},
		{name: "a mutation's weight and its payload",
			query: `mutation { startConversation(input: {title: "t"}) { conversation { id owner { name } } } }`,
			want:  10 + (1 + 1)},
		{name: "several mutations",
			query: `mutation { a: deleteConversation(id: "x") b: deleteConversation(id: "y") renameConversation(input: {id: "z", title: "t"}) { id } }`,
			want:  10 + 10 + 10},
		{name: "introspection", query: `{ __schema { types { name fields { name type { name ofType { name } } } } } }`,
			want: 1 + 1 + (1 + (1 + 1))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, op := validQuery(t, schema, tt.query)
			if got := Cost(schema, doc, op, tt.vars); got != tt.want {
				t.Errorf("Cost = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestCostGraphiQL checks that GraphiQL can load the schema in development.
func TestCostGraphiQL(t *testing.T) {
	schema := loadRealSchema(t)
	doc, op := validQuery(t, schema, graphiQLIntrospectionQuery)
	cost := Cost(schema, doc, op, nil)
	// TypeRef: 9 ofType. InputValue: type + TypeRef. FullType: fields, args,
	// InputValue, type, TypeRef, inputFields, InputValue, interfaces,
	// TypeRef, enumValues, possibleTypes, TypeRef. Query: __schema, three
	// root types, types, FullType, directives, args, InputValue.
	typeRef := 9
	inputValue := 1 + typeRef
	fullType := 1 + 1 + inputValue + 1 + typeRef + 1 + inputValue + 1 + typeRef + 1 + 1 + typeRef
	if want := 1 + 3 + 1 + fullType + 1 + 1 + inputValue; cost != want {
		t.Errorf("Cost(GraphiQL introspection) = %d, want %d", cost, want)
	}
	if err := CheckCost(cost, DefaultMaxCost); err != nil {
		t.Error(err)
	}
}

// costTestSchema exercises every form of the directives.
const costTestSchema = `
directive @cost(weight: Int!) on FIELD_DEFINITION | OBJECT | ARGUMENT_DEFINITION | INPUT_FIELD_DEFINITION
directive @listSize(assumedSize: Int, slicingArguments: [String!], sizedFields: [String!]) on FIELD_DEFINITION

type Query {
  expensive: Int @cost(weight: 7)
  free: Book @cost(weight: 0)
  vault: Vault
  books(limit: Int = 3): [Book!]! @listSize(slicingArguments: ["limit"])
  shelves(first: Int): [Shelf!]! @listSize(assumedSize: 4, slicingArguments: ["first"])
  unsized: [Book!]!
  unknownSize: [Book!]! @listSize(slicingArguments: ["n"])
  search(filter: Filter, filters: [Filter!], boost: Boolean @cost(weight: 9)): [Book!]!
  thing: Thing
}

type Vault @cost(weight: 5) { gold: Int }
type Book { title: String author: Author }
type Author { name: String }
type Shelf { books(first: Int): [Book!]! @listSize(assumedSize: 10, slicingArguments: ["first"]) }
union Thing = Book | Vault

input Filter {
  text: String
  semantic: Boolean @cost(weight: 100)
  nested: Filter
}
`

func TestCostDirectives(t *testing.T) {
	schema, err := gqlparser.LoadSchema(&ast.Source{Name: "cost.graphqls", Input: costTestSchema})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		query string
		vars  map[string]any
		want  int
	}{
		{name: "a weighted scalar", query: `{ expensive }`, want: 7},
		{name: "a field's weight replaces the default", query: `{ free { author { name } } }`, want: 0 + 1},
		{name: "a type's weight", query: `{ vault { gold } }`, want: 5},
		{name: "listSize without sizedFields multiplies the whole selection",
			query: `{ books(limit: 10) { title author { name } } }`, want: 1 + 10*1},
		{name: "a slicing argument's default", query: `{ books { author { name } } }`, want: 1 + 3*1},
		{name: "lists nested in lists multiply",
			query: `{ shelves { books { author { name } } } }`, want: 1 + 4*(1+10*1)},
		{name: "lists nested in lists multiply, sized by arguments",
			query: `{ shelves(first: 2) { books(first: 5) { author { name } } } }`, want: 1 + 2*(1+5*1)},
		{name: "a list without listSize counts once", query: `{ unsized { author { name } } }`, want: 1 + 1},
		{name: "listSize without assumedSize or argument: 1", query: `{ unknownSize { author { name } } }`, want: 1 + 1},
		{name: "a negative size is 0", query: `{ books(limit: -5) { author { name } } }`, want: 1},
		{name: "a weighted argument", query: `{ search(boost: true) { title } }`, want: 1 + 9},
		{name: "a weighted argument given null", query: `{ search(boost: null) { title } }`, want: 1},
		{name: "a weighted argument given by variable",
			query: `query($b: Boolean) { search(boost: $b) { title } }`, vars: map[string]any{"b": false}, want: 1 + 9},
		{name: "a weighted argument given an absent variable",
			query: `query($b: Boolean) { search(boost: $b) { title } }`, want: 1},
		{name: "a weighted input field", query: `{ search(filter: {semantic: true}) { title } }`, want: 1 + 100},
		{name: "a weighted input field given null", query: `{ search(filter: {semantic: null, text: "x"}) { title } }`, want: 1},
		{name: "a nested weighted input field", query: `{ search(filter: {nested: {semantic: false}}) { title } }`, want: 1 + 100},
		{name: "weighted input fields in a list",
			query: `{ search(filters: [{semantic: true}, {text: "x"}, {semantic: true}]) { title } }`, want: 1 + 2*100},
		{name: "weighted input fields from a variable",
			query: `query($f: Filter) { search(filter: $f) { title } }`,
			vars:  map[string]any{"f": map[string]any{"semantic": true, "nested": map[string]any{"semantic": false}}},
			want:  1 + 100 + 100},
		{name: "weighted input fields in a list variable",
			query: `query($f: [Filter!]) { search(filters: $f) { title } }`,
			vars:  map[string]any{"f": []any{map[string]any{"semantic": true}, map[string]any{"text": "x"}}},
			want:  1 + 100},
		{name: "a union costs its most expensive type",
			query: `{ thing { ... on Book { author { name } } ... on Vault { gold } } }`, want: 1 + max(1, 0)},
		{name: "a field selected twice costs once", query: `{ expensive expensive }`, want: 7},
		{name: "aliases cost apart", query: `{ a: expensive b: expensive }`, want: 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, op := validQuery(t, schema, tt.query)
			if got := Cost(schema, doc, op, tt.vars); got != tt.want {
				t.Errorf("Cost = %d, want %d", got, tt.want)
			}
		})
	}

	// Variables come as JSON numbers or coerced integers.
	for _, n := range []any{10, int32(10), int64(10), uint(10), float64(10), json.Number("10"), json.Number("10.0")} {
		doc, op := validQuery(t, schema, `query($n: Int) { books(limit: $n) { author { name } } }`)
		if got, want := Cost(schema, doc, op, map[string]any{"n": n}), 1+10*1; got != want {
			t.Errorf("limit %T(%v): Cost = %d, want %d", n, n, got, want)
		}
	}
	// Not integers (the executor refuses them): no size, so 1.
	for _, n := range []any{"10", 10.5, true} {
		doc, op := validQuery(t, schema, `query($n: Int) { books(limit: $n) { author { name } } }`)
		if got, want := Cost(schema, doc, op, map[string]any{"n": n}), 1+1*1; got != want {
			t.Errorf("limit %T(%v): Cost = %d, want %d", n, n, got, want)
		}
	}
}

// TestCostSaturates checks that costs do not overflow.
func TestCostSaturates(t *testing.T) {
	schema := loadRealSchema(t)
	for name, query := range map[string]string{
		"an out-of-range size": `{ conversations(first: 99999999999999999999) { nodes { id } } }`,
		"nested huge sizes":    `{ conversations(first: 2000000000) { nodes { messages(first: 2000000000) { nodes { conversation { messages(first: 2000000000) { nodes { id } } } } } } } }`,
	} {
		doc, op := parsedQuery(t, query)
		if got := Cost(schema, doc, op, nil); got != ceiling {
			t.Errorf("%s: Cost = %d, want %d", name, got, ceiling)
		}
	}
	if err := CheckCost(ceiling, 0); err == nil || err.Message != "operation cost over 1073741824 exceeds the limit of 5000" {
		t.Errorf("CheckCost(ceiling) = %v", err)
	}
}

// TestCostTerminates runs Cost on documents the validator and Check would
// have refused: it must end quickly, with a cost over any limit.
func TestCostTerminates(t *testing.T) {
	schema := loadRealSchema(t)
	var bomb strings.Builder
	bomb.WriteString(`{ conversations { nodes { ...F0 } } }`)
	for i := range 40 {
		fmt.Fprintf(&bomb, " fragment F%d on Conversation { a: lastMessage { conversation { ...F%d } } b: lastMessage { conversation { ...F%d } } }", i, i+1, i+1)
	}
	bomb.WriteString(" fragment F40 on Conversation { id }")

	for name, query := range map[string]string{
		"a fragment cycle through fields": `{ conversations { nodes { ...A } } } fragment A on Conversation { lastMessage { conversation { ...A } } }`,
		"a fragment bomb":                 bomb.String(),
	} {
		doc, op := parsedQuery(t, query)
		start := time.Now()
		got := Cost(schema, doc, op, nil)
		if got != ceiling {
			t.Errorf("%s: Cost = %d, want %d", name, got, ceiling)
		}
		t.Logf("%s: %v", name, time.Since(start))
	}

	// Cycles within one selection set are cut as the executor cuts them.
	doc, op := parsedQuery(t, `{ viewer { ...A } } fragment A on User { name ...B } fragment B on User { ...A }`)
	if got := Cost(schema, doc, op, nil); got != 1 {
		t.Errorf("a cycle without fields: Cost = %d, want 1", got)
	}
}

// TestCostUnvalidated checks Cost on a document the validator has not
// linked to the schema: it finds the same definitions itself.
func TestCostUnvalidated(t *testing.T) {
	schema := loadRealSchema(t)
	doc, op := parsedQuery(t, screenQuery)
	if got, want := Cost(schema, doc, op, nil), 461; got != want {
		t.Errorf("Cost(unvalidated screen query) = %d, want %d", got, want)
	}
	doc, op = parsedQuery(t, `{ viewer { name } unknown { a { b } } }`)
	if got, want := Cost(schema, doc, op, nil), 1+(1+1); got != want {
		t.Errorf("Cost(unknown fields) = %d, want %d", got, want)
	}
	if got := Cost(nil, doc, op, nil); got != 0 {
		t.Errorf("Cost(nil schema) = %d", got)
	}
	if got := Cost(schema, doc, nil, nil); got != 0 {
		t.Errorf("Cost(nil operation) = %d", got)
	}
}

func TestCheckCost(t *testing.T) {
	tests := []struct {
		cost, max int
		want      string // the error's message, "" for none
	}{
		{cost: 461, max: 0},
		{cost: 5000, max: 0},
		{cost: 5001, max: 0, want: "operation cost 5001 exceeds the limit of 5000"},
		{cost: 101, max: 100, want: "operation cost 101 exceeds the limit of 100"},
		{cost: 100, max: 100},
		{cost: 1 << 29, max: -1},
	}
	for _, tt := range tests {
		err := CheckCost(tt.cost, tt.max)
		if tt.want == "" {
			if err != nil {
				t.Errorf("CheckCost(%d, %d) = %v, want nil", tt.cost, tt.max, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("CheckCost(%d, %d) = nil, want %q", tt.cost, tt.max, tt.want)
			continue
		}
		max := tt.max
		if max == 0 {
			max = DefaultMaxCost
		}
		wantExt := map[string]any{"code": CodeCostLimit, "requestedQueryCost": tt.cost, "maximumQueryCost": max}
		if err.Message != tt.want || fmt.Sprint(err.Extensions) != fmt.Sprint(wantExt) || err.Err != nil {
			t.Errorf("CheckCost(%d, %d) = %q %v, want %q %v", tt.cost, tt.max, err.Message, err.Extensions, tt.want, wantExt)
		}
	}
}

func ExampleCost() {
	schema, err := readRealSchema()
	if err != nil {
		panic(err)
	}
	doc, errs := gqlparser.LoadQueryWithRules(schema, `query Screen($page: Int) {
		conversations(first: $page) {
			nodes { title messages(last: 10) { nodes { content author { name } } } }
		}
	}`, rules.NewDefaultRules())
	if errs != nil {
		panic(errs)
	}
	for _, page := range []int{20, 100, 500} {
		cost := Cost(schema, doc, doc.Operations[0], map[string]any{"page": page})
		if err := CheckCost(cost, DefaultMaxCost); err != nil {
			fmt.Println(page, cost, err.Extensions["code"], err.Message)
		} else {
			fmt.Println(page, cost)
		}
	}
	// Output:
	// 20 441
	// 100 2201
	// 500 11001 COST_LIMIT operation cost 11001 exceeds the limit of 5000
}

func BenchmarkCostScreenQuery(b *testing.B) {
	schema := loadRealSchema(b)
	doc, op := validQuery(b, schema, screenQuery)
	b.ReportAllocs()
	for b.Loop() {
		if Cost(schema, doc, op, nil) != 461 {
			b.Fatal("wrong cost")
		}
	}
}
