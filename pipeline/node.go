package pipeline

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/clock"
)

// Errors returned by Node.
var (
	// ErrStopped is returned when the node has stopped or is stopping.
	ErrStopped = errors.New("pipeline: node stopped")
	// ErrProposalDropped is returned when raft refused a proposal, e.g.
	// because there is no leader. The proposal was not appended.
	ErrProposalDropped = raft.ErrProposalDropped
)

// LogStore is the durable raft log the append stage writes to (the WAL).
type LogStore interface {
	// Save appends hs (unless empty) and ents in order. With mustSync it
	// returns only once they are durable. Without, they may be lost in a
	// crash: raft asks for no sync when only the commit index moved, which
	// a restart recovers (an applied entry is committed by definition).
	Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error
}

// StartState is what the node restarts from: the state machine's applied
// position and the log that follows it. For a brand-new member the caller
// passes the bootstrap position (index 1, term 1, the initial voters) with
// no entries; every member of a new cluster starts from the same one.
type StartState struct {
	// Applied is the index, term and ConfState of the last entry the state
	// machine holds. Invariant: Applied.Index <= HardState.Commit.
	AppliedIndex, AppliedTerm uint64
	ConfState                 *raftpb.ConfState
	// HardState is the last HardState recorded in the log store.
	HardState *raftpb.HardState
	// Entries are the log entries after AppliedIndex, contiguous.
	Entries []*raftpb.Entry
}

// Config configures a Node.
type Config struct {
	// ID is this member's raft ID. Must be non-zero.
	ID uint64
	// TickInterval is the duration of one raft tick (etcd's
	// --heartbeat-interval); ElectionTicks is etcd's --election-timeout
	// divided by it.
	TickInterval  time.Duration
	ElectionTicks int
	Clock         clock.Clock
	Log           LogStore
	Start         StartState
	// Apply is the apply stage: it receives committed entries in index
	// order, exactly once each (per process lifetime), on one goroutine. An
	// error stops the node.
	Apply  func(ents []*raftpb.Entry) error
	Logger *zap.Logger
}

func (c *Config) validate() error {
	if c.ID == 0 {
		return errors.New("pipeline: member ID must be non-zero")
	}
	if c.TickInterval <= 0 || c.ElectionTicks <= 1 {
		return fmt.Errorf("pipeline: bad timing: tick %v, election ticks %d", c.TickInterval, c.ElectionTicks)
	}
	if c.Log == nil || c.Apply == nil {
		return errors.New("pipeline: Log and Apply are required")
	}
	if c.Start.ConfState == nil || len(c.Start.ConfState.Voters) == 0 {
		return errors.New("pipeline: start state has no voters")
	}
	if hs := c.Start.HardState; hs != nil && hs.GetCommit() < c.Start.AppliedIndex {
		return fmt.Errorf("pipeline: applied index %d is past the durable commit index %d: the log lost committed entries",
			c.Start.AppliedIndex, hs.GetCommit())
	}
	if hs := c.Start.HardState; hs != nil && hs.GetCommit() > c.Start.AppliedIndex+uint64(len(c.Start.Entries)) {
		return fmt.Errorf("pipeline: commit index %d is past the last logged entry %d: the log lost committed entries",
			hs.GetCommit(), c.Start.AppliedIndex+uint64(len(c.Start.Entries)))
	}
	next := c.Start.AppliedIndex + 1
	for _, e := range c.Start.Entries {
		if e.GetIndex() != next {
			return fmt.Errorf("pipeline: log is not contiguous after applied index %d: want entry %d, have %d",
				c.Start.AppliedIndex, next, e.GetIndex())
		}
		next++
	}
	return nil
}

// Status is a point-in-time view of the node.
type Status struct {
	ID, Lead, Term uint64
	// Commit is raft's commit index; Applied is the last index the apply
	// stage finished.
	Commit, Applied uint64
	IsLeader        bool
}

// Node is the raft loop of a writer member. Its methods are safe for
// concurrent use.
type Node struct {
	cfg     Config
	lg      *zap.Logger
	storage *raft.MemoryStorage
	rn      *raft.RawNode // owned by the run goroutine

	proposeC chan proposal
	readC    chan *readWaiter
	stopC    chan struct{}
	done     chan struct{} // closed when both goroutines have exited

	apply applyQueue

	// confStates carries the ConfState computed by the raft goroutine for
	// each committed conf change to the apply stage, in log order.
	confStates struct {
		sync.Mutex
		q []*raftpb.ConfState
	}

	mu struct {
		sync.Mutex
		status Status
		err    error // why the node stopped, if it failed
	}
	stopOnce sync.Once
}

