package gqlexec

import (
	"bytes"
	"io"
	"sync"
	"time"

	"github.com/99designs/gqlgen/graphql"
)

// MarshalString replaces graphql.MarshalString in the generated code. It
// writes the same JSON string, scanning bytes where gqlgen decodes runes
// and writes each piece through an io.Writer; the content of messages is
// most of a chat screen's response.
func MarshalString(s string) graphql.Marshaler { return quoted(s) }

// MarshalID replaces graphql.MarshalID, which is MarshalString.
func MarshalID(s string) graphql.Marshaler { return quoted(s) }

// quoted is a string marshalled as a JSON string.
type quoted string

func (s quoted) MarshalGQL(w io.Writer) {
	if b, ok := w.(*bytes.Buffer); ok {
		writeQuoted(b, string(s))
		return
	}
	var b bytes.Buffer
	writeQuoted(&b, string(s))
	_, _ = w.Write(b.Bytes())
}

// escaped marks the bytes gqlgen escapes in a string: control characters,
// the quote and the backslash. They are all ASCII, so scanning bytes finds
// exactly the characters gqlgen's rune loop finds, and copies every other
// byte (valid UTF-8 or not) as it does.
var escaped = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'] = true, true
	return t
}()

const hexDigits = "0123456789ABCDEF" // upper case, as gqlgen writes them

// writeQuoted writes s as gqlgen's writeQuotedString does.
func writeQuoted(b *bytes.Buffer, s string) {
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !escaped[c] {
			continue
		}
		b.WriteString(s[start:i])
		switch c {
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case '\n':
			b.WriteString(`\n`)
		case '\\':
			b.WriteString(`\\`)
		case '"':
			b.WriteString(`\"`)
		default:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		}
		start = i + 1
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}

// MarshalTime replaces graphql.MarshalTime: null for the zero time,
// otherwise the time in RFC 3339 with nanoseconds, formatted straight into
// the response rather than into a string that is then quoted into another.
func MarshalTime(t time.Time) graphql.Marshaler {
	if t.IsZero() {
		return graphql.Null
	}
	return rfc3339(t)
}

type rfc3339 time.Time

func (t rfc3339) MarshalGQL(w io.Writer) {
	if b, ok := w.(*bytes.Buffer); ok { // formatted in place
		b.Grow(len(time.RFC3339Nano) + 8)
		_, _ = b.Write(appendQuotedTime(b.AvailableBuffer(), time.Time(t)))
		return
	}
	_, _ = w.Write(appendQuotedTime(nil, time.Time(t)))
}

// appendQuotedTime appends t in RFC 3339 with nanoseconds, quoted: the
// format has nothing to escape.
func appendQuotedTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// dataPool recycles the buffers responses are marshalled into.
var dataPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledData is the largest buffer kept for reuse.
const maxPooledData = 1 << 20

// MarshalData marshals an operation's result into a buffer taken from a
// pool; it replaces the bytes.Buffer the generated Exec grows from nothing
// for every query (a 58 kB chat screen grows it eight times). Whoever has
// written the data out may give it back with ReleaseData.
func MarshalData(m graphql.Marshaler) []byte {
	b := dataPool.Get().(*bytes.Buffer)
	m.MarshalGQL(b)
	return b.Bytes()
}

// ReleaseData gives data back for reuse by MarshalData. Call it only with
// data that MarshalData returned for one response, once nothing refers to
// it any more (nor to the response holding it): bytes shared elsewhere
// would be overwritten by the next response.
func ReleaseData(data []byte) {
	if cap(data) == 0 || cap(data) > maxPooledData {
		return
	}
	dataPool.Put(bytes.NewBuffer(data[:0]))
}
