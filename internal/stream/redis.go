package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"askgate/internal/chat"
)

// Defaults of RedisOptions, beyond those shared with MemoryOptions.
const (
	DefaultRedisPrefix      = "askgate:stream:"
	DefaultMaxLen           = DefaultMaxLogBytes / eventOverhead
	DefaultBlockTimeout     = 5 * time.Second
	DefaultMaxBlockingConns = 64
	DefaultPollInterval     = 10 * time.Millisecond
	DefaultHubBuffer        = 4096
)

// readBatch is how many entries one XRANGE or XREAD returns at most.
const readBatch = 512

// ErrRedisClosed is returned by the calls of a Redis, and by the Next of
// its readers waiting for the live tail, once the Redis is closed.
var ErrRedisClosed = errors.New("stream: Redis token log is closed")

// RedisOptions configures a Redis. The zero value of every field selects
// its default.
type RedisOptions struct {
	// Prefix starts every key (default DefaultRedisPrefix). Instances that
	// share logs use the same prefix. It should contain no '{': the
	// answer id in braces that follows it is the hash tag that keeps an
	// answer's keys in one slot of a Redis Cluster.
	Prefix string

	// Retention is how long a finished log stays readable (default
	// DefaultRetention): Finish sets it as the TTL of the answer's keys.
	// Unlike Memory, a reader still reading a log when it expires gets
	// ErrLogDropped for what it has not read.
	Retention time.Duration

	// MaxIdle is the TTL of an unfinished log, renewed by every Append
	// (default DefaultMaxIdle): a log whose writer died expires MaxIdle
	// after its last Append, and its readers then get ErrLogDropped.
	MaxIdle time.Duration

	// MaxMerge bounds, in bytes of text, the event a lagging reader gets
	// when consecutive deltas are merged (default DefaultMaxMerge). A
	// single delta larger than MaxMerge is returned alone.
	MaxMerge int

	// MaxLogBytes bounds a log as in MemoryOptions: the bytes of its
	// deltas plus 16 bytes per event (default DefaultMaxLogBytes).
	MaxLogBytes int

	// MaxLen bounds the number of deltas of a log (default
	// DefaultMaxLen). An Append beyond MaxLen or MaxLogBytes returns
	// ErrLogFull; the log is never trimmed, so readers never miss events.
	MaxLen int

	// BlockTimeout is how long one blocking read of a hub waits before it
	// checks that its log still exists (default DefaultBlockTimeout). It
	// bounds how late readers of an abandoned log learn that it expired.
	BlockTimeout time.Duration

	// MaxBlockingConns bounds the connections this instance holds in
	// blocking reads, one per answer read live here (default
	// DefaultMaxBlockingConns). Hubs beyond it poll with XRANGE every
	// PollInterval until a connection is free: later, never a gap.
	MaxBlockingConns int

	// PollInterval is the period of the hubs that poll (default
	// DefaultPollInterval).
	PollInterval time.Duration

	// HubBuffer is how many recent events a hub keeps for its readers
	// (default DefaultHubBuffer). A reader further behind reads from
	// Redis with XRANGE until it catches up.
	HubBuffer int
}

// RedisStats describes the live reading of a Redis at one moment.
type RedisStats struct {
	// Hubs is the number of answers read live on this instance.
	Hubs int
	// BlockingConns is the number of connections held by hubs in
	// blocking reads (at most MaxBlockingConns).
	BlockingConns int
}

