package writernode

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.uber.org/zap"
)

// ErrCorruptStateMachine stops a reader whose state machine hashes
// differently from the leader's at the same revision: its bbolt file holds
// something the log never wrote (bbolt pages carry no checksums, and a
// power loss under NoSync can leave well-formed stale pages). Whoever runs
// the member moves the file aside and starts it again, which seeds a new
// one from the leader.
var ErrCorruptStateMachine = errors.New("the state machine hashes differently from the leader's")

// runHashCheck compares, every interval, the reader's HashKV with the
// leader's at the reader's current revision (when both report the same
// compacted revision, so the hashes cover the same history) and fails the
// member on a mismatch. It ends when the member stops.
func (m *Member) runHashCheck(interval time.Duration) {
	m.everyTick(interval, func(ctx context.Context) bool {
		err := m.checkHashAgainstLeader(ctx)
		if errors.Is(err, ErrCorruptStateMachine) {
			m.lg.Error("stopping: the state machine is corrupt", zap.Error(err))
			go m.node.Fail(err)
			return false
		}
		if err != nil {
			m.lg.Debug("hash check skipped", zap.Error(err))
		}
		return true
	})
}

// everyTick calls check every interval, with a context bounded by the
// request timeout, until the member stops or check returns false.
func (m *Member) everyTick(interval time.Duration, check func(ctx context.Context) bool) {
	t := m.cfg.Clock.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C():
		}
		ctx, cancel := context.WithTimeout(context.Background(), (*backend)(m).requestTimeout())
		more := check(ctx)
		cancel()
		if !more {
			return
		}
	}
}

// checkHashAgainstLeader runs one comparison; it returns
// ErrCorruptStateMachine (wrapped) on a mismatch and another error when
// the comparison could not be made.
func (m *Member) checkHashAgainstLeader(ctx context.Context) error {
	rev, _ := m.app.Rev()
	conn, err := (*backend)(m).leaderConn(ctx)
	if err != nil {
		return err
	}
	theirs, err := pb.NewMaintenanceClient(conn).HashKV(ctx, &pb.HashKVRequest{Revision: rev})
	if err != nil {
		return err
	}
	ours, err := m.app.HashKV(rev)
	if err != nil {
		return err
	}
	if theirs.CompactRevision != ours.CompactRev {
		return errors.New("compacted revisions differ; comparing next time")
	}
	if theirs.Hash != ours.Hash {
		return &hashMismatch{rev: rev, ours: ours.Hash, theirs: theirs.Hash}
	}
	return nil
}

type hashMismatch struct {
	rev          int64
	ours, theirs uint32
}

func (e *hashMismatch) Error() string {
	return fmt.Sprintf("%v: at revision %d %08x here, %08x on the leader", ErrCorruptStateMachine, e.rev, e.ours, e.theirs)
}

func (e *hashMismatch) Unwrap() error { return ErrCorruptStateMachine }
