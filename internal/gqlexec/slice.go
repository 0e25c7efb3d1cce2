// Package gqlexec holds execution helpers that askgate's generated GraphQL
// code calls in place of gqlgen's own (see rewrite, which rewrites the
// generated files after gqlgen has written them).
package gqlexec

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
)

// MarshalSlice marshals the elements of a list one after the other on the
// calling goroutine. It replaces gqlgen's MarshalSliceConcurrently, which
// starts a goroutine for every element: on the chat screen's 200 messages
// the goroutines, their stack growth and the extra garbage cost more than
// resolving the fields themselves (about a third of the CPU time per
// request, measured with BenchmarkScreenQuery).
//
// Running elements in order is safe because no askgate resolver blocks per
// element: fields that wait for I/O are gqlgen batch resolvers (the first
// element's call resolves all its siblings) or read dataloaders whose keys
// were all loaded at once. Fields within one element still run
// concurrently as gqlgen dispatches them.
//
// The signature is MarshalSliceConcurrently's; workerLimit and
// omitPanicHandler are accepted for that reason. A panic in an element is
// recovered and reported on that element, as gqlgen does.
func MarshalSlice(ctx context.Context, length int, _ int64, omitPanicHandler bool, marshalElement func(ctx context.Context, i int) graphql.Marshaler) graphql.Array {
	ret := make(graphql.Array, length)
	for i := range length {
		fc := &graphql.FieldContext{Index: &i}
		childCtx := graphql.WithFieldContext(ctx, fc)
		if omitPanicHandler {
			ret[i] = marshalElement(childCtx, i)
			continue
		}
		ret[i] = marshalRecovering(childCtx, i, marshalElement)
	}
	return ret
}

func marshalRecovering(ctx context.Context, i int, marshalElement func(ctx context.Context, i int) graphql.Marshaler) (m graphql.Marshaler) {
	defer func() {
		if r := recover(); r != nil {
			graphql.AddError(ctx, graphql.Recover(ctx, r))
			m = graphql.Null
		}
	}()
	return marshalElement(ctx, i)
}

// NoDeferredGroup replaces gqlgen's graphql.NewDeferredGroup in the
// generated code. gqlgen builds a group for every object it marshals, for
// fields under @defer, and computes the object's full path to do so: about
// a tenth of the CPU time of the chat screen. askgate's schema declares no
// @defer directive, so validation refuses any document that uses it, no
// field is ever deferred and the group stays empty; an empty group that
// computes nothing serves.
func NoDeferredGroup(ctx context.Context) graphql.DeferredGroup {
	return graphql.DeferredGroup{Context: ctx}
}
