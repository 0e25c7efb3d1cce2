package protect

import (
	"encoding/json"
	"math"
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// The directives that carry cost weights in the schema (declared in
// schema/directives.graphqls, after the IBM GraphQL Cost Directive
// specification).
const (
	costDirective     = "cost"     // @cost(weight: Int!)
	listSizeDirective = "listSize" // @listSize(assumedSize, slicingArguments, sizedFields)
)

// Bounds on the work of one Cost call. A document that passed Check comes
// nowhere near them; one that did not (a fragment cycle through fields, a
// fragment bomb) is cut off and costs the ceiling, more than any limit.
const (
	costMaxDepth = parser.MaxNestingDepth
	costMaxSteps = 1 << 18
)

// Cost returns the static cost of op, an operation of doc, over schema,
// with the operation's variables vars (raw JSON values or coerced ones).
// It is what executing op could cost at most, computed before anything
// runs; CheckCost compares it with the maximum.
//
// Fields are merged by response key and fragments applied by type, as the
// executor does, so a field selected twice costs once, and @skip/@include
// are honoured. The cost of a selection set is the sum of the costs of its
// fields:
//
//	cost(field) = weight(field) + arguments(field) + size × cost(selection)
//
// where
//
//   - weight is the field's @cost, else the @cost of the type it returns,
//     else 1 for an object, interface or union and 0 for a scalar or enum
//     (so __typename and leaves are free);
//   - arguments adds the @cost of each argument the operation gives a
//     non-null value, and the @cost of each input object field given in
//     them, once per occurrence;
//   - size is 1 unless the field has @listSize: then it is the largest value
//     of its slicingArguments that the operation gives (a literal, a
//     variable, the variable's default, the argument's default), else its
//     assumedSize (else 1). When @listSize names sizedFields, size
//     multiplies only those children (a connection's edges and nodes, so
//     that each item counts once and pageInfo and totalCount count once
//     per page); otherwise it multiplies the whole selection. Sizes
//     multiply through nested lists. Sizes are taken as given: a `first`
//     over the API's maximum of 100 costs what it asks for (and is refused).
//
// On a field of an interface or union type, selections that depend on the
// concrete type cost the most expensive of the possible types.
//
// For askgate's schema: a connection field costs 1 + its pageInfo + n ×
// (edges or nodes); writes (@cost(weight: 10)) cost 10 + their payload's
// selection; fields that call the language model carry @cost(weight: 1000),
// on the field (Mutation.ask) or on the input field that triggers it (the
// question of startConversation).
//
// Cost saturates at 1<<30 instead of overflowing. It does not require the
// document to be valid, and terminates on any document, but it is meant for
// one that passed validation and Limits.Check, which bound its work. It is
// safe for concurrent use.
func Cost(schema *ast.Schema, doc *ast.QueryDocument, op *ast.OperationDefinition, vars map[string]any) int {
	if schema == nil || op == nil {
		return 0
	}
	c := coster{schema: schema, doc: doc, op: op, vars: vars}
	cost := c.selection([]ast.SelectionSet{op.SelectionSet}, rootType(schema, op), 0, sizing{})
	if c.exhausted {
		return ceiling
	}
	return cost
}

// rootType returns the type of op's root selection.
func rootType(schema *ast.Schema, op *ast.OperationDefinition) *ast.Definition {
	switch op.Operation {
	case ast.Mutation:
		return schema.Mutation
	case ast.Subscription:
		return schema.Subscription
	}
	return schema.Query
}

// CheckCost refuses an operation whose cost is over max, with COST_LIMIT
// and both numbers in the message and in extensions (requestedQueryCost,
// maximumQueryCost). Like a Limits field, a zero max is DefaultMaxCost and
// a negative max is no limit.
func CheckCost(cost, max int) *gqlerror.Error {
	max = limit(max, DefaultMaxCost)
	if !over(cost, max) {
		return nil
	}
	err := limitError(CodeCostLimit, nil, "operation cost %s exceeds the limit of %d", countString(cost), max)
	err.Extensions["requestedQueryCost"] = cost
	err.Extensions["maximumQueryCost"] = max
	return err
}

// coster computes the cost of one operation.
type coster struct {
	schema *ast.Schema
	doc    *ast.QueryDocument
	op     *ast.OperationDefinition
	vars   map[string]any
	byName map[string]*ast.FragmentDefinition

	steps     int
	exhausted bool
}

// sizing is how a @listSize field multiplies its children: by n, the
// children named in fields (a list value of strings), or all of them when
// fields is nil.
type sizing struct {
	on     bool
	n      int
	fields *ast.Value
}

func (s sizing) applies(name string) bool {
	if !s.on {
		return false
	}
	if s.fields == nil {
		return true
	}
	for _, child := range s.fields.Children {
		if child.Value != nil && child.Value.Raw == name {
			return true
		}
	}
	return false
}

// selection returns the cost of the selection sets sets, merged, on a value
// of type typ (nil when unknown), whose fields sz multiplies.
func (c *coster) selection(sets []ast.SelectionSet, typ *ast.Definition, depth int, sz sizing) int {
	if depth > costMaxDepth || c.steps > costMaxSteps {
		c.exhausted = true
		return ceiling
	}
	if typ != nil && typ.IsAbstractType() && c.typeDependent(sets, typ, 0) {
		if possible := c.schema.GetPossibleTypes(typ); len(possible) > 0 {
			most := 0
			for _, t := range possible {
				most = max(most, c.object(sets, t, depth, sz))
			}
			return most
		}
	}
	return c.object(sets, typ, depth, sz)
}

// typeDependent reports whether what sets select on the abstract type typ
// depends on the concrete type: whether they spread a fragment or have an
// inline fragment on another type.
func (c *coster) typeDependent(sets []ast.SelectionSet, typ *ast.Definition, depth int) bool {
	if depth > costMaxDepth {
		return true
	}
	for _, set := range sets {
		for _, sel := range set {
			switch sel := sel.(type) {
			case *ast.FragmentSpread:
				return true
			case *ast.InlineFragment:
				if sel.TypeCondition != "" && sel.TypeCondition != typ.Name {
					return true
				}
				if c.typeDependent([]ast.SelectionSet{sel.SelectionSet}, typ, depth+1) {
					return true
				}
			}
		}
	}
	return false
}

// object returns the cost of the selection sets sets on a value of type t.
func (c *coster) object(sets []ast.SelectionSet, t *ast.Definition, depth int, sz sizing) int {
	var col collector
	for _, set := range sets {
		c.collect(&col, set, t)
	}
	total := 0
	for i := range col.groups {
		g := &col.groups[i]
		cost := c.field(g, t, depth)
		if sz.applies(g.first.Name) {
			cost = satMul(cost, sz.n)
		}
		total = satAdd(total, cost)
	}
	return total
}

// field returns the cost of the fields of one response key on type parent.
func (c *coster) field(g *fieldGroup, parent *ast.Definition, depth int) int {
	f := g.first
	if f.Name == "__typename" {
		return 0
	}
	def := g.definition(parent)
	if def == nil { // an unknown field: an object when it has a selection
		if !g.hasSelection() {
			return 0
		}
		return satAdd(1, c.selection(g.selectionSets(), nil, depth+1, sizing{}))
	}
	typ := c.schema.Types[def.Type.Name()]
	cost := satAdd(fieldWeight(def, typ), c.arguments(def, f))
	if !g.hasSelection() {
		return cost
	}
	return satAdd(cost, c.selection(g.selectionSets(), typ, depth+1, c.listSize(def, f)))
}

// fieldWeight returns a field's own weight.
func fieldWeight(def *ast.FieldDefinition, typ *ast.Definition) int {
	if w, ok := directiveWeight(def.Directives); ok {
		return w
	}
	if typ != nil {
		if w, ok := directiveWeight(typ.Directives); ok {
			return w
		}
		if typ.IsCompositeType() {
			return 1
		}
	}
	return 0
}

// directiveWeight returns the weight of the @cost among dirs, if any.
func directiveWeight(dirs ast.DirectiveList) (int, bool) {
	d := dirs.ForName(costDirective)
	if d == nil {
		return 0, false
	}
	return directiveInt(d, "weight")
}

// directiveInt returns the integer literal argument of a schema directive,
// clamped to [0, ceiling].
func directiveInt(d *ast.Directive, name string) (int, bool) {
	a := d.Arguments.ForName(name)
	if a == nil || a.Value == nil || a.Value.Kind != ast.IntValue {
		return 0, false
	}
	return literalInt(a.Value.Raw), true
}

// literalInt parses an Int literal, clamped to [0, ceiling].
func literalInt(raw string) int {
	n, err := strconv.ParseInt(raw, 10, 64)
	if err != nil { // out of range: the sign says which end
		if len(raw) > 0 && raw[0] == '-' {
			return 0
		}
		return ceiling
	}
	return clampInt64(n)
}

func clampInt64(n int64) int {
	switch {
	case n < 0:
		return 0
	case n > ceiling:
		return ceiling
	}
	return int(n)
}

// listSize returns how a field's @listSize multiplies its selection.
func (c *coster) listSize(def *ast.FieldDefinition, f *ast.Field) sizing {
	d := def.Directives.ForName(listSizeDirective)
	if d == nil {
		return sizing{}
	}
	n := -1
	if a := d.Arguments.ForName("slicingArguments"); a != nil && a.Value != nil {
		for _, child := range a.Value.Children {
			if child.Value == nil {
				continue
			}
			if v, ok := c.argumentInt(def, f, child.Value.Raw); ok {
				n = max(n, v)
			}
		}
	}
	if n < 0 {
		n = 1
		if v, ok := directiveInt(d, "assumedSize"); ok {
			n = v
		}
	}
	sz := sizing{on: true, n: n}
	if a := d.Arguments.ForName("sizedFields"); a != nil && a.Value != nil && a.Value.Kind == ast.ListValue {
		sz.fields = a.Value
	}
	return sz
}

// argumentValue returns the value the operation gives a field's argument,
// else the argument's default, else nil.
func argumentValue(def *ast.FieldDefinition, f *ast.Field, name string) *ast.Value {
	if a := f.Arguments.ForName(name); a != nil {
		return a.Value
	}
	if ad := def.Arguments.ForName(name); ad != nil {
		return ad.DefaultValue
	}
	return nil
}

// argumentInt returns the integer value of a field's argument, clamped to
// [0, ceiling], and whether it has one.
func (c *coster) argumentInt(def *ast.FieldDefinition, f *ast.Field, name string) (int, bool) {
	v := c.resolve(argumentValue(def, f, name))
	if v == nil {
		return 0, false
	}
	if lit, ok := v.(*ast.Value); ok {
		if lit.Kind == ast.IntValue {
			return literalInt(lit.Raw), true
		}
		return 0, false
	}
	return goInt(v)
}

// resolve returns what a value stands for: the literal itself (an
// *ast.Value), a variable's value from vars (any Go value) or, when vars
// has none, its default literal; nil for null or no value.
func (c *coster) resolve(v *ast.Value) any {
	if v == nil || v.Kind == ast.NullValue {
		return nil
	}
	if v.Kind != ast.Variable {
		return v
	}
	if val, ok := c.vars[v.Raw]; ok {
		return val
	}
	vd := v.VariableDefinition
	if vd == nil && c.op != nil {
		vd = c.op.VariableDefinitions.ForName(v.Raw)
	}
	if vd == nil || vd.DefaultValue == nil || vd.DefaultValue.Kind == ast.NullValue || vd.DefaultValue.Kind == ast.Variable {
		return nil
	}
	return vd.DefaultValue
}

// goInt converts a variable's value to an int clamped to [0, ceiling].
func goInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return clampInt64(int64(n)), true
	case int8:
		return clampInt64(int64(n)), true
	case int16:
		return clampInt64(int64(n)), true
	case int32:
		return clampInt64(int64(n)), true
	case int64:
		return clampInt64(n), true
	case uint:
		return clampInt64(int64(min(uint64(n), math.MaxInt64))), true
	case uint8:
		return int(n), true
	case uint16:
		return int(n), true
	case uint32:
		return clampInt64(int64(n)), true
	case uint64:
		return clampInt64(int64(min(n, math.MaxInt64))), true
	case float32:
		return goInt(float64(n))
	case float64:
		if n != math.Trunc(n) || math.IsNaN(n) {
			return 0, false
		}
		return clampInt64(int64(max(min(n, ceiling), -1))), true
	case json.Number:
		if i, err := n.Int64(); err == nil {
			return clampInt64(i), true
		}
		if f, err := n.Float64(); err == nil {
			return goInt(f)
		}
	}
	return 0, false
}

