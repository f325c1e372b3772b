package perf

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// env is what a workload shares between its workers: the run's
// configuration and connections, and background tasks (watchers, a
// compactor) that run through the measured phase, each with a recorder of
// its own.
type env struct {
	cfg   Config
	conns []*conn
	// lastRev is the newest revision a write of the measured phase
	// created (wrote).
	lastRev atomic.Int64

	tasks  []func(ctx context.Context, rec *recorder)
	recs   []*recorder
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// drained, if set, reports whether the background tasks have seen
	// the effects of every operation of the measured phase (a watcher,
	// the events of the last put); finish waits for it, up to
	// drainTimeout, before stopping them.
	drained func() bool
}

// drainTimeout bounds how long finish waits for background tasks to catch
// up with the measured phase.
const drainTimeout = 10 * time.Second

// wrote records that a write of the measured phase created revision rev.
func (e *env) wrote(rev int64) {
	for {
		cur := e.lastRev.Load()
		if rev <= cur || e.lastRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// background registers a task to run from the start of the measured phase
// to its end; it must return when ctx ends.
func (e *env) background(task func(ctx context.Context, rec *recorder)) {
	e.tasks = append(e.tasks, task)
}

func (e *env) begin(start time.Time) {
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	for _, t := range e.tasks {
		rec := newRecorder(start)
		e.recs = append(e.recs, rec)
		e.wg.Go(func() { t(ctx, rec) })
	}
}

// finish stops the background tasks and returns their measurements merged.
func (e *env) finish() *recorder {
	out := newRecorder(time.Time{})
	if e.drained != nil {
		t := time.NewTicker(10 * time.Millisecond)
		deadline := time.Now().Add(drainTimeout)
		for !e.drained() && time.Now().Before(deadline) {
			<-t.C
		}
		t.Stop()
	}
	if e.cancel != nil {
		e.cancel()
		e.wg.Wait()
	}
	for _, r := range e.recs {
		// Background tasks record by kind only; operations are the
		// workers'.
		r.ops.Reset()
		r.perSec = nil
		out.merge(r)
	}
	return out
}
