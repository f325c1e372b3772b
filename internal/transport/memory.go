package transport

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/stratakv/strata/internal/clock"
	"go.etcd.io/raft/v3/raftpb"
)

// Network is an in-memory network of endpoints for deterministic multi-node
// tests. Each directed link (from, to) is a FIFO queue drained by its own
// goroutine, so messages on one link are delivered in Send order; there is no
// order between links.
//
// Faults are rules on the network, checked when a message is sent and again
// when it is delivered (a message in flight when a link is cut is lost):
//
//   - Drop(from, to, true) loses every message on the link.
//   - Partition(groups...) loses every message between different groups; an
//     endpoint in no group reaches no one. Heal removes drops and partitions.
//   - Delay(from, to, d) holds messages sent afterwards on the link until the
//     network's clock has advanced d past their Send. With a clock.Manual,
//     delivery happens only when the test advances it. A delayed message
//     holds back later messages on its link (FIFO).
//
// Lost messages are not reported unreachable (as on a real network, where a
// partition looks like silence); a full link queue is, as on GRPCTransport.
type Network struct {
	clk       clock.Clock
	queueSize int
	onDrop    func(m *raftpb.Message)

	mu struct {
		sync.Mutex
		closed    bool
		endpoints map[uint64]*memEndpoint
		drop      map[memLinkKey]bool
		delay     map[memLinkKey]time.Duration
		// group maps an endpoint to its partition group; nil when the
		// network is whole.
		group map[uint64]int
	}
}

type memLinkKey struct{ from, to uint64 }

// NetworkOption configures a Network.
type NetworkOption func(*Network)

// WithClock sets the clock that drives Delay. The default is a clock.Manual
// starting at the Unix epoch, returned by Network.Clock.
func WithClock(c clock.Clock) NetworkOption { return func(n *Network) { n.clk = c } }

// WithQueueSize bounds each link's queue, in messages. Default 4096.
func WithQueueSize(size int) NetworkOption { return func(n *Network) { n.queueSize = size } }

// WithOnDrop sets a function called with every message the fault rules (or a
// missing endpoint) make the network lose, from the sender's Send or its link
// goroutine. Tests use it to know that a message is gone before changing the
// rules again.
func WithOnDrop(fn func(m *raftpb.Message)) NetworkOption {
	return func(n *Network) { n.onDrop = fn }
}

// NewNetwork returns an empty network.
func NewNetwork(opts ...NetworkOption) *Network {
	n := &Network{queueSize: 4096}
	for _, o := range opts {
		o(n)
	}
	if n.clk == nil {
		n.clk = clock.NewManual(time.Unix(0, 0))
	}
	n.mu.endpoints = make(map[uint64]*memEndpoint)
	n.mu.drop = make(map[memLinkKey]bool)
	n.mu.delay = make(map[memLinkKey]time.Duration)
	return n
}

// Clock returns the clock that drives delays.
func (n *Network) Clock() clock.Clock { return n.clk }

// Endpoint attaches the member id, whose raft node is h, and returns its
// transport. Every other endpoint of the network is its peer from the start;
// RemovePeer cuts one off until AddPeer (whose URLs are ignored). Closing the
// endpoint detaches it, and id may then be attached again (a restart). It
// panics if id is attached already.
func (n *Network) Endpoint(id uint64, h Handler) Transport {
	e := &memEndpoint{net: n, id: id, h: h}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.mu.removed = make(map[uint64]bool)
	e.mu.links = make(map[uint64]*memLink)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.closed {
		e.mu.closed = true
		e.cancel()
		return e
	}
	if _, ok := n.mu.endpoints[id]; ok {
		panic(fmt.Sprintf("transport: endpoint %d attached twice", id))
	}
	n.mu.endpoints[id] = e
	return e
}

// Drop makes the link from → to lose every message (on) or none (off).
func (n *Network) Drop(from, to uint64, on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if on {
		n.mu.drop[memLinkKey{from, to}] = true
	} else {
		delete(n.mu.drop, memLinkKey{from, to})
	}
}

// Partition splits the network into groups; see Network.
func (n *Network) Partition(groups ...[]uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.group = make(map[uint64]int)
	for i, g := range groups {
		for _, id := range g {
			n.mu.group[id] = i
		}
	}
}

// Heal removes every Drop and Partition. Delays stay.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mu.group = nil
	clear(n.mu.drop)
}

// Delay sets the delay of messages sent on from → to from now on; zero
// removes it.
func (n *Network) Delay(from, to uint64, d time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if d > 0 {
		n.mu.delay[memLinkKey{from, to}] = d
	} else {
		delete(n.mu.delay, memLinkKey{from, to})
	}
}

// Close closes every endpoint and waits for their goroutines.
func (n *Network) Close() error {
	n.mu.Lock()
	n.mu.closed = true
	eps := make([]*memEndpoint, 0, len(n.mu.endpoints))
	for _, e := range n.mu.endpoints {
		eps = append(eps, e)
	}
	n.mu.Unlock()
	for _, e := range eps {
		e.Close()
	}
	return nil
}

func (n *Network) dropped(m *raftpb.Message) {
	if n.onDrop != nil {
		n.onDrop(m)
	}
}

// reachableLocked reports whether a message from → to passes the fault rules.
// REQUIRES: n.mu held.
func (n *Network) reachableLocked(from, to uint64) bool {
	if n.mu.closed || n.mu.drop[memLinkKey{from, to}] {
		return false
	}
	if n.mu.group != nil {
		gf, okf := n.mu.group[from]
		gt, okt := n.mu.group[to]
		if !okf || !okt || gf != gt {
			return false
		}
	}
	return true
}