type proposal struct {
	data []byte
	errC chan error
}

type readWaiter struct {
	ctx  context.Context
	resC chan readResult
}

type readResult struct {
	index uint64
	err   error
}

// Start creates the raft node from cfg.Start and starts its goroutines.
func Start(cfg Config) (*Node, error) {
	n, err := New(cfg)
	if err != nil {
		return nil, err
	}
	n.Run()
	return n, nil
}

// New creates the raft node from cfg.Start without starting it, so that the
// caller can make the node reachable (say, from its apply stage) before Run.
func New(cfg Config) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	st := raft.NewMemoryStorage()
	snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index:     new(cfg.Start.AppliedIndex),
		Term:      new(cfg.Start.AppliedTerm),
		ConfState: cfg.Start.ConfState,
	}}
	if err := st.ApplySnapshot(snap); err != nil {
		return nil, fmt.Errorf("pipeline: install start state: %w", err)
	}
	if err := st.Append(cfg.Start.Entries); err != nil {
		return nil, fmt.Errorf("pipeline: install log: %w", err)
	}
	hs := cfg.Start.HardState
	if hs == nil || raft.IsEmptyHardState(hs) {
		hs = &raftpb.HardState{Term: new(cfg.Start.AppliedTerm), Commit: new(cfg.Start.AppliedIndex)}
	}
	if err := st.SetHardState(hs); err != nil {
		return nil, err
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:              cfg.ID,
		ElectionTick:    cfg.ElectionTicks,
		HeartbeatTick:   1,
		Storage:         st,
		Applied:         cfg.Start.AppliedIndex,
		MaxSizePerMsg:   1 << 20,
		MaxInflightMsgs: 512,
		CheckQuorum:     true,
		PreVote:         true,
		Logger:          &raftLogger{lg.Named("raft").WithOptions(zap.AddCallerSkip(1)).Sugar()},
	})
	if err != nil {
		return nil, fmt.Errorf("pipeline: %w", err)
	}
	n := &Node{
		cfg:      cfg,
		lg:       lg,
		storage:  st,
		rn:       rn,
		proposeC: make(chan proposal),
		readC:    make(chan *readWaiter),
		stopC:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	n.apply.init()
	n.mu.status = Status{ID: cfg.ID, Commit: hs.GetCommit(), Applied: cfg.Start.AppliedIndex, Term: hs.GetTerm()}
	// A lone voter campaigns at once rather than waiting out an election
	// timeout: there is nobody to disagree with.
	if cs := cfg.Start.ConfState; len(cs.Voters) == 1 && cs.Voters[0] == cfg.ID && len(cs.VotersOutgoing) == 0 {
		if err := rn.Campaign(); err != nil {
			return nil, fmt.Errorf("pipeline: campaign: %w", err)
		}
	}
	return n, nil
}

// Run starts the node's goroutines. It must be called exactly once.
func (n *Node) Run() {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.run() }()
	go func() { defer wg.Done(); n.runApply() }()
	go func() { wg.Wait(); close(n.done) }()
}

// Propose hands data to raft as one entry. It returns once raft has accepted
// or refused the proposal — not when it commits; the caller learns the
// outcome from the apply stage.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	p := proposal{data: data, errC: make(chan error, 1)}
	select {
	case n.proposeC <- p:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopC:
		return ErrStopped
	}
	select {
	case err := <-p.errC:
		return err
	case <-n.stopC:
		return ErrStopped
	}
}

// ReadIndex returns an index such that the state machine, once it has
// applied that index, reflects every write committed before the call.
// Concurrent calls share one raft round.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	w := &readWaiter{ctx: ctx, resC: make(chan readResult, 1)}
	select {
	case n.readC <- w:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.stopC:
		return 0, ErrStopped
	}
	select {
	case r := <-w.resC:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.stopC:
		return 0, ErrStopped
	}
}

// Status returns the node's current status.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.status
}

// NextConfState returns the ConfState that raft computed for the next
// committed conf change, in log order. The apply stage calls it once per
// conf change entry it applies.
func (n *Node) NextConfState(raftpb.ConfChangeI) *raftpb.ConfState {
	n.confStates.Lock()
	defer n.confStates.Unlock()
	if len(n.confStates.q) == 0 {
		panic("pipeline: conf change applied without a ConfState from raft")
	}
	cs := n.confStates.q[0]
	n.confStates.q = n.confStates.q[1:]
	return cs
}

