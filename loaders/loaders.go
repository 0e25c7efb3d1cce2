// Package loaders provides the per-operation dataloaders that batch the
// lookups GraphQL resolvers make for nested fields: users by id (one user
// service call per batch), conversations by id, and pages and counts of
// messages by conversation (one SQL statement per batch).
//
// A Loaders value belongs to one operation and one viewer: every store
// lookup it makes is scoped to that viewer, and its caches live only as long
// as the operation. Use New to make one, With to put it in a context and For
// to get it back in a resolver.
package loaders

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"github.com/graph-gophers/dataloader/v7"

	"askgate/internal/chat"
)

// DefaultWait is how long a loader collects keys before it runs a batch. It
// is short because gqlgen starts the resolvers of a list's elements at once,
// so the keys of one level of the response arrive within microseconds.
const DefaultWait = time.Millisecond

// maxBatch caps the keys of one batch (and so one SQL IN list or one user
// service call); the contract's page size limit is 100.
const maxBatch = 100

// MessagesKey asks for one page of one conversation's messages and, when
// Count is set, for the conversation's total number of messages too.
type MessagesKey struct {
	ConversationID string
	Page           chat.Page
	Count          bool
}

// Loaders holds one operation's dataloaders.
type Loaders struct {
	// Users loads user profiles by user id from the user directory. A user
	// that does not exist loads as nil without error.
	Users *dataloader.Loader[string, *chat.User]
	// Conversations loads the viewer's conversations by local id; another
	// user's conversation loads as chat.ErrNotFound.
	Conversations *dataloader.Loader[string, *chat.Conversation]
	// Messages loads pages of the viewer's conversations' messages, with
	// their conversations' message counts when asked. Loading the count
	// with the page, rather than when the totalCount field resolves later,
	// keeps the counts of a whole list in one batch.
	Messages *dataloader.Loader[MessagesKey, *chat.MessagePage]

	mu     sync.Mutex
	totals map[*chat.ConversationPage]int

	users *userMemo
}

// userMemo keeps the users the Users loader has loaded for the operation.
type userMemo struct {
	mu    sync.RWMutex
	users map[string]*chat.User
}

// User returns the user id loads as (nil for no such user), as
// Users.Load(ctx, id)() does, but straight from the users the operation
// has already loaded when id is one of them: a chat screen asks for the
// same few authors for hundreds of messages, and the loader makes several
// allocations and takes several locks for each.
func (l *Loaders) User(ctx context.Context, id string) (*chat.User, error) {
	if m := l.users; m != nil {
		m.mu.RLock()
		u, ok := m.users[id]
		m.mu.RUnlock()
		if ok {
			return u, nil
		}
	}
	return l.Users.Load(ctx, id)()
}

// add records the users loaded for ids, nil for those that do not exist.
func (m *userMemo) add(ids []string, byID map[string]*chat.User) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.users == nil {
		m.users = make(map[string]*chat.User, len(ids))
	}
	for _, id := range ids {
		m.users[id] = byID[id]
	}
}

// SetTotal records the total number of conversations of the list p is a
// page of, read with the page.
func (l *Loaders) SetTotal(p *chat.ConversationPage, n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.totals == nil {
		l.totals = make(map[*chat.ConversationPage]int)
	}
	l.totals[p] = n
}

// Total returns the total recorded for p by SetTotal.
func (l *Loaders) Total(p *chat.ConversationPage) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.totals[p]
	return n, ok
}

// Config holds what the loaders read from.
type Config struct {
	Store chat.Store
	Users chat.UserDirectory
	// Wait is the batch window; zero means DefaultWait.
	Wait time.Duration
}

// New returns the loaders of one operation run by the user viewerID.
func New(cfg Config, viewerID string) *Loaders {
	wait := cfg.Wait
	if wait <= 0 {
		wait = DefaultWait
	}
	b := batcher{store: cfg.Store, dir: cfg.Users, owner: viewerID, users: &userMemo{}}
	return &Loaders{
		Users:         newLoader(b.loadUsers, wait),
		Conversations: newLoader(b.conversations, wait),
		Messages:      newLoader(b.messages, wait),
		users:         b.users,
	}
}

func newLoader[K comparable, V any](fn dataloader.BatchFunc[K, V], wait time.Duration) *dataloader.Loader[K, V] {
	return dataloader.NewBatchedLoader(guard(fn),
		dataloader.WithWait[K, V](wait),
		dataloader.WithBatchCapacity[K, V](maxBatch),
	)
}

// guard turns a panic in a batch function into an internal error for each
// key, carrying the panic and its stack for the log. (The dataloader would
// recover it too, but print the stack with the standard logger, apart
// from the request's log lines and trace id.)
func guard[K comparable, V any](fn dataloader.BatchFunc[K, V]) dataloader.BatchFunc[K, V] {
	return func(ctx context.Context, keys []K) (out []*dataloader.Result[V]) {
		defer func() {
			if r := recover(); r != nil {
				cause := fmt.Errorf("panic in a batch function: %v\n%s", r, debug.Stack())
				out = fail[V](len(keys), chat.Wrap(chat.CodeInternal, cause, "internal server error"))
			}
		}()
		return fn(ctx, keys)
	}
}

