package protect

import (
	"fmt"
	"strings"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/lexer"
)

// Error codes of the operation limits and of the cost limit, set as
// extensions.code. MAX_DIRECTIVES_LIMIT and MAX_DOCUMENT_SIZE_LIMIT are
// askgate's additions to the contract's list, named after the others.
const (
	CodeMaxDepth        = "MAX_DEPTH_LIMIT"
	CodeMaxAliases      = "MAX_ALIASES_LIMIT"
	CodeMaxRootFields   = "MAX_ROOT_FIELDS_LIMIT"
	CodeMaxDirectives   = "MAX_DIRECTIVES_LIMIT"
	CodeMaxTokens       = "MAX_TOKENS_LIMIT"
	CodeMaxDocumentSize = "MAX_DOCUMENT_SIZE_LIMIT"
	CodeCostLimit       = "COST_LIMIT"
)

// LimitCodes returns the codes of the limits' and the cost's errors, so
// that the server can classify them all as errors of the request (HTTP 400)
// rather than of execution.
func LimitCodes() []string {
	return []string{CodeMaxDepth, CodeMaxAliases, CodeMaxRootFields, CodeMaxDirectives,
		CodeMaxTokens, CodeMaxDocumentSize, CodeCostLimit, CodeMaxFields}
}

// The default limits.
const (
	DefaultMaxDepth = 10
	// DefaultMaxIntrospectionDepth fits the introspection query of GraphiQL
	// (15 deep: __schema, types, fields, args, type, nine ofType and kind)
	// with room for other tools' variants.
	DefaultMaxIntrospectionDepth = 20
	DefaultMaxAliases            = 15
	DefaultMaxRootFields         = 10
	DefaultMaxDirectives         = 50
	DefaultMaxTokens             = 5000
	DefaultMaxDocumentBytes      = 100 << 10
	// DefaultMaxCost admits the chat screen (cost 461) with a wide margin,
	// as well as a full page of 100 conversations with their last 10
	// messages (2 301), and refuses 100 conversations × 100 messages
	// (10 201). See Cost.
	DefaultMaxCost = 5000
)

// Limits bounds the size and shape of an operation.
//
// A zero field takes its default (the Default… constants), so the zero
// Limits is the same as DefaultLimits(); a negative field turns that limit
// off. A Limits is a plain value, safe to copy and to use concurrently.
type Limits struct {
	// MaxDepth bounds how deeply fields nest. A root field is at depth 1,
	// each field inside it one deeper; fragments count as if their
	// selections were written where they are spread, and __typename does
	// not count. `{ viewer { name } }` is 2 deep.
	MaxDepth int
	// MaxIntrospectionDepth replaces MaxDepth for the selections of the
	// introspection root fields __schema and __type, measured the same way.
	// Introspection is answered from memory, is off in production, and the
	// validator's MaxIntrospectionDepth rule already stops its lists from
	// nesting; but tools' introspection queries nest ofType deeper than
	// any application query needs, so they get a limit of their own.
	MaxIntrospectionDepth int
	// MaxAliases bounds the aliases of the operation, counted in its
	// expansion: a fragment spread three times counts its aliases three
	// times, as graphql-armor counts them.
	MaxAliases int
	// MaxRootFields bounds the distinct root fields of the operation: root
	// field selections, including those of fragments spread at the root,
	// merged by response key as the executor merges them, without
	// __typename. `{ a: viewer { id } b: viewer { id } }` has 2;
	// `{ viewer { id } viewer { name } }` has 1.
	MaxRootFields int
	// MaxDirectives bounds the directives of the operation, counted in its
	// expansion like aliases: those on the operation, its variables, its
	// fields, inline fragments and spreads, and on each fragment spread.
	MaxDirectives int
	// MaxTokens bounds the lexical tokens of the document (comments
	// included). The parser enforces it while it reads, so a huge document
	// costs no more than this many tokens; see ParserTokenLimit.
	MaxTokens int
	// MaxDocumentBytes bounds the size of the document; see CheckSize.
	MaxDocumentBytes int
	// MaxCost bounds the cost of an operation; see Cost and CheckCost.
	// Check itself does not compute the cost.
	MaxCost int
}

