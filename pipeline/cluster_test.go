package pipeline

import (
	"fmt"
	"slices"
	"testing"
)

// The cluster tests run on netCluster (netcluster_test.go): the in-memory
// transport.Network and one manual clock. Leader loss and leadership
// transfer are in network_test.go (TestNetworkPartitionedLeader,
// TestNetworkTransferLeadership).

func TestClusterReplicatesInOrder(t *testing.T) {
	c := newNetCluster(t, 3)
	ld := c.waitLeader()
	follower := others(c.ids, ld)[0]
	// Proposals on the leader and on a follower (forwarded by raft), with
	// and without ticks between them.
	var data []string
	for i := range 20 {
		on := ld
		if i%2 == 1 {
			on = follower
		}
		d := fmt.Sprintf("p%02d", i)
		c.mustPropose(on, d)
		data = append(data, d)
		if i%3 == 0 {
			c.tick()
		}
	}
	// Every member applies every entry once, in proposal order, and all
	// members apply the same log.
	c.waitApplied(c.ids, data...)
	c.waitConverged()
	for _, id := range c.ids {
		var got []string
		for _, e := range c.members[id].app.snapshot() {
			if len(e.Data) > 0 {
				got = append(got, string(e.Data))
			}
		}
		if !slices.Equal(got, data) {
			t.Fatalf("member %d applied %v, want %v", id, got, data)
		}
	}
	// A follower's linearizable read covers the writes.
	var r readResult
	c.tickUntil(3*netElectionTicks, "the follower's read", ready(c.startRead(follower), &r))
	if last := c.appliedIndex(follower, data[len(data)-1]); r.err != nil || r.index < last {
		t.Fatalf("follower read index %d (err %v) behind write at %d", r.index, r.err, last)
	}
}
