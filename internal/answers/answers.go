// Package answers runs the generation of answers: it stores a question with
// its answer, asks the language model, writes the answer's text to its token
// log as it arrives, checkpoints it to the store and saves its end.
//
// A generation belongs to the Manager, not to the request that started it or
// to any subscriber: it runs to its end and is saved even when nobody
// watches. Only Cancel, CancelConversation and Shutdown stop one early.
package answers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"askgate/internal/answercache"
	"askgate/internal/chat"
	"askgate/internal/cluster"
	"askgate/internal/limits"
)

// Defaults of Options.
const (
	DefaultHistoryTokens      = 3000
	DefaultCheckpointInterval = 500 * time.Millisecond
	DefaultSaveTimeout        = 10 * time.Second
	DefaultLeaseTTL           = 5 * time.Second
	DefaultReplayPace         = 20 * time.Millisecond
	// CompletionEstimate is the tokens an answer is expected to take when
	// MaxTokens does not bound it, for the token quota's reservation.
	CompletionEstimate = 1000
)

// Messages saved as an answer's error. They are shown to clients.
const (
	ErrMessageInterrupted = "interrupted: the server stopped before the answer was complete"
	errMessageShutdown    = "interrupted: the server shut down before the answer was complete"
)

// Reasons a generation is stopped early, as context causes.
var (
	errCancelled = errors.New("answer cancelled")
	errDeleted   = errors.New("conversation deleted")
	errShutdown  = errors.New("server shutting down")
	// errEndedElsewhere: the stored answer ended without this generation
	// (another instance took it over, or it was deleted).
	errEndedElsewhere = errors.New("answer ended elsewhere")
)

// Options configure a Manager.
type Options struct {
	// Store keeps the questions and answers. Required.
	Store chat.Store
	// LLM generates the answers. Required.
	LLM chat.LLM
	// Log carries every answer's events to its subscribers. Required.
	Log chat.TokenLog
	// Logger receives generation failures; nil means slog.Default().
	Logger *slog.Logger
	// SystemPrompt, when set, is the first message of every prompt.
	SystemPrompt string
	// DefaultModel answers when an ask names no model; empty means the
	// backend's first model.
	DefaultModel string
	// HistoryTokens bounds the earlier questions and answers sent with a
	// question, in estimated tokens (a token is taken as 4 bytes); zero
	// means DefaultHistoryTokens, negative means no history.
	HistoryTokens int
	// MaxTokens caps an answer's length; zero means the backend's default.
	MaxTokens int
	// CheckpointInterval is the least time between two saves of a growing
	// answer; zero means DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// Cluster coordinates instances that share the store: leases on
	// running answers, cancel requests. Nil means a cluster.Local (this
	// instance alone).
	Cluster chat.Cluster
	// Concurrency, when set, caps the answers one user may have
	// generating at once: an ask over it is refused (RATE_LIMITED) and
	// stores nothing.
	Concurrency limits.Concurrency
	// TokenQuota, when set, caps the LLM tokens of each user per day: an
	// ask reserves its estimate (the prompt's estimated tokens plus
	// MaxTokens, or CompletionEstimate), is refused (RATE_LIMITED, storing
	// nothing) when it does not fit, and is reconciled with the backend's
	// usage when the answer ends.
	TokenQuota limits.TokenQuota
	// LeaseTTL is how long an answer's lease lasts without renewal: an
	// instance renews its leases three times per LeaseTTL, and an answer
	// whose lease has lapsed is finished by another instance as FAILED
	// (interrupted). Zero means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Cache, when set, answers the first question of a conversation (one
	// with no earlier message) from the answer given before to the same
	// question (see answercache.Key: the model, the system prompt,
	// MaxTokens and the question, trimmed and with its white space
	// collapsed), whoever asked it. Such an answer is still created
	// STREAMING and streamed through its log (in deltas of a few words,
	// see ReplayPace), then saved COMPLETE with Cached set and a usage of
	// zero tokens; the backend is not called, and the ask takes neither a
	// generation slot nor tokens from its owner's limits.
	// A first question the cache does not hold is generated as usual and,
	// once COMPLETE (never FAILED, CANCELLED or empty), stored in it.
	// Questions with history are never looked up nor stored, and neither
	// are asks with chat.Exchange.NoCache. Two identical first questions
	// asked at once both call the backend (nothing is coalesced); the
	// last to end is the one kept. A cache that fails (Redis down) is
	// logged and taken as a miss: it never fails an ask. Nil means no
	// cache.
	Cache answercache.Cache
	// ReplayPace is the wait before each delta of an answer served from
	// the cache, so that a client that subscribes once its ask returns
	// sees it stream (an answer that has ended when a subscription starts
	// comes in its final event only). The text goes in about 50 deltas at
	// most, so a replay lasts about 50 × ReplayPace at most. Zero means
	// DefaultReplayPace; negative means no wait.
	ReplayPace time.Duration
}

