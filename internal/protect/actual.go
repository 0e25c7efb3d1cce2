package protect

import (
	"github.com/tidwall/gjson"
	"github.com/vektah/gqlparser/v2/ast"
)

// ActualCost returns the cost of what op, an operation of doc, actually
// produced: data is the response's data (JSON). It is Cost's sum over the
// response instead of over the document, so that a query is charged for
// the rows it got rather than the rows it could have got (Shopify's
// actualQueryCost):
//
//   - a @listSize field costs its items as they came instead of n of them:
//     a connection asked for 20 that holds 3 costs 3 edges or nodes;
//   - a field that came back null costs its weight and arguments, but
//     nothing for its selection; one absent from the response (skipped)
//     costs nothing;
//   - a list without @listSize, which Cost counts once, costs its most
//     expensive item (nothing for an empty list);
//   - on an interface or union, an object's __typename, when selected,
//     gives its type; otherwise it costs as much as the most expensive
//     possible type, as in Cost.
//
// It is never more than Cost of the same operation, so what a budget
// refunds (Cost minus ActualCost) is never negative. When data is null or
// is not a JSON object — the operation failed as a whole — it returns Cost:
// nothing is refunded for work that may have run.
func ActualCost(schema *ast.Schema, doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any, data []byte) int {
	requested := Cost(schema, doc, op, vars)
	if schema == nil || op == nil {
		return requested
	}
	// The response is read in place with gjson rather than decoded with
	// encoding/json: only its shape matters, and decoding the chat
	// screen's page into maps costs thousands of allocations.
	obj := gjson.ParseBytes(data)
	if !obj.IsObject() {
		return requested
	}
	c := coster{schema: schema, doc: doc, op: op, vars: vars}
	a := actualCoster{coster: &c, memo: make(map[memoKey]*collected)}
	actual := a.object(nil, []ast.SelectionSet{op.SelectionSet}, rootType(schema, op), 0, obj, sizing{})
	if c.exhausted {
		return requested
	}
	return min(actual, requested)
}

// object returns the actual cost of the selection sets sets on obj,
// a value of type t; sz says which of its fields' lists are counted per
// item (the fields a @listSize multiplies).
func (c *actualCoster) object(owner *fieldGroup, sets []ast.SelectionSet, t *ast.Definition, depth int, obj gjson.Result, sz sizing) int {
	if depth > costMaxDepth {
		c.exhausted = true
		return ceiling
	}
	if t != nil && t.IsAbstractType() {
		if concrete := c.typename(owner, sets, t, obj); concrete != nil {
			t = concrete
		} else if c.typeDependent(sets, t, 0) {
			if possible := c.schema.GetPossibleTypes(t); len(possible) > 0 {
				most := 0
				for _, p := range possible {
					most = max(most, c.fields(owner, sets, p, depth, obj, sz))
				}
				return most
			}
		}
	}
	return c.fields(owner, sets, t, depth, obj, sz)
}

// actualCoster computes the actual cost of one operation.
type actualCoster struct {
	*coster
	// memo holds each selection's fields as collected on a type, which
	// every item of a list shares.
	memo map[memoKey]*collected
}

// memoKey names a selection on a type: the selection of the fields of
// the group owner (nil for the operation's). A group, not a field: a
// field of a named fragment is one *ast.Field wherever the fragment is
// spread, merged with different fields in each place. Groups are stable
// because their parent's collection is memoised.
type memoKey struct {
	owner *fieldGroup
	typ   *ast.Definition
}

// typename returns the concrete type of obj, a value of the abstract type
// t, when the selection has the __typename meta-field unaliased (a
// response key "__typename" that is an alias of another field says
// nothing) and it names one of t's possible types; nil otherwise.
func (c *actualCoster) typename(owner *fieldGroup, sets []ast.SelectionSet, t *ast.Definition, obj gjson.Result) *ast.Definition {
	m := c.collect(owner, sets, t)
	i, ok := m.index["__typename"]
	if !ok || m.groups[i].first.Name != "__typename" {
		return nil
	}
	name := obj.Get("__typename")
	if name.Type != gjson.String {
		return nil
	}
	for _, p := range c.schema.GetPossibleTypes(t) {
		if p.Name == name.Str {
			return p
		}
	}
	return nil
}

