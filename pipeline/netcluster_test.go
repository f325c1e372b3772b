package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/clock"
	"github.com/stratakv/strata/internal/transport"
)

// This file drives multi-member clusters over transport.Network with one
// clock.Manual and no real time: a test moves the cluster one raft tick at a
// time and, between ticks, waits until the cluster is quiescent — every
// message either delivered or held by a Delay that the clock has not reached,
// and every node's raft goroutine, append stage and apply stage idle. What
// happens within one tick is therefore the closure of what that tick set off,
// whatever the goroutine schedule.
//
// Safety is checked on every apply, in every test: an entry applies only once
// it is durable in that member's log, and no two members apply different
// entries at one index. Leadership is sampled at every quiescent point: at
// most one leader per term.
//
// Snapshots: a member's state machine is its applied record, and raft's
// snapshot (Config.Snapshot, asked for when a follower needs entries the
// leader's log no longer has) is that record, carried in the MsgSnap's Data
// since the in-memory network streams nothing out of band. The receiving
// member installs it before stepping the MsgSnap, as writernode's
// SnapshotHandler does for the gRPC transport; the install is checked
// against what the members applied at each index, the entries applied after
// it are checked as any others, and raft must record a snapshot
// (LogStore.SaveSnapshot) only once the state machine holds it.

const (
	netTick          = 10 * time.Millisecond
	netElectionTicks = 10
	// probeID addresses the responses of the probes the harness pushes
	// through a node's stages; the member's Transport swallows them.
	probeID = ^uint64(0)
	// settleTimeout bounds, in real time, how long the cluster may take to
	// go quiet after one tick; it fires only on a bug (a livelock).
	settleTimeout = 10 * time.Second
)

type netCluster struct {
	t       *testing.T
	clk     *clock.Manual
	net     *transport.Network
	ids     []uint64
	members map[uint64]*member
	notify  chan struct{} // one token: some message completed

	mu struct {
		sync.Mutex
		// events counts everything that moves the cluster forward: sends,
		// deliveries, drops, log saves, applies. Unchanged across a full
		// probe round means quiescent.
		events   uint64
		inflight map[[2]uint64][]inflightMsg // per directed link, Send order
		delay    map[[2]uint64]time.Duration // mirrors Network.Delay
		// appliedAt is the entry the first member to apply an index applied
		// there; every other member must apply the same.
		appliedAt map[uint64]*raftpb.Entry
		leaders   map[uint64]uint64 // term → the leader seen in it
		// MsgSnap counts by recipient: sent (member.Send) and
		// received (member.Process, before the snapshot is installed).
		snapsSent, snapsRecv map[uint64]int
	}
}

type inflightMsg struct {
	m   *raftpb.Message
	due time.Time // zero when not delayed
}

// member is one node with its log, applied record, transport endpoint and
// clock. It is the node's Transport (counting what it sends) and the
// network's Handler for it.
type member struct {
	c      *netCluster
	id     uint64
	node   *Node
	log    *memLog
	app    *applied
	ep     transport.Transport
	clk    *memberClock
	probeC chan struct{}
}

func newNetCluster(t *testing.T, n int) *netCluster {
	t.Helper()
	c := &netCluster{
		t:       t,
		clk:     clock.NewManual(time.Unix(0, 0)),
		members: map[uint64]*member{},
		notify:  make(chan struct{}, 1),
	}
	c.mu.inflight = map[[2]uint64][]inflightMsg{}
	c.mu.delay = map[[2]uint64]time.Duration{}
	c.mu.appliedAt = map[uint64]*raftpb.Entry{}
	c.mu.leaders = map[uint64]uint64{}
	c.mu.snapsSent = map[uint64]int{}
	c.mu.snapsRecv = map[uint64]int{}
	c.net = transport.NewNetwork(transport.WithClock(c.clk), transport.WithOnDrop(c.completed))
	for i := range n {
		c.ids = append(c.ids, uint64(i+1))
	}
	for _, id := range c.ids {
		m := &member{c: c, id: id, log: &memLog{}, app: newApplied(1),
			clk: &memberClock{Manual: c.clk}, probeC: make(chan struct{}, 1)}
		m.app.term = 1 // the bootstrap position
		node, err := New(Config{
			ID:            id,
			TickInterval:  netTick,
			ElectionTicks: netElectionTicks,
			Clock:         m.clk,
			Log:           countingLog{m.log, m},
			Start:         StartState{AppliedIndex: 1, AppliedTerm: 1, ConfState: &raftpb.ConfState{Voters: c.ids}},
			Apply:         m.apply,
			Transport:     m,
			Snapshot:      m.raftSnapshot,
			Logger:        netLogger(id),
		})
		if err != nil {
			t.Fatal(err)
		}
		m.node = node
		m.ep = c.net.Endpoint(id, m)
		c.members[id] = m
	}
	for _, id := range c.ids {
		c.members[id].node.Run()
	}
	t.Cleanup(func() {
		_ = c.net.Close()
		for _, m := range c.members {
			m.node.Stop()
			if err := m.node.Err(); err != nil {
				t.Errorf("member %d failed: %v", m.id, err)
			}
		}
	})
	c.settle()
	return c
}

