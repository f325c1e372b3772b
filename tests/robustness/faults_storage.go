//go:build linux

package robustness

import (
	"context"
	"fmt"
	"os"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// The faults at storage boundaries and of membership. Every crash loses
// what the member had not fsynced (Member.Crash): the page cache that a
// plain kill -9 leaves behind is the friendliest possible crash.

// snapshotCount is --snapshot-count in commonFlags: a member this many
// entries behind a leader that released its log needs a snapshot.
const snapshotCount = 50

// powerLoss kills every writer at once, each losing what it had not
// fsynced; the undo starts them all and waits until they answer. Every
// write acknowledged before must survive: a quorum had it on disk.
func powerLoss(ctx context.Context, c *Env) (func() error, error) {
	ws := c.Writers()
	for _, m := range ws {
		m.Kill()
	}
	for _, m := range ws {
		if err := m.Crash(); err != nil {
			return nil, err
		}
	}
	return func() error {
		for _, m := range ws {
			if err := m.Start(); err != nil {
				return err
			}
		}
		for _, m := range ws {
			if err := m.WaitUp(ctx); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// crashAt crashes a member the seed picks at one of the failpoints (also
// the seed's) that the traffic reaches within moments on every member:
// the failpoint is set to panic, the process dies there and loses what it
// had not fsynced; the undo restarts it.
func crashAt(points ...string) func(context.Context, *Env) (func() error, error) {
	return func(ctx context.Context, c *Env) (func() error, error) {
		m := c.Members[c.Rand.IntN(len(c.Members))]
		fp := points[c.Rand.IntN(len(points))]
		if err := crashThere(m, fp, c.Logf); err != nil {
			return nil, err
		}
		return func() error { return m.Restart(ctx) }, nil
	}
}

// crashThere sets fp to panic on the running m and waits for the crash.
func crashThere(m *Member, fp string, logf func(string, ...any)) error {
	logf("%s: %s=panic", m.Name, fp)
	before := m.panicsAt(fp)
	if err := m.SetFailpoint(fp, panicTerm(fp)); err != nil {
		return err
	}
	if err := m.waitPanic(fp, before, 15*time.Second); err != nil {
		return err
	}
	return m.Crash()
}

// panicTerm is the gofail term that panics at fp with fp's name in the
// message (a bare "panic" says only "failpoint panic: {}").
func panicTerm(fp string) string { return fmt.Sprintf("panic(%q)", fp) }

// panicsAt counts the member's panics at failpoint fp, all lives.
func (m *Member) panicsAt(fp string) int { return m.LogCount("failpoint panic: " + fp) }

// waitPanic waits, up to d, for the member to die at failpoint fp: its
// exit alone is not enough, since a real panic elsewhere must not pass for
// the planned one.
func (m *Member) waitPanic(fp string, before int, d time.Duration) error {
	if !m.WaitExit(d) {
		return fmt.Errorf("%s: failpoint %s did not fire within %v", m.Name, fp, d)
	}
	if m.panicsAt(fp) == before {
		return fmt.Errorf("%s exited, but not at failpoint %s (see %s.log)", m.Name, fp, m.Dir)
	}
	return nil
}

// compactionPoints are the failpoints of physical compaction.
var compactionPoints = []string{
	"compactBeforeCommitScheduledCompact", "compactAfterCommitScheduledCompact",
	"compactBeforeCommitBatch", "compactAfterCommitBatch",
	"compactBeforeSetFinishedCompact", "compactAfterSetFinishedCompact",
}

// crashCompaction compacts the history and crashes a member the seed
// picks inside the physical compaction that follows (at a failpoint the
// seed picks); the undo restarts it, and its compaction resumes. The
// revision compacted is below every watcher's position, so that each can
// still resume.
func crashCompaction(ctx context.Context, c *Env) (func() error, error) {
	m := c.Members[c.Rand.IntN(len(c.Members))]
	fp := compactionPoints[c.Rand.IntN(len(compactionPoints))]
	rev := int64(-1)
	for _, w := range c.Watchers {
		if n := w.next() - 1; rev < 0 || n < rev {
			rev = n
		}
	}
	if rev < 2 {
		return nil, fmt.Errorf("nothing to compact: a watcher is at revision %d", rev)
	}
	c.Logf("%s: %s=panic; compacting at revision %d", m.Name, fp, rev)
	before := m.panicsAt(fp)
	if err := m.SetFailpoint(fp, panicTerm(fp)); err != nil {
		return nil, err
	}
	if err := c.compact(ctx, rev); err != nil {
		return nil, err
	}
	if err := m.waitPanic(fp, before, 15*time.Second); err != nil {
		return nil, err
	}
	if err := m.Crash(); err != nil {
		return nil, err
	}
	return func() error { return m.Restart(ctx) }, nil
}

// compact compacts the history at rev through the first writer that
// takes it. A writer that fails may have compacted nonetheless (it may be
// the one crashing): the next then answers that rev is compacted.
func (c *Cluster) compact(ctx context.Context, rev int64) error {
	var last error
	for _, w := range c.Writers() {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := w.KV().Compact(cctx, &pb.CompactionRequest{Revision: rev})
		cancel()
		if err == nil || (last != nil && rpctypes.ErrorDesc(err) == rpctypes.ErrCompacted.Error()) {
			return nil
		}
		last = err
	}
	return fmt.Errorf("compacting at revision %d: %w", rev, last)
}

// snapshotLag makes a member fall behind until the leader has released
// the log it would need: a follower, or (in the topology with readers, on
// half the seeds) a reader, is crashed. (Cutting it off would not do: the
// proxy holds what the leader sent, entries read before the leader
// released them, and delivers it on healing.) On its return it must
// install a snapshot. With points, it crashes at one of them (the seed
// picks) while installing it, loses what it had not fsynced, and is
// restarted once more.
func snapshotLag(points ...string) func(context.Context, *Env) (func() error, error) {
	return func(ctx context.Context, c *Env) (func() error, error) {
		l, err := c.Leader(ctx)
		if err != nil {
			return nil, err
		}
		m, err := c.follower(ctx)
		if err != nil {
			return nil, err
		}
		if rs := c.Readers(); len(rs) > 0 && c.Rand.IntN(2) == 1 {
			m = rs[0]
		}
		from, err := raftIndex(ctx, l)
		if err != nil {
			return nil, err
		}
		installs := m.LogCount("installed snapshot")
		if err := m.Crash(); err != nil {
			return nil, err
		}
		return func() error {
			// The leader must be 3 snapshot counts ahead: it has then
			// released the log at least twice past the member.
			deadline := time.Now().Add(15 * time.Second)
			for {
				at, err := raftIndex(ctx, l)
				if err == nil && at >= from+3*snapshotCount {
					break
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("the leader %s did not move 3 snapshot counts past index %d in 15 s (at %d, %v)", l.Name, from, at, err)
				}
				time.Sleep(100 * time.Millisecond) // polls the leader's index
			}
			if len(points) > 0 {
				fp := points[c.Rand.IntN(len(points))]
				c.Logf("%s: %s=panic", m.Name, fp)
				before := m.panicsAt(fp)
				m.onceEnv = []string{"GOFAIL_FAILPOINTS=" + fp + "=" + panicTerm(fp)}
				if err := m.Start(); err != nil {
					return err
				}
				if err := m.waitPanic(fp, before, 30*time.Second); err != nil {
					return err
				}
				if err := m.Crash(); err != nil {
					return err
				}
				return m.Restart(ctx)
			}
			if err := m.Restart(ctx); err != nil {
				return err
			}
			for m.LogCount("installed snapshot") == installs {
				if time.Now().After(deadline.Add(30 * time.Second)) {
					return fmt.Errorf("%s caught up without installing a snapshot", m.Name)
				}
				time.Sleep(100 * time.Millisecond) // polls the member's log
			}
			return nil
		}, nil
	}
}

// raftIndex is the member's raft index, from Status.
func raftIndex(ctx context.Context, m *Member) (uint64, error) {
	sctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := m.Maintenance().Status(sctx, &pb.StatusRequest{})
	if err != nil {
		return 0, err
	}
	return st.RaftIndex, nil
}

// replace removes a member (a follower, or a reader) from the cluster,
// and wipes it; the undo adds it back as a new member on the same URLs
// (a learner; a writer is then promoted once it has caught up), with an
// empty data dir: it starts from a snapshot of the leader's.
func replace(reader bool) func(context.Context, *Env) (func() error, error) {
	return func(ctx context.Context, c *Env) (func() error, error) {
		m, err := c.follower(ctx)
		if err != nil {
			return nil, err
		}
		if reader {
			m = c.Readers()[c.Rand.IntN(len(c.Readers()))]
		}
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		st, err := m.Maintenance().Status(sctx, &pb.StatusRequest{})
		cancel()
		if err != nil {
			return nil, err
		}
		id := st.Header.GetMemberId()
		c.Logf("removing %s (%x)", m.Name, id)
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.clusterClient(m).MemberRemove(rctx, &pb.MemberRemoveRequest{ID: id})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("removing %s: %w", m.Name, err)
		}
		// It stops by itself once it applies its removal, unless it
		// never hears of it.
		if !m.WaitExit(10 * time.Second) {
			m.Kill()
		}
		if err := os.RemoveAll(m.Dir); err != nil {
			return nil, err
		}
		if err := os.Remove(m.ledger()); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
		return func() error {
			id, err := c.Join(ctx, m)
			if err != nil || reader {
				return err
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := c.clusterClient(nil).MemberPromote(pctx, &pb.MemberPromoteRequest{ID: id})
				cancel()
				if err == nil {
					c.Logf("promoted %s (%x)", m.Name, id)
					return nil
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("promoting %s: %w", m.Name, err)
				}
				time.Sleep(200 * time.Millisecond) // the learner catches up
			}
		}, nil
	}
}
