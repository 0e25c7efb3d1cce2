package users

import (
	"context"
	"fmt"
	"testing"

	"askgate/internal/chat"
)

func TestLRU(t *testing.T) {
	c := newLRU(3)
	for i := range 3 {
		c.put(fmt.Sprint(i), profile{name: fmt.Sprint("n", i)})
	}
	c.get("0")                      // 0 is now the most recently used
	c.put("3", profile{name: "n3"}) // evicts 1
	for _, tt := range []struct {
		key  string
		want bool
	}{{"0", true}, {"1", false}, {"2", true}, {"3", true}} {
		if _, ok := c.get(tt.key); ok != tt.want {
			t.Errorf("get(%q) found = %v, want %v", tt.key, ok, tt.want)
		}
	}
	c.put("2", profile{name: "changed"})
	if got, _ := c.get("2"); got.name != "changed" {
		t.Errorf("get(2) = %+v, want the updated profile", got)
	}
	if got := c.len(); got != 3 {
		t.Errorf("len = %d, want 3", got)
	}
}

// writeCounter counts UpsertUser calls; nothing else is implemented.
type writeCounter struct {
	chat.Store
	n int
}

func (w *writeCounter) UpsertUser(context.Context, *chat.User) error { w.n++; return nil }

func TestDirectoryCacheIsBounded(t *testing.T) {
	w := &writeCounter{}
	d := NewDirectory(w)
	d.written = newLRU(2)
	for _, id := range []string{"a", "b", "a", "c", "a", "b"} {
		if err := d.Observe(t.Context(), &chat.User{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	// a, b written; a cached; c written (evicts b); a cached; b written again.
	if w.n != 4 {
		t.Errorf("writes = %d, want 4", w.n)
	}
	if got := d.written.len(); got != 2 {
		t.Errorf("cache size = %d, want 2", got)
	}
}
