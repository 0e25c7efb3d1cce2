// Command seqlists rewrites gqlgen's generated executor so that lists are
// marshalled by gqlexec.MarshalSlice, in order, instead of
// graphql.MarshalSliceConcurrently, one goroutine per element (gqlgen has
// no setting for this). `make generate` runs it after gqlgen; `make
// check-generate` therefore checks its output too.
//
// Usage: go run ./internal/gqlexec/seqlists FILE...
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

const (
	from       = "graphql.MarshalSliceConcurrently("
	to         = "gqlexec.MarshalSlice("
	importPath = "askgate/internal/gqlexec"
)

func main() {
	for _, name := range os.Args[1:] {
		if err := rewrite(name); err != nil {
			fmt.Fprintln(os.Stderr, "seqlists:", err)
			os.Exit(1)
		}
	}
}

func rewrite(name string) error {
	src, err := os.ReadFile(name)
	if err != nil {
		return err
	}
	if !bytes.Contains(src, []byte(from)) {
		return nil
	}
	src = bytes.ReplaceAll(src, []byte(from), []byte(to))
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
