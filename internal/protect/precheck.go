package protect

import (
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
	"github.com/vektah/gqlparser/v2/parser"
)

// CodeMaxFields is the code of an operation with too many fields.
const CodeMaxFields = "MAX_FIELDS_LIMIT"

// DefaultMaxFields bounds the fields of an operation counted in its
// expansion. Validation compares the fields of a selection set pairwise
// (fields that share a response key must merge), so its time grows with
// their square: 5 000 fields under the token limit took a second of CPU.
// The chat screen has 22 fields and GraphiQL's introspection query about
// 120.
const DefaultMaxFields = 500

// PreCheck parses query (within the token limit) and checks the operation
// that operationName selects against the limits, before the document is
// validated: validation itself is what an abusive document makes
// expensive. It returns every limit exceeded, together, and nil when the
// document does not parse or names no single operation (validation then
// reports that). With introspection false, it also refuses operations
// that ask for __schema or __type.
func (l Limits) PreCheck(query, operationName string, introspection bool) gqlerror.List {
	doc, err := parser.ParseQueryWithTokenLimit(&ast.Source{Input: query}, l.ParserTokenLimit())
	if err != nil {
		if gerr, ok := err.(*gqlerror.Error); ok && IsTokenLimitError(gerr) {
			return gqlerror.List{TokenLimitError(l.ParserTokenLimit())}
		}
		return nil
	}
	return l.PreCheckDocument(doc, operationName, introspection)
}

// PreCheckDocument is PreCheck on a document already parsed, such as one
// found in a cache of parsed documents: the limits apply to the operation
// a request selects, so a cached document is checked again for each
// request (in well under a microsecond).
func (l Limits) PreCheckDocument(doc *ast.QueryDocument, operationName string, introspection bool) gqlerror.List {
	var op *ast.OperationDefinition
	switch {
	case operationName != "":
		op = doc.Operations.ForName(operationName)
	case len(doc.Operations) == 1:
		op = doc.Operations[0]
	}
	if op == nil {
		return nil
	}
	errs := l.Check(doc, op)
	if n := countFields(doc, op.SelectionSet); n > DefaultMaxFields {
		errs = append(errs, limitError(CodeMaxFields, op.Position,
			"operation has %s fields, more than the limit of %d", countString(n), DefaultMaxFields))
	}
	if !introspection && asksIntrospection(doc, op.SelectionSet, map[string]bool{}) {
		errs = append(errs, &gqlerror.Error{
			Message:    "introspection is disabled",
			Locations:  []gqlerror.Location{{Line: op.Position.Line, Column: op.Position.Column}},
			Extensions: map[string]any{"code": "GRAPHQL_VALIDATION_FAILED"},
		})
	}
	return errs
}

// countFields counts the fields of set as the executor would see them,
// fragments expanded at each spread (memoized per fragment; a fragment
// that spreads itself counts as unbounded).
func countFields(doc *ast.QueryDocument, set ast.SelectionSet) int {
	memo := map[string]int{}
	var count func(ast.SelectionSet, map[string]bool) int
	count = func(set ast.SelectionSet, open map[string]bool) int {
		n := 0
		for _, sel := range set {
			switch sel := sel.(type) {
			case *ast.Field:
				n = satAdd(n, satAdd(1, count(sel.SelectionSet, open)))
			case *ast.InlineFragment:
				n = satAdd(n, count(sel.SelectionSet, open))
			case *ast.FragmentSpread:
				if open[sel.Name] {
					return 1 << 30
				}
				c, ok := memo[sel.Name]
				if !ok {
					if f := doc.Fragments.ForName(sel.Name); f != nil {
						open[sel.Name] = true
						c = count(f.SelectionSet, open)
						delete(open, sel.Name)
					}
					memo[sel.Name] = c
				}
				n = satAdd(n, c)
			}
		}
		return n
	}
	return count(set, map[string]bool{})
}

// asksIntrospection reports whether the root selections of set ask for
// __schema or __type (directly or through fragments).
func asksIntrospection(doc *ast.QueryDocument, set ast.SelectionSet, seen map[string]bool) bool {
	for _, sel := range set {
		switch sel := sel.(type) {
		case *ast.Field:
			if sel.Name == "__schema" || sel.Name == "__type" {
				return true
			}
		case *ast.InlineFragment:
			if asksIntrospection(doc, sel.SelectionSet, seen) {
				return true
			}
		case *ast.FragmentSpread:
			if seen[sel.Name] {
				continue
			}
			seen[sel.Name] = true
			if f := doc.Fragments.ForName(sel.Name); f != nil && asksIntrospection(doc, f.SelectionSet, seen) {
				return true
			}
		}
	}
	return false
}