// DefaultLimits returns the default limits.
func DefaultLimits() Limits {
	return Limits{
		MaxDepth:              DefaultMaxDepth,
		MaxIntrospectionDepth: DefaultMaxIntrospectionDepth,
		MaxAliases:            DefaultMaxAliases,
		MaxRootFields:         DefaultMaxRootFields,
		MaxDirectives:         DefaultMaxDirectives,
		MaxTokens:             DefaultMaxTokens,
		MaxDocumentBytes:      DefaultMaxDocumentBytes,
		MaxCost:               DefaultMaxCost,
	}
}

// limit returns the limit a Limits field sets: def for zero, -1 (off) for
// any negative value.
func limit(v, def int) int {
	switch {
	case v == 0:
		return def
	case v < 0:
		return -1
	}
	return v
}

// over reports whether n is over the limit max (-1 is no limit).
func over(n, max int) bool { return max >= 0 && n > max }

// ParserTokenLimit returns the token limit in the form gqlgen's
// SetParserTokenLimit and gqlparser's ParseQueryWithTokenLimit take it: 0
// when there is no limit.
func (l Limits) ParserTokenLimit() int {
	return max(limit(l.MaxTokens, DefaultMaxTokens), 0)
}

// CheckSize refuses a document over l.MaxDocumentBytes, with
// MAX_DOCUMENT_SIZE_LIMIT. Call it before parsing.
func CheckSize(query string, l Limits) *gqlerror.Error {
	if max := limit(l.MaxDocumentBytes, DefaultMaxDocumentBytes); over(len(query), max) {
		return limitError(CodeMaxDocumentSize, nil,
			"document size %d bytes exceeds the limit of %d bytes", len(query), max)
	}
	return nil
}

// CheckTokens refuses a document with more lexical tokens than
// l.MaxTokens, with MAX_TOKENS_LIMIT, counting them as the parser does
// (comments included) but without building the document: refusing a 100 kB
// document costs a few tens of nanoseconds per token up to the limit, a
// fraction of what the parser spends on the same tokens before its own
// limit stops it. A document no longer in bytes than the limit cannot
// exceed it and is not read at all. A document that does not lex is left
// to the parser to report.
//
// Call it before parsing, for instance where gqlgen lets an extension see
// the raw request (MutateOperationParameters); keep the parser's own limit
// (Limits.ParserTokenLimit) as well: the two agree.
func CheckTokens(query string, l Limits) *gqlerror.Error {
	max := l.ParserTokenLimit()
	if max == 0 || len(query) <= max {
		return nil
	}
	lex := lexer.New(&ast.Source{Input: query})
	for n := 0; ; n++ {
		tok, err := lex.ReadToken()
		if err != nil || tok.Kind == lexer.EOF {
			return nil
		}
		if n == max {
			return TokenLimitError(max)
		}
	}
}

// tokenLimitPrefix starts the message of gqlparser's error for a document
// over the token limit ("exceeded token limit of 5000"). The parser raises
// it with gqlerror.Errorf, without a location or code; gqlgen's executor
// then marks it GRAPHQL_PARSE_FAILED like any syntax error.
const tokenLimitPrefix = "exceeded token limit of "

// IsTokenLimitError reports whether err is the parser's refusal of a
// document with more tokens than its limit (see Limits.ParserTokenLimit),
// whichever code gqlgen gave it, or an error made by TokenLimitError. The
// server turns the former into the latter, with MAX_TOKENS_LIMIT.
func IsTokenLimitError(err *gqlerror.Error) bool {
	if err == nil {
		return false
	}
	if code, _ := err.Extensions["code"].(string); code == CodeMaxTokens {
		return true
	}
	return strings.HasPrefix(err.Message, tokenLimitPrefix)
}

