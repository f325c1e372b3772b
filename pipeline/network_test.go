package pipeline

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
)

// Multi-member behaviour over transport.Network, driven tick by tick by
// netCluster (netcluster_test.go), which also checks on every apply that
// members agree index by index and apply only durable entries.
//
// Only TestNetworkSnapshotCatchUp compacts the log; everywhere else raft
// always has the entries to send.

func TestNetworkElectsOneLeader(t *testing.T) {
	clusterSizes(t, func(t *testing.T, size int) {
		c := newNetCluster(t, size)
		lead := c.waitLeader()
		term := c.members[lead].node.Status().Term
		// The new leader's empty entry commits everywhere.
		c.tickUntil(2*netElectionTicks, "the leader's first entry applying everywhere", func() bool {
			for _, id := range c.ids {
				if c.members[id].node.Status().Applied < 2 {
					return false
				}
			}
			return true
		})
		// With a healthy network leadership is stable.
		c.ticks(5 * netElectionTicks)
		if got := c.leader(); got != lead {
			t.Fatalf("leader moved from %d to %d on a healthy network", lead, got)
		}
		for _, id := range c.ids {
			if st := c.members[id].node.Status(); st.Term != term {
				t.Fatalf("member %d is at term %d, the leader was elected at %d", id, st.Term, term)
			}
		}
	})
}

func TestNetworkPartitionedLeader(t *testing.T) {
	clusterSizes(t, func(t *testing.T, size int) {
		c := newNetCluster(t, size)
		old := c.waitLeader()
		c.mustPropose(old, "before")
		c.waitApplied(c.ids, "before")

		// The old leader keeps less than a quorum.
		minority := []uint64{old}
		if size == 5 {
			minority = append(minority, others(c.ids, old)[0])
		}
		majority := others(c.ids, minority...)
		c.partition(minority, majority)
		oldTerm := c.members[old].node.Status().Term

		// Still leader as far as it knows, it accepts proposals it can
		// never commit.
		for i := range 3 {
			c.mustPropose(old, fmt.Sprintf("minority-%d", i))
		}
		nl := c.waitLeader(majority...)
		if st := c.members[nl].node.Status(); st.Term <= oldTerm {
			t.Fatalf("new leader %d at term %d, not past the old term %d", nl, st.Term, oldTerm)
		}
		for i := range 3 {
			c.mustPropose(nl, fmt.Sprintf("majority-%d", i))
		}
		c.waitApplied(majority, "majority-0", "majority-1", "majority-2")
		// CheckQuorum: the old leader steps down on its own, and then
		// refuses proposals instead of losing them.
		c.tickUntil(3*netElectionTicks, "the old leader stepping down", func() bool {
			return !c.members[old].node.Status().IsLeader
		})
		if err := c.propose(old, "refused"); !errors.Is(err, ErrProposalDropped) {
			t.Fatalf("proposal on a leaderless member: got %v, want ErrProposalDropped", err)
		}
		for _, id := range minority {
			if c.appliedIndex(id, "majority-0") != 0 {
				t.Fatalf("partitioned member %d applied the majority's entries", id)
			}
		}

		c.heal()
		c.tickUntil(3*netElectionTicks, "the old leader following the new one", func() bool { return c.leader() == nl })
		c.waitConverged()
		for _, id := range c.ids {
			for i := range 3 {
				if n := c.countApplied(id, fmt.Sprintf("minority-%d", i)); n != 0 {
					t.Fatalf("member %d applied an uncommitted minority proposal", id)
				}
				if n := c.countApplied(id, fmt.Sprintf("majority-%d", i)); n != 1 {
					t.Fatalf("member %d applied majority-%d %d times", id, i, n)
				}
			}
			if c.countApplied(id, "refused") != 0 {
				t.Fatalf("member %d applied a refused proposal", id)
			}
		}
	})
}

