package protect

import (
	"github.com/valyala/fastjson"
	"github.com/vektah/gqlparser/v2/ast"
)

// parsers parse responses for ActualCost, reusing their memory.
var parsers fastjson.ParserPool

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
	// The response is parsed with fastjson rather than decoded with
	// encoding/json: only its shape matters, and decoding the chat
	// screen's page into maps costs thousands of allocations. Its parser
	// reads the data once into a tree it reuses (gjson, which reads each
	// nested value again at every level, took five times as long).
	p := parsers.Get()
	defer parsers.Put(p)
	obj, err := p.ParseBytes(data)
	if err != nil || obj.Type() != fastjson.TypeObject {
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
func (c *actualCoster) object(owner *fieldGroup, sets []ast.SelectionSet, t *ast.Definition, depth int, obj *fastjson.Value, sz sizing) int {
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
func (c *actualCoster) typename(owner *fieldGroup, sets []ast.SelectionSet, t *ast.Definition, obj *fastjson.Value) *ast.Definition {
	m := c.collect(owner, sets, t)
	i, ok := m.index["__typename"]
	if !ok || m.groups[i].first.Name != "__typename" {
		return nil
	}
	name := obj.GetStringBytes("__typename")
	if name == nil {
		return nil
	}
	for _, p := range c.schema.GetPossibleTypes(t) {
		if p.Name == string(name) {
			return p
		}
	}
	return nil
}

// collected is a selection's fields on a type, by response key, with
// what each costs by itself, worked out once for every item of a list.
type collected struct {
	groups []fieldGroup
	index  map[string]int
	info   []fieldInfo
}

// fieldInfo is what a field group costs whatever its value: its type, its
// own weight and arguments, its @listSize; skip for __typename and fields
// not in the schema, which cost nothing.
type fieldInfo struct {
	typ  *ast.Definition
	own  int
	sz   sizing
	skip bool
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
	m := &collected{groups: col.groups, index: make(map[string]int, len(col.groups)), info: make([]fieldInfo, len(col.groups))}
	for i := range col.groups {
		g := &col.groups[i]
		m.index[g.key] = i
		def := g.definition(t)
		if g.first.Name == "__typename" || def == nil {
			m.info[i].skip = true
			continue
		}
		typ := c.schema.Types[def.Type.Name()]
		m.info[i] = fieldInfo{typ: typ, own: satAdd(fieldWeight(def, typ), c.arguments(def, g.first)), sz: c.listSize(def, g.first)}
	}
	c.memo[k] = m
	return m
}

// fields returns the actual cost of the fields of sets, owner's selection,
// on obj, read as type t.
func (c *actualCoster) fields(owner *fieldGroup, sets []ast.SelectionSet, t *ast.Definition, depth int, obj *fastjson.Value, sz sizing) int {
	m := c.collect(owner, sets, t)
	total := 0
	o, _ := obj.Object()
	o.Visit(func(key []byte, val *fastjson.Value) {
		if i, ok := m.index[string(key)]; ok {
			g := &m.groups[i]
			total = satAdd(total, c.field(g, &m.info[i], depth, val, sz.applies(g.first.Name)))
		}
	})
	return total
}

// field returns the actual cost of the fields of one response key, g
// (whose cost by itself is in info), whose value is val. perItem says the
// field is one a @listSize multiplies: each item of its list costs the
// field's weight, arguments and selection.
func (c *actualCoster) field(g *fieldGroup, info *fieldInfo, depth int, val *fastjson.Value, perItem bool) int {
	if info.skip {
		return 0
	}
	own, sz, typ := info.own, info.sz, info.typ
	hasSelection := g.hasSelection()
	selection := func(v *fastjson.Value, sz sizing) int {
		if !hasSelection {
			return 0
		}
		return c.value(g, g.selectionSets(), typ, depth+1, v, sz)
	}
	if val.Type() != fastjson.TypeArray {
		return satAdd(own, selection(val, sz))
	}
	list := val.GetArray()
	switch {
	case perItem:
		total := 0
		for _, item := range list {
			total = satAdd(total, satAdd(own, selection(item, sz)))
		}
		return total
	case sz.on && sz.fields == nil:
		// The @listSize multiplies the whole selection: each item's.
		total := own
		for _, item := range list {
			total = satAdd(total, selection(item, sizing{}))
		}
		return total
	default:
		most := 0
		for _, item := range list {
			most = max(most, selection(item, sz))
		}
		return satAdd(own, most)
	}
}

// value returns the actual cost of the selection sets sets on val, a
// value of type typ: an object, null, or a list of them (an item of a list
// of lists), whose most expensive item counts.
func (c *actualCoster) value(owner *fieldGroup, sets []ast.SelectionSet, typ *ast.Definition, depth int, val *fastjson.Value, sz sizing) int {
	switch val.Type() {
	case fastjson.TypeObject:
		return c.object(owner, sets, typ, depth, val, sz)
	case fastjson.TypeArray:
		most := 0
		for _, item := range val.GetArray() {
			most = max(most, c.value(owner, sets, typ, depth+1, item, sz))
		}
		return most
	}
	return 0
}
