package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// router is a minimal in-memory network: Send never blocks, messages to a
// stopped or cut-off node are dropped, as on a real network.
type router struct {
	mu    sync.Mutex
	nodes map[uint64]*Node
	down  map[uint64]bool
}

type routerEndpoint struct {
	r    *router
	from uint64
}

func (e routerEndpoint) Send(msgs []*raftpb.Message) {
	e.r.mu.Lock()
	defer e.r.mu.Unlock()
	if e.r.down[e.from] {
		return
	}
	for _, m := range msgs {
		n, ok := e.r.nodes[m.GetTo()]
		if !ok || e.r.down[m.GetTo()] {
			continue
		}
		select {
		case n.recvC <- proto.Clone(m).(*raftpb.Message):
		default: // a full queue drops, like a congested link
		}
	}
}

func (r *router) setDown(id uint64, down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down[id] = down
}

type testCluster struct {
	t     *testing.T
	r     *router
	nodes map[uint64]*Node
	logs  map[uint64]*memLog
	apps  map[uint64]*applied
}

func newTestCluster(t *testing.T, ids ...uint64) *testCluster {
	c := &testCluster{t: t, r: &router{nodes: map[uint64]*Node{}, down: map[uint64]bool{}},
		nodes: map[uint64]*Node{}, logs: map[uint64]*memLog{}, apps: map[uint64]*applied{}}
	for _, id := range ids {
		c.logs[id] = &memLog{}
		c.apps[id] = newApplied(1)
		n, err := New(Config{
			ID:            id,
			TickInterval:  5 * time.Millisecond,
			ElectionTicks: 10,
			Log:           c.logs[id],
			Start:         StartState{AppliedIndex: 1, AppliedTerm: 1, ConfState: &raftpb.ConfState{Voters: ids}},
			Apply:         c.apps[id].apply,
			Transport:     routerEndpoint{c.r, id},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.nodes[id] = n
		c.r.nodes[id] = n
	}
	for _, n := range c.nodes {
		n.Run()
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			n.Stop()
		}
	})
	return c
}

// leader waits (bounded) for a leader among the nodes not excluded.
func (c *testCluster) leader(exclude uint64) *Node {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for id, n := range c.nodes {
			if id != exclude && n.Status().IsLeader {
				return n
			}
		}
		// Poll the condition; the nodes run on their own clocks.
		time.Sleep(5 * time.Millisecond)
	}
	c.t.Fatal("no leader elected")
	return nil
}

func TestClusterReplicatesInOrder(t *testing.T) {
	c := newTestCluster(t, 1, 2, 3)
	ld := c.leader(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Proposals on the leader and on a follower (forwarded by raft).
	var follower *Node
	for _, n := range c.nodes {
		if n != ld {
			follower = n
		}
	}
	for i := range 20 {
		n := ld
		if i%2 == 1 {
			n = follower
		}
		if err := n.Propose(ctx, fmt.Appendf(nil, "p%02d", i)); err != nil {
			t.Fatal(err)
		}
	}
	// Every member applies every entry, in the same order.
	var want []string
	for id, app := range c.apps {
		app.waitData(t, "p18")
		app.waitData(t, "p19")
		app.mu.Lock()
		var got []string
		for _, e := range app.ents {
			got = append(got, fmt.Sprintf("%d:%s", e.GetIndex(), e.Data))
		}
		app.mu.Unlock()
		if want == nil {
			want = got
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("member %d applied %v, another applied %v", id, got, want)
		}
	}
	// A follower's linearizable read sees the writes.
	idx, err := follower.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if last := c.apps[follower.cfg.ID].waitData(t, "p19"); idx < last {
		t.Fatalf("follower read index %d behind write at %d", idx, last)
	}
}

func TestClusterSurvivesLeaderLoss(t *testing.T) {
	c := newTestCluster(t, 1, 2, 3)
	old := c.leader(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.Propose(ctx, []byte("before")); err != nil {
		t.Fatal(err)
	}
	for _, app := range c.apps {
		app.waitData(t, "before")
	}
	c.r.setDown(old.cfg.ID, true) // partition the leader away
	nl := c.leader(old.cfg.ID)
	if err := nl.Propose(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	for id, app := range c.apps {
		if id != old.cfg.ID {
			app.waitData(t, "after")
		}
	}
	// Healed, the old leader steps down and catches up.
	c.r.setDown(old.cfg.ID, false)
	c.apps[old.cfg.ID].waitData(t, "after")
	// Every entry any member logged as durable was saved before it was
	// acknowledged: the logs of the majority hold "after".
	for id, l := range c.logs {
		if id == old.cfg.ID {
			continue
		}
		l.mu.Lock()
		found := false
		for _, e := range l.ents {
			found = found || string(e.Data) == "after"
		}
		l.mu.Unlock()
		if !found {
			t.Fatalf("member %d applied an entry it never logged", id)
		}
	}
}

func TestTransferLeadership(t *testing.T) {
	c := newTestCluster(t, 1, 2, 3)
	old := c.leader(0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := old.TransferLeadership(ctx); err != nil {
		t.Fatal(err)
	}
	if st := old.Status(); st.IsLeader || st.Lead == old.cfg.ID || st.Lead == 0 {
		t.Fatalf("leadership did not move: %+v", st)
	}
	// A follower has nothing to transfer.
	if err := old.TransferLeadership(ctx); err != nil {
		t.Fatal(err)
	}
}
