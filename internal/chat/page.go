package chat

import (
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// Page limits.
const (
	MaxPageSize     = 100
	DefaultPageSize = 20
)

// Cursor is a keyset position: the sort timestamp and the id that breaks
// ties. Conversations sort by UpdatedAt (newest first), messages by CreatedAt
// (oldest first).
type Cursor struct {
	Time time.Time
	ID   string
}

// cursorPrefix tags a cursor with the kind of list it belongs to, so that a
// cursor from one list is refused by another.
func cursorPrefix(k Kind) string {
	switch k {
	case KindConversation:
		return "c"
	case KindMessage:
		return "m"
	}
	return "?"
}

// Encode returns the cursor as an opaque string for a list of the given kind.
func (c Cursor) Encode(k Kind) string {
	s := cursorPrefix(k) + ":" + strconv.FormatInt(c.Time.UnixMicro(), 36) + ":" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(s))
}

// The times a cursor may hold: years 1 to 9999, which every store can
// compare with.
var (
	minCursorMicros = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	maxCursorMicros = time.Date(9999, 12, 31, 23, 59, 59, 999999000, time.UTC).UnixMicro()
)

// DecodeCursor parses a cursor made by Encode for a list of kind k. A cursor
// that is not one gives a BAD_USER_INPUT error.
func DecodeCursor(k Kind, s string) (Cursor, error) {
	bad := Errorf(CodeBadUserInput, "invalid cursor")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, bad
	}
	parts := strings.SplitN(string(raw), ":", 3)
	if len(parts) != 3 || parts[0] != cursorPrefix(k) || !ValidID(parts[2]) {
		return Cursor{}, bad
	}
	us, err := strconv.ParseInt(parts[1], 36, 64)
	if err != nil || us < minCursorMicros || us > maxCursorMicros {
		return Cursor{}, bad
	}
	return Cursor{Time: time.UnixMicro(us).UTC(), ID: parts[2]}, nil
}

// Page is a validated request for a slice of a keyset-ordered list, built
// from Relay's first/after/last/before arguments by NewPage.
//
// A forward page (Backward false) holds the first Limit items after After
// (and before Before, when set). A backward page holds the last Limit items
// before Before (and after After, when set). Items are always returned in
// list order.
type Page struct {
	Limit    int
	Backward bool
	After    *Cursor
	Before   *Cursor
}

// NewPage validates Relay connection arguments for a list of kind k. first
// and last must be within 1..MaxPageSize and are mutually exclusive; cursors
// must be ones this list issued. With neither first nor last, the page is
// the first DefaultPageSize items.
func NewPage(k Kind, first, last *int, after, before *string) (Page, error) {
	var p Page
	switch {
	case first != nil && last != nil:
		return p, Errorf(CodeBadUserInput, "first and last cannot be used together")
	case first != nil:
		if *first < 1 || *first > MaxPageSize {
			return p, Errorf(CodeBadUserInput, "first must be between 1 and %d", MaxPageSize)
		}
		p.Limit = *first
	case last != nil:
		if *last < 1 || *last > MaxPageSize {
			return p, Errorf(CodeBadUserInput, "last must be between 1 and %d", MaxPageSize)
		}
		p.Limit, p.Backward = *last, true
	default:
		p.Limit = DefaultPageSize
	}
	if after != nil {
		c, err := DecodeCursor(k, *after)
		if err != nil {
			return p, err
		}
		p.After = &c
	}
	if before != nil {
		c, err := DecodeCursor(k, *before)
		if err != nil {
			return p, err
		}
		p.Before = &c
	}
	return p, nil
}

// Key returns a string that identifies the page's arguments, for grouping
// requests with the same arguments into one batch.
func (p Page) Key() string {
	var b strings.Builder
	b.WriteString(strconv.Itoa(p.Limit))
	if p.Backward {
		b.WriteString("b")
	}
	for _, c := range []*Cursor{p.After, p.Before} {
		b.WriteByte('|')
		if c != nil {
			b.WriteString(strconv.FormatInt(c.Time.UnixMicro(), 10))
			b.WriteByte(':')
			b.WriteString(c.ID)
		}
	}
	return b.String()
}

// PageInfo says whether a page has neighbours. Per the Relay specification,
// HasPreviousPage is only computed for backward pages and HasNextPage only
// for forward pages; across a cursor the neighbour is known to exist, since
// the cursor names an item of the list.
type PageInfo struct {
	HasNextPage     bool
	HasPreviousPage bool
}

// Finish trims a page fetched with one extra item (Limit+1 rows, in fetch
// order) and fills in PageInfo. For a backward page, rows come newest-first
// in list terms and are reversed into list order. It is shared by every
// Store implementation so that they page identically.
func Finish[T any](p Page, rows []T) ([]T, PageInfo) {
	var info PageInfo
	more := len(rows) > p.Limit
	if more {
		rows = rows[:p.Limit]
	}
	if p.Backward {
		for i, j := 0, len(rows)-1; i < j; i, j = i+1, j-1 {
			rows[i], rows[j] = rows[j], rows[i]
		}
		info.HasPreviousPage = more
		info.HasNextPage = p.Before != nil
	} else {
		info.HasNextPage = more
		info.HasPreviousPage = p.After != nil
	}
	return rows, info
}

// ConversationPage is one page of a user's conversations.
type ConversationPage struct {
	Conversations []*Conversation
	PageInfo      PageInfo
}

// MessagePage is one page of a conversation's messages.
type MessagePage struct {
	ConversationID string
	Messages       []*Message
	PageInfo       PageInfo
	// TotalCount is the number of messages of the whole conversation, valid
	// when Counted. Stores leave both unset; the loaders fill them in when
	// the count was asked for with the page.
	TotalCount int
	Counted    bool
}