// CompactLog discards in-memory log entries up to index, which the state
// machine has made durable. (A writer that must catch up a follower past
// this point will send a snapshot: that arrives with the cluster.)
func (n *Node) CompactLog(index uint64) {
	if err := n.storage.Compact(index); err != nil && err != raft.ErrCompacted {
		n.lg.Warn("compact in-memory raft log", zap.Uint64("index", index), zap.Error(err))
	}
}

// Stop stops the node and waits for its goroutines to exit. Entries already
// handed to the apply stage are applied first.
func (n *Node) Stop() {
	n.stopOnce.Do(func() { close(n.stopC) })
	<-n.done
}

// Done is closed once the node has stopped, by Stop or by a failure.
func (n *Node) Done() <-chan struct{} { return n.done }

// Err returns the failure that stopped the node, if any.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.err
}

func (n *Node) fail(err error) {
	n.mu.Lock()
	if n.mu.err == nil {
		n.mu.err = err
	}
	n.mu.Unlock()
	n.lg.Error("raft node stopped on failure", zap.Error(err))
	n.stopOnce.Do(func() { close(n.stopC) })
}

// run is the raft goroutine: the only one that touches n.rn.
func (n *Node) run() {
	defer n.apply.close()
	ticker := n.cfg.Clock.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()

	var reads readBatcher
	defer reads.failAll(ErrStopped)
	for {
		for n.rn.HasReady() {
			if err := n.handleReady(&reads); err != nil {
				n.fail(err)
				return
			}
		}
		// Issue a read round only under a known leader: raft silently
		// drops ReadIndex without one, and the waiters would wait out a
		// full retry period for nothing.
		if n.rn.BasicStatus().Lead != raft.None && reads.maybeIssue(n.rn) {
			continue
		}
		select {
		case <-ticker.C():
			n.rn.Tick()
			reads.tick(n.cfg.ElectionTicks)
		case p := <-n.proposeC:
			p.errC <- n.rn.Propose(p.data)
		case w := <-n.readC:
			reads.add(w)
		case <-n.stopC:
			return
		}
	}
}

func (n *Node) handleReady(reads *readBatcher) error {
	rd := n.rn.Ready()
	// Append stage: durable before anything depends on it. (The pipelined
	// multi-member path overlaps this with sending; a lone member has no
	// one to send to.)
	if !raft.IsEmptyHardState(rd.HardState) || len(rd.Entries) > 0 {
		hs := rd.HardState
		if hs == nil {
			hs = &raftpb.HardState{}
		}
		if err := n.cfg.Log.Save(hs, rd.Entries, rd.MustSync); err != nil {
			return fmt.Errorf("pipeline: append to log: %w", err)
		}
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		return errors.New("pipeline: installing raft snapshots is not supported on a writer yet")
	}
	if err := n.storage.Append(rd.Entries); err != nil {
		return fmt.Errorf("pipeline: memory log: %w", err)
	}
	if hs := rd.HardState; hs != nil && !raft.IsEmptyHardState(hs) {
		if err := n.storage.SetHardState(hs); err != nil {
			return err
		}
	}
	for _, rs := range rd.ReadStates {
		reads.resolve(rs)
	}
	// Publish the new commit index before the apply stage can publish an
	// applied index past the old one: Status never shows applied > commit.
	n.updateStatus(rd)
	if len(rd.CommittedEntries) > 0 {
		for _, e := range rd.CommittedEntries {
			if err := n.maybeApplyConfChange(e); err != nil {
				return err
			}
		}
		n.apply.push(rd.CommittedEntries)
	}
	n.rn.Advance(rd)
	return nil
}

// maybeApplyConfChange tells raft about a committed conf change as it is
// handed to the apply stage, and queues the resulting ConfState for the
// applier, which stores it with the entry's index.
func (n *Node) maybeApplyConfChange(e *raftpb.Entry) error {
	var cc raftpb.ConfChangeI
	switch e.GetType() {
	case raftpb.EntryConfChange:
		var c raftpb.ConfChange
		if err := proto.Unmarshal(e.Data, &c); err != nil {
			return fmt.Errorf("pipeline: decode conf change at %d: %w", e.GetIndex(), err)
		}
		cc = &c
	case raftpb.EntryConfChangeV2:
		var c raftpb.ConfChangeV2
		if err := proto.Unmarshal(e.Data, &c); err != nil {
			return fmt.Errorf("pipeline: decode conf change at %d: %w", e.GetIndex(), err)
		}
		cc = &c
	default:
		return nil
	}
	cs := n.rn.ApplyConfChange(cc)
	n.confStates.Lock()
	n.confStates.q = append(n.confStates.q, cs)
	n.confStates.Unlock()
	return nil
}