func (c *netCluster) bump() {
	c.mu.Lock()
	c.mu.events++
	c.mu.Unlock()
}

// Send is the node's Transport: it records each message as in flight, then
// hands it to the network one at a time, so that a message the network
// drops at once is matched to its own record.
func (m *member) Send(msgs []*raftpb.Message) {
	c := m.c
	for _, msg := range msgs {
		if msg.GetTo() == probeID {
			m.probeC <- struct{}{}
			continue
		}
		k := [2]uint64{m.id, msg.GetTo()}
		c.mu.Lock()
		c.mu.events++
		if msg.GetType() == raftpb.MessageType_MsgSnap {
			c.mu.snapsSent[msg.GetTo()]++
		}
		im := inflightMsg{m: msg}
		if d := c.mu.delay[k]; d > 0 {
			im.due = c.clk.Now().Add(d)
		}
		c.mu.inflight[k] = append(c.mu.inflight[k], im)
		c.mu.Unlock()
		m.ep.Send([]*raftpb.Message{msg})
	}
}

// completed records that msg left the network, delivered or lost. A link
// delivers in Send order or loses, so anything sent before msg on its link
// and still recorded is gone too.
func (c *netCluster) completed(msg *raftpb.Message) {
	k := [2]uint64{msg.GetFrom(), msg.GetTo()}
	c.mu.Lock()
	q := c.mu.inflight[k]
	for i, im := range q {
		if im.m == msg {
			c.mu.inflight[k] = q[i+1:]
			break
		}
	}
	c.mu.events++
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (m *member) Process(ctx context.Context, msg *raftpb.Message) error {
	// The receiver gets its own copy, as over a wire.
	msg2 := proto.Clone(msg).(*raftpb.Message)
	if msg2.GetType() == raftpb.MessageType_MsgSnap {
		// The snapshot's data is installed before raft hears of it.
		m.installSnapshot(msg2.GetSnapshot())
	}
	err := m.node.Step(ctx, msg2)
	m.c.completed(msg)
	return err
}

// raftSnapshot is the member's Config.Snapshot: its state machine as it is
// now — the applied record, encoded as the Entries of a raftpb.Message —
// with its applied index, term and the (fixed) ConfState.
func (m *member) raftSnapshot() (*raftpb.Snapshot, error) {
	a := m.app
	a.mu.Lock()
	index, term := a.index, a.term
	data, err := proto.Marshal(&raftpb.Message{Entries: a.ents})
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &raftpb.Snapshot{
		Data: data,
		Metadata: &raftpb.SnapshotMetadata{
			Index: new(index), Term: new(term),
			ConfState: &raftpb.ConfState{Voters: slices.Clone(m.c.ids)},
		},
	}, nil
}

// installSnapshot is the receiving side of a snapshot (writernode's
// InstallSnapshot): it checks that the snapshot holds, index by index, what
// the members applied there, then replaces the member's state with it.
func (m *member) installSnapshot(snap *raftpb.Snapshot) {
	c := m.c
	md := snap.GetMetadata()
	var rec raftpb.Message
	if err := proto.Unmarshal(snap.GetData(), &rec); err != nil {
		c.t.Errorf("member %d: snapshot at %d: %v", m.id, md.GetIndex(), err)
		return
	}
	ents := rec.GetEntries()
	next, term := uint64(2), uint64(1) // after the bootstrap position
	c.mu.Lock()
	for _, e := range ents {
		if e.GetIndex() != next {
			c.t.Errorf("member %d: snapshot at %d holds entry %d where %d was due", m.id, md.GetIndex(), e.GetIndex(), next)
		}
		next, term = e.GetIndex()+1, e.GetTerm()
		if first, ok := c.mu.appliedAt[e.GetIndex()]; !ok {
			c.t.Errorf("member %d: snapshot holds %s, which no member applied", m.id, fmtEntry(e))
		} else if !sameEntry(first, e) {
			c.t.Errorf("member %d: snapshot holds %s at index %d where a member applied %s",
				m.id, fmtEntry(e), e.GetIndex(), fmtEntry(first))
		}
	}
	if next-1 != md.GetIndex() || term != md.GetTerm() {
		c.t.Errorf("member %d: snapshot metadata %d/%d does not describe its data (through %d/%d)",
			m.id, md.GetIndex(), md.GetTerm(), next-1, term)
	}
	c.mu.snapsRecv[m.id]++
	c.mu.events++
	c.mu.Unlock()
	m.app.install(md.GetIndex(), md.GetTerm(), ents)
}

func (m *member) ReportUnreachable(id uint64) { m.node.ReportUnreachable(id) }

func (m *member) ReportSnapshot(id uint64, st raft.SnapshotStatus) { m.node.ReportSnapshot(id, st) }

// apply is the member's apply stage: it checks the safety properties, then
// records the entries.
func (m *member) apply(ents []*raftpb.Entry) error {
	c := m.c
	m.log.mu.Lock()
	for _, e := range ents {
		i := slices.IndexFunc(m.log.ents, func(l *raftpb.Entry) bool { return l.GetIndex() == e.GetIndex() })
		if i < 0 || !sameEntry(m.log.ents[i], e) {
			c.t.Errorf("member %d applies entry %d (term %d) that is not durable in its log", m.id, e.GetIndex(), e.GetTerm())
		}
	}
	m.log.mu.Unlock()
	c.mu.Lock()
	for _, e := range ents {
		if first, ok := c.mu.appliedAt[e.GetIndex()]; !ok {
			c.mu.appliedAt[e.GetIndex()] = e
		} else if !sameEntry(first, e) {
			c.t.Errorf("member %d applies %s at index %d where another member applied %s",
				m.id, fmtEntry(e), e.GetIndex(), fmtEntry(first))
		}
	}
	c.mu.events++
	c.mu.Unlock()
	return m.app.apply(ents)
}

func sameEntry(a, b *raftpb.Entry) bool {
	return a.GetIndex() == b.GetIndex() && a.GetTerm() == b.GetTerm() && a.GetType() == b.GetType() && bytes.Equal(a.Data, b.Data)
}

func fmtEntry(e *raftpb.Entry) string {
	return fmt.Sprintf("%d/%d:%q", e.GetIndex(), e.GetTerm(), e.Data)
}

// countingLog is a memLog that counts saves as cluster events. The empty
// save forced by a stage probe is not one.
type countingLog struct {
	*memLog
	m *member
}

func (l countingLog) Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error {
	if len(ents) > 0 || hs.GetTerm() != 0 {
		l.m.c.bump()
	}
	return l.memLog.Save(hs, ents, mustSync)
}

// SaveSnapshot checks the pipeline's order: raft records a snapshot only
// once the state machine holds it.
func (l countingLog) SaveSnapshot(snap *raftpb.Snapshot) error {
	l.m.c.bump()
	l.m.app.mu.Lock()
	have := l.m.app.index
	l.m.app.mu.Unlock()
	if idx := snap.GetMetadata().GetIndex(); have < idx {
		l.m.c.t.Errorf("member %d records snapshot %d while its state machine is at %d", l.m.id, idx, have)
	}
	return l.memLog.SaveSnapshot(snap)
}

// memberClock is the shared manual clock, except that its tickers fire only
// when the harness ticks them, and a tick is handed over synchronously: it
// is never coalesced or left pending across a quiescence check.
type memberClock struct {
	*clock.Manual
	mu      sync.Mutex
	tickers []*handTicker
}

type handTicker struct {
	c    chan time.Time
	stop chan struct{}
	once sync.Once
}

func (t *handTicker) C() <-chan time.Time { return t.c }
func (t *handTicker) Stop()               { t.once.Do(func() { close(t.stop) }) }

func (mc *memberClock) NewTicker(time.Duration) clock.Ticker {
	t := &handTicker{c: make(chan time.Time), stop: make(chan struct{})}
	mc.mu.Lock()
	mc.tickers = append(mc.tickers, t)
	mc.mu.Unlock()
	return t
}

// tick hands one tick to each live ticker of the member, waiting until it is
// taken.
func (mc *memberClock) tick(now time.Time, done <-chan struct{}) {
	mc.mu.Lock()
	mc.tickers = slices.DeleteFunc(mc.tickers, func(t *handTicker) bool {
		select {
		case <-t.stop:
			return true
		default:
			return false
		}
	})
	tks := slices.Clone(mc.tickers)
	mc.mu.Unlock()
	for _, t := range tks {
		select {
		case t.c <- now:
		case <-t.stop:
		case <-done:
		}
	}
}

// tick advances the clock by one raft tick, ticks every member, and waits
// until the cluster is quiescent.
func (c *netCluster) tick() {
	c.t.Helper()
	c.clk.Advance(netTick)
	now := c.clk.Now()
	for _, id := range c.ids {
		m := c.members[id]
		m.clk.tick(now, m.node.Done())
	}
	c.settle()
}

// tickUntil ticks until cond holds, at most max ticks.
func (c *netCluster) tickUntil(max int, what string, cond func() bool) {
	c.t.Helper()
	for range max {
		if cond() {
			return
		}
		c.tick()
	}
	if !cond() {
		c.t.Fatalf("after %d ticks: %s never happened; %s", max, what, c.describe())
	}
}

// await waits, without ticking, for cond, which depends on a goroutine
// outside the cluster (a client call in flight) that the harness cannot
// see idle: it settles the cluster and yields until cond holds, bounded in
// real time only to turn a hang into a failure.
func (c *netCluster) await(what string, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("%s never happened; %s", what, c.describe())
		}
		runtime.Gosched()
		c.settle()
	}
}