// Manager starts, tracks and stops generations. It is safe for concurrent
// use. Its zero value is not usable: call New.
type Manager struct {
	opts Options
	log  *slog.Logger
	// base is the parent of every generation's context: not a request's,
	// so that a generation outlives the request that started it.
	base context.Context
	stop context.CancelCauseFunc
	// loops is the context of the background loops (see cluster.go).
	loops     context.Context
	stopLoops context.CancelFunc

	mu      sync.Mutex
	jobs    map[string]*job // by answer id
	closing bool
	wg      sync.WaitGroup // the jobs
	bg      sync.WaitGroup // the cluster loops (see cluster.go)

	// hubs are the running readers of answers' logs, by answer id, that
	// fan events out to local subscribers (see hub.go).
	hubMu sync.Mutex
	hubs  map[string]*hub
}

// job is one running generation.
type job struct {
	owner          string
	conversationID string
	answer         *chat.Message
	cancel         context.CancelCauseFunc
	done           chan struct{}
	// quota is what the answer holds of its owner's limits, given back
	// or settled when it ends.
	quota quota
	// cache is how the answer uses the answer cache.
	cache cacheUse
}

// cacheUse is how an answer uses the answer cache: served from it (hit
// set), or to be stored in it once complete (key set, no hit), or neither.
type cacheUse struct {
	key string
	hit *answercache.Entry
}

// quota is what an ask takes from its owner's limits: a generation slot
// and a reservation of tokens.
type quota struct {
	release func()        // nil: no slot held
	tokens  limits.Settle // settles the tokens reserved; nil: none
}

// New returns a Manager for opts.
func New(opts Options) *Manager {
	if opts.CheckpointInterval <= 0 {
		opts.CheckpointInterval = DefaultCheckpointInterval
	}
	if opts.HistoryTokens == 0 {
		opts.HistoryTokens = DefaultHistoryTokens
	}
	m := &Manager{opts: opts, log: opts.Logger, jobs: map[string]*job{}, hubs: map[string]*hub{}}
	if m.log == nil {
		m.log = slog.Default()
	}
	if m.opts.Cluster == nil {
		m.opts.Cluster = &cluster.Local{}
	}
	if m.opts.LeaseTTL <= 0 {
		m.opts.LeaseTTL = DefaultLeaseTTL
	}
	if m.opts.ReplayPace == 0 {
		m.opts.ReplayPace = DefaultReplayPace
	}
	m.base, m.stop = context.WithCancelCause(context.Background())
	// The loops outlive the jobs' context: leases are renewed until the
	// last interrupted answer is saved (see Shutdown).
	m.loops, m.stopLoops = context.WithCancel(context.Background())
	m.startLoops()
	return m
}

// Recover ends the answers a previous process left STREAMING as FAILED
// (interrupted), keeping their saved content. Call it once at start-up,
// before serving.
//
// With a shared cluster other instances may be generating answers right
// now: Recover then ends only those whose lease has lapsed, as the
// instance does again every LeaseTTL.
func (m *Manager) Recover(ctx context.Context) (int, error) {
	if m.opts.Cluster.Shared() {
		return m.sweep(ctx)
	}
	n, err := m.opts.Store.InterruptAnswers(ctx, ErrMessageInterrupted)
	if err != nil {
		return 0, fmt.Errorf("recovering interrupted answers: %w", err)
	}
	if n > 0 {
		m.log.Warn("answers left streaming by a previous process were marked interrupted", slog.Int("answers", n))
	}
	return n, nil
}

