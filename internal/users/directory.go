package users

import (
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"askgate/internal/chat"
)

// Limits of a Directory.
const (
	// DirectoryCacheSize is how many users a Directory remembers having
	// written; the least recently observed are forgotten first.
	DirectoryCacheSize = 10000
	// observeWriteTimeout bounds one write of Observe, which runs detached
	// from the context of the request that triggered it (see Observe).
	observeWriteTimeout = 5 * time.Second
	// observeAttempts bounds how often Observe joins or starts a write for
	// one call.
	observeAttempts = 3
)

// Directory is the built-in chat.UserDirectory: users live in the store and
// are created or updated from the claims of their access tokens by Observe.
// It is safe for concurrent use.
type Directory struct {
	store  chat.Store
	flight singleflight.Group

	mu      sync.Mutex
	written *lru // id → profile last written by this Directory
}

// NewDirectory returns a Directory that keeps its users in store.
func NewDirectory(store chat.Store) *Directory {
	return &Directory{store: store, written: newLRU(DirectoryCacheSize)}
}

// UsersByID returns the users with the given ids, in any order; unknown ids
// are absent. A store failure is reported with code UPSTREAM_UNAVAILABLE.
func (d *Directory) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	ids = uniqueIDs(ids)
	if len(ids) == 0 {
		return nil, nil
	}
	users, err := d.store.UsersByID(ctx, ids)
	if err != nil {
		var ce *chat.Error
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, chat.Wrap(chat.CodeUpstreamUnavailable, err, "user directory unavailable")
	}
	return users, nil
}

// Observe records u, the user a request's token describes, creating or
// updating them in the store. It writes only when u is new to this
// Directory or differs from what it last wrote, so that calling it on every
// request costs a map lookup, not a database write; concurrent calls for the
// same user share one write.
//
// A write is detached from ctx's cancellation (with its own timeout), so
// that callers sharing it are not failed by the one that started it going
// away; Observe itself returns when ctx is done.
func (d *Directory) Observe(ctx context.Context, u *chat.User) error {
	if u == nil || u.ID == "" {
		return errors.New("users: Observe: a user needs an id")
	}
	want := profile{u.Name, u.Email, u.AvatarURL}
	for range observeAttempts {
		if d.wrote(u.ID, want) {
			return nil
		}
		// One write at a time per id, so that writes of different claims
		// for one user reach the store in the order the cache records them.
		ch := d.flight.DoChan(u.ID, func() (any, error) {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), observeWriteTimeout)
			defer cancel()
			w := &chat.User{ID: u.ID, Name: want.name, Email: want.email, AvatarURL: want.avatarURL}
			if err := d.store.UpsertUser(wctx, w); err != nil {
				return nil, err
			}
			d.mu.Lock()
			d.written.put(u.ID, want)
			d.mu.Unlock()
			return nil, nil
		})
		select {
		case <-ctx.Done():
			return ctx.Err()
		case r := <-ch:
			if r.Err != nil {
				return r.Err
			}
		}
		// The write joined may have been of other claims: check again.
	}
	if d.wrote(u.ID, want) {
		return nil
	}
	return errors.New("users: Observe: concurrent updates of the user kept replacing each other")
}

// wrote reports whether p is what was last written for id.
func (d *Directory) wrote(id string, p profile) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	got, ok := d.written.get(id)
	return ok && got == p
}

// profile is what Observe writes of a user besides the id.
type profile struct {
	name, email, avatarURL string
}

// lru is a size-capped map that forgets its least recently used entries.
// It is not safe for concurrent use.
type lru struct {
	max   int
	order *list.List // of *lruEntry, most recently used first
	items map[string]*list.Element
}

type lruEntry struct {
	key string
	val profile
}

func newLRU(max int) *lru {
	return &lru{max: max, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *lru) get(key string) (profile, bool) {
	e, ok := c.items[key]
	if !ok {
		return profile{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*lruEntry).val, true
}

func (c *lru) put(key string, val profile) {
	if e, ok := c.items[key]; ok {
		e.Value.(*lruEntry).val = val
		c.order.MoveToFront(e)
		return
	}
	c.items[key] = c.order.PushFront(&lruEntry{key, val})
	if c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.items, last.Value.(*lruEntry).key)
	}
}

func (c *lru) len() int { return c.order.Len() }