// Redis is the chat.TokenLog on Redis streams, shared by every gateway
// instance that uses the same Redis and prefix.
//
// Each answer has two keys with the answer id as hash tag, so that they
// live in one slot of a Redis Cluster: PREFIX{id}:log, a stream whose
// entry "<seq>-0" holds the delta of event seq (field d) or marks the
// terminal event (field x), and PREFIX{id}:meta, a hash with the state
// (s: o open, d done), the last seq (n) and the bytes counted against
// MaxLogBytes (b). Open, Append and Finish are one Lua script each, so
// one atomic round trip. Unfinished logs expire MaxIdle after their last
// Append; finished ones Retention after Finish.
//
// Readers replay with XRANGE. For the live tail, all the readers of one
// answer on one instance share a hub: one goroutine that reads the
// answer's stream with XREAD BLOCK on a connection of its own, keeps the
// last HubBuffer events and wakes the readers, which take their events
// from it (merged when they lag). A hub starts when the first reader
// needs the live tail and stops when its last reader closes or the log
// ends. Blocking connections come from a client NewRedis derives from
// the given one (same options, PoolSize MaxBlockingConns) and are at
// most MaxBlockingConns; a stopping hub is woken with CLIENT UNBLOCK, so
// it stops at once. The number of Redis connections of an instance is
// thus bounded by the given client's pool plus MaxBlockingConns, however
// many readers it serves.
//
// A Redis must be created with NewRedis and closed with Close. It is safe
// for concurrent use.
type Redis struct {
	client   redis.UniversalClient
	blocking redis.UniversalClient // for hubs' connections; owned when derived
	derived  bool
	opts     RedisOptions

	sem     chan struct{} // a token per blocking connection in use
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	hubs    map[string]*hub
	closed  bool
	closeMu sync.Once
}

var _ chat.TokenLog = (*Redis)(nil)

// NewRedis returns a Redis on client configured by opts. client stays the
// caller's: Close does not close it. For a *redis.Client or a
// *redis.ClusterClient, NewRedis derives from it the client of the
// blocking reads; for another kind of client, hubs block on client's own
// pool and stop only at the end of their current BlockTimeout.
func NewRedis(client redis.UniversalClient, opts RedisOptions) *Redis {
	if opts.Prefix == "" {
		opts.Prefix = DefaultRedisPrefix
	}
	if opts.Retention <= 0 {
		opts.Retention = DefaultRetention
	}
	if opts.MaxIdle <= 0 {
		opts.MaxIdle = DefaultMaxIdle
	}
	if opts.MaxMerge <= 0 {
		opts.MaxMerge = DefaultMaxMerge
	}
	if opts.MaxLogBytes <= 0 {
		opts.MaxLogBytes = DefaultMaxLogBytes
	}
	if opts.MaxLen <= 0 {
		opts.MaxLen = DefaultMaxLen
	}
	if opts.BlockTimeout <= 0 {
		opts.BlockTimeout = DefaultBlockTimeout
	}
	// Redis counts BLOCK and PEXPIRE in milliseconds: 0 would block for
	// ever, or delete at once.
	opts.BlockTimeout = max(opts.BlockTimeout, time.Millisecond)
	opts.Retention = max(opts.Retention, time.Millisecond)
	opts.MaxIdle = max(opts.MaxIdle, time.Millisecond)
	if opts.MaxBlockingConns <= 0 {
		opts.MaxBlockingConns = DefaultMaxBlockingConns
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.HubBuffer <= 0 {
		opts.HubBuffer = DefaultHubBuffer
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Redis{
		client:   client,
		blocking: client,
		opts:     opts,
		sem:      make(chan struct{}, opts.MaxBlockingConns),
		ctx:      ctx,
		cancel:   cancel,
		hubs:     make(map[string]*hub),
	}
	// The blocking client gets no retries: a hub whose connection fails
	// reports the error (its readers' next Next starts a new hub), and a
	// retried read would run on a connection CLIENT UNBLOCK does not know.
	switch c := client.(type) {
	case *redis.Client:
		o := *c.Options()
		if o.MaintNotificationsConfig != nil {
			mc := *o.MaintNotificationsConfig
			o.MaintNotificationsConfig = &mc
		}
		o.PoolSize, o.MinIdleConns, o.MaxIdleConns = opts.MaxBlockingConns, 0, opts.MaxBlockingConns
		o.MaxRetries = -1
		r.blocking, r.derived = redis.NewClient(&o), true
	case *redis.ClusterClient:
		o := *c.Options()
		if o.MaintNotificationsConfig != nil {
			mc := *o.MaintNotificationsConfig
			o.MaintNotificationsConfig = &mc
		}
		o.PoolSize, o.MinIdleConns, o.MaxIdleConns = opts.MaxBlockingConns, 0, opts.MaxBlockingConns
		o.MaxRetries = -1
		r.blocking, r.derived = redis.NewClusterClient(&o), true
	}
	return r
}

// Close stops every hub and waits for their goroutines, then closes the
// client NewRedis derived for blocking reads. Readers waiting for the
// live tail get ErrRedisClosed; every other call keeps working on the
// given client. Close is safe to call more than once and returns the
// error of closing the derived client.
func (r *Redis) Close() error {
	var err error
	r.closeMu.Do(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.cancel()
		r.wg.Wait()
		if r.derived {
			err = r.blocking.Close()
		}
	})
	return err
}

// Stats returns the live reading of r at this moment.
func (r *Redis) Stats() RedisStats {
	r.mu.Lock()
	defer r.mu.Unlock()
	return RedisStats{Hubs: len(r.hubs), BlockingConns: len(r.sem)}
}

// logKey and metaKey name the keys of answerID.
func (r *Redis) logKey(answerID string) string {
	return r.opts.Prefix + "{" + answerID + "}:log"
}

func (r *Redis) metaKey(answerID string) string {
	return r.opts.Prefix + "{" + answerID + "}:meta"
}

// Results of the scripts below, beyond a seq.
const (
	scriptClosed = -1
	scriptFull   = -2
)

// openScript creates the meta hash of an answer unless it exists.
// KEYS: meta, log. ARGV: TTL in ms.
var openScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 's', 'o', 'n', 0, 'b', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
`)

// appendScript adds a delta to an open log and renews the TTL of its keys.
// KEYS: meta, log. ARGV: delta, TTL in ms, max len, max bytes, overhead.
var appendScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 's', 'n', 'b')
if m[1] ~= 'o' then return -1 end
local n = tonumber(m[2])
local b = tonumber(m[3]) + string.len(ARGV[1]) + tonumber(ARGV[5])
if n >= tonumber(ARGV[3]) or b > tonumber(ARGV[4]) then return -2 end
n = n + 1
redis.call('XADD', KEYS[2], n .. '-0', 'd', ARGV[1])
redis.call('HSET', KEYS[1], 'n', n, 'b', b)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return n
`)