// memEndpoint is one member's Transport on a Network.
type memEndpoint struct {
	net    *Network
	id     uint64
	h      Handler
	ctx    context.Context
	cancel context.CancelFunc

	// delivering is held shared while a message is handed to h, and
	// exclusively by Close, so h is never called once Close returned.
	delivering sync.RWMutex

	mu struct {
		sync.Mutex
		closed  bool
		removed map[uint64]bool
		links   map[uint64]*memLink
	}
}

var _ Transport = (*memEndpoint)(nil)

// memLink is the outgoing queue of one directed link and its goroutine.
type memLink struct {
	from   *memEndpoint
	to     uint64
	cancel context.CancelFunc
	done   chan struct{}
	notify chan struct{} // one token; see grpcPeer.notify
	// drops has one token when messages were dropped since the last
	// report. Drops are reported by their own goroutine, so a link whose
	// goroutine is stuck handing a message to a slow receiver still
	// reports them.
	drops chan struct{}

	mu struct {
		sync.Mutex
		q       []memPending
		dropped int
	}
}

// memPending is a queued message; due, when not nil, fires when it may be
// delivered. The timer is taken at Send so that a test that advances a manual
// clock right after Send releases it deterministically.
type memPending struct {
	m   *raftpb.Message
	due <-chan time.Time
}

func (e *memEndpoint) Send(msgs []*raftpb.Message) {
	n := e.net
	for _, m := range msgs {
		to := m.GetTo()
		n.mu.Lock()
		ok := n.reachableLocked(e.id, to) && n.mu.endpoints[to] != nil
		d := n.mu.delay[memLinkKey{e.id, to}]
		n.mu.Unlock()
		if !ok {
			n.dropped(m)
			continue
		}
		l := e.link(to)
		if l == nil {
			continue
		}
		p := memPending{m: m}
		if d > 0 {
			p.due = n.clk.After(d)
		}
		l.push(p, n.queueSize)
	}
}

// link returns the link to id, starting it if needed, or nil when the
// endpoint is closed or id removed.
func (e *memEndpoint) link(to uint64) *memLink {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.mu.closed || e.mu.removed[to] || to == e.id {
		return nil
	}
	l := e.mu.links[to]
	if l == nil {
		ctx, cancel := context.WithCancel(e.ctx)
		l = &memLink{from: e, to: to, cancel: cancel, done: make(chan struct{}),
			notify: make(chan struct{}, 1), drops: make(chan struct{}, 1)}
		e.mu.links[to] = l
		go l.run(ctx)
	}
	return l
}

func (l *memLink) push(p memPending, limit int) {
	l.mu.Lock()
	dropped := len(l.mu.q) >= limit
	if dropped {
		l.mu.dropped++
	} else {
		l.mu.q = append(l.mu.q, p)
	}
	l.mu.Unlock()
	wake := l.notify
	if dropped {
		wake = l.drops
	}
	select {
	case wake <- struct{}{}:
	default:
	}
}

func (l *memLink) pop() (memPending, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.mu.q) == 0 {
		return memPending{}, false
	}
	p := l.mu.q[0]
	l.mu.q[0] = memPending{}
	l.mu.q = l.mu.q[1:]
	if len(l.mu.q) == 0 {
		l.mu.q = l.mu.q[:0:0] // let the backing array go
	}
	return p, true
}

// reportDrops tells the handler of dropped messages until ctx ends.
func (l *memLink) reportDrops(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.drops:
		}
		l.mu.Lock()
		dropped := l.mu.dropped
		l.mu.dropped = 0
		l.mu.Unlock()
		if dropped > 0 {
			l.from.h.ReportUnreachable(l.to)
		}
	}
}

func (l *memLink) run(ctx context.Context) {
	reporter := make(chan struct{})
	go func() { defer close(reporter); l.reportDrops(ctx) }()
	defer close(l.done)
	defer func() { <-reporter }()
	for {
		p, ok := l.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-l.notify:
				continue
			}
		}
		if p.due != nil {
			select {
			case <-ctx.Done():
				return
			case <-p.due:
			}
		}
		l.deliver(ctx, p.m)
	}
}

func (l *memLink) deliver(ctx context.Context, m *raftpb.Message) {
	n := l.from.net
	n.mu.Lock()
	dst := n.mu.endpoints[l.to]
	ok := n.reachableLocked(l.from.id, l.to) && dst != nil
	n.mu.Unlock()
	if ctx.Err() != nil {
		return
	}
	if !ok {
		n.dropped(m)
		return
	}
	dst.delivering.RLock()
	defer dst.delivering.RUnlock()
	if dst.ctx.Err() != nil {
		return
	}
	_ = dst.h.Process(dst.ctx, m) // a refused message is raft's to retry
}

func (e *memEndpoint) AddPeer(id uint64, _ []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.mu.removed, id)
}

func (e *memEndpoint) RemovePeer(id uint64) {
	e.mu.Lock()
	e.mu.removed[id] = true
	l := e.mu.links[id]
	delete(e.mu.links, id)
	e.mu.Unlock()
	if l != nil {
		l.cancel()
		<-l.done
	}
}

// Close detaches the endpoint: its links stop, what they hold is lost, and
// its Handler is not called once Close returns.
func (e *memEndpoint) Close() error {
	e.mu.Lock()
	if e.mu.closed {
		e.mu.Unlock()
		return nil
	}
	e.mu.closed = true
	links := e.mu.links
	e.mu.links = nil
	e.mu.Unlock()

	n := e.net
	n.mu.Lock()
	if n.mu.endpoints[e.id] == e {
		delete(n.mu.endpoints, e.id)
	}
	n.mu.Unlock()

	// Stop inbound deliveries first (wait out one in progress), then the
	// outbound links.
	e.delivering.Lock()
	e.cancel()
	e.delivering.Unlock()
	for _, l := range links {
		<-l.done
	}
	return nil
}