// Models returns the backend's models, the default first (with Default
// set): the configured DefaultModel, else the backend's first.
func (m *Manager) Models(ctx context.Context) ([]chat.Model, error) {
	models, err := m.opts.LLM.Models(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]chat.Model, 0, len(models)+1)
	if d := m.opts.DefaultModel; d != "" {
		out = append(out, chat.Model{ID: d})
		for _, mod := range models {
			if mod.ID == d {
				out[0] = mod
			} else {
				out = append(out, mod)
			}
		}
	} else {
		out = append(out, models...)
	}
	for i := range out {
		out[i].Default = i == 0
	}
	return out, nil
}

// resolveModel returns the model an ask uses: the one asked for, which
// must be one the backend offers, or the default.
func (m *Manager) resolveModel(ctx context.Context, model string) (string, error) {
	models, err := m.Models(ctx)
	if err != nil {
		if model != "" {
			// The list is unavailable; let the backend judge the name.
			return model, nil
		}
		return m.opts.DefaultModel, nil
	}
	if model == "" {
		if len(models) == 0 {
			return "", nil
		}
		return models[0].ID, nil
	}
	for _, mod := range models {
		if mod.ID == model {
			return model, nil
		}
	}
	return "", chat.Errorf(chat.CodeBadUserInput, "unknown model %q: see the models query", model)
}

// Ask stores ex (a question and a new answer, see chat.Store.AddExchange)
// for owner and starts generating the answer; it returns without waiting
// for the generation. ex.Answer gets status STREAMING and the model.
// When ex's idempotency key was used before, ex holds the pair stored
// then, created is false and nothing new is generated.
func (m *Manager) Ask(ctx context.Context, owner string, ex *chat.Exchange, model string) (created bool, err error) {
	m.mu.Lock()
	closing := m.closing
	m.mu.Unlock()
	if closing {
		return false, chat.Errorf(chat.CodeUpstreamUnavailable, "the server is shutting down: ask again in a moment")
	}
	if model, err = m.resolveModel(ctx, model); err != nil {
		return false, err
	}
	var history []*chat.Message
	if ex.Conversation == nil && m.opts.HistoryTokens > 0 {
		if history, err = m.history(ctx, owner, ex.Question.ConversationID); err != nil {
			return false, err
		}
	}
	req := chat.CompletionRequest{Model: model, Messages: m.prompt(history, ex.Question.Content), MaxTokens: m.opts.MaxTokens}
	if ex.IdempotencyKey != "" {
		// A retry returns the stored pair before the limits are asked:
		// the first attempt's own slot must not refuse it.
		if found, err := m.opts.Store.LoadExchange(ctx, owner, ex); err != nil || found {
			return false, err
		}
	}
	cache, err := m.lookup(ctx, owner, ex, history, req)
	if err != nil {
		return false, err
	}
	var q quota
	if cache.hit == nil {
		// An answer from the cache costs the backend nothing: it takes
		// nothing from the limits.
		if q, err = m.take(ctx, owner, req); err != nil {
			return false, err
		}
	}
	// Until a generation owns them, the slot and the reservation go back
	// on every way out, a panic included.
	handedOver := false
	defer func() {
		if !handedOver {
			m.settle(q, 0)
		}
	}()
	ex.Question.Role, ex.Question.Status, ex.Question.AuthorID = chat.RoleUser, chat.StatusComplete, owner
	ex.Answer.Role, ex.Answer.Status, ex.Answer.Model = chat.RoleAssistant, chat.StatusStreaming, model
	ex.Answer.Cached = cache.hit != nil
	if created, err = m.opts.Store.AddExchange(ctx, owner, ex); err != nil || !created {
		return created, err
	}
	if err := m.opts.Log.Open(ctx, ex.Answer.ID); err != nil {
		// Without a log nobody could watch the answer: end it now rather
		// than leave it streaming.
		m.finish(owner, ex.Answer, &strings.Builder{}, nil, "", chat.StatusFailed, "the answer could not be started")
		return true, fmt.Errorf("opening the token log: %w", err)
	}
	handedOver = true
	m.start(owner, ex.Answer, req, q, cache)
	return true, nil
}

