package proposer

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/clock"
)

// Raft is the part of the raft pipeline the proposer needs.
type Raft interface {
	// Propose hands one entry to raft; it returns once raft accepted or
	// refused it, not when it commits. leaderTerm is the term in which
	// this member, as leader, appended the entry to its own log; 0 when
	// it forwarded the proposal.
	Propose(ctx context.Context, data []byte) (leaderTerm uint64, err error)
	// ProposeConfChange proposes a membership change, likewise.
	ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeI) error
}

// Config configures a Proposer.
type Config struct {
	Raft Raft
	// MemberID seeds request IDs so that they are unique across members
	// and restarts.
	MemberID uint64
	Clock    clock.Clock
	// MaxRequestBytes is etcd's --max-request-bytes: a marshaled request
	// larger than this is refused with ErrGRPCRequestTooLarge.
	MaxRequestBytes int
	// MaxEntryBytes and MaxEntryRequests bound one raft entry.
	MaxEntryBytes    int
	MaxEntryRequests int
	// MaxInflightEntries bounds entries proposed but not yet answered.
	MaxInflightEntries int
	// MaxQueuedBytes bounds requests waiting for an entry; beyond it
	// callers get ErrGRPCTooManyRequests.
	MaxQueuedBytes int
	// RequestTimeout is how long a caller waits for its result (etcd:
	// 5s + 2 × election timeout) before ErrGRPCTimeout.
	RequestTimeout time.Duration
	// EventListener receives events for metrics; its fields may be nil.
	EventListener EventListener
	// Tracer, when set, records the stages of requests whose context
	// carries a sampled span (see Propose). Nil: no tracing.
	Tracer trace.Tracer
}

// EventListener is called on proposer events, for metrics. Callbacks run on
// the goroutine that caused the event and must be quick.
type EventListener struct {
	// Proposed is called for every entry proposed, with the number of
	// requests it carries and their bytes.
	Proposed func(requests, bytes int)
	// Queued is called for every request taken into an entry, with the
	// time it waited in the queue.
	Queued func(time.Duration)
	// Committed is called for every request answered with its applied
	// result, with the time since its entry was proposed: replication,
	// fsync, commit and apply.
	Committed func(time.Duration)
}

// errProposalDropped is raft's refusal of a proposal (no leader, leadership
// transfer in progress); such a proposal was never appended.
var errProposalDropped = raft.ErrProposalDropped

// Defaults for Config's bounds.
const (
	DefaultMaxRequestBytes    = 1572864 // etcd's --max-request-bytes default
	DefaultMaxEntryBytes      = 1 << 20
	DefaultMaxEntryRequests   = 1024
	DefaultMaxInflightEntries = 4
	DefaultMaxQueuedBytes     = 64 << 20
)

// Proposer batches concurrent requests into raft entries and answers each
// caller with its request's result. See the package documentation.
type Proposer struct {
	cfg  Config
	ids  *idGen
	kick chan struct{} // wakes the flusher
	stop chan struct{}
	done chan struct{}
	// timed: some listener or the tracer wants the stage times.
	timed bool
	// failed counts requests answered with an error of the proposer's own
	// (timeout, stop, lost or dropped entry): etcd's proposals_failed.
	failed atomic.Uint64
	// applyStart is when the apply stage began its current batch (unix
	// nanoseconds; ApplyStarting), for traces.
	applyStart atomic.Int64

	mu struct {
		sync.Mutex
		queue       []*waiter
		queuedBytes int
		inflight    int
		waiters     map[uint64]*waiter
		stopped     bool
		// appliedTerm is the highest term of an applied entry
		// (AppliedTerm).
		appliedTerm uint64
		// restores counts Restored calls.
		restores uint64
	}
}

type waiter struct {
	id    uint64
	data  []byte
	resC  chan applier.Result
	batch *batch // set once proposed
	// queued is when the request was queued; zero unless timed (an
	// EventListener.Queued or a traced request).
	queued time.Time
	// span is the caller's span, for traced requests; applied is when
	// the apply batch that answered it began.
	span    trace.Span
	applied time.Time
}

