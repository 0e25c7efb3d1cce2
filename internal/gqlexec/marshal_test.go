package gqlexec_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"

	"askgate/internal/gqlexec"
)

// marshal writes m as the executor does, into a bytes.Buffer, and as any
// other writer would, and checks that both agree.
func marshal(t *testing.T, m graphql.Marshaler) string {
	t.Helper()
	var b bytes.Buffer
	m.MarshalGQL(&b)
	var sb strings.Builder
	m.MarshalGQL(&sb)
	if sb.String() != b.String() {
		t.Errorf("through an io.Writer %q; through a bytes.Buffer %q", sb.String(), b.String())
	}
	return b.String()
}

func TestMarshalStringIsGqlgens(t *testing.T) {
	tests := []string{
		"", "plain", `quote " and backslash \`, "tab\tnewline\nreturn\r",
		"controls \x00\x01\x1f\x7f", "unicode é ✓ 😀", "invalid \xff\xfe utf-8",
		"line separator \u2028", strings.Repeat("long ", 1000) + "\n",
	}
	for _, s := range tests {
		if got, want := marshal(t, gqlexec.MarshalString(s)), marshal(t, graphql.MarshalString(s)); got != want {
			t.Errorf("MarshalString(%q) = %s; want %s", s, got, want)
		}
		if got, want := marshal(t, gqlexec.MarshalID(s)), marshal(t, graphql.MarshalID(s)); got != want {
			t.Errorf("MarshalID(%q) = %s; want %s", s, got, want)
		}
	}
}

func TestMarshalTimeIsGqlgens(t *testing.T) {
	tests := []time.Time{
		time.Date(2026, 12, 1, 19, 23, 4, 4349000, time.UTC),
		time.Date(2026, 12, 1, 19, 23, 4, 0, time.UTC),
		time.Date(1, 1, 1, 0, 0, 0, 1, time.UTC),
		time.Date(2026, 6, 1, 12, 0, 0, 123456789, time.FixedZone("x", -5*3600-1800)),
	}
	for _, tm := range tests {
		if got, want := marshal(t, gqlexec.MarshalTime(tm)), marshal(t, graphql.MarshalTime(tm)); got != want {
			t.Errorf("MarshalTime(%v) = %s; want %s", tm, got, want)
		}
	}
	if m := gqlexec.MarshalTime(time.Time{}); m != graphql.Null {
		t.Errorf("MarshalTime(zero) = %v; want graphql.Null", m)
	}
}

func TestFieldSetIsGqlgens(t *testing.T) {
	fields := func(aliases ...string) []graphql.CollectedField {
		var fs []graphql.CollectedField
		for _, a := range aliases {
			fs = append(fs, graphql.CollectedField{Field: &ast.Field{Alias: a, Name: a}})
		}
		return fs
	}
	many := make([]string, 40)
	for i := range many {
		many[i] = "f" + strings.Repeat("x", i%35) // repeats past 35
	}
	tests := [][]string{{}, {"a"}, {"a", "b", "a", "c"}, {"id", "title", "id"}, many}
	for _, aliases := range tests {
		ours, theirs := gqlexec.NewFieldSet(fields(aliases...)), graphql.NewFieldSet(fields(aliases...))
		for i := range aliases {
			v := graphql.MarshalInt(i)
			ours.Values[i], theirs.Values[i] = v, v
		}
		if got, want := marshal(t, ours), marshal(t, theirs); got != want {
			t.Errorf("fields %q: %s; want %s", aliases, got, want)
		}
	}
}

func TestMarshalDataReleaseData(t *testing.T) {
	first := gqlexec.MarshalData(gqlexec.MarshalString("one"))
	if string(first) != `"one"` {
		t.Fatalf("MarshalData = %s", first)
	}
	gqlexec.ReleaseData(first)
	second := gqlexec.MarshalData(gqlexec.MarshalString("two"))
	if string(second) != `"two"` {
		t.Fatalf("MarshalData after ReleaseData = %s", second)
	}
	gqlexec.ReleaseData(nil) // harmless
}

func TestResolveLeaf(t *testing.T) {
	ctx := context.Background()
	oc := &graphql.OperationContext{}
	field := graphql.CollectedField{Field: &ast.Field{Alias: "f", Name: "f"}}
	fc := func(context.Context, graphql.CollectedField) (*graphql.FieldContext, error) {
		return &graphql.FieldContext{Field: field}, nil
	}
	str := func(_ context.Context, _ ast.SelectionSet, v string) graphql.Marshaler {
		return gqlexec.MarshalString(v)
	}
	m, ok := gqlexec.ResolveLeaf(ctx, oc, field, fc, func() string { return "x" }, str, true)
	if !ok || marshal(t, m) != `"x"` {
		t.Errorf("string leaf: %v, %v", m, ok)
	}
	tm := func(_ context.Context, _ ast.SelectionSet, v time.Time) graphql.Marshaler {
		return gqlexec.MarshalTime(v)
	}
	if _, ok := gqlexec.ResolveLeaf(ctx, oc, field, fc, func() time.Time { return time.Time{} }, tm, true); ok {
		t.Error("a zero time, which marshals to null, took the fast path")
	}
	ptr := func(_ context.Context, _ ast.SelectionSet, v *string) graphql.Marshaler { return graphql.Null }
	if _, ok := gqlexec.ResolveLeaf(ctx, oc, field, fc, func() *string { return nil }, ptr, true); ok {
		t.Error("a pointer took the fast path")
	}
}

func TestResolveLeafPanic(t *testing.T) {
	ctx := graphql.WithResponseContext(context.Background(), graphql.DefaultErrorPresenter, graphql.DefaultRecover)
	oc := &graphql.OperationContext{RecoverFunc: graphql.DefaultRecover}
	field := graphql.CollectedField{Field: &ast.Field{Alias: "f", Name: "f"}}
	fc := func(context.Context, graphql.CollectedField) (*graphql.FieldContext, error) {
		return &graphql.FieldContext{Field: field}, nil
	}
	str := func(_ context.Context, _ ast.SelectionSet, v string) graphql.Marshaler {
		return gqlexec.MarshalString(v)
	}
	m, ok := gqlexec.ResolveLeaf(ctx, oc, field, fc, func() string { panic("boom") }, str, true)
	if !ok || m != graphql.Null {
		t.Errorf("after a panic: %v, %v; want graphql.Null, true", m, ok)
	}
	errs := graphql.GetErrors(ctx)
	if len(errs) != 1 || errs[0].Path.String() != "f" {
		t.Errorf("errors %v; want one on path f", errs)
	}
}