// lookup decides how an ask uses the answer cache (see Options.Cache) and
// looks its question up there when it may be served from it. history is
// what Ask read of the conversation: nothing when it read none.
func (m *Manager) lookup(ctx context.Context, owner string, ex *chat.Exchange, history []*chat.Message, req chat.CompletionRequest) (cacheUse, error) {
	if m.opts.Cache == nil || ex.NoCache || req.Model == "" {
		// Without a model named the backend picks one, which may
		// change: nothing is cached.
		return cacheUse{}, nil
	}
	// Only a conversation's first question: a new conversation's, or one
	// asked in a conversation without messages.
	first := ex.Conversation != nil
	switch {
	case first:
	case m.opts.HistoryTokens > 0: // Ask read the history
		first = len(history) == 0
	default:
		counts, err := m.opts.Store.CountMessages(ctx, owner, []string{ex.Question.ConversationID})
		if err != nil {
			return cacheUse{}, err
		}
		first = counts[ex.Question.ConversationID] == 0
	}
	if !first {
		return cacheUse{}, nil
	}
	key := answercache.Key(answercache.Question{
		Model: req.Model, SystemPrompt: m.opts.SystemPrompt, MaxTokens: m.opts.MaxTokens, Text: ex.Question.Content,
	})
	hit, err := m.opts.Cache.Get(ctx, key)
	if err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "the answer cache was not read; the backend answers", slog.String("error", err.Error()))
		hit = nil
	}
	if hit != nil && hit.Content == "" {
		hit = nil // never stored so; not worth serving
	}
	return cacheUse{key: key, hit: hit}, nil
}

// remember stores a complete answer in the answer cache under key.
func (m *Manager) remember(key string, e *answercache.Entry) {
	ctx, cancel := context.WithTimeout(context.Background(), DefaultSaveTimeout)
	defer cancel()
	if err := m.opts.Cache.Put(ctx, key, e); err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "an answer was not stored in the answer cache", slog.String("error", err.Error()))
	}
}

// take takes a generation slot and a reservation of tokens from owner's
// limits for req, or refuses with RATE_LIMITED. A limit that cannot be
// reached (Redis down and no fallback) lets the ask through: it is logged.
func (m *Manager) take(ctx context.Context, owner string, req chat.CompletionRequest) (quota, error) {
	var q quota
	if c := m.opts.Concurrency; c != nil {
		release, ok, err := c.Acquire(ctx, owner)
		switch {
		case err != nil:
			m.log.LogAttrs(ctx, slog.LevelWarn, "the concurrent answers limit was not checked", slog.String("error", err.Error()))
		case !ok:
			return q, chat.Errorf(chat.CodeRateLimited, "too many of your answers are being generated at once: wait for one to finish, or cancel one")
		default:
			q.release = release
		}
	}
	if t := m.opts.TokenQuota; t != nil {
		estimate := m.opts.MaxTokens
		if estimate <= 0 {
			estimate = CompletionEstimate
		}
		estimate += promptTokens(req.Messages)
		settle, ok, _, err := t.Take(ctx, owner, estimate)
		switch {
		case err != nil:
			m.log.LogAttrs(ctx, slog.LevelWarn, "the token quota was not checked", slog.String("error", err.Error()))
		case !ok:
			m.settle(q, 0)
			e := chat.Errorf(chat.CodeRateLimited, "your language model tokens for today are spent")
			e.RetryAfter = untilTomorrow(time.Now())
			return quota{}, e
		default:
			q.tokens = settle
		}
	}
	return q, nil
}

// settle gives back what an ask took: its slot, and its token reservation
// replaced by the tokens actually used.
func (m *Manager) settle(q quota, used int) {
	if q.release != nil {
		q.release()
	}
	if q.tokens != nil {
		ctx, cancel := context.WithTimeout(context.Background(), DefaultSaveTimeout)
		defer cancel()
		if err := q.tokens(ctx, used); err != nil {
			m.log.LogAttrs(ctx, slog.LevelWarn, "the token quota was not reconciled", slog.String("error", err.Error()))
		}
	}
}

// untilTomorrow returns the time from now to the next day (UTC), when a
// spent token quota is whole again.
func untilTomorrow(now time.Time) time.Duration {
	now = now.UTC()
	return time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC).Sub(now)
}

// history returns the conversation's latest messages, oldest first.
func (m *Manager) history(ctx context.Context, owner, conversationID string) ([]*chat.Message, error) {
	pages, err := m.opts.Store.ListMessages(ctx, owner, []string{conversationID}, chat.Page{Limit: chat.MaxPageSize, Backward: true})
	if err != nil {
		return nil, err
	}
	if len(pages) == 0 {
		return nil, nil
	}
	return pages[0].Messages, nil
}