func (c *netCluster) ticks(n int) {
	c.t.Helper()
	for range n {
		c.tick()
	}
}

// settle waits until two probe rounds in a row see nothing move: no message
// deliverable, every node's queues empty, and no event counted.
func (c *netCluster) settle() {
	c.t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for clean := 0; clean < 2; {
		if time.Now().After(deadline) {
			c.t.Fatalf("cluster did not go quiet: %s", c.describe())
		}
		c.mu.Lock()
		before := c.mu.events
		c.mu.Unlock()
		c.waitNetwork(deadline)
		quiet := true
		for _, id := range c.ids {
			quiet = c.members[id].probe() && quiet
		}
		c.mu.Lock()
		quiet = quiet && c.mu.events == before && c.networkBlockedLocked()
		c.mu.Unlock()
		if quiet {
			clean++
		} else {
			clean = 0
		}
	}
}

// networkBlockedLocked reports whether no message can move without the
// clock advancing: every link is empty or led by a message still delayed.
// REQUIRES: c.mu held.
func (c *netCluster) networkBlockedLocked() bool {
	now := c.clk.Now()
	for _, q := range c.mu.inflight {
		if len(q) > 0 && !q[0].due.After(now) {
			return false
		}
	}
	return true
}

func (c *netCluster) waitNetwork(deadline time.Time) {
	c.t.Helper()
	for {
		c.mu.Lock()
		blocked := c.networkBlockedLocked()
		c.mu.Unlock()
		if blocked {
			return
		}
		select {
		case <-c.notify:
		case <-time.After(time.Until(deadline)):
			c.t.Fatalf("messages stuck in the network: %s", c.describe())
		}
	}
}

