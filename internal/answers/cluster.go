package answers

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"askgate/internal/chat"
)

// This file keeps the instances that share a store in step (see
// chat.Cluster): each instance holds a lease on every answer it generates
// and renews them all three times per LeaseTTL; with a shared cluster,
// each instance also looks every LeaseTTL for answers still STREAMING
// whose lease has lapsed — their instance died — and finishes them as
// FAILED (interrupted) with every token their log holds; and a cancel
// request for an answer generated elsewhere reaches its instance.

// sweepBatch bounds the answers one sweep looks at.
const sweepBatch = 100

// startLoops starts the background loops: lease renewal, cancel requests
// and, with a shared cluster, the sweeper. They end with m.loops.
func (m *Manager) startLoops() {
	m.bg.Add(2)
	go m.heartbeat()
	go m.listenForCancels()
	if m.opts.Cluster.Shared() {
		m.bg.Add(1)
		go m.sweeper()
	}
}

// renew takes or renews this instance's leases on ids.
func (m *Manager) renew(ctx context.Context, ids ...string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.LeaseTTL/3)
	defer cancel()
	if err := m.opts.Cluster.Renew(ctx, ids, m.opts.LeaseTTL); err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "answer leases not renewed", slog.Int("answers", len(ids)), slog.String("error", err.Error()))
	}
}

// release drops this instance's lease on a finished answer.
func (m *Manager) release(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), m.opts.LeaseTTL/3)
	defer cancel()
	if err := m.opts.Cluster.Release(ctx, id); err != nil {
		m.log.LogAttrs(ctx, slog.LevelWarn, "answer lease not released", slog.String("answer_id", id), slog.String("error", err.Error()))
	}
}

// heartbeat renews the leases of the running answers.
func (m *Manager) heartbeat() {
	defer m.bg.Done()
	t := time.NewTicker(m.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-m.loops.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		ids := make([]string, 0, len(m.jobs))
		for id := range m.jobs {
			ids = append(ids, id)
		}
		m.mu.Unlock()
		if len(ids) > 0 {
			m.renew(m.loops, ids...)
		}
	}
}

// listenForCancels stops the local generations that any instance asked
// to cancel.
func (m *Manager) listenForCancels() {
	defer m.bg.Done()
	for m.loops.Err() == nil {
		ch, err := m.opts.Cluster.Cancels(m.loops)
		if err != nil {
			m.log.LogAttrs(m.loops, slog.LevelWarn, "not listening for cancel requests; retrying", slog.String("error", err.Error()))
			select {
			case <-time.After(m.opts.LeaseTTL):
			case <-m.loops.Done():
			}
			continue
		}
		for id := range ch {
			m.mu.Lock()
			j := m.jobs[id]
			m.mu.Unlock()
			if j != nil {
				j.cancel(errCancelled)
			}
		}
	}
}

// sweeper finishes the answers of dead instances, every LeaseTTL (with a
// little jitter so that instances do not sweep in step).
func (m *Manager) sweeper() {
	defer m.bg.Done()
	for {
		wait := m.opts.LeaseTTL + rand.N(m.opts.LeaseTTL/4+1)
		select {
		case <-m.loops.Done():
			return
		case <-time.After(wait):
		}
		if _, err := m.sweep(m.loops); err != nil && m.loops.Err() == nil {
			m.log.LogAttrs(m.loops, slog.LevelWarn, "looking for interrupted answers failed", slog.String("error", err.Error()))
		}
	}
}

// sweep finishes, as FAILED (interrupted), the answers still STREAMING
// whose lease has lapsed, and returns how many it finished. An answer
// younger than LeaseTTL is left alone: its instance may not have taken
// its lease yet.
func (m *Manager) sweep(ctx context.Context) (int, error) {
	refs, err := m.opts.Store.StreamingAnswers(ctx, chat.Now().Add(-m.opts.LeaseTTL), sweepBatch)
	if err != nil || len(refs) == 0 {
		return 0, err
	}
	// The answers this instance does not generate itself.
	m.mu.Lock()
	var others []chat.AnswerRef
	var ids []string
	for _, r := range refs {
		if m.jobs[r.ID] == nil {
			others = append(others, r)
			ids = append(ids, r.ID)
		}
	}
	m.mu.Unlock()
	alive, err := m.opts.Cluster.Alive(ctx, ids)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, r := range others {
		if alive[r.ID] {
			continue
		}
		ok, err := m.takeOver(ctx, r.OwnerID, r.ID, chat.StatusFailed, ErrMessageInterrupted)
		if err != nil {
			return n, err
		}
		if ok {
			n++
			m.log.LogAttrs(ctx, slog.LevelWarn, "an answer whose instance stopped was marked interrupted", slog.String("answer_id", r.ID))
		}
	}
	return n, nil
}