// prompt builds the messages sent to the model: the system prompt, as much
// of the history as fits the budget (the latest first), and the question.
// Answers that did not complete, and empty ones, are left out.
func (m *Manager) prompt(history []*chat.Message, question string) []chat.PromptMessage {
	budget := m.opts.HistoryTokens
	var kept []chat.PromptMessage
	for i := len(history) - 1; i >= 0; i-- {
		h := history[i]
		role := chat.PromptUser
		if h.Role == chat.RoleAssistant {
			if h.Status != chat.StatusComplete || h.Content == "" {
				continue
			}
			role = chat.PromptAssistant
		}
		cost := EstimateTokens(h.Content)
		if cost > budget {
			break
		}
		budget -= cost
		kept = append(kept, chat.PromptMessage{Role: role, Content: h.Content})
	}
	msgs := make([]chat.PromptMessage, 0, len(kept)+2)
	if m.opts.SystemPrompt != "" {
		msgs = append(msgs, chat.PromptMessage{Role: chat.PromptSystem, Content: m.opts.SystemPrompt})
	}
	for i := len(kept) - 1; i >= 0; i-- {
		msgs = append(msgs, kept[i])
	}
	return append(msgs, chat.PromptMessage{Role: chat.PromptUser, Content: question})
}

// EstimateTokens estimates the tokens of s: about 4 bytes of English text
// make a token.
func EstimateTokens(s string) int { return (len(s) + 3) / 4 }

// promptTokens estimates the tokens of a prompt.
func promptTokens(msgs []chat.PromptMessage) int {
	n := 0
	for _, m := range msgs {
		n += EstimateTokens(m.Content)
	}
	return n
}

// start runs the generation of answer in its own goroutine.
func (m *Manager) start(owner string, answer *chat.Message, req chat.CompletionRequest, q quota, cache cacheUse) {
	ctx, cancel := context.WithCancelCause(m.base)
	j := &job{owner: owner, conversationID: answer.ConversationID, answer: answer, cancel: cancel, done: make(chan struct{}), quota: q, cache: cache}
	m.mu.Lock()
	if m.closing {
		m.mu.Unlock()
		m.settle(q, 0)
		cancel(errShutdown)
		m.finish(owner, answer, &strings.Builder{}, nil, "", chat.StatusFailed, errMessageShutdown)
		return
	}
	m.jobs[answer.ID] = j
	m.wg.Add(1)
	m.mu.Unlock()
	m.renew(ctx, answer.ID)
	go func() {
		defer m.wg.Done()
		defer close(j.done)
		defer func() {
			m.mu.Lock()
			delete(m.jobs, answer.ID)
			m.mu.Unlock()
			cancel(nil)
			m.release(answer.ID)
		}()
		m.settle(q, m.generate(ctx, j, req))
	}()
}

// generate streams the reply into the answer's log and the store, and
// returns the tokens it used: the backend's count, or an estimate of the
// prompt and the text when the backend gave none. An answer served from
// the answer cache streams the cached text instead, and uses none.
func (m *Manager) generate(ctx context.Context, j *job, req chat.CompletionRequest) int {
	a := j.answer
	var content strings.Builder
	var usage *chat.TokenUsage
	model := a.Model
	status, errMsg := chat.StatusComplete, ""

	logBroken := false
	var stream chat.CompletionStream
	var err error
	if hit := j.cache.hit; hit != nil {
		stream = newReplay(ctx, hit, m.opts.ReplayPace)
	} else {
		stream, err = m.opts.LLM.Complete(ctx, req)
	}
	if err == nil {
		lastSave := time.Now()
		for {
			var piece string
			piece, err = stream.Next()
			if err != nil {
				break
			}
			if piece == "" {
				continue
			}
			content.WriteString(piece)
			if !logBroken {
				if _, lerr := m.opts.Log.Append(context.WithoutCancel(ctx), a.ID, piece); errors.Is(lerr, chat.ErrLogClosed) {
					// Someone else has ended the answer (a cancel or a
					// takeover whose request missed us): stop.
					j.cancel(errEndedElsewhere)
				} else if lerr != nil {
					// Subscribers stop seeing tokens (the log is full or
					// gone) but the answer goes on and is saved whole:
					// they get it with the terminal event.
					logBroken = true
					m.log.LogAttrs(ctx, slog.LevelWarn, "the answer's token log refused a token; streaming stops, the answer goes on",
						slog.String("answer_id", a.ID), slog.String("error", lerr.Error()))
				}
			}
			if time.Since(lastSave) >= m.opts.CheckpointInterval {
				lastSave = time.Now()
				if !m.checkpoint(ctx, j, content.String()) {
					// The answer has ended without us: cancelled or
					// taken over by another instance, or deleted.
					j.cancel(errEndedElsewhere)
				}
			}
		}
		if mod := stream.Model(); mod != "" {
			model = mod
		}
		if errors.Is(err, io.EOF) {
			err = nil
			usage = stream.Usage()
		}
		stream.Close()
	}
	if err != nil {
		switch cause := context.Cause(ctx); {
		case errors.Is(cause, errCancelled), errors.Is(cause, errDeleted), errors.Is(cause, errEndedElsewhere):
			status = chat.StatusCancelled
		case errors.Is(cause, errShutdown):
			status, errMsg = chat.StatusFailed, errMessageShutdown
		default:
			status, errMsg = chat.StatusFailed, chat.ErrorMessage(err)
			m.log.LogAttrs(ctx, slog.LevelWarn, "answer failed",
				slog.String("answer_id", a.ID), slog.String("model", model), slog.String("error", err.Error()))
		}
	}
	m.finish(j.owner, a, &content, usage, model, status, errMsg)
	if j.cache.key != "" && j.cache.hit == nil && status == chat.StatusComplete && content.Len() > 0 {
		m.remember(j.cache.key, &answercache.Entry{Content: content.String(), Model: model, Usage: usage, CreatedAt: chat.Now()})
	}
	if usage != nil {
		return usage.TotalTokens
	}
	return EstimateTokens(content.String()) + promptTokens(req.Messages)
}