// batch is one proposed entry; its inflight slot is released when every
// request in it has been answered or abandoned.
type batch struct {
	pending int
	noSlot  bool // a conf change: proposed alone, outside the slots
	// leaderTerm is the term this member appended the entry in as
	// leader, 0 if unknown (forwarded, or not proposed yet).
	leaderTerm uint64
	// proposed is when the entry was handed to raft; zero unless timed.
	proposed time.Time
	requests int
}

// New starts a proposer.
func New(cfg Config) *Proposer {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.MaxEntryBytes <= 0 {
		cfg.MaxEntryBytes = DefaultMaxEntryBytes
	}
	if cfg.MaxEntryRequests <= 0 {
		cfg.MaxEntryRequests = DefaultMaxEntryRequests
	}
	if cfg.MaxInflightEntries <= 0 {
		cfg.MaxInflightEntries = DefaultMaxInflightEntries
	}
	if cfg.MaxQueuedBytes <= 0 {
		cfg.MaxQueuedBytes = DefaultMaxQueuedBytes
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 7 * time.Second
	}
	p := &Proposer{
		cfg:   cfg,
		ids:   newIDGen(cfg.MemberID, cfg.Clock.Now()),
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		timed: cfg.EventListener.Queued != nil || cfg.EventListener.Committed != nil || cfg.Tracer != nil,
	}
	p.mu.waiters = make(map[uint64]*waiter)
	go p.flushLoop()
	return p
}

// Propose assigns req an ID, proposes it (batched with concurrent requests)
// and waits for the applier's result. The error, if any, is an rpctypes
// gRPC error; the result's own Err is the apply-time outcome.
//
// With a Tracer, a request whose ctx carries a recording span gets three
// child spans once answered: "proposer.queue" (waiting for an entry),
// "raft.replicate" (the entry's append, fsync, replication and commit, up
// to the apply batch that holds it) and "applier.apply".
func (p *Proposer) Propose(ctx context.Context, req *pb.InternalRaftRequest) (applier.Result, error) {
	req.ID = p.ids.next()
	data, err := proto.Marshal(req)
	if err != nil {
		return applier.Result{}, err
	}
	if len(data) > p.cfg.MaxRequestBytes {
		return applier.Result{}, rpctypes.ErrGRPCRequestTooLarge
	}
	w := &waiter{id: req.ID, data: data, resC: make(chan applier.Result, 1)}
	if p.timed {
		w.queued = p.cfg.Clock.Now()
		if span := trace.SpanFromContext(ctx); p.cfg.Tracer != nil && span.IsRecording() {
			w.span = span
		}
	}
	inline, err := p.enqueue(w)
	if err != nil {
		return applier.Result{}, err
	}
	if inline {
		// A lone request on an idle proposer is proposed by its own
		// goroutine: waking the flusher would only add a hand-off to
		// the latency of every write on a quiet cluster.
		if ws := p.takeBatch(); ws != nil {
			p.propose(ws, nil)
		}
	}
	return p.wait(ctx, w)
}

// ProposeConfChange assigns cc an ID, proposes it on its own (membership
// changes are rare and raft admits one at a time) and waits for the
// applier's verdict: Result.Err is etcd's error if the state machine
// rejected the change.
func (p *Proposer) ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) (applier.Result, error) {
	cc.Id = new(p.ids.next())
	// A one-request batch that holds no inflight slot.
	w := &waiter{id: cc.GetId(), resC: make(chan applier.Result, 1), batch: &batch{pending: 1, noSlot: true}}
	p.mu.Lock()
	if p.mu.stopped {
		p.mu.Unlock()
		return applier.Result{}, rpctypes.ErrGRPCStopped
	}
	p.mu.waiters[w.id] = w
	p.mu.Unlock()
	if err := p.cfg.Raft.ProposeConfChange(ctx, cc); err != nil {
		p.abandon(w)
		if errors.Is(err, errProposalDropped) {
			return applier.Result{}, rpctypes.ErrGRPCNoLeader
		}
		return applier.Result{}, err
	}
	return p.wait(ctx, w)
}