// TokenLimitError returns the error for a document with more than max
// tokens, with MAX_TOKENS_LIMIT. The parser stops reading at the limit, so
// the actual count is unknown.
func TokenLimitError(max int) *gqlerror.Error {
	return limitError(CodeMaxTokens, nil, "document exceeds the limit of %d tokens", max)
}

// limitError returns a client error with the given code, located at pos
// when it is known.
func limitError(code string, pos *ast.Position, format string, args ...any) *gqlerror.Error {
	err := &gqlerror.Error{
		Message:    fmt.Sprintf(format, args...),
		Extensions: map[string]any{"code": code},
	}
	if pos != nil {
		err.Locations = []gqlerror.Location{{Line: pos.Line, Column: pos.Column}}
	}
	return err
}

// Check measures op, an operation of doc, against the limits on its depth,
// aliases, root fields and directives, and returns one error for each limit
// it exceeds (nil when it exceeds none), in that order, located at the
// operation.
//
// Fragment spreads are expanded wherever they are: depth counts through
// them, and their aliases and directives count once per spread. Each
// fragment is measured once, however often it is spread, so the time Check
// takes grows with the size of the document, not of its expansion.
//
// Check needs no schema and does not require the document to be valid: it
// finds fragments by name when the validator has not linked them, ignores
// spreads of unknown fragments, and reports a fragment that spreads itself,
// directly or through others (which the validator also refuses), as an
// unbounded depth. It counts what the document says: @skip and @include are
// not evaluated.
func (l Limits) Check(doc *ast.QueryDocument, op *ast.OperationDefinition) gqlerror.List {
	if op == nil {
		return nil
	}
	m := measurer{doc: doc}
	root := m.root(op.SelectionSet)
	root.directives = satAdd(root.directives, len(op.Directives))
	for _, v := range op.VariableDefinitions {
		root.directives = satAdd(root.directives, len(v.Directives))
	}

	var errs gqlerror.List
	pos := op.Position
	if max := limit(l.MaxDepth, DefaultMaxDepth); max >= 0 {
		if m.cycle != "" {
			errs = append(errs, limitError(CodeMaxDepth, pos,
				"operation depth is unbounded: fragment %q spreads itself; the limit is %d", m.cycle, max))
		} else if over(root.depth, max) {
			errs = append(errs, limitError(CodeMaxDepth, pos,
				"operation depth %d exceeds the limit of %d", root.depth, max))
		}
	}
	if max := limit(l.MaxIntrospectionDepth, DefaultMaxIntrospectionDepth); over(root.introspectionDepth, max) && m.cycle == "" {
		errs = append(errs, limitError(CodeMaxDepth, pos,
			"introspection depth %d exceeds the limit of %d", root.introspectionDepth, max))
	}
	if max := limit(l.MaxAliases, DefaultMaxAliases); over(root.aliases, max) {
		errs = append(errs, limitError(CodeMaxAliases, pos,
			"operation has %s aliases, more than the limit of %d", countString(root.aliases), max))
	}
	if max := limit(l.MaxRootFields, DefaultMaxRootFields); over(m.keys.len(), max) {
		errs = append(errs, limitError(CodeMaxRootFields, pos,
			"operation has %d root fields, more than the limit of %d", m.keys.len(), max))
	}
	if max := limit(l.MaxDirectives, DefaultMaxDirectives); over(root.directives, max) {
		errs = append(errs, limitError(CodeMaxDirectives, pos,
			"operation has %s directives, more than the limit of %d", countString(root.directives), max))
	}
	return errs
}

// ceiling caps the counts and costs computed here: sums and products
// saturate at it instead of overflowing. A fragment spread twice in each of
// 40 nested fragments has 2⁴⁰ expanded spreads, which is more than any
// limit, but not more than an int.
const ceiling = 1 << 30

