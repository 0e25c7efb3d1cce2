package limits

import (
	"strings"
	"testing"
	"time"
)

func TestParseRate(t *testing.T) {
	tests := []struct {
		in      string
		want    Rate
		wantErr string
	}{
		{in: "600/m", want: Rate{Events: 600, Per: time.Minute, Burst: 600}},
		{in: " 10 / s ", want: Rate{Events: 10, Per: time.Second, Burst: 10}},
		{in: "5000/h", want: Rate{Events: 5000, Per: time.Hour, Burst: 5000}},
		{in: "600", wantErr: "want <count>/<s|m|h>"},
		{in: "", wantErr: "want <count>/<s|m|h>"},
		{in: "-1/s", wantErr: "positive count"},
		{in: "0/m", wantErr: "positive count"},
		{in: "x/m", wantErr: "want <count>/<s|m|h>"},
		{in: "600/d", wantErr: `unit "d"`},
		{in: "600/minute", wantErr: `unit "minute"`},
		{in: "2000000000/s", wantErr: "more than one event per nanosecond"},
	}
	for _, tt := range tests {
		got, err := ParseRate(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "600/m") {
				t.Errorf("ParseRate(%q) error = %v, want one containing %q and an example", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRate(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseBudget(t *testing.T) {
	tests := []struct {
		in      string
		want    Bucket
		wantErr bool
	}{
		{in: "1000/50", want: Bucket{Size: 1000, RestoreRate: 50}},
		{in: " 1 / 1 ", want: Bucket{Size: 1, RestoreRate: 1}},
		{in: "1000", wantErr: true},
		{in: "1000/0", wantErr: true},
		{in: "0/50", wantErr: true},
		{in: "1000/x", wantErr: true},
		{in: "1000/50/s", wantErr: true},
	}
	for _, tt := range tests {
		got, err := ParseBudget(tt.in)
		if tt.wantErr {
			if err == nil || !strings.Contains(err.Error(), "<size>/<restore per second>") {
				t.Errorf("ParseBudget(%q) error = %v, want one that says the syntax", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseBudget(%q) = %+v, %v, want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestRetryAfterSeconds(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int
	}{
		{0, 0},
		{-time.Second, 0},
		{time.Millisecond, 1},
		{time.Second, 1},
		{time.Second + time.Millisecond, 2},
		{20 * time.Second, 20},
	}
	for _, tt := range tests {
		if got := RetryAfterSeconds(tt.in); got != tt.want {
			t.Errorf("RetryAfterSeconds(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestLocalForgets checks that the in-process limits forget the state of
// keys that are back to their initial state, so that memory follows the
// keys in use.
func TestLocalForgets(t *testing.T) {
	clock := newFakeClock()
	opts := LocalOptions{Now: clock.Now}
	rate := NewLocalRate(Rate{Events: 10, Per: time.Second}, opts)
	budget := NewLocalBudget(Bucket{Size: 10, RestoreRate: 10}, opts)
	tokens := NewLocalTokenQuota(100, opts)
	conc := NewLocalConcurrency(1)
	for i := range 3 * minSweep {
		key := "k" + string(rune('a'+i%26)) + time.Duration(i).String()
		rate.Allow(t.Context(), key)
		budget.Debit(t.Context(), key, 5)
		tokens.Reserve(t.Context(), key, 5)
		release, _, _ := conc.Acquire(t.Context(), key)
		release()
		if i%minSweep == 0 {
			clock.Advance(25 * time.Hour) // everything so far is forgettable
		}
	}
	if n := len(rate.tat); n > 2*minSweep {
		t.Errorf("LocalRate holds %d keys, want at most %d", n, 2*minSweep)
	}
	if n := len(budget.buckets); n > 2*minSweep {
		t.Errorf("LocalBudget holds %d keys, want at most %d", n, 2*minSweep)
	}
	if n := len(tokens.used); n > 2*minSweep {
		t.Errorf("LocalTokenQuota holds %d keys, want at most %d", n, 2*minSweep)
	}
	if n := len(conc.inUse); n != 0 {
		t.Errorf("LocalConcurrency holds %d users with no slot in use, want 0", n)
	}
}