// wait waits for w's result, the caller's context, the request timeout or
// the proposer's stop.
func (p *Proposer) wait(ctx context.Context, w *waiter) (applier.Result, error) {
	timeout := p.cfg.Clock.After(p.cfg.RequestTimeout)
	select {
	case res := <-w.resC:
		if w.span != nil && res.Err == nil && w.batch != nil {
			p.trace(ctx, w)
		}
		return res, nil
	case <-ctx.Done():
		p.abandon(w)
		p.failed.Add(1)
		if errors.Is(ctx.Err(), context.Canceled) {
			return applier.Result{}, rpctypes.ErrGRPCCanceled
		}
		return applier.Result{}, rpctypes.ErrGRPCTimeout
	case <-timeout:
		p.abandon(w)
		p.failed.Add(1)
		return applier.Result{}, rpctypes.ErrGRPCTimeout
	case <-p.stop:
		p.abandon(w)
		p.failed.Add(1)
		return applier.Result{}, rpctypes.ErrGRPCStopped
	}
}

// trace records the stages of an answered request as child spans of its
// caller's span. w.applied was set by Notify before the answer was sent.
func (p *Proposer) trace(ctx context.Context, w *waiter) {
	b, now := w.batch, p.cfg.Clock.Now()
	applied := w.applied
	if applied.Before(b.proposed) || applied.After(now) {
		applied = now // apply start not recorded: no apply span
	}
	span := func(name string, from, to time.Time, attrs ...attribute.KeyValue) {
		_, s := p.cfg.Tracer.Start(ctx, name, trace.WithTimestamp(from), trace.WithAttributes(attrs...))
		s.End(trace.WithTimestamp(to))
	}
	span("proposer.queue", w.queued, b.proposed, attribute.Int("entry.requests", b.requests))
	span("raft.replicate", b.proposed, applied)
	span("applier.apply", applied, now)
}

// ApplyStarting tells the proposer that the apply stage is about to apply a
// batch of entries, for the traces of the requests it answers.
func (p *Proposer) ApplyStarting() {
	if p.cfg.Tracer != nil {
		p.applyStart.Store(p.cfg.Clock.Now().UnixNano())
	}
}

// Pending returns the number of requests queued or proposed and not yet
// answered: etcd's proposals_pending.
func (p *Proposer) Pending() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.waiters)
}

// Failed returns the number of requests that failed in the proposer
// (timeouts, stop, lost or refused entries): etcd's proposals_failed_total.
func (p *Proposer) Failed() uint64 { return p.failed.Load() }

// Notify delivers the applier's result for request id. Results for unknown
// IDs (requests of other members, or of callers that gave up) are dropped.
func (p *Proposer) Notify(id uint64, res applier.Result) {
	p.mu.Lock()
	w, ok := p.mu.waiters[id]
	// A waiter still queued has not been proposed, so this result belongs
	// to some other request that carried the same ID (an entry replayed
	// from before a restart whose clock went backwards): not ours.
	ok = ok && w.batch != nil
	if ok {
		delete(p.mu.waiters, id)
		p.releaseLocked(w)
		if w.span != nil {
			w.applied = time.Unix(0, p.applyStart.Load())
		}
	}
	p.mu.Unlock()
	if ok {
		if p.cfg.EventListener.Committed != nil && !w.batch.proposed.IsZero() {
			p.cfg.EventListener.Committed(p.cfg.Clock.Now().Sub(w.batch.proposed))
		}
		w.resC <- res
	}
}

