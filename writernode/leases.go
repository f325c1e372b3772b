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
	var promotedTerm uint64
	for {
		select {
		case <-m.stop:
			return
		case <-m.node.Done():
			return
		case <-tk.C():
		}
		promotedTerm = m.leaseTickOnce(promotedTerm)
	}
}

// leaseTickOnce does one round of lease work and returns the term the
// lessor is primary for (0: not primary).
func (m *Member) leaseTickOnce(promotedTerm uint64) uint64 {
	st := m.node.Status()
	switch {
	case !st.IsLeader:
		if m.lessor.Primary() {
			m.lessor.Demote()
		}
		return 0
	case promotedTerm != st.Term:
		// A new leader's table is complete only once it has applied
		// what earlier leaders committed: promote after a barrier, and
		// only if it still leads in the same term.
		ctx, cancel := context.WithTimeout(context.Background(), (*backend)(m).requestTimeout())
		err := (*backend)(m).LinearizableBarrier(ctx)
		cancel()
		if now := m.node.Status(); err != nil || !now.IsLeader || now.Term != st.Term {
			return 0
		}
		m.lessor.Promote(m.electionTimeout())
		m.lg.Info("lessor promoted", zap.Uint64("term", st.Term))
		promotedTerm = st.Term
	}
	m.revokeExpired()
	if cps := m.lessor.DueCheckpoints(maxCheckpointsPerEntry); len(cps) > 0 {
		m.proposeLease(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: cps}})
	}
	return promotedTerm
}

// revokeExpired proposes a revoke for every lease the lessor reports
// expired, a bounded number at a time, and waits for them.
func (m *Member) revokeExpired() {
	ids := m.lessor.Expired(maxRevokesPerTick)
	sem := make(chan struct{}, revokeConcurrency)
	var wg sync.WaitGroup
	for _, id := range ids {
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