func (n *Node) updateStatus(rd raft.Ready) {
	bs := n.rn.BasicStatus()
	n.mu.Lock()
	defer n.mu.Unlock()
	s := &n.mu.status
	s.Lead = bs.Lead
	s.Term = bs.GetTerm()
	s.Commit = bs.GetCommit()
	s.IsLeader = bs.RaftState == raft.StateLeader
}

// runApply is the apply stage's goroutine.
func (n *Node) runApply() {
	for {
		ents, ok := n.apply.pop()
		if !ok {
			return
		}
		if err := n.cfg.Apply(ents); err != nil {
			n.fail(fmt.Errorf("pipeline: apply: %w", err))
			// Drain nothing further: a failed apply means the state
			// machine cannot be trusted past this point.
			return
		}
		last := ents[len(ents)-1].GetIndex()
		n.mu.Lock()
		n.mu.status.Applied = last
		n.mu.Unlock()
	}
}

// applyQueue hands committed entries from the raft goroutine to the apply
// goroutine without ever blocking the raft goroutine. It is bounded from
// outside: the proposer refuses new work when apply lags commit too far.
type applyQueue struct {
	mu     sync.Mutex
	q      [][]*raftpb.Entry
	closed bool
	signal chan struct{}
}

func (q *applyQueue) init() { q.signal = make(chan struct{}, 1) }

func (q *applyQueue) push(ents []*raftpb.Entry) {
	q.mu.Lock()
	q.q = append(q.q, ents)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *applyQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// pop returns the next run of entries (coalescing queued runs), or false
// once the queue is closed and drained.
func (q *applyQueue) pop() ([]*raftpb.Entry, bool) {
	for {
		q.mu.Lock()
		if len(q.q) > 0 {
			var ents []*raftpb.Entry
			for _, r := range q.q {
				ents = append(ents, r...)
			}
			q.q = q.q[:0]
			q.mu.Unlock()
			return ents, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		<-q.signal
	}
}

// readBatcher batches ReadIndex requests: at most one raft ReadIndex is
// outstanding; every read that arrives meanwhile waits for the next one.
// It is owned by the raft goroutine.
type readBatcher struct {
	pending  []*readWaiter
	inflight []*readWaiter
	ctx      uint64 // request context of the outstanding ReadIndex
	age      int    // ticks since it was issued
}

func (b *readBatcher) add(w *readWaiter) { b.pending = append(b.pending, w) }

// maybeIssue starts a ReadIndex round for the pending reads if none is
// outstanding, and reports whether it did.
func (b *readBatcher) maybeIssue(rn *raft.RawNode) bool {
	if len(b.inflight) > 0 || len(b.pending) == 0 {
		return false
	}
	b.ctx++
	b.age = 0
	b.inflight, b.pending = b.pending, nil
	var rctx [8]byte
	binary.BigEndian.PutUint64(rctx[:], b.ctx)
	rn.ReadIndex(rctx[:])
	return true
}

func (b *readBatcher) resolve(rs raft.ReadState) {
	if len(rs.RequestCtx) != 8 || binary.BigEndian.Uint64(rs.RequestCtx) != b.ctx {
		return // an answer to a request we gave up on
	}
	for _, w := range b.inflight {
		w.resC <- readResult{index: rs.Index}
	}
	b.inflight = nil
}

// tick forgets waiters whose callers have gone, and re-arms a ReadIndex
// that got no answer within an election timeout (raft drops it silently
// when leadership is lost mid-round).
func (b *readBatcher) tick(electionTicks int) {
	b.pending = liveWaiters(b.pending)
	if len(b.inflight) == 0 {
		return
	}
	b.age++
	if b.age < electionTicks {
		return
	}
	b.pending = append(liveWaiters(b.inflight), b.pending...)
	b.inflight = nil
}

func liveWaiters(ws []*readWaiter) []*readWaiter {
	live := ws[:0]
	for _, w := range ws {
		if w.ctx.Err() == nil {
			live = append(live, w)
		}
	}
	clear(ws[len(live):])
	return live
}

func (b *readBatcher) failAll(err error) {
	for _, w := range append(b.inflight, b.pending...) {
		w.resC <- readResult{err: err}
	}
	b.inflight, b.pending = nil, nil
}
