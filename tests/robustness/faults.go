//go:build linux

package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"time"

	"github.com/stratakv/strata/tests/robustness/faultproxy"
)

// A Fault is injected at the first third of a run's traffic and undone at
// the second (Inject returns the undo).
type Fault struct {
	Name string
	// Readers marks a fault of a reader: it runs only in the topology
	// with readers.
	Readers bool
	Inject  func(ctx context.Context, c *Env) (undo func() error, err error)
}

// Env is what a fault acts on: the cluster, the run's watchers, and the
// seed's random choices.
type Env struct {
	*Cluster
	Watchers []*Watcher
	Rand     *rand.Rand
	// Logf logs to the test.
	Logf func(format string, args ...any)
}

// Faults are the fault types, by name; a seed picks one.
var Faults = []Fault{
	{Name: "kill-leader", Inject: func(ctx context.Context, c *Env) (func() error, error) {
		l, err := c.Leader(ctx)
		if err != nil {
			return nil, err
		}
		if err := l.Crash(); err != nil {
			return nil, err
		}
		return func() error { return l.Restart(ctx) }, nil
	}},
	{Name: "kill-follower", Inject: func(ctx context.Context, c *Env) (func() error, error) {
		f, err := c.follower(ctx)
		if err != nil {
			return nil, err
		}
		if err := f.Crash(); err != nil {
			return nil, err
		}
		return func() error { return f.Restart(ctx) }, nil
	}},
	{Name: "pause-leader", Inject: func(ctx context.Context, c *Env) (func() error, error) {
		// Paused past the election timeout: it loses leadership while
		// its clients' calls wait.
		l, err := c.Leader(ctx)
		if err != nil {
			return nil, err
		}
		if err := l.Signal(syscall.SIGSTOP); err != nil {
			return nil, err
		}
		return func() error { return l.Signal(syscall.SIGCONT) }, nil
	}},
	{Name: "partition-leader", Inject: func(ctx context.Context, c *Env) (func() error, error) {
		// Nothing reaches the leader, from peers or clients; what it
		// sends still leaves (an asymmetric partition).
		l, err := c.Leader(ctx)
		if err != nil {
			return nil, err
		}
		l.PeerProxy.Set(faultproxy.Faults{Blackhole: true})
		l.ClientProxy.Set(faultproxy.Faults{Blackhole: true})
		return func() error { c.Heal(); return nil }, nil
	}},
	{Name: "slow-links", Inject: func(ctx context.Context, c *Env) (func() error, error) {
		for _, m := range c.Members {
			m.PeerProxy.Set(faultproxy.Faults{Delay: 30 * time.Millisecond, Jitter: 30 * time.Millisecond, Loss: 0.02})
		}
		return func() error { c.Heal(); return nil }, nil
	}},
	{Name: "kill-reader", Readers: true, Inject: func(ctx context.Context, c *Env) (func() error, error) {
		r := c.Readers()[0]
		if err := r.Crash(); err != nil {
			return nil, err
		}
		return func() error { return r.Restart(ctx) }, nil
	}},
	{Name: "partition-reader", Readers: true, Inject: func(ctx context.Context, c *Env) (func() error, error) {
		// Cut off from the leader (nothing reaches its peer URL) while
		// its clients still reach it: their linearizable reads must
		// wait for a ReadIndex answer it cannot get, never be served
		// from its stale state.
		r := c.Readers()[0]
		r.PeerProxy.Set(faultproxy.Faults{Blackhole: true})
		return func() error { c.Heal(); return nil }, nil
	}},
	{Name: "slow-reader", Readers: true, Inject: func(ctx context.Context, c *Env) (func() error, error) {
		// The log reaches the reader late: its reads must still see
		// every write acknowledged before they began.
		r := c.Readers()[0]
		r.PeerProxy.Set(faultproxy.Faults{Delay: 150 * time.Millisecond, Jitter: 100 * time.Millisecond})
		return func() error { c.Heal(); return nil }, nil
	}},
	{Name: "partition-follower", Inject: func(ctx context.Context, c *Env) (func() error, error) {
		// A minority cut off: nothing reaches the follower; the
		// majority goes on, and the follower's clients wait.
		f, err := c.follower(ctx)
		if err != nil {
			return nil, err
		}
		f.PeerProxy.Set(faultproxy.Faults{Blackhole: true})
		f.ClientProxy.Set(faultproxy.Faults{Blackhole: true})
		return func() error { c.Heal(); return nil }, nil
	}},
	{Name: "power-loss", Inject: powerLoss},
	{Name: "crash-wal-save", Inject: crashAt("raftBeforeSave", "raftAfterSave")},
	{Name: "crash-apply-commit", Inject: crashAt("beforeCommit", "afterCommit")},
	{Name: "crash-compaction", Inject: crashCompaction},
	{Name: "snapshot-lag", Inject: snapshotLag()},
	{Name: "crash-snapshot-install", Inject: snapshotLag("raftBeforeApplySnap", "raftAfterApplySnap")},
	{Name: "replace-voter", Inject: replace(false)},
	{Name: "replace-reader", Readers: true, Inject: replace(true)},
}

// follower returns a member that is not the leader.
func (c *Cluster) follower(ctx context.Context) (*Member, error) {
	l, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range c.Writers() {
		if m != l {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no follower in a cluster of %d", len(c.Members))
}
