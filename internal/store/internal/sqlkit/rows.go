package sqlkit

import "askgate/internal/chat"

// Slab hands out pointers to zeroed values allocated in chunks, so that
// scanning n rows costs a few allocations rather than n. The zero value is
// ready to use. A Slab is not safe for concurrent use.
type Slab[T any] struct {
	buf []T
}

// maxChunk bounds the size of a chunk, and so the memory a few long-lived
// values can pin.
const maxChunk = 128

// New returns a pointer to a new zero T.
func (s *Slab[T]) New() *T {
	if len(s.buf) == cap(s.buf) {
		n := min(max(2*cap(s.buf), 8), maxChunk)
		s.buf = make([]T, 0, n)
	}
	s.buf = s.buf[:len(s.buf)+1]
	return &s.buf[len(s.buf)-1]
}

// MessagePages builds the result of Store.ListMessages: one page per id in
// ids, in that order, from msgs, the rows fetched for page p (Limit+1 per
// conversation at most, in fetch order) with each conversation's rows next
// to each other. An id without rows gets an empty page; an id repeated in
// ids gets the same page again.
func MessagePages(p chat.Page, ids []string, msgs []*chat.Message) []*chat.MessagePage {
	type span struct{ lo, hi int }
	spans := make(map[string]span, len(ids))
	for i := 0; i < len(msgs); {
		j := i + 1
		for j < len(msgs) && msgs[j].ConversationID == msgs[i].ConversationID {
			j++
		}
		spans[msgs[i].ConversationID] = span{i, j}
		i = j
	}
	pages := make([]*chat.MessagePage, len(ids))
	done := make(map[string]*chat.MessagePage, len(ids))
	slab := make([]chat.MessagePage, len(ids))
	for i, id := range ids {
		if pg := done[id]; pg != nil {
			pages[i] = pg
			continue
		}
		pg := &slab[i]
		pg.ConversationID = id
		rows := []*chat.Message{}
		if sp, ok := spans[id]; ok {
			rows = msgs[sp.lo:sp.hi:sp.hi]
		}
		pg.Messages, pg.PageInfo = chat.Finish(p, rows)
		done[id] = pg
		pages[i] = pg
	}
	return pages
}
