package writernode

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/clock"
)

// compactorHarness drives an autoCompactor on a manual clock: the revision
// grows by 10 each time the compactor reads it, and every compaction it
// asks for is recorded.
type compactorHarness struct {
	t      *testing.T
	clk    *clock.Manual
	reads  atomic.Int64
	leader atomic.Bool
	fail   atomic.Bool
	mu     sync.Mutex
	asked  []int64
	stop   chan struct{}
	done   chan struct{}
}

func startCompactor(t *testing.T, cfg AutoCompaction) *compactorHarness {
	h := &compactorHarness{t: t, clk: clock.NewManual(time.Unix(0, 0)), stop: make(chan struct{}), done: make(chan struct{})}
	h.leader.Store(true)
	a := &autoCompactor{
		cfg: cfg, clock: h.clk, lg: zap.NewNop(),
		rev:    func() int64 { return 10 * h.reads.Add(1) },
		leader: h.leader.Load,
		compact: func(_ context.Context, rev int64) error {
			h.mu.Lock()
			defer h.mu.Unlock()
			h.asked = append(h.asked, rev)
			if h.fail.Load() {
				return rpctypes.ErrGRPCNoLeader
			}
			if len(h.asked) > 1 && rev <= h.asked[len(h.asked)-2] {
				return rpctypes.ErrGRPCCompacted
			}
			return nil
		},
		stop: h.stop,
	}
	go func() { defer close(h.done); a.run() }()
	t.Cleanup(func() { close(h.stop); <-h.done })
	h.waitWaiting()
	return h
}

// waitWaiting waits (bounded) until the compactor waits on the clock.
func (h *compactorHarness) waitWaiting() {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for h.clk.Waiters() == 0 {
		if time.Now().After(deadline) {
			h.t.Fatal("the compactor never waited on the clock")
		}
		time.Sleep(time.Millisecond) // polling the compactor's state; bounded by deadline
	}
}

// advance moves the clock by d and waits until the compactor has handled
// the tick and waits again.
func (h *compactorHarness) advance(d time.Duration) {
	h.t.Helper()
	h.clk.Advance(d)
	deadline := time.Now().Add(10 * time.Second)
	for h.clk.Waiters() == 0 {
		if time.Now().After(deadline) {
			h.t.Fatal("the compactor did not handle the tick")
		}
		time.Sleep(time.Millisecond) // polling the compactor's state; bounded by deadline
	}
}

func (h *compactorHarness) compactions() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int64(nil), h.asked...)
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestPeriodicAutoCompaction(t *testing.T) {
	h := startCompactor(t, AutoCompaction{Period: 10 * time.Minute})
	// Samples every minute (revision 10 at 0m, 20 at 1m, ...). Nothing
	// is compacted before a whole retention has passed.
	for range 9 {
		h.advance(time.Minute)
	}
	if got := h.compactions(); len(got) != 0 {
		t.Fatalf("compacted before the retention passed: %v", got)
	}
	// At 10m: to the revision sampled 10m before (at 0m).
	h.advance(time.Minute)
	if got := h.compactions(); !equal(got, []int64{10}) {
		t.Fatalf("at 10m: %v, want [10]", got)
	}
	// Then every compaction interval (the retention, under an hour), to
	// the oldest of the last 11 samples: at 20m, the revision of 9m
	// (etcd keeps a retention and a sample more).
	for range 10 {
		h.advance(time.Minute)
	}
	if got := h.compactions(); !equal(got, []int64{10, 100}) {
		t.Fatalf("at 20m: %v, want [10 100]", got)
	}
	// A failure is retried at the next sample, with the window moved on.
	h.fail.Store(true)
	for range 10 {
		h.advance(time.Minute)
	}
	h.fail.Store(false)
	h.advance(time.Minute)
	if got := h.compactions(); !equal(got, []int64{10, 100, 200, 210}) {
		t.Fatalf("after a failure at 30m: %v, want [10 100 200 210]", got)
	}
}

func TestAutoCompactionOnlyOnTheLeader(t *testing.T) {
	h := startCompactor(t, AutoCompaction{Period: 10 * time.Minute})
	h.leader.Store(false)
	for range 15 {
		h.advance(time.Minute)
	}
	if got := h.compactions(); len(got) != 0 {
		t.Fatalf("a follower compacted: %v", got)
	}
	// Leading now: it compacts at the next sample, to the revision of a
	// retention ago (sampled while it followed).
	h.leader.Store(true)
	h.advance(time.Minute)
	if got := h.compactions(); !equal(got, []int64{60}) {
		t.Fatalf("after becoming leader at 16m: %v, want [60]", got)
	}
}

func TestLongRetentionCompactsHourly(t *testing.T) {
	h := startCompactor(t, AutoCompaction{Period: 3 * time.Hour})
	// Samples every 6 minutes; the first compaction after 3h, then hourly.
	for range 30 {
		h.advance(6 * time.Minute)
	}
	if got := h.compactions(); !equal(got, []int64{10}) {
		t.Fatalf("at 3h: %v, want [10]", got)
	}
	for range 10 {
		h.advance(6 * time.Minute)
	}
	// At 4h, to the revision of 54m (the oldest of the last 31 samples).
	if got := h.compactions(); !equal(got, []int64{10, 100}) {
		t.Fatalf("at 4h: %v, want [10 100]", got)
	}
}

func TestRevisionAutoCompaction(t *testing.T) {
	h := startCompactor(t, AutoCompaction{Revisions: 15})
	for range 2 {
		h.advance(revisionCompactInterval)
	}
	// The revision reads 10 then 20: 10-15 ≤ 0 is skipped, 20-15 = 5.
	if got := h.compactions(); !equal(got, []int64{5}) {
		t.Fatalf("%v, want [5]", got)
	}
	h.advance(revisionCompactInterval)
	if got := h.compactions(); !equal(got, []int64{5, 15}) {
		t.Fatalf("%v, want [5 15]", got)
	}
}