// Stop fails waiting callers with ErrGRPCStopped and stops the flusher.
func (p *Proposer) Stop() {
	p.mu.Lock()
	if p.mu.stopped {
		p.mu.Unlock()
		<-p.done
		return
	}
	p.mu.stopped = true
	p.mu.Unlock()
	close(p.stop)
	<-p.done
}

// enqueue queues w. It reports inline when w is alone in the queue and an
// inflight slot is free: the caller should propose it itself rather than
// wait for the flusher.
func (p *Proposer) enqueue(w *waiter) (inline bool, _ error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.stopped {
		return false, rpctypes.ErrGRPCStopped
	}
	// An empty queue admits any request (it already passed the request
	// size limit), so a limit above MaxQueuedBytes cannot lock writes out.
	if len(p.mu.queue) > 0 && p.mu.queuedBytes+len(w.data) > p.cfg.MaxQueuedBytes {
		return false, rpctypes.ErrGRPCRequestTooManyRequests
	}
	p.mu.queue = append(p.mu.queue, w)
	p.mu.queuedBytes += len(w.data)
	p.mu.waiters[w.id] = w
	if len(p.mu.queue) == 1 && p.mu.inflight < p.cfg.MaxInflightEntries {
		return true, nil
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return false, nil
}

// abandon forgets a waiter whose caller stopped waiting. If it was still
// queued it is not proposed at all.
func (p *Proposer) abandon(w *waiter) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.mu.waiters[w.id]; !ok {
		return
	}
	delete(p.mu.waiters, w.id)
	if w.batch == nil {
		for i, q := range p.mu.queue {
			if q == w {
				n := len(p.mu.queue)
				p.mu.queue = append(p.mu.queue[:i], p.mu.queue[i+1:]...)
				p.mu.queue[:n][n-1] = nil // let the waiter be collected
				p.mu.queuedBytes -= len(w.data)
				break
			}
		}
		return
	}
	p.releaseLocked(w)
}

// releaseLocked accounts for one answered request of a proposed batch.
// REQUIRES: p.mu held.
func (p *Proposer) releaseLocked(w *waiter) {
	b := w.batch
	if b == nil {
		return
	}
	b.pending--
	if b.pending == 0 && !b.noSlot {
		p.mu.inflight--
		select {
		case p.kick <- struct{}{}:
		default:
		}
	}
}

// flushLoop is the single goroutine that forms entries: whenever there is
// queued work and an inflight slot, it takes everything queued (up to the
// entry bounds) and proposes it as one entry.
func (p *Proposer) flushLoop() {
	defer close(p.done)
	var buf []byte
	for {
		select {
		case <-p.kick:
		case <-p.stop:
			return
		}
		for {
			ws := p.takeBatch()
			if ws == nil {
				break
			}
			buf = p.propose(ws, buf)
		}
	}
}

// propose encodes a taken batch as one entry (in buf, which it returns for
// reuse) and hands it to raft, failing the batch if raft refuses it.
func (p *Proposer) propose(ws []*waiter, buf []byte) []byte {
	reqs := make([][]byte, len(ws))
	for i, w := range ws {
		reqs[i] = w.data
	}
	buf = applier.EncodeEntry(buf[:0], reqs)
	if l := p.cfg.EventListener; p.timed {
		b := ws[0].batch
		for _, w := range ws {
			if l.Queued != nil {
				l.Queued(b.proposed.Sub(w.queued))
			}
		}
	}
	if l := p.cfg.EventListener.Proposed; l != nil {
		l(len(ws), len(buf))
	}
	// raft keeps the slice it is given.
	data := append([]byte(nil), buf...)
	p.mu.Lock()
	restores := p.mu.restores
	p.mu.Unlock()
	term, err := p.cfg.Raft.Propose(context.Background(), data)
	if err != nil {
		p.failBatch(ws, err)
		return buf
	}
	if term != 0 {
		p.mu.Lock()
		if p.mu.restores != restores {
			// A snapshot may already cover the entry (see Restored).
			p.mu.Unlock()
			return buf
		}
		ws[0].batch.leaderTerm = term
		lost := p.mu.appliedTerm > term
		p.mu.Unlock()
		if lost {
			// A later term's entry applied before we could note ours.
			p.failLost(ws)
		}
	}
	return buf
}

