package answercache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of RedisOptions.
const (
	DefaultPrefix       = "askgate:answers:cache:" + Version + ":"
	DefaultRedisTimeout = 250 * time.Millisecond
)

// RedisOptions configure a Redis cache.
type RedisOptions struct {
	// TTL is how long an entry lives (the key's expiry). Required
	// (positive).
	TTL time.Duration
	// Prefix comes before every key; empty means DefaultPrefix. It
	// should end in the Version, as the default does.
	Prefix string
	// Timeout bounds one call to Redis, so that a slow Redis delays an
	// ask by that much at most (with a client whose
	// ContextTimeoutEnabled is set); zero means DefaultRedisTimeout.
	Timeout time.Duration
}

// Redis is a Cache in Redis, shared by every instance: one string key per
// entry, holding the entry as JSON, that expires after the TTL. It is safe
// for concurrent use.
type Redis struct {
	rdb  redis.UniversalClient
	opts RedisOptions
}

// NewRedis returns a cache on rdb.
func NewRedis(rdb redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultRedisTimeout
	}
	return &Redis{rdb: rdb, opts: opts}
}

// Get returns the entry under key, or nil.
func (r *Redis) Get(ctx context.Context, key string) (*Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	b, err := r.rdb.Get(ctx, r.opts.Prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("answer cache: %w", err)
	}
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("answer cache: entry %s: %w", key, err)
	}
	return &e, nil
}

// Put stores e under key for the TTL.
func (r *Redis) Put(ctx context.Context, key string, e *Entry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("answer cache: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	if err := r.rdb.Set(ctx, r.opts.Prefix+key, b, r.opts.TTL).Err(); err != nil {
		return fmt.Errorf("answer cache: %w", err)
	}
	return nil
}