// satAdd returns a+b, at most ceiling; a and b are non-negative.
func satAdd(a, b int) int {
	if a >= ceiling-b {
		return ceiling
	}
	return a + b
}

// satMul returns a×b, at most ceiling; a and b are non-negative.
func satMul(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if a >= ceiling/b+1 {
		return ceiling
	}
	return min(a*b, ceiling)
}

// countString formats a count, saying "over" for one that saturated.
func countString(n int) string {
	if n >= ceiling {
		return fmt.Sprintf("over %d", ceiling)
	}
	return fmt.Sprint(n)
}

// shape is what Check measures of a selection set: the depth of its deepest
// chain of fields (the set's own fields at 1) and the aliases and
// directives of its expansion.
type shape struct {
	depth      int
	aliases    int
	directives int
}

func (s *shape) add(o shape) {
	s.depth = max(s.depth, o.depth)
	s.aliases = satAdd(s.aliases, o.aliases)
	s.directives = satAdd(s.directives, o.directives)
}

// rootShape is what Check measures of the root selection set: introspection
// depth apart from the rest.
type rootShape struct {
	shape
	introspectionDepth int
}

// measurer walks one operation for Check. Every fragment is walked at most
// once below the root and once at the root; later spreads reuse the shape
// measured the first time.
type measurer struct {
	doc    *ast.QueryDocument
	byName map[string]*ast.FragmentDefinition

	shapes map[string]shape     // fragments spread below the root
	roots  map[string]rootShape // fragments spread at the root
	active map[string]bool      // fragments being walked below the root
	rootOn map[string]bool      // fragments being walked at the root
	cycle  string               // the first fragment found spreading itself

	keys keySet // response keys of the root fields
}

// root measures the root selection set, collecting its response keys.
func (m *measurer) root(set ast.SelectionSet) rootShape {
	var r rootShape
	for _, sel := range set {
		switch sel := sel.(type) {
		case *ast.Field:
			r.directives = satAdd(r.directives, len(sel.Directives))
			if isAlias(sel) {
				r.aliases = satAdd(r.aliases, 1)
			}
			child := m.set(sel.SelectionSet)
			r.aliases = satAdd(r.aliases, child.aliases)
			r.directives = satAdd(r.directives, child.directives)
			depth := child.depth
			if sel.Name == "__typename" {
				r.depth = max(r.depth, depth)
				continue
			}
			m.keys.add(responseKey(sel))
			depth++
			if sel.Name == "__schema" || sel.Name == "__type" {
				r.introspectionDepth = max(r.introspectionDepth, depth)
			} else {
				r.depth = max(r.depth, depth)
			}
		case *ast.InlineFragment:
			r.directives = satAdd(r.directives, len(sel.Directives))
			r.addRoot(m.root(sel.SelectionSet))
		case *ast.FragmentSpread:
			r.directives = satAdd(r.directives, len(sel.Directives))
			r.addRoot(m.rootFragment(sel))
		}
	}
	return r
}

func (r *rootShape) addRoot(o rootShape) {
	r.add(o.shape)
	r.introspectionDepth = max(r.introspectionDepth, o.introspectionDepth)
}

// rootFragment measures a fragment spread at the root. Its root fields'
// keys are collected the first time; a later spread of it adds nothing new
// to the set of keys.
func (m *measurer) rootFragment(spread *ast.FragmentSpread) rootShape {
	name := spread.Name
	if r, ok := m.roots[name]; ok {
		return r
	}
	if m.rootOn[name] {
		m.foundCycle(name)
		return rootShape{}
	}
	def := m.fragment(spread)
	if def == nil {
		return rootShape{}
	}
	if m.rootOn == nil {
		m.rootOn = make(map[string]bool)
		m.roots = make(map[string]rootShape)
	}
	m.rootOn[name] = true
	r := m.root(def.SelectionSet)
	r.directives = satAdd(r.directives, len(def.Directives))
	delete(m.rootOn, name)
	m.roots[name] = r
	return r
}