// AppliedTerm tells the proposer that the apply stage has applied entries up
// to one of the given term. A request this member proposed as leader in an
// earlier term that is still unanswered can no longer commit — a new
// leader's first entry commits only after every older entry that will ever
// commit — so it fails at once with etcd's "leader changed" rather than
// waiting out the request timeout. Proposals this member forwarded carry no
// such guarantee (another leader may still append them) and keep waiting.
func (p *Proposer) AppliedTerm(term uint64) {
	p.mu.Lock()
	if term <= p.mu.appliedTerm {
		p.mu.Unlock()
		return
	}
	p.mu.appliedTerm = term
	var lost []*waiter
	for _, w := range p.mu.waiters {
		if b := w.batch; b != nil && b.leaderTerm != 0 && b.leaderTerm < term {
			lost = append(lost, w)
		}
	}
	p.mu.Unlock()
	p.failLost(lost)
}

// Restored tells the proposer that the state machine was replaced by a
// snapshot. The entries it covers were never handed to the apply stage, so
// requests this member proposed as leader may have committed without being
// answered: from now on they are not failed by AppliedTerm (the argument
// there needs every committed entry to pass through Notify) and wait for
// the request timeout, whose error says the outcome is unknown.
func (p *Proposer) Restored() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.mu.waiters {
		if w.batch != nil {
			w.batch.leaderTerm = 0
		}
	}
	p.mu.restores++
}

// failLost answers still-waiting requests of lost entries.
func (p *Proposer) failLost(ws []*waiter) {
	for _, w := range ws {
		p.answer(w, rpctypes.ErrGRPCLeaderChanged)
	}
}

// answer fails w with err unless it was answered or abandoned already.
func (p *Proposer) answer(w *waiter, err error) {
	p.mu.Lock()
	_, ok := p.mu.waiters[w.id]
	if ok {
		delete(p.mu.waiters, w.id)
		p.releaseLocked(w)
	}
	p.mu.Unlock()
	if ok {
		p.failed.Add(1)
		w.resC <- applier.Result{Err: err}
	}
}

// takeBatch removes the next entry's worth of requests from the queue and
// marks them in flight, or returns nil if there is nothing to do now.
func (p *Proposer) takeBatch() []*waiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.mu.queue) == 0 || p.mu.inflight >= p.cfg.MaxInflightEntries || p.mu.stopped {
		return nil
	}
	n, size := 0, 0
	for n < len(p.mu.queue) && n < p.cfg.MaxEntryRequests {
		l := len(p.mu.queue[n].data)
		if n > 0 && size+l > p.cfg.MaxEntryBytes {
			break
		}
		size += l
		n++
	}
	ws := make([]*waiter, n)
	copy(ws, p.mu.queue[:n])
	rest := copy(p.mu.queue, p.mu.queue[n:])
	clear(p.mu.queue[rest:]) // let proposed waiters be collected
	p.mu.queue = p.mu.queue[:rest]
	p.mu.queuedBytes -= size
	b := &batch{pending: n, requests: n}
	if p.timed {
		b.proposed = p.cfg.Clock.Now()
	}
	for _, w := range ws {
		w.batch = b
	}
	p.mu.inflight++
	return ws
}

// failBatch answers every still-waiting request of a batch raft refused.
func (p *Proposer) failBatch(ws []*waiter, err error) {
	gerr := rpctypes.ErrGRPCNoLeader
	if !errors.Is(err, errProposalDropped) {
		gerr = rpctypes.ErrGRPCStopped
	}
	for _, w := range ws {
		p.answer(w, gerr)
	}
}