// The deltas of an answer served from the cache: a delta ends after the
// first white space once it holds at least replayChunk bytes, or the
// text's length over replayDeltas, and holds at most four times that. So
// a replay takes at most about replayDeltas deltas and as many
// Options.ReplayPace.
const (
	replayChunk  = 16
	replayDeltas = 50
)

// replay is the chat.CompletionStream of an answer served from the answer
// cache: its text in deltas of a few words, one every pace, and a usage of
// zero tokens.
type replay struct {
	ctx      context.Context
	rest     string
	model    string
	pace     time.Duration
	min, max int
}

func newReplay(ctx context.Context, e *answercache.Entry, pace time.Duration) *replay {
	n := max(replayChunk, len(e.Content)/replayDeltas)
	return &replay{ctx: ctx, rest: e.Content, model: e.Model, pace: pace, min: n, max: 4 * n}
}

func (r *replay) Next() (string, error) {
	if r.rest == "" {
		return "", io.EOF
	}
	if r.pace > 0 {
		t := time.NewTimer(r.pace)
		select {
		case <-t.C:
		case <-r.ctx.Done():
			t.Stop()
		}
	}
	if err := r.ctx.Err(); err != nil {
		return "", err
	}
	n := len(r.rest)
	for i, c := range r.rest {
		if i >= r.max {
			n = i
			break
		}
		if i >= r.min && unicode.IsSpace(c) {
			n = i + utf8.RuneLen(c)
			break
		}
	}
	piece := r.rest[:n]
	r.rest = r.rest[n:]
	return piece, nil
}

func (r *replay) Model() string           { return r.model }
func (r *replay) Usage() *chat.TokenUsage { return &chat.TokenUsage{} }
func (r *replay) Close() error            { return nil }

// checkpoint saves the content of a growing answer. It reports false when
// the stored answer is no longer STREAMING. A failed checkpoint is only
// logged: the next one, or the end, saves the text.
func (m *Manager) checkpoint(ctx context.Context, j *job, content string) bool {
	a := *j.answer
	a.Content = content
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), DefaultSaveTimeout)
	defer cancel()
	ok, err := m.opts.Store.UpdateAnswer(sctx, j.owner, &a)
	if err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "answer checkpoint failed",
			slog.String("answer_id", a.ID), slog.String("error", err.Error()))
		return true
	}
	return ok
}

