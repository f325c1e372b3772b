//go:build linux

package robustness

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/stratakv/strata/tests/robustness/faultproxy"
)

// A Fault is injected at the first third of a run's traffic and undone at
// the second (Inject returns the undo).
type Fault struct {
	Name   string
	Inject func(ctx context.Context, c *Cluster) (undo func() error, err error)
}

// Faults are the fault types, by name; a seed picks one.
var Faults = []Fault{
	{"kill-leader", func(ctx context.Context, c *Cluster) (func() error, error) {
		l, err := c.Leader(ctx)
		if err != nil {
			return nil, err
		}
		l.Kill()
		return func() error { return l.Restart(ctx) }, nil
	}},
	{"kill-follower", func(ctx context.Context, c *Cluster) (func() error, error) {
		f, err := c.follower(ctx)
		if err != nil {
			return nil, err
		}
		f.Kill()
		return func() error { return f.Restart(ctx) }, nil
	}},
	{"pause-leader", func(ctx context.Context, c *Cluster) (func() error, error) {
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
	{"partition-leader", func(ctx context.Context, c *Cluster) (func() error, error) {
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
	{"slow-links", func(ctx context.Context, c *Cluster) (func() error, error) {
		for _, m := range c.Members {
			m.PeerProxy.Set(faultproxy.Faults{Delay: 30 * time.Millisecond, Jitter: 30 * time.Millisecond, Loss: 0.02})
		}
		return func() error { c.Heal(); return nil }, nil
	}},
}

// follower returns a member that is not the leader.
func (c *Cluster) follower(ctx context.Context) (*Member, error) {
	l, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	for _, m := range c.Members {
		if m != l {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no follower in a cluster of %d", len(c.Members))
}
