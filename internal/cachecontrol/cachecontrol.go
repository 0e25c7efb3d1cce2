// Package cachecontrol computes the HTTP cache policy of a GraphQL
// operation from the @cacheControl hints of the schema (declared in
// schema/directives.graphqls), after Apollo Server's semantics:
//
//   - the policy's max age is the smallest over every field the operation
//     selects, and its scope is PRIVATE if any field's is;
//   - a field's hint (maxAge, scope) wins over the hint of the type it
//     returns; PRIVATE wins over PUBLIC whichever declares it, so a field
//     cannot make a private type public;
//   - a field without a max age takes its type's when the type is an object,
//     interface or union; failing that, a root field or a field returning a
//     composite type has max age 0, and a scalar or enum field inherits its
//     parent's; inheritMaxAge (on the field, or on the type it returns)
//     inherits the parent's instead of those defaults (a root field has no
//     parent: 0);
//   - on a field returning an interface or union, the hints of every
//     possible type count too (the smallest max age, PRIVATE if any is),
//     since which one is returned is only known when it runs;
//   - __typename changes nothing; introspection fields, unhinted root
//     fields, have max age 0.
//
// The policy is computed from the document alone, before anything runs:
// every selection counts, @skip, @include and fragment type conditions
// notwithstanding, so it is never more lenient than what executes and it
// is the same for every request of the document (the server caches it with
// the parsed document). Mutations and subscriptions are never cacheable.
package cachecontrol

import (
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"
)

// directive is the schema directive that carries the hints:
// @cacheControl(maxAge: Int, scope: CacheControlScope, inheritMaxAge: Boolean).
const directive = "cacheControl"

// Scope says who may cache a response.
type Scope int

// Scopes, from the most to the least lenient.
const (
	// Public: any cache.
	Public Scope = iota
	// Private: only the viewer's own cache.
	Private
)

// String returns the scope as the schema spells it.
func (s Scope) String() string {
	if s == Private {
		return "PRIVATE"
	}
	return "PUBLIC"
}

// Policy is how long, and by whom, a response may be cached.
type Policy struct {
	// MaxAge is in seconds; 0 means the response must not be stored.
	MaxAge int
	// Scope is Private when any field the operation reads is.
	Scope Scope
}

// Cacheable reports whether a response may be stored at all.
func (p Policy) Cacheable() bool { return p.MaxAge > 0 }

// NoStore is the policy of anything that must not be cached.
var NoStore = Policy{MaxAge: 0, Scope: Private}

// maxSteps bounds the work of one Compute call. A document that passed the
// server's limits comes nowhere near it; one that reaches it (a fragment
// bomb) gets NoStore.
const maxSteps = 1 << 18

// maxDepth bounds the nesting Compute follows (fragment cycles included).
const maxDepth = 256

// Compute returns the policy of op, an operation of doc, a document
// validated against schema. Operations other than queries get NoStore.
func Compute(schema *ast.Schema, doc *ast.QueryDocument, op *ast.OperationDefinition) Policy {
	if schema == nil || op == nil || op.Operation != ast.Query {
		return NoStore
	}
	w := walker{schema: schema, doc: doc, policy: Policy{MaxAge: -1}}
	w.selection(op.SelectionSet, schema.Query, 0, true, 0)
	if w.exhausted || w.policy.MaxAge < 0 { // nothing but __typename: no hint at all
		return Policy{MaxAge: 0, Scope: w.policy.Scope}
	}
	return w.policy
}

// hint is one @cacheControl.
type hint struct {
	maxAge    int
	hasMaxAge bool
	private   bool
	inherit   bool
}