// finish saves the end of an answer, then ends its log so that
// subscribers find the final state in the store.
func (m *Manager) finish(owner string, answer *chat.Message, content *strings.Builder, usage *chat.TokenUsage, model string, status chat.Status, errMsg string) {
	a := *answer
	now := chat.Now()
	a.Content, a.Usage, a.Status, a.Error, a.CompletedAt = content.String(), usage, status, errMsg, &now
	if model != "" {
		a.Model = model
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultSaveTimeout)
	defer cancel()
	// A store that fails for a moment gets a few more tries: the end of
	// an answer is what its subscribers and every later reader see.
	for wait := 100 * time.Millisecond; ; wait *= 2 {
		_, err := m.opts.Store.UpdateAnswer(ctx, owner, &a)
		if err == nil {
			break
		}
		if ctx.Err() != nil || wait > 2*time.Second {
			m.log.LogAttrs(ctx, slog.LevelError, "the end of an answer could not be saved",
				slog.String("answer_id", a.ID), slog.String("status", string(status)), slog.String("error", err.Error()))
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
	if _, err := m.opts.Log.Finish(ctx, a.ID); err != nil && !errors.Is(err, chat.ErrLogClosed) {
		m.log.LogAttrs(ctx, slog.LevelError, "the token log could not be finished",
			slog.String("answer_id", a.ID), slog.String("error", err.Error()))
	}
}

// Cancel stops the generation of owner's answer id, which ends CANCELLED
// with the text produced so far, and returns the answer as saved. An
// answer that has already ended is returned as it is. Another user's
// answer, like a missing one, gives ErrNotFound.
func (m *Manager) Cancel(ctx context.Context, owner, id string) (*chat.Message, error) {
	a, err := m.answer(ctx, owner, id)
	if err != nil || a.Status != chat.StatusStreaming {
		return a, err
	}
	m.mu.Lock()
	j := m.jobs[id]
	m.mu.Unlock()
	if j == nil && m.opts.Cluster.Shared() {
		return m.cancelRemote(ctx, owner, a)
	}
	if j == nil {
		// Nothing generates it here: end it as it stands.
		now := chat.Now()
		a.Status, a.CompletedAt = chat.StatusCancelled, &now
		if _, err := m.opts.Store.UpdateAnswer(ctx, owner, a); err != nil {
			return nil, err
		}
		// Whether this update or another end won, the store has the
		// final state, read below.
		if _, err := m.opts.Log.Finish(ctx, id); err != nil && !errors.Is(err, chat.ErrLogClosed) {
			m.log.LogAttrs(ctx, slog.LevelWarn, "the token log could not be finished",
				slog.String("answer_id", id), slog.String("error", err.Error()))
		}
	} else {
		j.cancel(errCancelled)
		select {
		case <-j.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return m.answer(ctx, owner, id)
}

// CancelConversation stops every generation in owner's conversation id and
// waits for them to end; deleting a conversation calls it first.
func (m *Manager) CancelConversation(ctx context.Context, owner, conversationID string) error {
	var stopped []*job
	m.mu.Lock()
	for _, j := range m.jobs {
		if j.owner == owner && j.conversationID == conversationID {
			j.cancel(errDeleted)
			stopped = append(stopped, j)
		}
	}
	m.mu.Unlock()
	if m.opts.Cluster.Shared() {
		m.cancelRemoteConversation(ctx, owner, conversationID)
	}
	for _, j := range stopped {
		select {
		case <-j.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// answer returns owner's answer id from the store.
func (m *Manager) answer(ctx context.Context, owner, id string) (*chat.Message, error) {
	msgs, err := m.opts.Store.MessagesByID(ctx, owner, []string{id})
	if err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return nil, chat.ErrNotFound
	}
	if msgs[0].Role != chat.RoleAssistant {
		return nil, chat.Errorf(chat.CodeBadUserInput, "the message is a question, not an answer")
	}
	return msgs[0], nil
}

// Running returns how many generations are running.
func (m *Manager) Running() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.jobs)
}

// Shutdown stops taking new questions and waits for the running
// generations to end. When ctx ends first, the generations still running
// are stopped and saved as FAILED (interrupted) with their text so far;
// Shutdown then waits for those saves (each bounded by DefaultSaveTimeout)
// and returns ctx's error. No goroutine of the Manager survives it.
func (m *Manager) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	m.closing = true
	m.mu.Unlock()
	done := make(chan struct{})
	go func() {
		m.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		m.stop(errShutdown)
		m.stopLoops()
		m.bg.Wait()
		return nil
	case <-ctx.Done():
		m.stop(errShutdown)
		<-done
		m.stopLoops()
		m.bg.Wait()
		return ctx.Err()
	}
}
