package writernode

import (
	"context"
	"errors"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/clock"
)

// AutoCompaction is --auto-compaction-mode and --auto-compaction-retention,
// resolved: at most one of Period and Revisions is set; neither disables
// auto compaction.
type AutoCompaction struct {
	// Period is periodic mode's retention: the history kept is the
	// revisions of the last Period.
	Period time.Duration
	// Revisions is revision mode's retention: the history kept is the
	// last Revisions revisions.
	Revisions int64
}

// revisionCompactInterval is how often revision mode compacts, etcd's.
const revisionCompactInterval = 5 * time.Minute

// autoCompactor compacts the history as etcd's v3compactor does, on the
// leader only (elsewhere it keeps sampling but does not compact), through
// the ordinary Compact request, so every member applies the compaction at
// the same index.
//
// Periodic mode samples the revision every tenth of the compaction
// interval (the retention, at most an hour), keeps the samples of the last
// retention and one more, and compacts to the oldest one: first once a
// retention has passed since start (to the first sample), then every
// compaction interval; a failed attempt is retried at the next sample. A
// retention of 72h thus compacts every hour, keeping at least 72h.
//
// Revision mode compacts every five minutes to the current revision minus
// the retention, unless that is not positive or was compacted last time.
//
// A compaction etcd answers with "required revision has been compacted"
// (someone compacted further meanwhile) counts as done, as in etcd.
type autoCompactor struct {
	cfg     AutoCompaction
	clock   clock.Clock
	lg      *zap.Logger
	rev     func() int64
	leader  func() bool
	compact func(ctx context.Context, rev int64) error
	stop    <-chan struct{}
}

func (a *autoCompactor) run() {
	switch {
	case a.cfg.Period > 0:
		a.periodic()
	case a.cfg.Revisions > 0:
		a.revisions()
	}
}

func (a *autoCompactor) periodic() {
	interval := min(a.cfg.Period, time.Hour)
	sample := interval / 10
	keep := int(a.cfg.Period/sample) + 1
	revs := make([]int64, 0, keep+1)
	lastSuccess := a.clock.Now()
	wait := a.cfg.Period // the first compaction waits a whole retention
	for {
		revs = append(revs, a.rev())
		if len(revs) > keep {
			revs = revs[1:] // revs[0] is the revision of a retention ago
		}
		select {
		case <-a.stop:
			return
		case <-a.clock.After(sample):
		}
		if !a.leader() || a.clock.Now().Sub(lastSuccess) < wait {
			continue
		}
		wait = interval
		if a.try(revs[0]) {
			lastSuccess = a.clock.Now()
		}
	}
}

func (a *autoCompactor) revisions() {
	var last int64
	for {
		select {
		case <-a.stop:
			return
		case <-a.clock.After(revisionCompactInterval):
		}
		if !a.leader() {
			continue
		}
		rev := a.rev() - a.cfg.Revisions
		if rev <= 0 || rev == last {
			continue
		}
		if a.try(rev) {
			last = rev
		}
	}
}

// try compacts to rev and reports whether that is done.
func (a *autoCompactor) try(rev int64) bool {
	if rev <= 1 {
		return true // nothing to compact yet
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := a.clock.Now()
	err := a.compact(ctx, rev)
	if err != nil && !errors.Is(err, rpctypes.ErrGRPCCompacted) {
		a.lg.Warn("failed auto compaction", zap.Int64("revision", rev), zap.Error(err))
		return false
	}
	a.lg.Info("completed auto compaction", zap.Int64("revision", rev),
		zap.Duration("took", a.clock.Now().Sub(start)), zap.Error(err))
	return true
}

// startAutoCompaction runs the member's auto compactor, if configured,
// until the member stops. Readers never compact: they are learners.
func (m *Member) startAutoCompaction() {
	if m.cfg.Reader || (m.cfg.AutoCompaction.Period <= 0 && m.cfg.AutoCompaction.Revisions <= 0) {
		return
	}
	a := &autoCompactor{
		cfg:   m.cfg.AutoCompaction,
		clock: m.cfg.Clock,
		lg:    m.lg.Named("compactor"),
		rev: func() int64 {
			rev, _ := m.app.Rev()
			return rev
		},
		leader: func() bool { return m.node.Status().Lead == m.id.MemberID },
		compact: func(ctx context.Context, rev int64) error {
			res, err := (*backend)(m).Propose(ctx, &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev}})
			if err != nil {
				return err
			}
			return res.Err
		},
		stop: m.stop,
	}
	m.bg.Go(a.run)
}