// hintOf reads the @cacheControl among dirs (the zero hint without one).
func hintOf(dirs ast.DirectiveList) hint {
	d := dirs.ForName(directive)
	if d == nil {
		return hint{}
	}
	var h hint
	if a := d.Arguments.ForName("maxAge"); a != nil && a.Value != nil && a.Value.Kind == ast.IntValue {
		n, err := strconv.Atoi(a.Value.Raw)
		if err != nil || n < 0 {
			n = 0
		}
		h.maxAge, h.hasMaxAge = n, true
	}
	if a := d.Arguments.ForName("scope"); a != nil && a.Value != nil {
		h.private = a.Value.Raw == Private.String()
	}
	if a := d.Arguments.ForName("inheritMaxAge"); a != nil && a.Value != nil {
		h.inherit = a.Value.Raw == "true"
	}
	return h
}

// walker computes one operation's policy.
type walker struct {
	schema    *ast.Schema
	doc       *ast.QueryDocument
	policy    Policy // MaxAge -1 until a field sets it
	steps     int
	exhausted bool
}

// restrict lowers the policy to maxAge and, when private, to Private.
func (w *walker) restrict(maxAge int, private bool) {
	if w.policy.MaxAge < 0 || maxAge < w.policy.MaxAge {
		w.policy.MaxAge = maxAge
	}
	if private {
		w.policy.Scope = Private
	}
}

// selection walks a selection set on a value of type parent, whose own max
// age is parentAge (root: the operation's root fields).
func (w *walker) selection(set ast.SelectionSet, parent *ast.Definition, parentAge int, root bool, depth int) {
	if w.exhausted {
		return
	}
	if depth > maxDepth {
		w.exhausted = true
		return
	}
	for _, sel := range set {
		w.steps++
		if w.steps > maxSteps {
			w.exhausted = true
			return
		}
		switch sel := sel.(type) {
		case *ast.Field:
			w.field(sel, parent, parentAge, root, depth)
		case *ast.InlineFragment:
			t := parent
			if sel.TypeCondition != "" {
				t = w.schema.Types[sel.TypeCondition]
			}
			w.selection(sel.SelectionSet, t, parentAge, root, depth+1)
		case *ast.FragmentSpread:
			def := sel.Definition
			if def == nil && w.doc != nil {
				def = w.doc.Fragments.ForName(sel.Name)
			}
			if def == nil {
				w.restrict(0, true)
				continue
			}
			w.selection(def.SelectionSet, w.schema.Types[def.TypeCondition], parentAge, root, depth+1)
		}
	}
}

// field applies one field's hints and walks its selection.
func (w *walker) field(f *ast.Field, parent *ast.Definition, parentAge int, root bool, depth int) {
	if f.Name == "__typename" {
		return
	}
	def := f.Definition
	if def == nil && parent != nil {
		def = parent.Fields.ForName(f.Name)
	}
	if def == nil { // not in a validated document: assume the worst
		w.restrict(0, true)
		return
	}
	fh := hintOf(def.Directives)
	typ := w.schema.Types[def.Type.Name()]
	composite := typ != nil && typ.IsCompositeType()

	// The field's max age is the smallest it could have for any type it
	// may return; its scope is private if any of them is.
	age, private := -1, fh.private
	consider := func(t *ast.Definition) {
		var th hint
		if t != nil {
			th = hintOf(t.Directives)
		}
		private = private || th.private
		a := fieldAge(fh, th, composite, root, parentAge)
		if age < 0 || a < age {
			age = a
		}
	}
	consider(typ)
	if typ != nil && typ.IsAbstractType() {
		for _, t := range w.schema.GetPossibleTypes(typ) {
			consider(t)
		}
	}
	w.restrict(age, private)
	if len(f.SelectionSet) > 0 {
		w.selection(f.SelectionSet, typ, age, false, depth+1)
	}
}

// fieldAge returns the max age of a field with hint fh returning a type
// with hint th (composite when it is an object, interface or union), whose
// parent's max age is parentAge.
func fieldAge(fh, th hint, composite, root bool, parentAge int) int {
	inherit := func() int {
		if root {
			return 0
		}
		return parentAge
	}
	switch {
	case fh.hasMaxAge:
		return fh.maxAge
	case fh.inherit:
		return inherit()
	case composite && th.hasMaxAge:
		return th.maxAge
	case composite && th.inherit:
		return inherit()
	case composite || root:
		return 0
	}
	return inherit()
}
