package resolvers

import (
	"askgate/graph/model"
	"askgate/internal/chat"
)

// cursored is an item of a keyset-paged list.
type cursored interface{ Cursor() chat.Cursor }

// pageInfo builds a connection's PageInfo from a page's neighbours and the
// cursors of its first and last items.
func pageInfo[T cursored](info chat.PageInfo, kind chat.Kind, items []T) *model.PageInfo {
	p := &model.PageInfo{HasNextPage: info.HasNextPage, HasPreviousPage: info.HasPreviousPage}
	if len(items) > 0 {
		start := items[0].Cursor().Encode(kind)
		end := items[len(items)-1].Cursor().Encode(kind)
		p.StartCursor, p.EndCursor = &start, &end
	}
	return p
}
