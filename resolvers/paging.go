package resolvers

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
	"github.com/graph-gophers/dataloader/v7"

	"askgate/graph/model"
	"askgate/internal/chat"
	"askgate/loaders"
)

// selects reports whether the field being resolved selects the sub-field
// at path (directly, or through fragments and aliases), so that a resolver
// can load it with its parent: selects(ctx, "nodes", "author").
func selects(ctx context.Context, path ...string) bool {
	oc := graphql.GetOperationContext(ctx)
	return selectsIn(oc, graphql.CollectFieldsCtx(ctx, nil), path)
}

func selectsIn(oc *graphql.OperationContext, fields []graphql.CollectedField, path []string) bool {
	for _, f := range fields {
		if f.Name != path[0] {
			continue
		}
		if len(path) == 1 || selectsIn(oc, graphql.CollectFields(oc, f.Selections, nil), path[1:]) {
			return true
		}
	}
	return false
}

// loadAll loads keys with a loader, for a batch resolver: the keys all go
// into the loader's current batch before any result is awaited (unlike
// LoadMany, which hands each key to a goroutine of its own), the results
// come in the order of keys, and the errors, if any, as a
// graphql.BatchErrorList that gives each key its own.
func loadAll[K comparable, V any](ctx context.Context, l *dataloader.Loader[K, V], keys []K) ([]V, error) {
	thunks := make([]dataloader.Thunk[V], len(keys))
	for i, k := range keys {
		if i > 0 && k == keys[i-1] { // the owners of a list are often one user
			thunks[i] = thunks[i-1]
			continue
		}
		thunks[i] = l.Load(ctx, k)
	}
	values := make([]V, len(keys))
	var errs graphql.BatchErrorList
	for i, thunk := range thunks {
		v, err := thunk()
		values[i] = v
		if err != nil {
			if errs == nil {
				errs = make(graphql.BatchErrorList, len(keys))
			}
			errs[i] = err
		}
	}
	if errs != nil {
		return values, errs
	}
	return values, nil
}

// primeAuthors asks the users loader for the authors of msgs now, in one
// batch, so that each message's author field later finds its user loaded
// or on its way rather than waiting for a batch of its own.
func primeAuthors(ctx context.Context, l *loaders.Loaders, msgs []*chat.Message) {
	last := ""
	for _, m := range msgs {
		if m != nil && m.Role == chat.RoleUser && m.AuthorID != "" && m.AuthorID != last {
			l.Users.Load(ctx, m.AuthorID)
			last = m.AuthorID // a page's questions are most often one user's
		}
	}
}

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

// conversationCounter is a store that reads a page of conversations and
// their total number in one round trip (PostgreSQL does).
type conversationCounter interface {
	ListConversationsCounted(ctx context.Context, owner string, p chat.Page) (*chat.ConversationPage, int, error)
}
