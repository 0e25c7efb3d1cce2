package answers_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"askgate/internal/answers"
)

// Subscribers of one streaming answer share its reader: each gets exactly
// the text after its own position, whenever it joins, and one that does
// not read meanwhile gets what it missed merged, the terminal event last.
func TestSubscribersJoinWhereTheyStand(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tokens := []string{"a ", "b ", "c ", "d ", "e ", "f ", "g"}
	f.Backend.SetReply(tokens...)
	f.Backend.Hold()
	ex := f.ask("letters", "")
	id := ex.Answer.ID

	first := must(f.M.Watch(t.Context(), "alice", id, 0))
	laggard := must(f.M.Watch(t.Context(), "alice", id, 0))
	var seen []*answers.Event
	for len(seen) < 3 {
		f.Backend.Release(1)
		seen = append(seen, <-first)
	}
	checkSeqs(t, append(seen, &answers.Event{Seq: seen[2].Seq + 1, Done: true}), 0)

	// Joining from every position up to the live one, and past it.
	joiners := map[int]<-chan *answers.Event{}
	for after := 0; after <= seen[2].Seq+1; after++ {
		joiners[after] = must(f.M.Watch(t.Context(), "alice", id, after))
	}
	f.Backend.Unhold()

	want := strings.Join(tokens, "")
	rest := collect(t, first)
	if got := text(seen) + text(rest); got != want {
		t.Errorf("first subscriber got %q, want %q", got, want)
	}
	for after, events := range joiners {
		got := collect(t, events)
		checkSeqs(t, got, after)
		if w := strings.Join(tokens[after:], ""); text(got) != w {
			t.Errorf("joiner after %d got %q, want %q", after, text(got), w)
		}
		if last := got[len(got)-1]; last.Message == nil || last.Message.Content != want {
			t.Errorf("joiner after %d: terminal event %+v", after, last)
		}
	}
	got := collect(t, laggard)
	checkSeqs(t, got, 0)
	if text(got) != want {
		t.Errorf("laggard got %q, want %q", text(got), want)
	}
	for _, ch := range append([]<-chan *answers.Event{first, laggard}, joiners[0]) {
		if _, open := <-ch; open {
			t.Error("a channel stays open after the terminal event")
		}
	}
}

// A relay takes the events of the Watch that claims it, and tells an
// armed consumer when there is something to take.
func TestRelay(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	f.Backend.SetReply("x", "y")
	f.Backend.Hold()
	ex := f.ask("two", "")

	ctx, relay := answers.WithRelay(t.Context())
	consumer := must(f.M.Watch(ctx, "alice", ex.Answer.ID, 0))
	src := relay.Source()
	if src == nil {
		t.Fatal("Watch did not claim the relay")
	}
	woken := make(chan struct{}, 1)
	if !relay.Arm(func() { woken <- struct{}{} }) {
		t.Fatal("a streaming answer's relay does not notify")
	}
	if relay.Ready() {
		t.Fatal("ready before any event")
	}
	f.Backend.Release(1)
	select {
	case <-woken:
	case <-time.After(10 * time.Second):
		t.Fatal("the armed function was not called for an event")
	}
	var got []*answers.Event
	f.Backend.Unhold()
	for e := range src {
		relay.Feed(e)
		got = append(got, <-consumer)
	}
	relay.Close()
	if _, open := <-consumer; open {
		t.Error("the consumer's channel stays open")
	}
	checkSeqs(t, got, 0)
	if text(got) != "xy" {
		t.Errorf("got %q through the relay, want %q", text(got), "xy")
	}

	// A second Watch on the same context does not take the relay.
	ctx2, cancel := context.WithCancel(ctx)
	defer cancel()
	if again := must(f.M.Watch(ctx2, "alice", ex.Answer.ID, 0)); again == consumer {
		t.Error("a second Watch returned the relay's channel")
	}
}
