package writernode

import (
	"context"
	"fmt"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
)

// memberHash is one member's answer in a cluster check.
type memberHash struct {
	id         uint64
	learner    bool
	hash       uint32
	compactRev int64
}

// oddMembers returns the members whose hash disagrees with a strict
// majority of the answers that cover the same history (the compacted
// revision most answers report). With no strict majority it returns nil
// and ok false: the check cannot tell who is right.
func oddMembers(answers []memberHash) (odd []uint64, ok bool) {
	byCompact := map[int64]int{}
	for _, a := range answers {
		byCompact[a.compactRev]++
	}
	var compact int64
	best := 0
	for rev, n := range byCompact {
		if n > best || n == best && rev > compact {
			compact, best = rev, n
		}
	}
	counts := map[uint32]int{}
	n := 0
	for _, a := range answers {
		if a.compactRev == compact {
			counts[a.hash]++
			n++
		}
	}
	var major uint32
	found := false
	for h, c := range counts {
		if 2*c > n {
			major, found = h, true
		}
	}
	if !found {
		return nil, n < 2 || len(counts) == 1
	}
	for _, a := range answers {
		if a.compactRev == compact && a.hash != major {
			odd = append(odd, a.id)
		}
	}
	slices.Sort(odd)
	return odd, true
}

// runCorruptCheck is the leader's periodic corruption check: every
// interval it asks every member, writers and readers, for HashKV at one
// revision that all have applied (the lowest current revision among them),
// and compares. A member whose hash disagrees with a strict majority is
// corrupt: a writer gets the CORRUPT alarm (raised through the log, so the
// cluster refuses writes and the member refuses to serve reads until it is
// replaced, docs/operations.md); a reader's own check (hashcheck.go) finds
// its mismatch with the leader and re-seeds it. Members that do not answer
// sit the round out. It runs on every writer and acts only while leading.
func (m *Member) runCorruptCheck(interval time.Duration) {
	m.everyTick(interval, func(ctx context.Context) bool {
		if m.node.Status().Lead != m.id.MemberID {
			return true
		}
		if err := m.checkCluster(ctx, hashAtLowest); err != nil {
			m.lg.Debug("cluster corruption check skipped", zap.Error(err))
		}
		return true
	})
}

// Revisions hashMembers hashes at.
const (
	hashAtOwn    = 0  // this member's current revision
	hashAtLowest = -1 // the lowest current revision among the members
)

// hashMembers asks every member that answers, this one included, for
// HashKV at one revision: at (a revision), or hashAtOwn, or hashAtLowest
// (so that every member can hash it).
func (m *Member) hashMembers(ctx context.Context, at int64) (rev int64, answers []memberHash, err error) {
	members, err := m.app.Members()
	if err != nil {
		return 0, nil, err
	}
	learners := map[uint64]bool{}
	if cs := m.app.Applied().ConfState; cs != nil {
		for _, id := range cs.GetLearners() {
			learners[id] = true
		}
	}
	rev, _ = m.app.Rev()
	if at > 0 {
		rev = at
	}
	conns := map[uint64]pb.MaintenanceClient{}
	for _, mem := range members {
		if mem.ID == m.id.MemberID || len(mem.PeerURLs) == 0 {
			continue
		}
		conn, err := dialPeer(m.cfg.PeerTLS, mem.PeerURLs[0])
		if err != nil {
			continue
		}
		defer conn.Close()
		c := pb.NewMaintenanceClient(conn)
		if at == hashAtLowest {
			st, err := c.Status(ctx, &pb.StatusRequest{})
			if err != nil {
				continue
			}
			rev = min(rev, st.GetHeader().GetRevision())
		}
		conns[mem.ID] = c
	}
	ours, err := m.app.HashKV(rev)
	if err != nil {
		return 0, nil, err
	}
	answers = []memberHash{{id: m.id.MemberID, learner: learners[m.id.MemberID], hash: ours.Hash, compactRev: ours.CompactRev}}
	for id, c := range conns {
		resp, err := c.HashKV(ctx, &pb.HashKVRequest{Revision: rev})
		if err != nil {
			continue
		}
		answers = append(answers, memberHash{id: id, learner: learners[id], hash: resp.Hash, compactRev: resp.CompactRevision})
	}
	return rev, answers, nil
}