// takeOver ends owner's answer id, which no instance generates any more,
// with the given status: its content becomes everything its token log
// holds (every token any subscriber saw) or the saved checkpoint when the
// log has less, and the log gets its terminal event so that subscribers
// on every instance see the end. Only one instance takes an answer over;
// it reports whether this one did.
func (m *Manager) takeOver(ctx context.Context, owner, id string, status chat.Status, errMsg string) (bool, error) {
	claimed, err := m.opts.Cluster.Claim(ctx, id, 2*m.opts.LeaseTTL)
	if err != nil || !claimed {
		return false, err
	}
	a, err := m.answer(ctx, owner, id)
	if err != nil {
		if errors.Is(err, chat.ErrNotFound) {
			return false, nil // deleted meanwhile
		}
		return false, err
	}
	if a.Status != chat.StatusStreaming {
		return false, nil
	}
	// Finish the log first: it refuses appends from then on, so a writer
	// that is in fact still alive cannot add tokens that subscribers
	// would see but the saved answer would lack. Subscribers that get the
	// terminal event before the save below wait for it (see finalAnswer).
	if _, err := m.opts.Log.Finish(ctx, id); err != nil && !errors.Is(err, chat.ErrLogClosed) {
		m.log.LogAttrs(ctx, slog.LevelWarn, "the token log of a taken-over answer could not be finished",
			slog.String("answer_id", id), slog.String("error", err.Error()))
	}
	if text := m.logText(ctx, id); len(text) > len(a.Content) && strings.HasPrefix(text, a.Content) {
		a.Content = text
	}
	now := chat.Now()
	a.Status, a.Error, a.CompletedAt = status, errMsg, &now
	ok, err := m.opts.Store.UpdateAnswer(ctx, owner, a)
	if err != nil || !ok {
		return false, err
	}
	return true, nil
}

// logText returns the whole text of an answer's finished log (or what it
// holds, if it cannot be read to its end within a few seconds).
func (m *Manager) logText(ctx context.Context, id string) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	r, err := m.opts.Log.Read(ctx, id, 0)
	if err != nil {
		return ""
	}
	defer r.Close()
	var b strings.Builder
	for {
		ev, err := r.Next(ctx)
		if err != nil || ev.Done {
			return b.String()
		}
		b.WriteString(ev.Delta)
	}
}

// finalAnswer returns owner's answer id once the store has its end: the
// terminal event of a log can come just before the save (see takeOver).
// After DefaultSaveTimeout it returns the answer as it stands.
func (m *Manager) finalAnswer(ctx context.Context, owner, id string) (*chat.Message, error) {
	deadline := time.Now().Add(DefaultSaveTimeout)
	for {
		a, err := m.answer(ctx, owner, id)
		if err != nil || a.Status != chat.StatusStreaming || time.Now().After(deadline) {
			return a, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// cancelRemote cancels owner's answer a, which no generation of this
// instance runs: it asks the cluster's instances, then waits for the
// answer to end. When no instance holds its lease any more, this one ends
// it as CANCELLED.
func (m *Manager) cancelRemote(ctx context.Context, owner string, a *chat.Message) (*chat.Message, error) {
	if err := m.opts.Cluster.Cancel(ctx, a.ID); err != nil {
		return nil, err
	}
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	deadline := time.Now().Add(2 * m.opts.LeaseTTL)
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		cur, err := m.answer(ctx, owner, a.ID)
		if err != nil || cur.Status != chat.StatusStreaming {
			return cur, err
		}
		alive, err := m.opts.Cluster.Alive(ctx, []string{a.ID})
		if err != nil {
			return nil, err
		}
		if !alive[a.ID] || time.Now().After(deadline) {
			took, err := m.takeOver(ctx, owner, a.ID, chat.StatusCancelled, "")
			if err != nil {
				return nil, err
			}
			if took {
				return m.answer(ctx, owner, a.ID)
			}
			// Another instance holds the claim and is finishing the
			// answer (its sweep, or another cancel): wait for the end it
			// saves, or for its claim to lapse and take over then.
		}
	}
}

// cancelRemoteConversation asks the cluster's instances to stop the
// answers of owner's conversation that are streaming elsewhere.
func (m *Manager) cancelRemoteConversation(ctx context.Context, owner, conversationID string) {
	msgs, err := m.history(ctx, owner, conversationID)
	if err != nil {
		return
	}
	for _, msg := range msgs {
		if msg.Role != chat.RoleAssistant || msg.Status != chat.StatusStreaming {
			continue
		}
		m.mu.Lock()
		local := m.jobs[msg.ID] != nil
		m.mu.Unlock()
		if !local {
			if err := m.opts.Cluster.Cancel(ctx, msg.ID); err != nil {
				m.log.LogAttrs(ctx, slog.LevelWarn, "cancel request not sent", slog.String("answer_id", msg.ID), slog.String("error", err.Error()))
			}
		}
	}
}
