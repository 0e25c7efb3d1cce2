package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/chat"
)

// DefaultRedisPrefix prefixes every key and channel of a Redis.
const DefaultRedisPrefix = "askgate:cluster:"

// Redis is the chat.Cluster of instances that share a Redis. A lease is a
// key per answer ({prefix}{<id>}:lease, hash-tagged by the answer so that
// its keys share a Redis Cluster slot) whose value names the instance and
// which expires unless renewed; a claim is a key set only if absent;
// cancel requests go through a pub/sub channel. Safe for concurrent use.
type Redis struct {
	rdb      redis.UniversalClient
	prefix   string
	instance string
}

var _ chat.Cluster = (*Redis)(nil)

// NewRedis returns the cluster on rdb, with keys and channels under
// prefix ("" means DefaultRedisPrefix). Each Redis value is one instance.
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	if prefix == "" {
		prefix = DefaultRedisPrefix
	}
	return &Redis{rdb: rdb, prefix: prefix, instance: rand.Text()}
}

// Instance is the id this instance writes into its leases.
func (r *Redis) Instance() string { return r.instance }

func (r *Redis) key(id, kind string) string { return r.prefix + "{" + id + "}:" + kind }

func (r *Redis) channel() string { return r.prefix + "cancel" }

// Renew implements chat.Cluster.
func (r *Redis) Renew(ctx context.Context, ids []string, ttl time.Duration) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.Set(ctx, r.key(id, "lease"), r.instance, ttl)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("cluster: renewing %d leases: %w", len(ids), err)
	}
	return nil
}

// release deletes a lease only when this instance holds it.
var release = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// Release implements chat.Cluster.
func (r *Redis) Release(ctx context.Context, id string) error {
	if err := release.Run(ctx, r.rdb, []string{r.key(id, "lease")}, r.instance).Err(); err != nil {
		return fmt.Errorf("cluster: releasing a lease: %w", err)
	}
	return nil
}

// Alive implements chat.Cluster.
func (r *Redis) Alive(ctx context.Context, ids []string) (map[string]bool, error) {
	out := make(map[string]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	cmds := make([]*redis.IntCmd, len(ids))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Exists(ctx, r.key(id, "lease"))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: reading %d leases: %w", len(ids), err)
	}
	for i, id := range ids {
		if cmds[i].Val() > 0 {
			out[id] = true
		}
	}
	return out, nil
}

// Claim implements chat.Cluster.
func (r *Redis) Claim(ctx context.Context, id string, ttl time.Duration) (bool, error) {
	ok, err := r.rdb.SetNX(ctx, r.key(id, "claim"), r.instance, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("cluster: claiming an answer: %w", err)
	}
	return ok, nil
}

// Cancel implements chat.Cluster.
func (r *Redis) Cancel(ctx context.Context, id string) error {
	if err := r.rdb.Publish(ctx, r.channel(), id).Err(); err != nil {
		return fmt.Errorf("cluster: publishing a cancel request: %w", err)
	}
	return nil
}

// Cancels implements chat.Cluster. It returns once the subscription is
// confirmed, so that no request published afterwards is missed; go-redis
// resubscribes after a lost connection (requests published meanwhile are
// missed: the lease check is the backstop).
func (r *Redis) Cancels(ctx context.Context) (<-chan string, error) {
	sub := r.rdb.Subscribe(ctx, r.channel())
	if _, err := sub.Receive(ctx); err != nil {
		sub.Close()
		return nil, fmt.Errorf("cluster: subscribing to cancel requests: %w", err)
	}
	out := make(chan string, 64)
	go func() {
		defer close(out)
		defer sub.Close()
		msgs := sub.Channel()
		for {
			select {
			case m, ok := <-msgs:
				if !ok {
					return
				}
				select {
				case out <- m.Payload:
				case <-ctx.Done():
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// Shared implements chat.Cluster.
func (*Redis) Shared() bool { return true }
