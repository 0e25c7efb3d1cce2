// Package cluster provides the chat.Cluster implementations: Local for a
// gateway that runs alone, and Redis for several instances that share a
// store and a Redis.
package cluster

import (
	"context"
	"sync"
	"time"

	"askgate/internal/chat"
)

// Local is the chat.Cluster of a gateway that runs alone: leases and
// claims live in memory, and a cancel request reaches this process's own
// Cancels channels. The zero value is ready to use; it is safe for
// concurrent use.
type Local struct {
	mu     sync.Mutex
	leases map[string]time.Time // expiry by answer id
	claims map[string]time.Time
	subs   map[chan string]struct{}
}

var _ chat.Cluster = (*Local)(nil)

// Renew implements chat.Cluster.
func (l *Local) Renew(_ context.Context, ids []string, ttl time.Duration) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.leases == nil {
		l.leases = map[string]time.Time{}
	}
	until := time.Now().Add(ttl)
	for _, id := range ids {
		l.leases[id] = until
	}
	return nil
}

// Release implements chat.Cluster.
func (l *Local) Release(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.leases, id)
	return nil
}

// Alive implements chat.Cluster.
func (l *Local) Alive(_ context.Context, ids []string) (map[string]bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		if until, ok := l.leases[id]; ok && now.Before(until) {
			out[id] = true
		}
	}
	return out, nil
}

// Claim implements chat.Cluster.
func (l *Local) Claim(_ context.Context, id string, ttl time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if until, ok := l.claims[id]; ok && now.Before(until) {
		return false, nil
	}
	if l.claims == nil {
		l.claims = map[string]time.Time{}
	}
	for k, until := range l.claims { // keep the map small
		if !now.Before(until) {
			delete(l.claims, k)
		}
	}
	l.claims[id] = now.Add(ttl)
	return true, nil
}

// Cancel implements chat.Cluster.
func (l *Local) Cancel(_ context.Context, id string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ch := range l.subs {
		select {
		case ch <- id:
		default: // a subscriber that does not keep up misses it; the lease check catches up
		}
	}
	return nil
}

// Cancels implements chat.Cluster.
func (l *Local) Cancels(ctx context.Context) (<-chan string, error) {
	ch := make(chan string, 64)
	l.mu.Lock()
	if l.subs == nil {
		l.subs = map[chan string]struct{}{}
	}
	l.subs[ch] = struct{}{}
	l.mu.Unlock()
	go func() {
		<-ctx.Done()
		l.mu.Lock()
		delete(l.subs, ch)
		close(ch)
		l.mu.Unlock()
	}()
	return ch, nil
}

// Shared implements chat.Cluster: a Local serves one instance.
func (*Local) Shared() bool { return false }