func TestNetworkProposalsDuringElection(t *testing.T) {
	c := newNetCluster(t, 3)
	old := c.waitLeader()
	majority := others(c.ids, old)
	c.partition([]uint64{old}, majority)
	// A vote takes a tick each way, so that the candidates are seen
	// leaderless between ticks.
	c.delay(majority[0], majority[1], 1)
	c.delay(majority[1], majority[0], 1)

	// Propose on every member at every tick until the majority has a new
	// leader and the old one has stepped down. Each call returns at once:
	// accepted (perhaps to be lost with a deposed leader, or forwarded to
	// it), or refused by a member that knows no leader.
	var refused, accepted []string
	refusedBy := map[uint64]bool{}
	for tick := 0; c.leader(majority...) == 0 || c.members[old].node.Status().IsLeader; tick++ {
		if tick > 20*netElectionTicks {
			t.Fatalf("no leader elected: %s", c.describe())
		}
		for _, id := range c.ids {
			d := fmt.Sprintf("t%03d-m%d", tick, id)
			switch err := c.propose(id, d); {
			case err == nil:
				accepted = append(accepted, d)
			case errors.Is(err, ErrProposalDropped):
				refused = append(refused, d)
				refusedBy[id] = true
			default:
				t.Fatalf("propose %s: %v", d, err)
			}
		}
		c.tick()
	}
	if !refusedBy[majority[0]] && !refusedBy[majority[1]] {
		t.Fatalf("no candidate refused a proposal: the election was never observed leaderless (refused %v)", refused)
	}
	c.delay(majority[0], majority[1], 0)
	c.delay(majority[1], majority[0], 0)
	nl := c.leader(majority...)
	// Once the majority has a leader, proposals through any of its
	// members commit, exactly once.
	var settled []string
	for i, id := range majority {
		d := fmt.Sprintf("after-%d", i)
		c.mustPropose(id, d)
		settled = append(settled, d)
	}
	c.heal()
	c.tickUntil(3*netElectionTicks, "the old leader following the new one", func() bool { return c.leader() == nl })
	c.mustPropose(old, "healed")
	settled = append(settled, "healed")
	c.waitApplied(c.ids, settled...)
	c.waitConverged()

	for _, id := range c.ids {
		for _, d := range refused {
			if c.countApplied(id, d) != 0 {
				t.Fatalf("member %d applied %s, which Propose refused", id, d)
			}
		}
		for _, d := range accepted {
			if n := c.countApplied(id, d); n > 1 {
				t.Fatalf("member %d applied %s %d times", id, d, n)
			}
		}
		for _, d := range settled {
			if n := c.countApplied(id, d); n != 1 {
				t.Fatalf("member %d applied %s %d times, want once", id, d, n)
			}
		}
	}
}

func TestNetworkDropAndDelayConverge(t *testing.T) {
	c := newNetCluster(t, 3)
	l := c.waitLeader()
	f1, f2 := others(c.ids, l)[0], others(c.ids, l)[1]

	// f1's acknowledgements (and the proposals it forwards) are lost; the
	// leader's link to f2 is slow both ways, but within the election
	// timeout, so leadership holds.
	c.drop(f1, l, true)
	c.delay(l, f2, 2)
	c.delay(f2, l, 1)
	var data []string
	for i := range 30 {
		d := fmt.Sprintf("dd-%02d", i)
		on := l
		if i%2 == 1 {
			on = f2
		}
		c.mustPropose(on, d)
		data = append(data, d)
		if i%5 == 0 {
			c.mustPropose(f1, fmt.Sprintf("lost-%d", i)) // forwarded over the dropped link
		}
		c.tick()
	}
	c.waitApplied([]uint64{l, f2}, data...)
	if got := c.leader(); got != l {
		t.Fatalf("leadership moved from %d to %d under drops and delays", l, got)
	}

	c.heal() // the drop goes; the delays stay
	c.mustPropose(f1, "after-heal")
	c.waitApplied(c.ids, append(data, "after-heal")...)
	c.delay(l, f2, 0)
	c.delay(f2, l, 0)
	c.mustPropose(f2, "undelayed")
	c.waitApplied(c.ids, "undelayed")
	c.waitConverged()
	for _, id := range c.ids {
		for _, d := range append(data, "after-heal", "undelayed") {
			if n := c.countApplied(id, d); n != 1 {
				t.Fatalf("member %d applied %s %d times, want once", id, d, n)
			}
		}
	}
}

func ready(ch <-chan readResult, r *readResult) func() bool {
	return func() bool {
		select {
		case *r = <-ch:
			return true
		default:
			return false
		}
	}
}