// finishScript adds the terminal entry to an open log, marks it done and
// sets the retention as the TTL of its keys.
// KEYS: meta, log. ARGV: TTL in ms.
var finishScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 's', 'n')
if m[1] ~= 'o' then return -1 end
local n = tonumber(m[2]) + 1
redis.call('XADD', KEYS[2], n .. '-0', 'x', '1')
redis.call('HSET', KEYS[1], 's', 'd', 'n', n)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return n
`)

// readScript returns 0 when the log is missing, else {state, last seq,
// entries after seq ARGV[1], at most ARGV[2] of them}.
// KEYS: meta, log.
var readScript = redis.NewScript(`
local m = redis.call('HMGET', KEYS[1], 's', 'n')
if not m[1] then return 0 end
local n = tonumber(m[2])
local es = {}
if n > tonumber(ARGV[1]) then
	es = redis.call('XRANGE', KEYS[2], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', ARGV[2])
end
return {m[1], n, es}
`)

// Open creates the empty log of answerID. It returns chat.ErrLogExists
// when the answer has a log, finished or not, that has not expired.
func (r *Redis) Open(ctx context.Context, answerID string) error {
	keys := []string{r.metaKey(answerID), r.logKey(answerID)}
	n, err := openScript.Run(ctx, r.client, keys, r.opts.MaxIdle.Milliseconds()).Int()
	if err != nil {
		return fmt.Errorf("stream: open %q: %w", answerID, err)
	}
	if n == 0 {
		return chat.ErrLogExists
	}
	return nil
}

// Append adds delta to the open log of answerID and returns its seq, in
// one round trip. It returns chat.ErrLogClosed when the log is missing or
// finished, ErrLogFull when the log would exceed MaxLen or MaxLogBytes,
// and an error for an empty delta. It never waits for readers.
func (r *Redis) Append(ctx context.Context, answerID, delta string) (int, error) {
	if delta == "" {
		return 0, errEmptyDelta
	}
	keys := []string{r.metaKey(answerID), r.logKey(answerID)}
	n, err := appendScript.Run(ctx, r.client, keys, delta, r.opts.MaxIdle.Milliseconds(),
		r.opts.MaxLen, r.opts.MaxLogBytes, eventOverhead).Int()
	switch {
	case err != nil:
		return 0, fmt.Errorf("stream: append to %q: %w", answerID, err)
	case n == scriptClosed:
		return 0, chat.ErrLogClosed
	case n == scriptFull:
		return 0, ErrLogFull
	}
	return n, nil
}

// Finish ends the log of answerID with its terminal event and returns that
// event's seq. The log stays readable for Retention. It returns
// chat.ErrLogClosed when the log is missing or finished.
func (r *Redis) Finish(ctx context.Context, answerID string) (int, error) {
	keys := []string{r.metaKey(answerID), r.logKey(answerID)}
	n, err := finishScript.Run(ctx, r.client, keys, r.opts.Retention.Milliseconds()).Int()
	switch {
	case err != nil:
		return 0, fmt.Errorf("stream: finish %q: %w", answerID, err)
	case n == scriptClosed:
		return 0, chat.ErrLogClosed
	}
	return n, nil
}

// Read returns a reader of the events of answerID after seq after; a
// negative after reads from the start. It returns chat.ErrLogNotFound when
// the answer has no log or its log has expired. It fetches the first
// events of the replay in the same round trip as it checks the log.
func (r *Redis) Read(ctx context.Context, answerID string, after int) (chat.TokenReader, error) {
	after = max(after, 0)
	keys := []string{r.metaKey(answerID), r.logKey(answerID)}
	res, err := readScript.Run(ctx, r.client, keys, after, readBatch).Result()
	if err != nil {
		return nil, fmt.Errorf("stream: read %q: %w", answerID, err)
	}
	rd := &redisReader{r: r, id: answerID, pos: after}
	if n, ok := res.(int64); ok && n == 0 {
		return nil, chat.ErrLogNotFound
	}
	arr, ok := res.([]any)
	if !ok || len(arr) != 3 {
		return nil, fmt.Errorf("stream: read %q: unexpected reply %T", answerID, res)
	}
	state, _ := arr[0].(string)
	last, _ := arr[1].(int64)
	rd.known = int(last)
	if state == "d" {
		rd.end = int(last)
	}
	if rd.pending, err = parseRawEntries(arr[2]); err != nil {
		return nil, fmt.Errorf("stream: read %q: %w", answerID, err)
	}
	return rd, nil
}

// entry is one entry of an answer's stream.
type entry struct {
	seq   int
	delta string
	done  bool
}

// parseSeq returns the seq of a stream entry id "<seq>-0".
func parseSeq(id string) (int, error) {
	ms, _, _ := strings.Cut(id, "-")
	seq, err := strconv.Atoi(ms)
	if err != nil {
		return 0, fmt.Errorf("bad entry id %q", id)
	}
	return seq, nil
}

// parseMessages converts entries as go-redis parses them.
func parseMessages(msgs []redis.XMessage) ([]entry, error) {
	es := make([]entry, len(msgs))
	for i, m := range msgs {
		seq, err := parseSeq(m.ID)
		if err != nil {
			return nil, err
		}
		es[i].seq = seq
		if _, ok := m.Values["x"]; ok {
			es[i].done = true
		} else {
			es[i].delta, _ = m.Values["d"].(string)
		}
	}
	return es, nil
}

// parseRawEntries converts an XRANGE reply as a script returns it.
func parseRawEntries(v any) ([]entry, error) {
	raw, _ := v.([]any)
	es := make([]entry, 0, len(raw))
	for _, item := range raw {
		pair, ok := item.([]any)
		if !ok || len(pair) != 2 {
			return nil, fmt.Errorf("unexpected stream entry %v", item)
		}
		id, _ := pair[0].(string)
		seq, err := parseSeq(id)
		if err != nil {
			return nil, err
		}
		e := entry{seq: seq}
		fields, _ := pair[1].([]any)
		for j := 0; j+1 < len(fields); j += 2 {
			switch fields[j] {
			case "d":
				e.delta, _ = fields[j+1].(string)
			case "x":
				e.done = true
			}
		}
		es = append(es, e)
	}
	return es, nil
}

// merge returns the event of the entries at the head of es, consecutive
// deltas merged up to maxMerge bytes, and how many entries it holds. The
// terminal entry is returned alone. es is not empty.
func merge(es []entry, maxMerge int) (chat.TokenEvent, int) {
	if es[0].done {
		return chat.TokenEvent{Seq: es[0].seq, Done: true}, 1
	}
	n, size := 1, len(es[0].delta)
	for n < len(es) && !es[n].done && size+len(es[n].delta) <= maxMerge {
		size += len(es[n].delta)
		n++
	}
	if n == 1 {
		return chat.TokenEvent{Seq: es[0].seq, Delta: es[0].delta}, 1
	}
	var b strings.Builder
	b.Grow(size)
	for _, e := range es[:n] {
		b.WriteString(e.delta)
	}
	return chat.TokenEvent{Seq: es[n-1].seq, Delta: b.String()}, n
}

// redisReader reads one answer: from the entries it fetched with XRANGE,
// then from its hub.
type redisReader struct {
	r       *Redis
	id      string
	pos     int     // seq of the last event returned
	known   int     // a seq that exists in Redis: entries up to it can be fetched
	end     int     // seq of the terminal event, once known
	pending []entry // fetched after pos, not yet returned
	hub     *hub    // attached for the live tail, or nil
	closed  bool
}

// Next implements chat.TokenReader.
func (rd *redisReader) Next(ctx context.Context) (chat.TokenEvent, error) {
	if rd.closed {
		return chat.TokenEvent{}, ErrReaderClosed
	}
	if err := ctx.Err(); err != nil {
		return chat.TokenEvent{}, err
	}
	for {
		if len(rd.pending) > 0 {
			ev, n := merge(rd.pending, rd.r.opts.MaxMerge)
			rd.pending = rd.pending[n:]
			return rd.advance(ev), nil
		}
		if rd.end > 0 && rd.pos >= rd.end {
			rd.detach()
			return chat.TokenEvent{}, io.EOF
		}
		if rd.pos < rd.known {
			if err := rd.fetch(ctx); err != nil {
				return chat.TokenEvent{}, err
			}
			continue
		}
		if rd.hub == nil {
			h, err := rd.r.attach(rd.id, rd.known)
			if err != nil {
				return chat.TokenEvent{}, err
			}
			rd.hub = h
		}
		ev, ok, wake, err := rd.fromHub()
		if err != nil {
			rd.detach()
			return chat.TokenEvent{}, err
		}
		if ok {
			return ev, nil
		}
		if wake == nil {
			continue // behind the hub's buffer: fetch from Redis
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return chat.TokenEvent{}, ctx.Err()
		}
	}
}

// advance moves the reader past ev and returns it.
func (rd *redisReader) advance(ev chat.TokenEvent) chat.TokenEvent {
	rd.pos = ev.Seq
	rd.known = max(rd.known, ev.Seq)
	if ev.Done {
		rd.end = ev.Seq
	}
	return ev
}

// fetch reads the entries after pos from Redis into pending.
func (rd *redisReader) fetch(ctx context.Context) error {
	start := strconv.Itoa(rd.pos+1) + "-0"
	msgs, err := rd.r.client.XRangeN(ctx, rd.r.logKey(rd.id), start, "+", readBatch).Result()
	if err != nil {
		return fmt.Errorf("stream: read %q: %w", rd.id, err)
	}
	if len(msgs) == 0 {
		// Entries up to known existed: the log has expired.
		return ErrLogDropped
	}
	es, err := parseMessages(msgs)
	if err != nil {
		return fmt.Errorf("stream: read %q: %w", rd.id, err)
	}
	rd.pending = es
	rd.known = max(rd.known, es[len(es)-1].seq)
	return nil
}

// fromHub returns the next event from the reader's hub (ok), or the
// channel to wait on for more, or neither when the reader is behind the
// hub's buffer and must fetch from Redis (known is then updated).
func (rd *redisReader) fromHub() (ev chat.TokenEvent, ok bool, wake <-chan struct{}, err error) {
	h := rd.hub
	h.mu.RLock()
	buf, base, last := h.buf, h.base, h.base+len(h.buf)
	done, dropped, herr := h.done, h.dropped, h.err
	if rd.pos >= last && !done && !dropped && herr == nil {
		if !h.waiters.Load() {
			h.waiters.Store(true)
		}
		wake = h.wake
	}
	h.mu.RUnlock()

	switch {
	case rd.pos < base:
		rd.known = max(rd.known, base)
		return chat.TokenEvent{}, false, nil, nil
	case rd.pos < last:
		// The elements of buf never change: read them unlocked.
		ev, _ := merge(buf[rd.pos-base:], rd.r.opts.MaxMerge)
		return rd.advance(ev), true, nil, nil
	case done:
		rd.end = last
		return chat.TokenEvent{}, false, nil, nil
	case dropped:
		return chat.TokenEvent{}, false, nil, ErrLogDropped
	case herr != nil:
		return chat.TokenEvent{}, false, nil, herr
	}
	return chat.TokenEvent{}, false, wake, nil
}

// detach releases the reader's hub, if any.
func (rd *redisReader) detach() {
	if rd.hub != nil {
		rd.r.detach(rd.hub)
		rd.hub = nil
	}
}

// Close implements chat.TokenReader.
func (rd *redisReader) Close() error {
	if !rd.closed {
		rd.closed = true
		rd.detach()
		rd.pending = nil
	}
	return nil
}

// hub reads one answer's stream live for the readers of this instance.
type hub struct {
	r      *Redis
	id     string
	key    string
	ctx    context.Context
	cancel context.CancelFunc
	exited chan struct{}

	refs     int           // readers attached; guarded by r.mu
	clientID atomic.Int64  // of the connection in a blocking read, or 0
	node     redis.Cmdable // where to send CLIENT UNBLOCK; set before clientID

	mu      sync.RWMutex
	buf     []entry // buf[i] has seq base+1+i; elements never change once added
	base    int
	done    bool  // the terminal entry is the last of buf
	dropped bool  // the log expired unfinished
	err     error // the hub failed or was stopped

	// wake is closed, and replaced, when the hub adds entries or ends
	// after a reader found nothing to read and set waiters.
	wake    chan struct{}
	waiters atomic.Bool
}

// attach returns the hub of answerID with one more reader, starting one
// that reads after seq start if there is none.
func (r *Redis) attach(answerID string, start int) (*hub, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrRedisClosed
	}
	if h := r.hubs[answerID]; h != nil {
		h.refs++
		return h, nil
	}
	ctx, cancel := context.WithCancel(r.ctx)
	h := &hub{
		r:      r,
		id:     answerID,
		key:    r.logKey(answerID),
		ctx:    ctx,
		cancel: cancel,
		exited: make(chan struct{}),
		refs:   1,
		base:   start,
		wake:   make(chan struct{}),
	}
	r.hubs[answerID] = h
	r.wg.Add(2)
	go h.run()
	go h.unblockOnStop()
	return h, nil
}

// detach removes a reader from h and stops h when it was the last.
func (r *Redis) detach(h *hub) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h.refs--
	if h.refs == 0 {
		if r.hubs[h.id] == h {
			delete(r.hubs, h.id)
		}
		h.cancel()
	}
}

// run reads the stream after base until the log ends, the hub is stopped
// or Redis fails, and publishes what it reads.
func (h *hub) run() {
	r := h.r
	defer r.wg.Done()
	defer close(h.exited)
	var conn blockingConn
	defer func() {
		if conn != nil {
			h.clientID.Store(0)
			conn.Close()
			<-r.sem
		}
	}()
	last := h.base
	lastCheck := time.Now()
	for {
		if h.ctx.Err() != nil {
			h.end(ErrRedisClosed, false)
			return
		}
		if conn == nil {
			select {
			case r.sem <- struct{}{}:
				c, err := h.connect()
				if err != nil {
					<-r.sem
					h.end(fmt.Errorf("stream: read %q live: %w", h.id, err), false)
					return
				}
				conn = c
			default:
			}
		}
		var msgs []redis.XMessage
		var err error
		if conn != nil {
			var streams []redis.XStream
			streams, err = conn.XRead(h.ctx, &redis.XReadArgs{
				Streams: []string{h.key, strconv.Itoa(last) + "-0"},
				Count:   readBatch,
				Block:   r.opts.BlockTimeout,
			}).Result()
			if len(streams) > 0 {
				msgs = streams[0].Messages
			}
		} else {
			msgs, err = r.client.XRangeN(h.ctx, h.key, strconv.Itoa(last+1)+"-0", "+", readBatch).Result()
		}
		if h.ctx.Err() != nil {
			continue // stopped
		}
		if err != nil && err != redis.Nil {
			h.end(fmt.Errorf("stream: read %q live: %w", h.id, err), false)
			return
		}
		if len(msgs) == 0 {
			if conn != nil || time.Since(lastCheck) >= r.opts.BlockTimeout {
				lastCheck = time.Now()
				n, err := r.client.Exists(h.ctx, r.metaKey(h.id)).Result()
				if h.ctx.Err() != nil {
					continue
				}
				if err != nil {
					h.end(fmt.Errorf("stream: read %q live: %w", h.id, err), false)
					return
				}
				if n == 0 {
					h.end(nil, true)
					return
				}
			}
			if conn == nil {
				select {
				case <-time.After(r.opts.PollInterval):
				case <-h.ctx.Done():
				}
			}
			continue
		}
		es, err := parseMessages(msgs)
		if err != nil {
			h.end(fmt.Errorf("stream: read %q live: %w", h.id, err), false)
			return
		}
		last = es[len(es)-1].seq
		if h.publish(es) {
			h.end(nil, false)
			return
		}
	}
}

// blockingConn is the connection a hub reads on.
type blockingConn interface {
	XRead(ctx context.Context, a *redis.XReadArgs) *redis.XStreamSliceCmd
	Close() error
}

// sharedConn blocks on a client's own pool, for clients NewRedis cannot
// take a connection of.
type sharedConn struct{ redis.UniversalClient }

func (sharedConn) Close() error { return nil }

// connect returns a connection of its own for h's blocking reads and
// notes its client id, for CLIENT UNBLOCK.
func (h *hub) connect() (blockingConn, error) {
	// CLIENT UNBLOCK goes through the given client, whose pool is not
	// taken by blocking reads, to the node of the connection.
	var conn *redis.Conn
	switch c := h.r.blocking.(type) {
	case *redis.Client:
		conn = c.Conn()
		h.node = h.r.client
	case *redis.ClusterClient:
		node, err := c.MasterForKey(h.ctx, h.key)
		if err != nil {
			return nil, err
		}
		conn = node.Conn()
		if h.node, err = h.r.client.(*redis.ClusterClient).MasterForKey(h.ctx, h.key); err != nil {
			conn.Close()
			return nil, err
		}
	default:
		return sharedConn{h.r.blocking}, nil
	}
	id, err := conn.ClientID(h.ctx).Result()
	if err != nil {
		conn.Close()
		return nil, err
	}
	h.clientID.Store(id)
	return conn, nil
}

// unblockOnStop wakes the hub's blocking read when the hub is stopped, with
// CLIENT UNBLOCK, until run has returned.
func (h *hub) unblockOnStop() {
	defer h.r.wg.Done()
	select {
	case <-h.exited:
		return
	case <-h.ctx.Done():
	}
	delay := time.Millisecond
	for {
		if id := h.clientID.Load(); id != 0 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			h.node.ClientUnblock(ctx, id)
			cancel()
		}
		select {
		case <-h.exited:
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// publish adds es, which follow the buffer, trims the buffer and wakes the
// readers. It reports whether the log has ended.
func (h *hub) publish(es []entry) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.buf = append(h.buf, es...)
	if limit := h.r.opts.HubBuffer; len(h.buf) > 2*limit {
		cut := len(h.buf) - limit
		h.base += cut
		h.buf = append([]entry(nil), h.buf[cut:]...)
	}
	h.done = h.buf[len(h.buf)-1].done
	h.broadcastLocked()
	return h.done
}

// end records why the hub stops reading, wakes its readers and removes it
// from the hubs of r, so that readers needing the live tail later start
// another.
func (h *hub) end(err error, dropped bool) {
	h.mu.Lock()
	if !h.done {
		h.err, h.dropped = err, dropped
	}
	h.broadcastLocked()
	h.mu.Unlock()
	h.r.mu.Lock()
	if h.r.hubs[h.id] == h {
		delete(h.r.hubs, h.id)
	}
	h.r.mu.Unlock()
}

// broadcastLocked wakes the waiting readers, if any. h.mu is held.
func (h *hub) broadcastLocked() {
	if h.waiters.Load() {
		h.waiters.Store(false)
		close(h.wake)
		h.wake = make(chan struct{})
	}
}
