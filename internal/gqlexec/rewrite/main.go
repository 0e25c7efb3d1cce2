// Command rewrite adjusts gqlgen's generated executor where gqlgen has no
// setting for what askgate needs (see package gqlexec for the reasons):
//
//   - lists are marshalled by gqlexec.MarshalSlice, in order, instead of
//     graphql.MarshalSliceConcurrently, one goroutine per element;
//   - objects get gqlexec.NoDeferredGroup instead of graphql.NewDeferredGroup,
//     since the schema has no @defer.
//
// `make generate` runs it after gqlgen, so `make check-generate` checks its
// output too. It fails if the schema ever declares @defer.
//
// Usage: go run ./internal/gqlexec/rewrite FILE...
package main

import (
	"bytes"
	"fmt"
	"go/format"
	"go/parser"
	"go/token"
	"os"

	"golang.org/x/tools/go/ast/astutil"
)

var replacements = []struct{ from, to string }{
	{"graphql.MarshalSliceConcurrently(", "gqlexec.MarshalSlice("},
	{"graphql.NewDeferredGroup(", "gqlexec.NoDeferredGroup("},
}

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
	for _, r := range replacements {
		if !used[r.from] {
			fmt.Fprintf(os.Stderr, "rewrite: %q is in none of the files; has gqlgen changed its output?\n", r.from)
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