// probe runs a no-op through each of the member's goroutines in turn — the
// raft goroutine (through callC), then the append and apply stages (a
// message whose only response is addressed to probeID) — so that all work
// queued ahead of it is done when it returns. It reports whether the
// node's inbound queues were empty. On the raft goroutine it also samples
// leadership.
func (m *member) probe() bool {
	n := m.node
	res := make(chan bool, 1)
	if !n.call(func(rn *raft.RawNode) {
		bs := rn.BasicStatus()
		if bs.RaftState == raft.StateLeader {
			m.c.sawLeader(bs.GetTerm(), m.id)
		}
		n.local.mu.Lock()
		empty := len(n.local.q) == 0
		n.local.mu.Unlock()
		res <- empty && len(n.recvC) == 0
	}) {
		return true // stopped
	}
	var quiet bool
	select {
	case quiet = <-res:
	case <-n.Done():
		return true
	}
	for _, q := range []*msgQueue{&n.appendQ, &n.applyQ} {
		typ := raftpb.MessageType_MsgStorageAppend
		if q == &n.applyQ {
			typ = raftpb.MessageType_MsgStorageApply
		}
		q.push(&raftpb.Message{Type: typ.Enum(), Responses: []*raftpb.Message{{To: new(probeID)}}})
		select {
		case <-m.probeC:
		case <-n.Done():
			return true
		}
	}
	return quiet
}

