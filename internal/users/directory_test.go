package users_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"askgate/internal/chat"
	"askgate/internal/store/sqlite"
	"askgate/internal/users"
)

// newStore returns the real embedded store on a fresh database file.
func newStore(t *testing.T) chat.Store {
	t.Helper()
	s, err := sqlite.Open(filepath.Join(t.TempDir(), "askgate.db"))
	if err != nil {
		t.Fatalf("sqlite.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

// countingStore counts the writes and reads that reach a chat.Store, and
// can make them slow or failing. Its other methods are the wrapped store's.
type countingStore struct {
	chat.Store
	writes atomic.Int64
	reads  atomic.Int64
	delay  time.Duration
	fail   atomic.Bool
}

var errStoreDown = errors.New("store: connection refused")

func (s *countingStore) UpsertUser(ctx context.Context, u *chat.User) error {
	s.writes.Add(1)
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	if s.fail.Load() {
		return errStoreDown
	}
	return s.Store.UpsertUser(ctx, u)
}

func (s *countingStore) UsersByID(ctx context.Context, ids []string) ([]*chat.User, error) {
	s.reads.Add(1)
	if s.fail.Load() {
		return nil, errStoreDown
	}
	return s.Store.UsersByID(ctx, ids)
}

func TestDirectoryObserveWritesOnlyChanges(t *testing.T) {
	store := &countingStore{Store: newStore(t)}
	d := users.NewDirectory(store)
	ctx := t.Context()

	steps := []struct {
		name       string
		user       chat.User
		wantWrites int64
	}{
		{"first sight", chat.User{ID: "u1", Name: "Ada", Email: "ada@example.com"}, 1},
		{"same claims", chat.User{ID: "u1", Name: "Ada", Email: "ada@example.com"}, 1},
		{"same claims again", chat.User{ID: "u1", Name: "Ada", Email: "ada@example.com"}, 1},
		{"another user", chat.User{ID: "u2", Name: "Grace"}, 2},
		{"name changes", chat.User{ID: "u1", Name: "Ada Lovelace", Email: "ada@example.com"}, 3},
		{"changed name again", chat.User{ID: "u1", Name: "Ada Lovelace", Email: "ada@example.com"}, 3},
		{"email changes", chat.User{ID: "u1", Name: "Ada Lovelace", Email: "ada@lovelace.example"}, 4},
		{"back to the old name", chat.User{ID: "u1", Name: "Ada", Email: "ada@lovelace.example"}, 5},
		{"second user unchanged", chat.User{ID: "u2", Name: "Grace"}, 5},
	}
	for _, s := range steps {
		if err := d.Observe(ctx, &s.user); err != nil {
			t.Fatalf("%s: Observe: %v", s.name, err)
		}
		if got := store.writes.Load(); got != s.wantWrites {
			t.Errorf("%s: writes = %d, want %d", s.name, got, s.wantWrites)
		}
	}

	got, err := d.UsersByID(ctx, []string{"u1", "u2", "u3", "u1"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]chat.User{
		"u1": {ID: "u1", Name: "Ada", Email: "ada@lovelace.example"},
		"u2": {ID: "u2", Name: "Grace"},
	}
	if len(got) != len(want) {
		t.Fatalf("UsersByID = %v, want %v", got, want)
	}
	for _, u := range got {
		if *u != want[u.ID] {
			t.Errorf("user %s = %+v, want %+v", u.ID, *u, want[u.ID])
		}
	}
}

func TestDirectoryObserveNoStampede(t *testing.T) {
	store := &countingStore{Store: newStore(t), delay: 50 * time.Millisecond}
	d := users.NewDirectory(store)

	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			if err := d.Observe(t.Context(), &chat.User{ID: "u1", Name: "Ada"}); err != nil {
				t.Errorf("Observe: %v", err)
			}
		})
	}
	wg.Wait()
	if got := store.writes.Load(); got != 1 {
		t.Errorf("writes = %d for 100 concurrent observations of a new user, want 1", got)
	}
}

func TestDirectoryObserveConcurrentChanges(t *testing.T) {
	store := &countingStore{Store: newStore(t), delay: 5 * time.Millisecond}
	d := users.NewDirectory(store)

	// Two sets of claims for one user race; each caller must see its own
	// claims written, and the store must end with one of them.
	names := []string{"Old", "New"}
	var wg sync.WaitGroup
	for i := range 40 {
		wg.Go(func() {
			if err := d.Observe(t.Context(), &chat.User{ID: "u1", Name: names[i%2]}); err != nil {
				t.Errorf("Observe: %v", err)
			}
		})
	}
	wg.Wait()
	got, err := d.UsersByID(t.Context(), []string{"u1"})
	if err != nil || len(got) != 1 || !slices.Contains(names, got[0].Name) {
		t.Fatalf("UsersByID = %v, %v", got, err)
	}
	// The cache agrees with the store: observing the stored claims again
	// writes nothing.
	before := store.writes.Load()
	if err := d.Observe(t.Context(), &chat.User{ID: "u1", Name: got[0].Name}); err != nil {
		t.Fatal(err)
	}
	if after := store.writes.Load(); after != before {
		t.Errorf("writes went from %d to %d observing the stored claims", before, after)
	}
}

func TestDirectoryObserveFailureIsRetried(t *testing.T) {
	store := &countingStore{Store: newStore(t)}
	d := users.NewDirectory(store)
	u := &chat.User{ID: "u1", Name: "Ada"}

	store.fail.Store(true)
	if err := d.Observe(t.Context(), u); !errors.Is(err, errStoreDown) {
		t.Fatalf("Observe with the store down = %v, want %v", err, errStoreDown)
	}
	store.fail.Store(false)
	if err := d.Observe(t.Context(), u); err != nil {
		t.Fatalf("Observe after recovery: %v", err)
	}
	if got := store.writes.Load(); got != 2 {
		t.Errorf("writes = %d, want 2: a failed write is not remembered", got)
	}
}

func TestDirectoryObserveSurvivesCancelledCaller(t *testing.T) {
	store := &countingStore{Store: newStore(t), delay: 50 * time.Millisecond}
	d := users.NewDirectory(store)

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Observe(ctx, &chat.User{ID: "u1", Name: "Ada"}) }()
	time.Sleep(10 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Observe = %v, want %v", err, context.Canceled)
	}
	// The write started before the cancellation completes regardless.
	if err := d.Observe(t.Context(), &chat.User{ID: "u1", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if got := store.writes.Load(); got != 1 {
		t.Errorf("writes = %d, want 1", got)
	}
}

func TestDirectoryObserveRefusesNoID(t *testing.T) {
	d := users.NewDirectory(&countingStore{Store: newStore(t)})
	for _, u := range []*chat.User{nil, {Name: "nobody"}} {
		if err := d.Observe(t.Context(), u); err == nil {
			t.Errorf("Observe(%v) succeeded, want an error", u)
		}
	}
}

func TestDirectoryUsersByID(t *testing.T) {
	store := &countingStore{Store: newStore(t)}
	d := users.NewDirectory(store)
	if got, err := d.UsersByID(t.Context(), nil); err != nil || len(got) != 0 || store.reads.Load() != 0 {
		t.Errorf("UsersByID(nil) = %v, %v with %d reads; want nothing and no read", got, err, store.reads.Load())
	}

	store.fail.Store(true)
	_, err := d.UsersByID(t.Context(), []string{"u1"})
	if got := chat.ErrorCode(err); got != chat.CodeUpstreamUnavailable {
		t.Errorf("code = %s, want %s", got, chat.CodeUpstreamUnavailable)
	}
	if msg := chat.ErrorMessage(err); msg == errStoreDown.Error() {
		t.Errorf("message %q leaks the store's error", msg)
	}
}

var _ chat.UserDirectory = (*users.Directory)(nil)
var _ chat.UserDirectory = (*users.Client)(nil)