// arguments returns the cost of the arguments a field is given: the @cost
// of each argument with a non-null value, and of the input fields given in
// it.
func (c *coster) arguments(def *ast.FieldDefinition, f *ast.Field) int {
	total := 0
	for _, ad := range def.Arguments {
		w, weighted := directiveWeight(ad.Directives)
		typ := c.schema.Types[ad.Type.Name()]
		input := typ != nil && typ.Kind == ast.InputObject
		if !weighted && !input {
			continue
		}
		v := c.resolve(argumentValue(def, f, ad.Name))
		if v == nil {
			continue
		}
		total = satAdd(total, w)
		if input {
			total = satAdd(total, c.inputCost(typ, v, 0))
		}
	}
	return total
}

// inputCost returns the @cost of the fields given in v, a value of the input
// object type typ (or a list of them): a literal *ast.Value or a variable's
// Go value.
func (c *coster) inputCost(typ *ast.Definition, v any, depth int) int {
	if depth > 64 {
		return 0
	}
	total := 0
	field := func(name string, val any) {
		fd := typ.Fields.ForName(name)
		if fd == nil || val == nil {
			return
		}
		if w, ok := directiveWeight(fd.Directives); ok {
			total = satAdd(total, w)
		}
		if ft := c.schema.Types[fd.Type.Name()]; ft != nil && ft.Kind == ast.InputObject {
			total = satAdd(total, c.inputCost(ft, val, depth+1))
		}
	}
	switch v := v.(type) {
	case *ast.Value:
		switch v.Kind {
		case ast.ListValue:
			for _, child := range v.Children {
				total = satAdd(total, c.inputCost(typ, c.resolve(child.Value), depth+1))
			}
		case ast.ObjectValue:
			for _, child := range v.Children {
				field(child.Name, c.resolve(child.Value))
			}
		}
	case []any:
		for _, elem := range v {
			if elem != nil {
				total = satAdd(total, c.inputCost(typ, elem, depth+1))
			}
		}
	case map[string]any:
		for name, val := range v {
			field(name, val)
		}
	}
	return total
}