func (c *netCluster) sawLeader(term, id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prev, ok := c.mu.leaders[term]; ok && prev != id {
		c.t.Errorf("two leaders in term %d: %d and %d", term, prev, id)
	}
	c.mu.leaders[term] = id
}

func (c *netCluster) describe() string {
	var b bytes.Buffer
	for _, id := range c.ids {
		fmt.Fprintf(&b, "[%+v] ", c.members[id].node.Status())
	}
	c.mu.Lock()
	for k, q := range c.mu.inflight {
		if len(q) > 0 {
			fmt.Fprintf(&b, "link %d→%d: %d in flight (head due %v) ", k[0], k[1], len(q), q[0].due)
		}
	}
	c.mu.Unlock()
	return b.String()
}

// Fault controls, mirrored so that the harness knows which messages wait
// for the clock.

func (c *netCluster) partition(groups ...[]uint64) { c.net.Partition(groups...) }
func (c *netCluster) heal()                        { c.net.Heal() }
func (c *netCluster) drop(from, to uint64, on bool) {
	c.net.Drop(from, to, on)
}

func (c *netCluster) delay(from, to uint64, ticks int) {
	d := time.Duration(ticks) * netTick
	c.mu.Lock()
	defer c.mu.Unlock()
	if d > 0 {
		c.mu.delay[[2]uint64{from, to}] = d
	} else {
		delete(c.mu.delay, [2]uint64{from, to})
	}
	c.net.Delay(from, to, d)
}

// Queries and actions.

// startRead hands a ReadIndex request to member id's raft goroutine — the
// part of Node.ReadIndex after which the node owns the read — and returns
// where the answer will arrive. Handing it over synchronously, rather than
// calling ReadIndex on another goroutine, keeps the ticks that follow from
// racing with the request's submission.
func (c *netCluster) startRead(id uint64) <-chan readResult {
	c.t.Helper()
	n := c.members[id].node
	w := &readWaiter{ctx: context.Background(), resC: make(chan readResult, 1)}
	select {
	case n.readC <- w:
	case <-n.Done():
		c.t.Fatalf("member %d stopped", id)
	}
	c.settle()
	return w.resC
}

// leader returns the member that the members in among all follow and that
// leads, or 0.
func (c *netCluster) leader(among ...uint64) uint64 {
	if len(among) == 0 {
		among = c.ids
	}
	var lead uint64
	for _, id := range among {
		st := c.members[id].node.Status()
		if st.Lead == 0 || (lead != 0 && st.Lead != lead) {
			return 0
		}
		lead = st.Lead
	}
	if !slices.Contains(among, lead) || !c.members[lead].node.Status().IsLeader {
		return 0
	}
	return lead
}

// waitLeader ticks until the members in among agree on a leader among them.
func (c *netCluster) waitLeader(among ...uint64) uint64 {
	c.t.Helper()
	var lead uint64
	c.tickUntil(20*netElectionTicks, "a leader", func() bool { lead = c.leader(among...); return lead != 0 })
	return lead
}

