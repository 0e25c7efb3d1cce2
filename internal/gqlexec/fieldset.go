package gqlexec

import (
	"bytes"
	"context"
	"io"
	"sync"
	"sync/atomic"

	"github.com/99designs/gqlgen/graphql"
)

// FieldSet is gqlgen's graphql.FieldSet with a faster MarshalGQL. The
// generated code builds one for every object of a response (NewFieldSet
// replaces graphql.NewFieldSet there) and uses it exactly as gqlgen's: its
// Values, Invalids, Dispatch and ResolveConcurrently are gqlgen's own.
//
// gqlgen's MarshalGQL makes a map of the keys written and two iterator
// closures for every object, and quotes each key through an io.Writer: on the
// chat screen's 200 messages that is a fifth of the allocations of a request.
// This one writes the same JSON with none of them.
//
// It also runs the fields that gqlgen resolves concurrently (fields with
// resolvers) itself: see ResolveConcurrently and Dispatch.
//
// gqlgen's FieldSet is embedded by value, so that an object costs one
// allocation (and one for its values) rather than three. Its own list of
// fields stays empty: every method of it that reads that list is replaced
// here.
type FieldSet struct {
	graphql.FieldSet
	fields []graphql.CollectedField
	oc     *graphql.OperationContext
	tasks  []task
}

// task is a field scheduled by ResolveConcurrently.
type task struct {
	i                int
	invalidResult    graphql.Marshaler
	recoverFromPanic bool
	resolve          func(ctx context.Context) graphql.Marshaler
}

// NewFieldSet replaces graphql.NewFieldSet in the generated code.
func NewFieldSet(fields []graphql.CollectedField) *FieldSet {
	m := &FieldSet{fields: fields}
	m.Values = make([]graphql.Marshaler, len(fields))
	return m
}

// manyFields is the number of fields above which MarshalGQL looks for
// repeated keys in a map rather than by scanning the keys before.
const manyFields = 32

// MarshalGQL writes the object's fields in order, each key once, as
// gqlgen's FieldSet does. The keys are response names (aliases or field
// names), which the GraphQL grammar limits to letters, digits and
// underscores, so they never need escaping.
func (m *FieldSet) MarshalGQL(w io.Writer) {
	b, ok := w.(*bytes.Buffer)
	if !ok {
		var buf bytes.Buffer
		m.MarshalGQL(&buf)
		_, _ = w.Write(buf.Bytes())
		return
	}
	var written map[string]struct{}
	if len(m.fields) > manyFields {
		written = make(map[string]struct{}, len(m.fields))
	}
	b.WriteByte('{')
	for i := range m.fields {
		alias := m.fields[i].Alias
		if repeated(m.fields[:i], alias, written) {
			continue
		}
		if i > 0 { // the first field is never a repeat
			b.WriteByte(',')
		}
		b.WriteByte('"')
		b.WriteString(alias)
		b.WriteString(`":`)
		m.Values[i].MarshalGQL(b)
	}
	b.WriteByte('}')
}

// repeated reports whether alias is the key of one of the fields before,
// using written (and adding alias to it) when it is not nil.
func repeated(before []graphql.CollectedField, alias string, written map[string]struct{}) bool {
	if written != nil {
		if _, ok := written[alias]; ok {
			return true
		}
		written[alias] = struct{}{}
		return false
	}
	for i := range before {
		if before[i].Alias == alias {
			return true
		}
	}
	return false
}

// ResolveConcurrently schedules field i to be resolved by resolve when the
// field set is dispatched, as gqlgen's does. Deferred fields are not
// supported: askgate's schema has no @defer, so validation refuses them.
func (m *FieldSet) ResolveConcurrently(oc *graphql.OperationContext, _ *graphql.DeferredGroup, i int, recoverFromPanic, nonNull bool, resolve func(ctx context.Context) graphql.Marshaler) {
	if m.fields[i].IsDeferred() {
		panic("gqlexec: deferred field " + m.fields[i].Alias + " (the schema has no @defer)")
	}
	invalid := graphql.RequiredNull
	if nonNull {
		invalid = graphql.Null
	}
	m.oc = oc
	m.tasks = append(m.tasks, task{i: i, invalidResult: invalid, recoverFromPanic: recoverFromPanic, resolve: resolve})
}

// Dispatch resolves the scheduled fields concurrently and waits for them,
// as gqlgen's does, with one difference: the last field runs on the
// calling goroutine and the others on goroutines of their own, where
// gqlgen runs the first on the caller. A selection most often ends with its
// largest field (a conversation's messages after its owner), and the
// caller's stack has already grown to hold it, where a new goroutine's
// would grow again, copy after copy: a twentieth of the CPU time of a chat
// screen.
func (m *FieldSet) Dispatch(ctx context.Context) {
	m.FieldSet.Dispatch(ctx) // what gqlgen scheduled itself: root fields
	n := len(m.tasks)
	if n == 0 {
		return
	}
	var wg sync.WaitGroup
	for k := range n - 1 {
		wg.Go(func() { m.run(ctx, &m.tasks[k]) })
	}
	m.run(ctx, &m.tasks[n-1])
	wg.Wait()
}

// run resolves a scheduled field, counting an invalid result as gqlgen
// does, and recovering a panic into a null field when asked to.
func (m *FieldSet) run(ctx context.Context, t *task) {
	v := resolveRecovering(ctx, m.oc, t)
	m.Values[t.i] = v
	if v == t.invalidResult {
		atomic.AddUint32(&m.Invalids, 1)
	}
}

func resolveRecovering(ctx context.Context, oc *graphql.OperationContext, t *task) (v graphql.Marshaler) {
	if t.recoverFromPanic {
		defer func() {
			if r := recover(); r != nil {
				oc.Error(ctx, oc.Recover(ctx, r))
				v = graphql.Null
			}
		}()
	}
	return t.resolve(ctx)
}
