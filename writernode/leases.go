package writernode

import (
	"context"
	"errors"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/lessor"
)

// Lease expiry, as in etcd: every member's lessor follows the applied lease
// table (the applier's OnLease and OnRestore hooks), and the leader's is
// primary. Every leaseTick the lease goroutine promotes or demotes it as
// leadership moved, proposes a LeaseRevoke for each lease that expired and
// a LeaseCheckpoint of the remaining TTLs that are due. A lease therefore
// expires only through an entry the leader proposed (invariant 6).
const (
	leaseTick = 500 * time.Millisecond
	// maxRevokesPerTick is etcd's revoke rate, 1000 a second.
	maxRevokesPerTick = 500
	// maxCheckpointsPerEntry bounds one LeaseCheckpoint (etcd: 1000).
	maxCheckpointsPerEntry = 1000
	// revokeConcurrency bounds revokes in flight at once.
	revokeConcurrency = 64
)

func leaseStates(ls []applier.LeaseInfo) []lessor.State {
	out := make([]lessor.State, len(ls))
	for i, l := range ls {
		out[i] = lessor.State{ID: l.ID, TTL: l.TTL, RemainingTTL: l.RemainingTTL}
	}
	return out
}

// onLease is the applier's OnLease hook.
func (m *Member) onLease(ev applier.LeaseEvent) {
	switch ev.Kind {
	case applier.LeaseGranted:
		m.lessor.Granted(ev.ID, ev.TTL)
	case applier.LeaseRevoked:
		m.lessor.Revoked(ev.ID)
	case applier.LeaseCheckpointed:
		m.lessor.Checkpointed(ev.ID, ev.Remaining)
	}
}

// onRestore is the applier's OnRestore hook.
func (m *Member) onRestore(ls []applier.LeaseInfo) { m.lessor.Load(leaseStates(ls)) }

// electionTimeout is etcd's --election-timeout as a duration.
func (m *Member) electionTimeout() time.Duration {
	return time.Duration(m.cfg.ElectionTicks) * m.cfg.TickInterval
}

// runLeases is the lease goroutine; it ends when the member stops.
func (m *Member) runLeases() {
	tk := m.cfg.Clock.NewTicker(leaseTick)
	defer tk.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-m.node.Done():
			return
		case <-tk.C():
		}
		m.leaseTickOnce()
	}
}

// leaseTickOnce does one round of lease work.
func (m *Member) leaseTickOnce() {
	st := m.node.Status()
	if !st.IsLeader {
		if m.lessor.Primary() {
			m.lessor.Demote()
		}
		return
	}
	if !m.ensurePromoted(st.Term) {
		return
	}
	m.revokeExpired(st.Term)
	if cps := m.lessor.DueCheckpoints(maxCheckpointsPerEntry); len(cps) > 0 {
		m.proposeLease(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: cps}})
	}
}

// ensurePromoted makes the lessor primary for term, if this member leads in
// it, and reports whether it is. Expiry times of an earlier term are stale
// and dropped at once; a new leader's table is complete only once it has
// applied what earlier leaders committed, so promotion follows a barrier.
// The lease goroutine calls it every tick; a renewal that reaches a new
// leader before that calls it too rather than fail.
func (m *Member) ensurePromoted(term uint64) bool {
	m.promoteMu.Lock()
	defer m.promoteMu.Unlock()
	if m.lessor.PrimaryTerm() == term {
		return true
	}
	m.lessor.Demote()
	if !m.confirmLeader(term) {
		return false
	}
	m.lessor.Promote(m.electionTimeout(), term)
	m.lg.Info("lessor promoted", zap.Uint64("term", term))
	return true
}

// confirmLeader runs a linearizable barrier (a ReadIndex round confirms
// leadership with a quorum, then everything committed is applied) and
// reports whether this member still leads in term.
func (m *Member) confirmLeader(term uint64) bool {
	ctx, cancel := context.WithTimeout(context.Background(), (*backend)(m).requestTimeout())
	err := (*backend)(m).LinearizableBarrier(ctx)
	cancel()
	now := m.node.Status()
	return err == nil && now.IsLeader && now.Term == term
}

// revokeExpired proposes a revoke for every lease the lessor reports
// expired, a bounded number at a time, and waits for them. Leadership in
// term is confirmed first, as etcd does before it revokes, and checked
// again before each proposal.
func (m *Member) revokeExpired(term uint64) {
	ids := m.lessor.Expired(maxRevokesPerTick)
	if len(ids) == 0 || !m.confirmLeader(term) {
		return
	}
	sem := make(chan struct{}, revokeConcurrency)
	var wg sync.WaitGroup
	for _, id := range ids {
		if st := m.node.Status(); !st.IsLeader || st.Term != term {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m.proposeLease(&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}})
		})
	}
	wg.Wait()
}

// proposeLease proposes r and logs a failure; the lessor offers an expired
// lease again after its retry interval.
func (m *Member) proposeLease(r *pb.InternalRaftRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), (*backend)(m).requestTimeout())
	defer cancel()
	res, err := m.prop.Propose(ctx, r)
	if err == nil {
		err = res.Err
	}
	if err != nil && !errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) && !errors.Is(err, rpctypes.ErrGRPCStopped) {
		m.lg.Warn("lease proposal failed", zap.Stringer("request", r), zap.Error(err))
	}
}