// collected is a selection's fields on a type, by response key.
type collected struct {
	groups []fieldGroup
	index  map[string]int
}

// collect returns the fields of sets, owner's selection, on t.
func (c *actualCoster) collect(owner *fieldGroup, sets []ast.SelectionSet, t *ast.Definition) *collected {
	k := memoKey{owner, t}
	if m, ok := c.memo[k]; ok {
		return m
	}
	var col collector
	for _, set := range sets {
		c.coster.collect(&col, set, t)
	}
	m := &collected{groups: col.groups, index: make(map[string]int, len(col.groups))}
	for i := range col.groups {
		m.index[col.groups[i].key] = i
	}
	c.memo[k] = m
	return m
}

// fields returns the actual cost of the fields of sets, owner's selection,
// on obj, read as type t.
func (c *actualCoster) fields(owner *fieldGroup, sets []ast.SelectionSet, t *ast.Definition, depth int, obj gjson.Result, sz sizing) int {
	m := c.collect(owner, sets, t)
	total := 0
	obj.ForEach(func(key, val gjson.Result) bool {
		i, ok := m.index[key.Str]
		if !ok {
			return true
		}
		g := &m.groups[i]
		total = satAdd(total, c.field(g, t, depth, val, sz.applies(g.first.Name)))
		return true
	})
	return total
}

// field returns the actual cost of the fields of one response key on
// type parent, whose value is val. perItem says the field is one a
// @listSize multiplies: each item of its list costs the field's weight,
// arguments and selection.
func (c *actualCoster) field(g *fieldGroup, parent *ast.Definition, depth int, val gjson.Result, perItem bool) int {
	f := g.first
	if f.Name == "__typename" {
		return 0
	}
	def := g.definition(parent)
	if def == nil {
		return 0 // not in the schema: not in a validated operation either
	}
	typ := c.schema.Types[def.Type.Name()]
	own := satAdd(fieldWeight(def, typ), c.arguments(def, f))
	sz := c.listSize(def, f)
	selection := func(v gjson.Result, sz sizing) int {
		if !g.hasSelection() {
			return 0
		}
		return c.value(g, g.selectionSets(), typ, depth+1, v, sz)
	}
	switch {
	case !val.IsArray():
		return satAdd(own, selection(val, sz))
	case perItem:
		total := 0
		val.ForEach(func(_, item gjson.Result) bool {
			total = satAdd(total, satAdd(own, selection(item, sz)))
			return true
		})
		return total
	case sz.on && sz.fields == nil:
		// The @listSize multiplies the whole selection: each item's.
		total := own
		val.ForEach(func(_, item gjson.Result) bool {
			total = satAdd(total, selection(item, sizing{}))
			return true
		})
		return total
	default:
		most := 0
		val.ForEach(func(_, item gjson.Result) bool {
			most = max(most, selection(item, sz))
			return true
		})
		return satAdd(own, most)
	}
}

// value returns the actual cost of the selection sets sets on val, a
// value of type typ: an object, null, or a list of them (an item of a list
// of lists), whose most expensive item counts.
func (c *actualCoster) value(owner *fieldGroup, sets []ast.SelectionSet, typ *ast.Definition, depth int, val gjson.Result, sz sizing) int {
	switch {
	case val.IsObject():
		return c.object(owner, sets, typ, depth, val, sz)
	case val.IsArray():
		most := 0
		val.ForEach(func(_, item gjson.Result) bool {
			most = max(most, c.value(owner, sets, typ, depth+1, item, sz))
			return true
		})
		return most
	}
	return 0
}
