package sqlkit

import (
	"strconv"
	"time"

	"askgate/internal/chat"
)

// Variant is the shape of a page's query: whether it is fetched backward
// and which cursors it has. Each shape has its own SQL text, so that every
// condition can use an index and every text can be prepared once.
type Variant uint8

// The bits of a Variant.
const (
	Backward Variant = 1 << iota
	HasAfter
	HasBefore
)

// Variants is the number of distinct Variants; they are 0..Variants-1.
const Variants = 8

// VariantOf returns the shape of p.
func VariantOf(p chat.Page) Variant {
	var v Variant
	if p.Backward {
		v |= Backward
	}
	if p.After != nil {
		v |= HasAfter
	}
	if p.Before != nil {
		v |= HasBefore
	}
	return v
}

// Keyset describes the order of a list: by the time column Time, ties
// broken by the id column ID, newest first when Desc is set.
type Keyset struct {
	Time, ID string
	Desc     bool
}

// Where returns the conditions that confine a list to the cursors of a
// page of shape v, each one prefixed with " AND ", or "" when there are no
// cursors. It calls param for each placeholder, in the order of the
// arguments that AppendCursorArgs appends.
func (k Keyset) Where(v Variant, param func() string) string {
	// "After" is later in list order: larger for an ascending list,
	// smaller for a descending one.
	after, before := " > ", " < "
	if k.Desc {
		after, before = before, after
	}
	var s string
	if v&HasAfter != 0 {
		s += " AND (" + k.Time + ", " + k.ID + ")" + after + "(" + param() + ", " + param() + ")"
	}
	if v&HasBefore != 0 {
		s += " AND (" + k.Time + ", " + k.ID + ")" + before + "(" + param() + ", " + param() + ")"
	}
	return s
}

// OrderBy returns the ORDER BY terms in which the rows of a page of shape v
// are fetched: list order, or its reverse for a backward page, which
// chat.Finish turns back.
func (k Keyset) OrderBy(v Variant) string {
	desc := k.Desc != (v&Backward != 0)
	if desc {
		return k.Time + " DESC, " + k.ID + " DESC"
	}
	return k.Time + ", " + k.ID
}

// AppendCursorArgs appends the arguments of p's cursors to args, in the
// order Where asks for them, converting each time with conv.
func AppendCursorArgs[T any](args []any, p chat.Page, conv func(time.Time) T) []any {
	if p.After != nil {
		args = append(args, conv(p.After.Time), p.After.ID)
	}
	if p.Before != nil {
		args = append(args, conv(p.Before.Time), p.Before.ID)
	}
	return args
}

// Dollar returns a placeholder writer for PostgreSQL that numbers its
// placeholders from $n on.
func Dollar(n int) func() string {
	n--
	return func() string {
		n++
		return "$" + strconv.Itoa(n)
	}
}

// Question is the placeholder writer for SQLite.
func Question() string { return "?" }