// propose submits data on member id. Propose returns as soon as raft
// accepted or refused: with the cluster quiescent, at once.
func (c *netCluster) propose(id uint64, data string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := c.members[id].node.Propose(ctx, []byte(data))
	if err == context.DeadlineExceeded {
		c.t.Fatalf("Propose on member %d blocked", id)
	}
	c.settle()
	return err
}

func (c *netCluster) mustPropose(id uint64, data string) {
	c.t.Helper()
	if err := c.propose(id, data); err != nil {
		c.t.Fatalf("propose %q on %d: %v", data, id, err)
	}
}

// appliedIndex returns the index at which member id applied data, or 0.
func (c *netCluster) appliedIndex(id uint64, data string) uint64 {
	for _, e := range c.members[id].app.snapshot() {
		if string(e.Data) == data {
			return e.GetIndex()
		}
	}
	return 0
}

// waitApplied ticks until every member in ids applied every datum.
func (c *netCluster) waitApplied(ids []uint64, data ...string) {
	c.t.Helper()
	c.tickUntil(20*netElectionTicks, fmt.Sprintf("members %v applying %q", ids, data), func() bool {
		for _, id := range ids {
			for _, d := range data {
				if c.appliedIndex(id, d) == 0 {
					return false
				}
			}
		}
		return true
	})
}

func (c *netCluster) appliedLog(id uint64) []string {
	var out []string
	for _, e := range c.members[id].app.snapshot() {
		out = append(out, fmtEntry(e))
	}
	return out
}

// countApplied returns how many times data was applied on member id.
func (c *netCluster) countApplied(id uint64, data string) int {
	n := 0
	for _, e := range c.members[id].app.snapshot() {
		if string(e.Data) == data {
			n++
		}
	}
	return n
}

// waitConverged ticks until every member applied the same entries.
func (c *netCluster) waitConverged() {
	c.t.Helper()
	c.tickUntil(20*netElectionTicks, "every member applying the same log", func() bool {
		want := c.appliedLog(c.ids[0])
		for _, id := range c.ids[1:] {
			if !slices.Equal(c.appliedLog(id), want) {
				return false
			}
		}
		return true
	})
}

func others(ids []uint64, not ...uint64) []uint64 {
	return slices.DeleteFunc(slices.Clone(ids), func(id uint64) bool { return slices.Contains(not, id) })
}

func clusterSizes(t *testing.T, f func(t *testing.T, size int)) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("members=%d", size), func(t *testing.T) { f(t, size) })
	}
}

// netLogger logs raft and the pipeline to stderr when PIPELINE_NET_LOG is
// set: a failing schedule is easier to read with raft's own account of it.
func netLogger(id uint64) *zap.Logger {
	if os.Getenv("PIPELINE_NET_LOG") == "" {
		return nil
	}
	lg, _ := zap.NewDevelopment()
	return lg.With(zap.Uint64("member", id))
}

// leadTransferee returns the member raft is transferring leadership to.
func (m *member) leadTransferee() uint64 {
	res := make(chan uint64, 1)
	if !m.node.call(func(rn *raft.RawNode) { res <- rn.BasicStatus().LeadTransferee }) {
		return 0
	}
	select {
	case id := <-res:
		return id
	case <-m.node.Done():
		return 0
	}
}

// snapshot returns the entries applied so far.
func (a *applied) snapshot() []*raftpb.Entry {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.ents)
}

// snapshotsTo returns how many MsgSnap were sent to member id and how many
// it received.
func (c *netCluster) snapshotsTo(id uint64) [2]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return [2]int{c.mu.snapsSent[id], c.mu.snapsRecv[id]}
}

// lastIndex returns the index of the last entry in the log, or 0.
func (l *memLog) lastIndex() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.ents) == 0 {
		return 0
	}
	return l.ents[len(l.ents)-1].GetIndex()
}

// indexes returns the indexes of the entries in the log.
func (l *memLog) indexes() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]uint64, 0, len(l.ents))
	for _, e := range l.ents {
		out = append(out, e.GetIndex())
	}
	return out
}