// included reports whether @skip and @include let a selection run. A
// condition whose value is unknown counts as run.
func (c *coster) included(dirs ast.DirectiveList) bool {
	for _, d := range dirs {
		if d.Name != "skip" && d.Name != "include" {
			continue
		}
		a := d.Arguments.ForName("if")
		if a == nil {
			continue
		}
		var cond, known bool
		switch v := c.resolve(a.Value).(type) {
		case *ast.Value:
			if v.Kind == ast.BooleanValue {
				cond, known = v.Raw == "true", true
			}
		case bool:
			cond, known = v, true
		}
		if known && cond == (d.Name == "skip") {
			return false
		}
	}
	return true
}

// fieldGroup is the fields of one response key in a selection set, which
// the executor runs as one.
type fieldGroup struct {
	key   string
	first *ast.Field
	more  []*ast.Field
}

// definition returns the definition of g's field on parent (nil when
// unknown), else the one validation gave it.
func (g *fieldGroup) definition(parent *ast.Definition) *ast.FieldDefinition {
	if parent != nil {
		if def := parent.Fields.ForName(g.first.Name); def != nil {
			return def
		}
	}
	return g.first.Definition
}

func (g *fieldGroup) hasSelection() bool {
	if len(g.first.SelectionSet) > 0 {
		return true
	}
	for _, f := range g.more {
		if len(f.SelectionSet) > 0 {
			return true
		}
	}
	return false
}