// errInconsistentWithPeers stops a member whose state machine disagrees
// with the majority of its peers when it starts (etcd's
// InitialCorruptCheck, in its words). A reader then re-seeds (main moves
// its file aside on ErrCorruptStateMachine); a writer stays down until it
// is replaced.
var errInconsistentWithPeers = fmt.Errorf("%w: found data inconsistency with peers", ErrCorruptStateMachine)

// initialCorruptCheck compares, before the member serves, its HashKV at
// its own revision with every peer's that answers; it fails if a strict
// majority disagrees with it. Peers that do not answer, or cannot tell,
// leave it to the periodic check.
func (m *Member) initialCorruptCheck(ctx context.Context) error {
	rev, answers, err := m.hashMembers(ctx, hashAtOwn)
	if err != nil {
		return nil // nothing to compare yet (compacted past, stopping)
	}
	odd, ok := oddMembers(answers)
	if ok && slices.Contains(odd, m.id.MemberID) {
		m.lg.Error("the state machine disagrees with the peers' at start-up", zap.Int64("revision", rev), zap.Any("hashes", answers))
		return errInconsistentWithPeers
	}
	return nil
}

// checkCluster runs one round of runCorruptCheck (at hashAtLowest) or of
// runCompactHashCheck (at a compacted revision).
func (m *Member) checkCluster(ctx context.Context, at int64) error {
	b := (*backend)(m)
	rev, answers, err := m.hashMembers(ctx, at)
	if err != nil {
		return err
	}
	learners := map[uint64]bool{}
	for _, a := range answers {
		learners[a.id] = a.learner
	}
	odd, ok := oddMembers(answers)
	if !ok {
		return fmt.Errorf("hashes at revision %d have no majority: %+v", rev, answers)
	}
	for _, id := range odd {
		if learners[id] {
			m.lg.Warn("a reader's state machine differs from the majority's; it re-seeds itself", zap.String("member", idString(id)), zap.Int64("revision", rev))
			continue
		}
		if m.app.AlarmActive(id, pb.AlarmType_CORRUPT) {
			continue
		}
		m.lg.Error("a member's state machine differs from the majority's: raising the CORRUPT alarm",
			zap.String("member", idString(id)), zap.Int64("revision", rev), zap.Any("hashes", answers))
		if _, err := b.Propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
			Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT}}); err != nil {
			return err
		}
	}
	return nil
}

// refuseIfCorrupt is what a member named by a CORRUPT alarm answers every
// read with: its state machine is wrong, so it serves nothing until it is
// replaced.
func (b *backend) refuseIfCorrupt() error {
	if b.app.AlarmActive(b.id.MemberID, pb.AlarmType_CORRUPT) {
		return rpctypes.ErrGRPCCorrupt
	}
	return nil
}

// runCompactHashCheck is etcd's CompactHashCheck: every interval, on the
// leader, once the history has been compacted further since the last
// round, every member's HashKV at the compacted revision is compared (the
// history a compaction keeps, which every member must agree on), with the
// same majority rule and consequences as runCorruptCheck.
func (m *Member) runCompactHashCheck(interval time.Duration) {
	var checked int64
	m.everyTick(interval, func(ctx context.Context) bool {
		_, compacted := m.app.Rev()
		if m.node.Status().Lead != m.id.MemberID || compacted <= checked || compacted <= 0 {
			return true
		}
		if err := m.checkCluster(ctx, compacted); err != nil {
			m.lg.Debug("compaction hash check skipped", zap.Int64("revision", compacted), zap.Error(err))
			return true
		}
		checked = compacted
		return true
	})
}
