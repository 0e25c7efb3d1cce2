// Command rewrite adjusts gqlgen's generated executor where gqlgen has no
// setting for what askgate needs (see package gqlexec for the reasons):
//
//   - lists are marshalled by gqlexec.MarshalSlice, in order, instead of
//     graphql.MarshalSliceConcurrently, one goroutine per element;
//   - objects get gqlexec.NoDeferredGroup instead of graphql.NewDeferredGroup,
//     since the schema has no @defer, and gqlexec.NewFieldSet instead of
//     graphql.NewFieldSet, which writes objects without a map per object;
//   - strings, ids and times are marshalled by gqlexec's MarshalString,
//     MarshalID and MarshalTime, which write the same JSON with less work;
//   - a query's data is marshalled into a pooled buffer (gqlexec.MarshalData)
//     rather than one grown from nothing;
//   - the fields whose resolver only reads the object (`return obj.Title,
//     nil`) first try gqlexec.ResolveLeaf, which skips gqlgen's per-field
//     machinery for leaves that cannot fail.
//
// `make generate` runs it after gqlgen, so `make check-generate` checks its
// output too. It fails if the schema ever declares @defer.
//
// Usage: go run ./internal/gqlexec/rewrite FILE...
package main

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"

	"golang.org/x/tools/go/ast/astutil"
)

var replacements = []struct{ from, to string }{
	{"graphql.MarshalSliceConcurrently(", "gqlexec.MarshalSlice("},
	{"graphql.NewDeferredGroup(", "gqlexec.NoDeferredGroup("},
	{"graphql.NewFieldSet(", "gqlexec.NewFieldSet("},
	{"graphql.MarshalString(", "gqlexec.MarshalString("},
	{"graphql.MarshalID(", "gqlexec.MarshalID("},
	{"graphql.MarshalTime(", "gqlexec.MarshalTime("},
	{"var buf bytes.Buffer\n\t\t\tdata.MarshalGQL(&buf)\n\t\t\tresponse.Data = buf.Bytes()", "response.Data = gqlexec.MarshalData(data)"},
}

// plainField names, in the used map, the field functions plainLeaves gives
// a fast path for leaves.
const plainField = "graphql.ResolveField(…plain…)"

const importPath = "askgate/internal/gqlexec"

func main() {
	used := make(map[string]bool)
	for _, name := range os.Args[1:] {
		if err := rewrite(name, used); err != nil {
			fmt.Fprintln(os.Stderr, "rewrite:", err)
			os.Exit(1)
		}
	}
	// A pattern found nowhere means gqlgen changed what it generates: stop
	// rather than silently leave its slow path in place.
	for _, from := range append(froms(), plainField) {
		if !used[from] {
			fmt.Fprintf(os.Stderr, "rewrite: %q is in none of the files; has gqlgen changed its output?\n", from)
			os.Exit(1)
		}
	}
}

func rewrite(name string, used map[string]bool) error {
	src, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if bytes.Contains(src, []byte("directive @defer")) {
		return fmt.Errorf("%s: the schema declares @defer, which gqlexec.NoDeferredGroup does not support", name)
	}
	changed := false
	for _, r := range replacements {
		if bytes.Contains(src, []byte(r.from)) {
			src = bytes.ReplaceAll(src, []byte(r.from), []byte(r.to))
			changed, used[r.from] = true, true
		}
	}
	if leaves, n, err := plainLeaves(name, src); err != nil {
		return err
	} else if n > 0 {
		src, changed, used[plainField] = leaves, true, true
	}
	if !changed {
		return nil
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
	if err != nil {
		return err
	}
	astutil.AddImport(fset, f, importPath)
	var out bytes.Buffer
	if err := format.Node(&out, fset, f); err != nil {
		return err
	}
	return os.WriteFile(name, out.Bytes(), 0o644)
}

func froms() []string {
	var out []string
	for _, r := range replacements {
		out = append(out, r.from)
	}
	return out
}

// plainLeaves gives the generated field functions whose resolver only
// reads the object — `func(ctx context.Context) (any, error) { return
// obj.Name, nil }` or `{ return obj.NodeID(), nil }` — without a middleware
// chain a fast path for leaves ahead of their graphql.ResolveField call:
//
//	if len(field.Selections) == 0 {
//		if m, ok := gqlexec.ResolveLeaf(ctx, ec.OperationContext, field, <field context>,
//			func() T { return obj.Name }, <marshal>, <recover>); ok {
//			return m
//		}
//	}
//	return graphql.ResolveField(…) // as gqlgen wrote it
//
// It returns the new source and how many functions it changed.
func plainLeaves(name string, src []byte) ([]byte, int, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, name, src, parser.ParseComments)
	if err != nil {
		return nil, 0, err
	}
	text := func(n ast.Node) string {
		return string(src[fset.Position(n.Pos()).Offset:fset.Position(n.End()).Offset])
	}
	type edit struct {
		at   int
		text string
	}
	var edits []edit
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Body == nil || len(fn.Body.List) != 1 {
			continue
		}
		ret, ok := fn.Body.List[0].(*ast.ReturnStmt)
		if !ok || len(ret.Results) != 1 {
			continue
		}
		call, ok := ret.Results[0].(*ast.CallExpr)
		if !ok || len(call.Args) != 9 {
			continue
		}
		fun, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || !isIdent(fun.X, "graphql") || fun.Sel.Name != "ResolveField" || !isIdent(call.Args[5], "nil") {
			continue
		}
		value := readsObject(call.Args[4])
		marshal, ok := call.Args[6].(*ast.FuncLit)
		if value == nil || !ok || len(marshal.Type.Params.List) != 3 {
			continue
		}
		typ := text(marshal.Type.Params.List[2].Type)
		fast := fmt.Sprintf(`if len(field.Selections) == 0 {
		if m, ok := gqlexec.ResolveLeaf(ctx, %s, field, %s, func() %s { return %s }, %s, %s); ok {
			return m
		}
	}
	`, text(call.Args[1]), text(call.Args[3]), typ, text(value), text(marshal), text(call.Args[7]))
		edits = append(edits, edit{at: fset.Position(ret.Pos()).Offset, text: fast})
	}
	for i := len(edits) - 1; i >= 0; i-- {
		e := edits[i]
		src = append(src[:e.at:e.at], append([]byte(e.text), src[e.at:]...)...)
	}
	return src, len(edits), nil
}

// readsObject returns the value read when e is a function literal whose
// body is `return obj.X, nil` or `return obj.X(), nil`, and nil otherwise.
func readsObject(e ast.Expr) ast.Expr {
	lit, ok := e.(*ast.FuncLit)
	if !ok || len(lit.Body.List) != 1 {
		return nil
	}
	ret, ok := lit.Body.List[0].(*ast.ReturnStmt)
	if !ok || len(ret.Results) != 2 || !isIdent(ret.Results[1], "nil") {
		return nil
	}
	value := ret.Results[0]
	read := value
	if call, ok := read.(*ast.CallExpr); ok {
		if len(call.Args) != 0 {
			return nil
		}
		read = call.Fun
	}
	if sel, ok := read.(*ast.SelectorExpr); !ok || !isIdent(sel.X, "obj") {
		return nil
	}
	return value
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}