// selectionSets returns the selection sets of the group's fields, merged.
func (g *fieldGroup) selectionSets() []ast.SelectionSet {
	sets := make([]ast.SelectionSet, 0, 1+len(g.more))
	sets = append(sets, g.first.SelectionSet)
	for _, f := range g.more {
		if len(f.SelectionSet) > 0 {
			sets = append(sets, f.SelectionSet)
		}
	}
	return sets
}

// collector gathers the fields of selection sets by response key, in
// order, as the executor's CollectFields does.
type collector struct {
	groups  []fieldGroup
	index   map[string]int // key → group, once there are many groups
	visited map[string]bool
}

func (col *collector) add(f *ast.Field) {
	key := responseKey(f)
	if col.index != nil {
		if i, ok := col.index[key]; ok {
			col.groups[i].more = append(col.groups[i].more, f)
			return
		}
	} else {
		for i := range col.groups {
			if col.groups[i].key == key {
				col.groups[i].more = append(col.groups[i].more, f)
				return
			}
		}
	}
	col.groups = append(col.groups, fieldGroup{key: key, first: f})
	if col.index != nil {
		col.index[key] = len(col.groups) - 1
	} else if len(col.groups) > 16 {
		col.index = make(map[string]int, 2*len(col.groups))
		for i := range col.groups {
			col.index[col.groups[i].key] = i
		}
	}
}

// collect adds the fields that set selects on a value of type t.
func (c *coster) collect(col *collector, set ast.SelectionSet, t *ast.Definition) {
	for _, sel := range set {
		c.steps++
		switch sel := sel.(type) {
		case *ast.Field:
			if c.included(sel.Directives) {
				col.add(sel)
			}
		case *ast.InlineFragment:
			if c.included(sel.Directives) && c.applies(sel.TypeCondition, t) {
				c.collect(col, sel.SelectionSet, t)
			}
		case *ast.FragmentSpread:
			if col.visited[sel.Name] || !c.included(sel.Directives) {
				continue
			}
			if col.visited == nil {
				col.visited = make(map[string]bool)
			}
			col.visited[sel.Name] = true
			def := sel.Definition
			if def == nil {
				def = lookupFragment(c.doc, &c.byName, sel.Name)
			}
			if def != nil && c.applies(def.TypeCondition, t) {
				c.collect(col, def.SelectionSet, t)
			}
		}
	}
}

// applies reports whether a fragment on type cond applies to a value of
// type t. On an abstract or unknown t every fragment applies.
func (c *coster) applies(cond string, t *ast.Definition) bool {
	if cond == "" || t == nil || cond == t.Name || t.Kind != ast.Object {
		return true
	}
	for _, iface := range c.schema.GetImplements(t) {
		if iface.Name == cond {
			return true
		}
	}
	return false
}