func TestNetworkFollowerReadIndexAfterLeaderChange(t *testing.T) {
	c := newNetCluster(t, 3)
	l1 := c.waitLeader()
	c.mustPropose(l1, "a")
	c.waitApplied([]uint64{l1}, "a")

	rest := others(c.ids, l1)
	c.partition([]uint64{l1}, rest)
	l2 := c.waitLeader(rest...)
	f := others(rest, l2)[0]
	c.mustPropose(l2, "b")
	// A write is acknowledged once its proposer applied it.
	c.waitApplied([]uint64{l2}, "b")
	acked := c.appliedIndex(l2, "b")

	// The deposed leader cannot confirm its leadership, so it must not
	// answer a read: it could miss "b".
	var stale readResult
	staleC := c.startRead(l1)
	c.ticks(3 * netElectionTicks)
	if ready(staleC, &stale)() {
		t.Fatalf("partitioned old leader answered a read: %+v", stale)
	}

	var r readResult
	c.tickUntil(3*netElectionTicks, "the follower's read", ready(c.startRead(f), &r))
	if r.err != nil || r.index < acked {
		t.Fatalf("follower read: index %d, err %v; the acknowledged write is at %d", r.index, r.err, acked)
	}
	c.tickUntil(3*netElectionTicks, "the follower applying through the read index", func() bool {
		return c.members[f].node.Status().Applied >= r.index
	})
	if i := c.appliedIndex(f, "b"); i == 0 || i > r.index {
		t.Fatalf("follower applied through read index %d without the acknowledged write (at %d)", r.index, i)
	}

	// Healed, the old leader's read is answered through the new leader.
	c.heal()
	c.tickUntil(5*netElectionTicks, "the old leader's read", ready(staleC, &stale))
	if stale.err != nil || stale.index < acked {
		t.Fatalf("old leader's read after heal: index %d, err %v; the acknowledged write is at %d", stale.index, stale.err, acked)
	}
	c.waitConverged()
}