type ctxKey struct{}

// With returns a copy of ctx that carries l.
func With(ctx context.Context, l *Loaders) context.Context {
	return context.WithValue(ctx, ctxKey{}, l)
}

// For returns the loaders in ctx, or nil when there are none.
func For(ctx context.Context) *Loaders {
	l, _ := ctx.Value(ctxKey{}).(*Loaders)
	return l
}

// batcher holds the batch functions of one operation's loaders.
type batcher struct {
	store chat.Store
	dir   chat.UserDirectory
	owner string
	users *userMemo // what users has loaded
}

// fail returns the same error for every key of a batch.
func fail[V any](n int, err error) []*dataloader.Result[V] {
	out := make([]*dataloader.Result[V], n)
	r := &dataloader.Result[V]{Error: err}
	for i := range out {
		out[i] = r
	}
	return out
}

func (b batcher) loadUsers(ctx context.Context, ids []string) []*dataloader.Result[*chat.User] {
	found, err := b.dir.UsersByID(ctx, ids)
	if err != nil {
		return fail[*chat.User](len(ids), err)
	}
	byID := make(map[string]*chat.User, len(found))
	for _, u := range found {
		byID[u.ID] = u
	}
	b.users.add(ids, byID)
	out := make([]*dataloader.Result[*chat.User], len(ids))
	for i, id := range ids {
		out[i] = &dataloader.Result[*chat.User]{Data: byID[id]}
	}
	return out
}

func (b batcher) conversations(ctx context.Context, ids []string) []*dataloader.Result[*chat.Conversation] {
	found, err := b.store.ConversationsByID(ctx, b.owner, ids)
	if err != nil {
		return fail[*chat.Conversation](len(ids), err)
	}
	byID := make(map[string]*chat.Conversation, len(found))
	for _, c := range found {
		byID[c.ID] = c
	}
	out := make([]*dataloader.Result[*chat.Conversation], len(ids))
	for i, id := range ids {
		if c, ok := byID[id]; ok {
			out[i] = &dataloader.Result[*chat.Conversation]{Data: c}
		} else {
			out[i] = &dataloader.Result[*chat.Conversation]{Error: chat.ErrNotFound}
		}
	}
	return out
}

// countingLister is a store that reads a page of messages and counts
// messages in one round trip (PostgreSQL does).
type countingLister interface {
	ListMessagesCounted(ctx context.Context, owner string, conversationIDs []string, p chat.Page, countIDs []string) ([]*chat.MessagePage, map[string]int, error)
}

// messages runs one ListMessages per distinct page in the batch, plus one
// CountMessages for the conversations whose count was asked for; in
// practice a batch holds one page (say last: 10) for many conversations.
// With a countingLister and one page, the page and the counts are read in
// one round trip.
func (b batcher) messages(ctx context.Context, keys []MessagesKey) []*dataloader.Result[*chat.MessagePage] {
	type group struct {
		page chat.Page
		ids  []string
		at   []int
	}
	var groups []*group
	byPage := make(map[string]*group)
	var countIDs []string
	for i, k := range keys {
		pk := k.Page.Key()
		g := byPage[pk]
		if g == nil {
			g = &group{page: k.Page}
			byPage[pk] = g
			groups = append(groups, g)
		}
		g.ids = append(g.ids, k.ConversationID)
		g.at = append(g.at, i)
		if k.Count {
			countIDs = append(countIDs, k.ConversationID)
		}
	}
	var (
		counts map[string]int
		first  []*chat.MessagePage // the only group's pages, when read with the counts
		err    error
	)
	if cl, ok := b.store.(countingLister); ok && len(countIDs) > 0 && len(groups) == 1 {
		first, counts, err = cl.ListMessagesCounted(ctx, b.owner, groups[0].ids, groups[0].page, countIDs)
	} else if len(countIDs) > 0 {
		counts, err = b.store.CountMessages(ctx, b.owner, countIDs)
	}
	if err != nil {
		return fail[*chat.MessagePage](len(keys), err)
	}
	out := make([]*dataloader.Result[*chat.MessagePage], len(keys))
	for gi, g := range groups {
		var pages []*chat.MessagePage
		if gi == 0 && first != nil {
			pages = first
		} else {
			pages, err = b.store.ListMessages(ctx, b.owner, g.ids, g.page)
		}
		for j, i := range g.at {
			if err != nil {
				out[i] = &dataloader.Result[*chat.MessagePage]{Error: err}
				continue
			}
			p := pages[j]
			if keys[i].Count {
				// Pages may be shared between keys; give this one its own.
				counted := *p
				counted.TotalCount, counted.Counted = counts[keys[i].ConversationID], true
				p = &counted
			}
			out[i] = &dataloader.Result[*chat.MessagePage]{Data: p}
		}
	}
	return out
}
