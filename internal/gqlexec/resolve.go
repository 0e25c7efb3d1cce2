package gqlexec

import (
	"context"
	"reflect"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
)

// ResolveLeaf resolves a leaf field (a scalar or an enum) whose resolver
// only reads a value of its object (`return obj.Title, nil`, `return
// obj.NodeID(), nil`): the rewrite puts a call to it ahead of gqlgen's
// graphql.ResolveField in such fields' generated functions, with read
// reading the value. When the value is a non-zero time or of a string,
// boolean or integer kind, its marshalled value can be neither null nor an
// error and nothing reads the field's context: ResolveLeaf marshals it and
// returns true, without the FieldContext, the context holding it, the
// closures and the interface value that graphql.ResolveField makes for
// every field — most of the work of a chat screen's 1,000 plain leaves.
// Otherwise it returns false, and the generated code goes on to
// graphql.ResolveField, which reads the value again (reading is all that
// resolver does).
//
// A panic is reported on the field, with its path, and resolves it to null,
// as graphql.ResolveField does.
//
// Field middleware (handler extensions that intercept fields) does not see
// the leaves resolved here, so askgate installs none.
//
// No function value passed to ResolveLeaf escapes: the generated code's
// closures stay on its stack.
func ResolveLeaf[T any](
	ctx context.Context,
	oc *graphql.OperationContext,
	field graphql.CollectedField,
	initializeFieldContext func(ctx context.Context, field graphql.CollectedField) (*graphql.FieldContext, error),
	read func() T,
	marshal func(ctx context.Context, sel ast.SelectionSet, v T) graphql.Marshaler,
	recoverFromPanic bool,
) (m graphql.Marshaler, ok bool) {
	if recoverFromPanic {
		defer func() {
			if r := recover(); r != nil {
				m, ok = recovered(ctx, oc, field, initializeFieldContext, r), true
			}
		}()
	}
	v := read()
	if !plainLeaf(v) {
		return nil, false
	}
	return marshal(ctx, field.Selections, v), true
}

// plainLeaf reports whether v is a value whose scalar or enum marshaller
// writes it as it is: a string, boolean or integer (named or not), or a
// non-zero time.
func plainLeaf[T any](v T) bool {
	switch x := any(v).(type) {
	case nil:
		return false
	case string, bool, int, int32, int64:
		return true
	case time.Time:
		return !x.IsZero()
	}
	switch reflect.TypeFor[T]().Kind() {
	case reflect.String, reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

// recovered reports a panic on the field, in the field's context so that
// the error carries its path, and resolves the field to null, as
// graphql.ResolveField does.
func recovered(ctx context.Context, oc *graphql.OperationContext, field graphql.CollectedField,
	initializeFieldContext func(ctx context.Context, field graphql.CollectedField) (*graphql.FieldContext, error), r any,
) graphql.Marshaler {
	if fc, err := initializeFieldContext(ctx, field); err == nil {
		ctx = graphql.WithFieldContext(ctx, fc)
	}
	oc.Error(ctx, oc.Recover(ctx, r))
	return graphql.Null
}