func TestNetworkTransferLeadership(t *testing.T) {
	clusterSizes(t, func(t *testing.T, size int) {
		c := newNetCluster(t, size)
		old := c.waitLeader()
		term := c.members[old].node.Status().Term
		changes := map[uint64]uint64{}
		for id, m := range c.members {
			changes[id] = m.node.Status().LeaderChanges
		}
		c.mustPropose(old, "before")
		c.waitApplied(c.ids, "before")

		errC := c.startTransfer(old)
		c.tickUntil(3*netElectionTicks, "leadership moving", func() bool {
			lead := c.leader()
			return lead != 0 && lead != old
		})
		// It polls at tick granularity: one more tick and it has seen it.
		c.tick()
		var err error
		c.await("TransferLeadership returning", func() bool {
			select {
			case err = <-errC:
				return true
			default:
				return false
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		nl := c.waitLeader()
		if nl == old {
			t.Fatalf("leadership stayed on %d", old)
		}
		if st := c.members[nl].node.Status(); st.Term <= term {
			t.Fatalf("new leader at term %d, not past %d", st.Term, term)
		}
		// On a follower it is a no-op.
		if err := c.members[old].node.TransferLeadership(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.mustPropose(old, "after")
		c.waitApplied(c.ids, "after")
		c.waitConverged()
		// Every member saw the one new leader (etcd's
		// leader_changes_seen_total).
		for id, m := range c.members {
			if got := m.node.Status().LeaderChanges; got != changes[id]+1 {
				t.Errorf("member %d saw %d leader changes, want %d", id, got, changes[id]+1)
			}
		}
	})
}

func TestNetworkPartitionedPeerDoesNotBlock(t *testing.T) {
	c := newNetCluster(t, 3)
	l := c.waitLeader()
	f1, f2 := others(c.ids, l)[0], others(c.ids, l)[1]
	c.partition([]uint64{l, f1}, []uint64{f2})

	// Everything below runs without a tick: none of it may wait on the
	// unreachable peer. Each loop is bounded in real time only to turn a
	// hang into a failure.
	within := func(what string, f func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { defer close(done); f() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s blocked", what)
		}
	}
	var data []string
	within("proposals on the leader", func() {
		for i := range 100 {
			d := fmt.Sprintf("p%03d", i)
			if err := c.members[l].node.Propose(context.Background(), []byte(d)); err != nil {
				t.Errorf("propose %s: %v", d, err)
			}
			data = append(data, d)
		}
	})
	// More than callC holds: the raft goroutine keeps draining it.
	within("ReportUnreachable", func() {
		for range 500 {
			c.members[l].node.ReportUnreachable(f2)
			c.members[f2].node.ReportUnreachable(l)
		}
	})
	// More than recvC holds, into the isolated member, whose every answer
	// goes nowhere: stale-term heartbeats, which it answers.
	within("Step on the isolated member", func() {
		for range 5000 {
			m := &raftpb.Message{Type: raftpb.MessageType_MsgHeartbeat.Enum(), From: new(l), To: new(f2), Term: new(uint64(1))}
			if err := c.members[f2].node.Step(context.Background(), m); err != nil {
				t.Errorf("step: %v", err)
			}
		}
	})
	c.settle()
	c.waitApplied([]uint64{l, f1}, data...)
	if c.appliedIndex(f2, data[0]) != 0 {
		t.Fatal("the isolated member applied entries it cannot have received")
	}
	c.heal()
	c.waitApplied(c.ids, data...)
	c.waitConverged()
}

// TransferLeadership hands leadership to a member it can reach: a voter the
// leader has heard from lately wins over one with a higher Match that is
// partitioned away (raft would abandon a transfer to it after an election
// timeout).
func TestNetworkTransferLeadershipAvoidsUnreachablePeer(t *testing.T) {
	c := newNetCluster(t, 3)
	old := c.waitLeader()
	c.mustPropose(old, "x")
	c.waitApplied(c.ids, "x")
	// Cut off the highest-numbered follower: map order favours it in ties.
	down := others(c.ids, old)[1]
	up := others(c.ids, old, down)[0]
	c.partition([]uint64{old, up}, []uint64{down})
	c.ticks(2 * netElectionTicks) // the leader has long stopped hearing from it

	errC := c.startTransfer(old)
	c.ticks(3 * netElectionTicks)
	c.tick()
	var err error
	c.await("TransferLeadership returning", func() bool {
		select {
		case err = <-errC:
			return true
		default:
			return false
		}
	})
	if err != nil || c.leader(old, up) != up {
		t.Fatalf("TransferLeadership: %v; leader of the reachable members: %d, want %d", err, c.leader(old, up), up)
	}
}

// A member cut off while the others compact their log past it is caught up
// by a snapshot: the leader sends a MsgSnap, the member installs the state
// it carries, then applies the entries after it through its log like any
// other member, and ends with the same state.
func TestNetworkSnapshotCatchUp(t *testing.T) {
	clusterSizes(t, func(t *testing.T, size int) {
		c := newNetCluster(t, size)
		lead := c.waitLeader()
		c.mustPropose(lead, "before")
		c.waitApplied(c.ids, "before")

		// The largest minority of followers is cut off, each alone.
		behind := others(c.ids, lead)[:(size-1)/2]
		majority := others(c.ids, behind...)
		c.partition(majority)
		lastLogged := map[uint64]uint64{}
		for _, id := range behind {
			lastLogged[id] = c.members[id].log.lastIndex()
		}
		var data []string
		for i := range 20 {
			d := fmt.Sprintf("cut-%02d", i)
			c.mustPropose(lead, d)
			data = append(data, d)
			if i%4 == 0 {
				c.tick()
			}
		}
		c.waitApplied(majority, data...)
		// The majority compacts through what it applied, past everything
		// the cut-off members have.
		for _, id := range majority {
			n := c.members[id].node
			n.CompactLog(n.Status().Applied, &raftpb.ConfState{Voters: c.ids})
			first, _ := n.storage.FirstIndex()
			for _, b := range behind {
				if first <= lastLogged[b]+1 {
					t.Fatalf("member %d's log starts at %d: member %d, which has through %d, needs no snapshot",
						id, first, b, lastLogged[b])
				}
			}
		}
		// Entries after the compaction point are still sent by log.
		c.mustPropose(lead, "compacted")
		data = append(data, "compacted")
		c.waitApplied(majority, "compacted")
		for _, id := range behind {
			if got := c.snapshotsTo(id); got != [2]int{} {
				t.Fatalf("member %d got snapshots (sent, received) %v while cut off", id, got)
			}
		}

		// Healed, with the leader's messages to the cut-off members held
		// for a few ticks, so that the cluster commits more while each
		// snapshot is on its way: those entries come after it, by log.
		for _, id := range behind {
			c.delay(lead, id, 3)
		}
		c.heal()
		c.tickUntil(3*netElectionTicks, "the leader sending snapshots", func() bool {
			for _, id := range behind {
				if c.snapshotsTo(id)[0] == 0 {
					return false
				}
			}
			return true
		})
		var during []string
		for i := range 5 {
			d := fmt.Sprintf("during-%d", i)
			c.mustPropose(lead, d)
			during = append(during, d)
		}
		c.waitApplied(majority, during...)
		for _, id := range behind {
			if c.snapshotsTo(id)[1] != 0 {
				t.Fatalf("member %d received its snapshot before the delay", id)
			}
		}
		c.waitApplied(c.ids, append(data, during...)...)
		for _, id := range behind {
			c.delay(lead, id, 0)
		}
		c.mustPropose(behind[0], "after")
		c.waitApplied(c.ids, "after")
		c.waitConverged()
		if got := c.leader(); got != lead {
			t.Fatalf("leadership moved from %d to %d", lead, got)
		}

		for _, id := range behind {
			if got := c.snapshotsTo(id); got != [2]int{1, 1} {
				t.Fatalf("member %d: snapshots (sent, received) %v, want one", id, got)
			}
			a := c.members[id].app
			a.mu.Lock()
			snapIndex, installs, viaApply := a.snapIndex, a.installs, slices.Clone(a.viaApply)
			a.mu.Unlock()
			if installs != 1 {
				t.Fatalf("member %d installed %d snapshots, want 1", id, installs)
			}
			// The snapshot has everything the member missed, and none of
			// what was committed while it travelled.
			if snapIndex < c.appliedIndex(lead, "compacted") || snapIndex >= c.appliedIndex(lead, "during-0") {
				t.Fatalf("member %d installed a snapshot at %d; want it between %q (%d) and %q (%d)", id, snapIndex,
					"compacted", c.appliedIndex(lead, "compacted"), "during-0", c.appliedIndex(lead, "during-0"))
			}
			// Its apply stage applied what it had before the cut, then
			// exactly the entries after the snapshot, each from its log.
			last := c.members[id].node.Status().Applied
			var want []uint64
			for i := uint64(2); i <= last; i++ {
				if i <= lastLogged[id] || i > snapIndex {
					want = append(want, i)
				}
			}
			if !slices.Equal(viaApply, want) {
				t.Fatalf("member %d's apply stage applied indexes %v, want %v (snapshot at %d)", id, viaApply, want, snapIndex)
			}
			if logged := c.members[id].log.indexes(); slices.ContainsFunc(logged, func(i uint64) bool {
				return i > lastLogged[id] && i <= snapIndex
			}) {
				t.Fatalf("member %d logged entries the snapshot covers: %v (had through %d, snapshot at %d)",
					id, logged, lastLogged[id], snapIndex)
			}
			for _, d := range append(data, during...) {
				if n := c.countApplied(id, d); n != 1 {
					t.Fatalf("member %d holds %s %d times, want once", id, d, n)
				}
			}
		}
	})
}

// TestNetworkProposeTermOnlyAsLeader checks what the proposer's fast
// failure rests on: ProposeTerm reports a term only for an entry the leader
// appended itself, and such an entry, if not committed before the first
// entry of a later term, never is.
func TestNetworkProposeTermOnlyAsLeader(t *testing.T) {
	c := newNetCluster(t, 3)
	old := c.waitLeader()
	oldTerm := c.members[old].node.Status().Term
	ctx := context.Background()
	follower := others(c.ids, old)[0]
	if term, err := c.members[follower].node.ProposeTerm(ctx, []byte("forwarded")); err != nil || term != 0 {
		t.Fatalf("ProposeTerm on a follower = %d, %v; want 0 (forwarded)", term, err)
	}
	c.waitApplied(c.ids, "forwarded")

	// Cut the leader off; what it appends now is in its old term.
	majority := others(c.ids, old)
	c.partition([]uint64{old}, majority)
	term, err := c.members[old].node.ProposeTerm(ctx, []byte("lost"))
	if err != nil || term != oldTerm {
		t.Fatalf("ProposeTerm on the leader = %d, %v; want its term %d", term, err, oldTerm)
	}
	c.settle()
	lead := c.waitLeader(majority...)
	c.mustPropose(lead, "won")
	c.heal()
	c.waitApplied(c.ids, "won")
	c.waitConverged()
	for _, id := range c.ids {
		if n := c.countApplied(id, "lost"); n != 0 {
			t.Fatalf("member %d applied the deposed leader's entry %d times", id, n)
		}
	}
}

// startTransfer runs TransferLeadership on leader old on its own goroutine
// and waits until raft has the request (or has already acted on it), so
// that the test may tick; the channel gets its result.
func (c *netCluster) startTransfer(old uint64) <-chan error {
	c.t.Helper()
	errC := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c.t.Cleanup(cancel)
	go func() { errC <- c.members[old].node.TransferLeadership(ctx) }()
	c.await("the transfer starting", func() bool {
		return c.members[old].leadTransferee() != 0 || !c.members[old].node.Status().IsLeader
	})
	return errC
}