// set measures a selection set below the root.
func (m *measurer) set(set ast.SelectionSet) shape {
	var s shape
	for _, sel := range set {
		switch sel := sel.(type) {
		case *ast.Field:
			s.directives = satAdd(s.directives, len(sel.Directives))
			if isAlias(sel) {
				s.aliases = satAdd(s.aliases, 1)
			}
			if len(sel.SelectionSet) == 0 {
				if sel.Name != "__typename" {
					s.depth = max(s.depth, 1)
				}
				continue
			}
			child := m.set(sel.SelectionSet)
			if sel.Name != "__typename" {
				child.depth++
			}
			s.add(child)
		case *ast.InlineFragment:
			s.directives = satAdd(s.directives, len(sel.Directives))
			s.add(m.set(sel.SelectionSet))
		case *ast.FragmentSpread:
			s.directives = satAdd(s.directives, len(sel.Directives))
			s.add(m.spread(sel))
		}
	}
	return s
}

// spread measures a fragment spread below the root.
func (m *measurer) spread(spread *ast.FragmentSpread) shape {
	name := spread.Name
	if s, ok := m.shapes[name]; ok {
		return s
	}
	if m.active[name] {
		m.foundCycle(name)
		return shape{}
	}
	def := m.fragment(spread)
	if def == nil {
		return shape{}
	}
	if m.active == nil {
		m.active = make(map[string]bool)
		m.shapes = make(map[string]shape)
	}
	m.active[name] = true
	s := m.set(def.SelectionSet)
	s.directives = satAdd(s.directives, len(def.Directives))
	delete(m.active, name)
	m.shapes[name] = s
	return s
}

func (m *measurer) foundCycle(name string) {
	if m.cycle == "" {
		m.cycle = name
	}
}

// fragment returns the definition a spread names: the one the validator
// linked, else the document's fragment of that name, else nil.
func (m *measurer) fragment(spread *ast.FragmentSpread) *ast.FragmentDefinition {
	if spread.Definition != nil {
		return spread.Definition
	}
	return lookupFragment(m.doc, &m.byName, spread.Name)
}

// lookupFragment finds a document's fragment by name, indexing the
// fragments on first use when there are many.
func lookupFragment(doc *ast.QueryDocument, index *map[string]*ast.FragmentDefinition, name string) *ast.FragmentDefinition {
	if doc == nil {
		return nil
	}
	if len(doc.Fragments) <= 8 {
		return doc.Fragments.ForName(name)
	}
	if *index == nil {
		*index = make(map[string]*ast.FragmentDefinition, len(doc.Fragments))
		for i := len(doc.Fragments) - 1; i >= 0; i-- { // the first of a name wins, as ForName
			(*index)[doc.Fragments[i].Name] = doc.Fragments[i]
		}
	}
	return (*index)[name]
}

// isAlias reports whether a field is aliased. The parser sets Alias to the
// name when there is no alias, so `viewer: viewer` does not count.
func isAlias(f *ast.Field) bool { return f.Alias != "" && f.Alias != f.Name }

// responseKey returns the key of a field in the response.
func responseKey(f *ast.Field) string {
	if f.Alias != "" {
		return f.Alias
	}
	return f.Name
}

// keySet is a set of response keys: a slice while it is small, a map when
// it grows.
type keySet struct {
	list []string
	set  map[string]struct{}
}

func (k *keySet) add(key string) {
	if k.set != nil {
		k.set[key] = struct{}{}
		return
	}
	for _, have := range k.list {
		if have == key {
			return
		}
	}
	k.list = append(k.list, key)
	if len(k.list) > 16 {
		k.set = make(map[string]struct{}, 2*len(k.list))
		for _, have := range k.list {
			k.set[have] = struct{}{}
		}
		k.list = nil
	}
}

func (k *keySet) len() int {
	if k.set != nil {
		return len(k.set)
	}
	return len(k.list)
}
