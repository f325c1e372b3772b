package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/clock"
	"github.com/stratakv/strata/internal/failpoint"
	"github.com/stratakv/strata/internal/plantedbug"
)

// Errors returned by Node.
var (
	// ErrStopped is returned when the node has stopped or is stopping.
	ErrStopped = errors.New("pipeline: node stopped")
	// ErrLeaderTransferFailed is returned by TransferLeadership when raft
	// gave up moving leadership (the target did not catch up in time).
	ErrLeaderTransferFailed = errors.New("pipeline: leadership transfer abandoned")
	// ErrProposalDropped is returned when raft refused a proposal, e.g.
	// because there is no leader. The proposal was not appended.
	ErrProposalDropped = raft.ErrProposalDropped
)

// maxInflightBytes bounds the entry bytes the leader has in flight to one
// follower (raft's MaxInflightBytes).
const maxInflightBytes = 32 << 20

// LogStore is the durable raft log the append stage writes to (the WAL).
type LogStore interface {
	// Save appends hs (unless empty) and ents in order. With mustSync it
	// returns only once they are durable. Without, they may be lost in a
	// crash: raft asks for no sync when only the commit index moved, which
	// a restart recovers (an applied entry is committed by definition).
	Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error
	// SaveSnapshot durably records that the state machine now holds a
	// snapshot (installed before raft was told of it): log entries up to
	// its index are no longer needed.
	SaveSnapshot(snap *raftpb.Snapshot) error
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
	Apply func(ents []*raftpb.Entry) error
	// Transport carries messages to the other members; nil for a member
	// that is alone in its cluster.
	Transport Transport
	// Snapshot, if set, is what raft gets when it must send a follower a
	// snapshot: metadata for the state machine as it is now (its applied
	// index, term and ConfState), which the transport then streams. Nil
	// uses the in-memory log's last compaction point.
	Snapshot func() (*raftpb.Snapshot, error)
	Logger   *zap.Logger
	// EventListener receives the stages' timings, for metrics; its fields
	// may be nil. Durations are measured on Clock.
	EventListener EventListener
}

// EventListener is called on pipeline events, for metrics. Callbacks run on
// the stage's goroutine and must be quick.
type EventListener struct {
	// AppendEnd is called after every batch of the append stage (log
	// writes, their fsync, the in-memory log), with its duration and the
	// number of entries it wrote.
	AppendEnd func(d time.Duration, entries int)
	// ApplyEnd is called after every batch the apply stage hands the state
	// machine, with its duration and number of entries.
	ApplyEnd func(d time.Duration, entries int)
}

// Transport sends raft messages to other members. Send must not block:
// raft tolerates lost messages, a stalled raft loop it does not.
type Transport interface {
	Send(msgs []*raftpb.Message)
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
	if c.Start.AppliedIndex > 0 && (c.Start.ConfState == nil || len(c.Start.ConfState.Voters) == 0) {
		return errors.New("pipeline: start state has no voters")
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
	// LeaderChanges counts the times this member saw a new leader (etcd's
	// etcd_server_leader_changes_seen_total): a leader, not none,
	// different from the one it knew.
	LeaderChanges uint64
}

// Node is the raft loop of a writer member. Its methods are safe for
// concurrent use.
//
// Three goroutines, one per stage, connected by queues that never block
// the raft goroutine (raft's AsyncStorageWrites):
//
//   - the raft goroutine owns the RawNode: it steps ticks, proposals, reads
//     and received messages, and routes each Ready's messages — to peers at
//     once, MsgStorageAppend to the append stage, MsgStorageApply to the
//     apply stage;
//   - the append stage writes entries and HardState to the log (one fsync
//     for everything queued), updates raft's in-memory storage, and only
//     then delivers the append's responses (votes, MsgAppResp) — the
//     Ready contract's "durable before acknowledged";
//   - the apply stage hands committed entries to the state machine in
//     order and then delivers the apply's responses.
//
// So the leader sends entries to followers while it is still fsyncing them
// itself (raft thesis §10.2.1), the next append proceeds while earlier
// entries are applied, and appends queued behind a slow fsync share the
// next one.
type Node struct {
	cfg     Config
	lg      *zap.Logger
	storage *raft.MemoryStorage
	rn      *raft.RawNode // owned by the raft goroutine

	proposeC chan proposal
	readC    chan *readWaiter
	recvC    chan *raftpb.Message     // from the network
	callC    chan func(*raft.RawNode) // small requests run on the raft goroutine
	local    msgQueue                 // from the stages back to raft
	stopC    chan struct{}
	done     chan struct{} // closed when every goroutine has exited

	appendQ msgQueue
	applyQ  msgQueue

	mu struct {
		sync.Mutex
		status Status
		err    error // why the node stopped, if it failed
	}
	stopOnce sync.Once
}

type proposal struct {
	data []byte
	resC chan proposeResult
}

type proposeResult struct {
	leaderTerm uint64
	err        error
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
	// A member joining a running cluster starts with nothing (index 0, no
	// configuration) and waits for the leader's snapshot.
	if cfg.Start.AppliedIndex > 0 {
		snap := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index:     new(cfg.Start.AppliedIndex),
			Term:      new(cfg.Start.AppliedTerm),
			ConfState: cfg.Start.ConfState,
		}}
		if err := st.ApplySnapshot(snap); err != nil {
			return nil, fmt.Errorf("pipeline: install start state: %w", err)
		}
	}
	if err := st.Append(cfg.Start.Entries); err != nil {
		return nil, fmt.Errorf("pipeline: install log: %w", err)
	}
	hs := cfg.Start.HardState
	if hs == nil || raft.IsEmptyHardState(hs) {
		hs = &raftpb.HardState{Term: new(cfg.Start.AppliedTerm), Commit: new(cfg.Start.AppliedIndex)}
	}
	if hs.GetCommit() < cfg.Start.AppliedIndex {
		// A HardState that only moved the commit index is not fsynced
		// (see LogStore), so the state machine may be ahead of the
		// durable commit index; what it applied was committed.
		hs = &raftpb.HardState{Term: hs.Term, Vote: hs.Vote, Commit: new(cfg.Start.AppliedIndex)}
	}
	if err := st.SetHardState(hs); err != nil {
		return nil, err
	}
	var rst raft.Storage = st
	if cfg.Snapshot != nil {
		rst = snapshotStorage{st, cfg.Snapshot}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                 cfg.ID,
		ElectionTick:       cfg.ElectionTicks,
		HeartbeatTick:      1,
		Storage:            rst,
		Applied:            cfg.Start.AppliedIndex,
		AsyncStorageWrites: true,
		MaxSizePerMsg:      1 << 20,
		MaxInflightMsgs:    512,
		// What the leader holds for a follower that does not acknowledge
		// (a slow or hung reader, before its link breaks): etcd bounds
		// it by count only, 512 messages of up to 1 MiB. 32 MiB is
		// hundreds of milliseconds of replication at the rates strata
		// reaches, so it does not throttle a healthy follower.
		MaxInflightBytes: maxInflightBytes,
		CheckQuorum:      true,
		PreVote:          true,
		Logger:           &raftLogger{lg.Named("raft").WithOptions(zap.AddCallerSkip(1)).Sugar()},
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
		recvC:    make(chan *raftpb.Message, 4096),
		callC:    make(chan func(*raft.RawNode), 64),
		stopC:    make(chan struct{}),
		done:     make(chan struct{}),
	}
	n.local.init()
	n.appendQ.init()
	n.applyQ.init()
	n.mu.status = Status{ID: cfg.ID, Commit: hs.GetCommit(), Applied: cfg.Start.AppliedIndex, Term: hs.GetTerm()}
	// A lone voter campaigns at once rather than waiting out an election
	// timeout: there is nobody to disagree with.
	if cs := cfg.Start.ConfState; len(cs.GetVoters()) == 1 && cs.Voters[0] == cfg.ID && len(cs.GetVotersOutgoing()) == 0 {
		if err := rn.Campaign(); err != nil {
			return nil, fmt.Errorf("pipeline: campaign: %w", err)
		}
	}
	return n, nil
}

// Run starts the node's goroutines. It must be called exactly once.
func (n *Node) Run() {
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); n.run() }()
	go func() { defer wg.Done(); n.runAppend() }()
	go func() { defer wg.Done(); n.runApply() }()
	go func() { wg.Wait(); close(n.done) }()
}

// Propose hands data to raft as one entry. It returns once raft has accepted
// or refused the proposal — not when it commits; the caller learns the
// outcome from the apply stage. A follower forwards it to the leader.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	_, err := n.ProposeTerm(ctx, data)
	return err
}

// ProposeTerm is Propose that also reports, when this node was the leader
// and appended the entry to its own log, the term it appended it in (0 when
// the proposal was forwarded). Such an entry can only ever commit below the
// first entry of any later term: once the apply stage has applied an entry
// of a higher term, an entry of leaderTerm not yet applied never will be.
func (n *Node) ProposeTerm(ctx context.Context, data []byte) (leaderTerm uint64, _ error) {
	p := proposal{data: data, resC: make(chan proposeResult, 1)}
	select {
	case n.proposeC <- p:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-n.stopC:
		return 0, ErrStopped
	}
	select {
	case r := <-p.resC:
		return r.leaderTerm, r.err
	case <-n.stopC:
		return 0, ErrStopped
	}
}

// Step delivers a message received from a peer. It blocks (pushing back on
// the sender's stream) only while the raft goroutine is that far behind.
func (n *Node) Step(ctx context.Context, m *raftpb.Message) error {
	select {
	case n.recvC <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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

// call runs f on the raft goroutine without waiting for it; it reports
// false if the node is stopping.
func (n *Node) call(f func(*raft.RawNode)) bool {
	select {
	case n.callC <- f:
		return true
	case <-n.stopC:
		return false
	}
}

// ReportUnreachable tells raft that a message to peer id was lost, so it
// stops pipelining to it and probes instead.
func (n *Node) ReportUnreachable(id uint64) {
	n.call(func(rn *raft.RawNode) { rn.ReportUnreachable(id) })
}

// ReportSnapshot tells raft how sending a snapshot to peer id ended.
func (n *Node) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	n.call(func(rn *raft.RawNode) { rn.ReportSnapshot(id, status) })
}

// TransferLeadership hands leadership to the most up-to-date other voter
// and waits until some other member leads, or ctx ends. It does nothing
// on a follower or a lone voter. (etcd does this on SIGTERM, so a planned
// restart costs no election timeout.)
func (n *Node) TransferLeadership(ctx context.Context) error {
	picked := make(chan uint64, 1)
	if !n.call(func(rn *raft.RawNode) {
		st := rn.Status()
		var best, match uint64
		bestActive := false
		if st.RaftState == raft.StateLeader {
			// Prefer a voter heard from recently: raft gives up on a
			// transfer to an unreachable one after an election timeout.
			for id, pr := range st.Progress {
				if id == st.ID || pr.IsLearner {
					continue
				}
				better := pr.RecentActive && !bestActive ||
					pr.RecentActive == bestActive && (pr.Match > match || pr.Match == match && id < best)
				if best == 0 || better {
					best, match, bestActive = id, pr.Match, pr.RecentActive
				}
			}
		}
		if best != 0 {
			rn.TransferLeader(best)
		}
		picked <- best
	}) {
		return ErrStopped
	}
	var target uint64
	select {
	case target = <-picked:
	case <-ctx.Done():
		return ctx.Err()
	}
	if target == 0 {
		return nil
	}
	n.lg.Info("transferring leadership", zap.Uint64("to", target))
	// Leadership moves within an election timeout or not at all.
	return n.pollStatus(ctx, func(st Status) (bool, error) {
		if st.Lead != 0 && st.Lead != n.cfg.ID {
			return true, nil
		}
		if n.transferAbandoned() {
			return false, ErrLeaderTransferFailed
		}
		return false, nil
	})
}

// pollStatus checks done against the node's status at tick granularity
// until it reports true or an error, ctx ends or the node stops.
func (n *Node) pollStatus(ctx context.Context, done func(Status) (bool, error)) error {
	tk := n.cfg.Clock.NewTicker(n.cfg.TickInterval)
	defer tk.Stop()
	for {
		if ok, err := done(n.Status()); ok || err != nil {
			return err
		}
		select {
		case <-tk.C():
		case <-ctx.Done():
			return ctx.Err()
		case <-n.stopC:
			return ErrStopped
		}
	}
}

// MoveLeader asks raft to hand leadership to target and waits until target
// leads or ctx ends. (etcd's Maintenance.MoveLeader; the caller checks that
// this member leads and target is a voter.)
func (n *Node) MoveLeader(ctx context.Context, target uint64) error {
	if !n.call(func(rn *raft.RawNode) { rn.TransferLeader(target) }) {
		return ErrStopped
	}
	return n.pollStatus(ctx, func(st Status) (bool, error) { return st.Lead == target, nil })
}

// transferAbandoned reports whether this node still leads with no transfer
// in progress.
func (n *Node) transferAbandoned() bool {
	res := make(chan bool, 1)
	if !n.call(func(rn *raft.RawNode) {
		bs := rn.BasicStatus()
		res <- bs.RaftState == raft.StateLeader && bs.LeadTransferee == raft.None
	}) {
		return false
	}
	select {
	case v := <-res:
		return v
	case <-n.stopC:
		return false
	}
}

// Status returns the node's current status.
func (n *Node) Status() Status {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mu.status
}

// ApplyConfChange tells raft about a committed conf change as the apply
// stage applies it, and returns the resulting ConfState. (etcd's convention:
// a change the state machine rejects is applied with NodeId zero, which
// raft ignores.) It runs on the raft goroutine; the apply stage may wait
// for it because the raft goroutine never waits for the apply stage.
func (n *Node) ApplyConfChange(cc raftpb.ConfChangeI) (*raftpb.ConfState, error) {
	res := make(chan *raftpb.ConfState, 1)
	if !n.call(func(rn *raft.RawNode) { res <- rn.ApplyConfChange(cc) }) {
		return nil, ErrStopped
	}
	select {
	case cs := <-res:
		return cs, nil
	case <-n.stopC:
		return nil, ErrStopped
	}
}

// Progress reports, on the leader, how far each member's log matches the
// leader's; ok is false on a follower.
func (n *Node) Progress(ctx context.Context) (match map[uint64]uint64, ok bool, err error) {
	res := make(chan map[uint64]uint64, 1)
	if !n.call(func(rn *raft.RawNode) {
		st := rn.Status()
		if st.RaftState != raft.StateLeader {
			res <- nil
			return
		}
		m := make(map[uint64]uint64, len(st.Progress))
		for id, pr := range st.Progress {
			m[id] = pr.Match
		}
		res <- m
	}) {
		return nil, false, ErrStopped
	}
	select {
	case m := <-res:
		return m, m != nil, nil
	case <-ctx.Done():
		return nil, false, ctx.Err()
	case <-n.stopC:
		return nil, false, ErrStopped
	}
}

// ProposeConfChange proposes a membership change. Like Propose, it returns
// once raft accepted or refused it.
func (n *Node) ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeI) error {
	errc := make(chan error, 1)
	if !n.call(func(rn *raft.RawNode) { errc <- rn.ProposeConfChange(cc) }) {
		return ErrStopped
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stopC:
		return ErrStopped
	}
}

// CompactLog discards in-memory log entries up to index, which the state
// machine has made durable with ConfState cs. A follower that needs them
// gets a snapshot instead: raft's snapshot metadata moves to index, and its
// data is the state machine itself (at index or later), streamed by the
// transport.
func (n *Node) CompactLog(index uint64, cs *raftpb.ConfState) {
	// The state machine may be ahead of the log: a snapshot installed in
	// the window where raft then refused it (see writernode's
	// InstallSnapshot). raft's storage panics past its last index; such a
	// compaction waits until the log catches up.
	if last, err := n.storage.LastIndex(); err != nil || index > last {
		n.lg.Warn("not compacting the in-memory raft log past its last index", zap.Uint64("index", index), zap.Uint64("last-index", last))
		return
	}
	if _, err := n.storage.CreateSnapshot(index, cs, nil); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
		n.lg.Warn("snapshot in-memory raft log", zap.Uint64("index", index), zap.Error(err))
		return
	}
	if err := n.storage.Compact(index); err != nil && !errors.Is(err, raft.ErrCompacted) {
		n.lg.Warn("compact in-memory raft log", zap.Uint64("index", index), zap.Error(err))
	}
}

// Stop stops the node and waits for its goroutines to exit.
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

// Fail stops the node with err, as a storage failure would: for failures
// found outside the node (say, the member learns it was removed).
func (n *Node) Fail(err error) { n.fail(err) }

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
	defer n.appendQ.close()
	defer n.applyQ.close()
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
			var r proposeResult
			if r.err = n.rn.Propose(p.data); r.err == nil {
				// A leader appends a proposal to its own log at once,
				// in its current term.
				if st := n.rn.BasicStatus(); st.RaftState == raft.StateLeader {
					r.leaderTerm = st.GetTerm()
				}
			}
			p.resC <- r
		case w := <-n.readC:
			reads.add(w)
		case m := <-n.recvC:
			n.step(m)
		case f := <-n.callC:
			f(n.rn)
		case <-n.local.signal:
			for _, m := range n.local.popAll() {
				n.step(m)
			}
		case <-n.stopC:
			return
		}
	}
}

// step feeds a message to raft. Errors are raft's verdict on a message
// (a peer we no longer know, a stale local response) and are not the
// node's failure.
func (n *Node) step(m *raftpb.Message) {
	if err := n.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		n.lg.Debug("raft refused a message", zap.Stringer("type", m.GetType()), zap.Uint64("from", m.GetFrom()), zap.Error(err))
	}
}

// handleReady routes one Ready. In async mode there is no Advance: the
// stages acknowledge through the response messages they deliver.
func (n *Node) handleReady(reads *readBatcher) error {
	rd := n.rn.Ready()
	for _, rs := range rd.ReadStates {
		reads.resolve(rs)
	}
	var remote []*raftpb.Message
	for _, m := range rd.Messages {
		switch m.GetTo() {
		case raft.LocalAppendThread:
			n.appendQ.push(m)
			if len(m.GetEntries()) > 0 && plantedbug.On(plantedbug.AckBeforeCommit) && n.rn.BasicStatus().RaftState == raft.StateLeader {
				// The planted bug: the leader applies (and answers)
				// what it appends, before a quorum has it.
				n.applyQ.push(&raftpb.Message{From: new(uint64(earlyApply)), Entries: m.GetEntries()})
			}
		case raft.LocalApplyThread:
			n.applyQ.push(m)
		default:
			remote = append(remote, m)
		}
	}
	n.send(remote)
	n.updateStatus()
	return nil
}

// send hands messages for other members to the transport.
func (n *Node) send(msgs []*raftpb.Message) {
	if len(msgs) == 0 {
		return
	}
	if n.cfg.Transport == nil {
		n.lg.Warn("no transport: dropping messages to peers", zap.Int("count", len(msgs)))
		return
	}
	n.cfg.Transport.Send(msgs)
}

// deliver routes a stage's response messages: to this node through the
// local queue, to peers through the transport.
func (n *Node) deliver(resps []*raftpb.Message) {
	var remote []*raftpb.Message
	var local []*raftpb.Message
	for _, r := range resps {
		if r.GetTo() == n.cfg.ID {
			local = append(local, r)
		} else {
			remote = append(remote, r)
		}
	}
	n.send(remote)
	if len(local) > 0 {
		n.local.push(local...)
	}
}

func (n *Node) updateStatus() {
	bs := n.rn.BasicStatus()
	n.mu.Lock()
	defer n.mu.Unlock()
	s := &n.mu.status
	if bs.Lead != raft.None && bs.Lead != s.Lead {
		s.LeaderChanges++
	}
	s.Lead = bs.Lead
	s.Term = bs.GetTerm()
	s.Commit = bs.GetCommit()
	s.IsLeader = bs.RaftState == raft.StateLeader
}

// runAppend is the append stage. It takes every MsgStorageAppend queued,
// writes them to the log in order with one fsync (if any of them carries
// responses, which may only be delivered once the writes are durable),
// mirrors them into raft's in-memory storage, then delivers the responses.
func (n *Node) runAppend() {
	for {
		ms, ok := n.appendQ.wait(n.stopC)
		if !ok {
			return
		}
		var start time.Time
		if n.cfg.EventListener.AppendEnd != nil {
			start = n.cfg.Clock.Now()
		}
		if err := n.appendBatch(ms); err != nil {
			n.fail(err)
			return
		}
		if l := n.cfg.EventListener.AppendEnd; l != nil {
			ents := 0
			for _, m := range ms {
				ents += len(m.GetEntries())
			}
			l(n.cfg.Clock.Now().Sub(start), ents)
		}
	}
}

func (n *Node) appendBatch(ms []*raftpb.Message) error {
	failpoint.RaftBeforeSave.Hit()
	for i, m := range ms {
		if snap := m.GetSnapshot(); !raft.IsEmptySnap(snap) {
			// The state machine already holds it (the transport installs
			// a snapshot's data before stepping its MsgSnap); record it
			// before the entries that follow it.
			failpoint.RaftBeforeSaveSnap.Hit()
			if err := n.cfg.Log.SaveSnapshot(snap); err != nil {
				return fmt.Errorf("pipeline: record snapshot: %w", err)
			}
			failpoint.RaftAfterSaveSnap.Hit()
		}
		var hs *raftpb.HardState
		if m.Term != nil {
			hs = &raftpb.HardState{Term: m.Term, Vote: m.Vote, Commit: m.Commit}
		}
		mustSync := false
		if i == len(ms)-1 {
			// One fsync covers every append before it. It is needed
			// only if some append has responses to release (raft says
			// so by attaching them); a commit-index-only update is not.
			for _, m := range ms {
				if len(m.GetResponses()) > 0 {
					mustSync = true
				}
			}
		}
		if hs != nil || len(m.GetEntries()) > 0 || mustSync {
			if hs == nil {
				hs = &raftpb.HardState{}
			}
			if err := n.cfg.Log.Save(hs, m.GetEntries(), mustSync); err != nil {
				return fmt.Errorf("pipeline: append to log: %w", err)
			}
		}
	}
	failpoint.RaftAfterSave.Hit()
	for _, m := range ms {
		if snap := m.GetSnapshot(); !raft.IsEmptySnap(snap) {
			if err := n.storage.ApplySnapshot(snap); err != nil && !errors.Is(err, raft.ErrSnapOutOfDate) {
				return fmt.Errorf("pipeline: memory log: %w", err)
			}
			n.mu.Lock()
			n.mu.status.Applied = max(n.mu.status.Applied, snap.GetMetadata().GetIndex())
			n.mu.Unlock()
		}
		if err := n.storage.Append(m.GetEntries()); err != nil {
			return fmt.Errorf("pipeline: memory log: %w", err)
		}
		if m.Term != nil {
			if err := n.storage.SetHardState(&raftpb.HardState{Term: m.Term, Vote: m.Vote, Commit: m.Commit}); err != nil {
				return err
			}
		}
	}
	for _, m := range ms {
		n.deliver(m.GetResponses())
	}
	return nil
}

// earlyApply marks the apply-stage messages of the planted bug
// AckBeforeCommit (never sent otherwise).
const earlyApply = math.MaxUint64

// runApply is the apply stage.
func (n *Node) runApply() {
	for {
		ms, ok := n.applyQ.wait(n.stopC)
		if !ok {
			return
		}
		var ents []*raftpb.Entry
		if plantedbug.On(plantedbug.AckBeforeCommit) {
			ents = n.withEarlyEntries(ms)
		} else {
			for _, m := range ms {
				ents = append(ents, m.GetEntries()...)
			}
		}
		if len(ents) > 0 {
			var start time.Time
			if n.cfg.EventListener.ApplyEnd != nil {
				start = n.cfg.Clock.Now()
			}
			if err := n.cfg.Apply(ents); err != nil {
				n.fail(fmt.Errorf("pipeline: apply: %w", err))
				// A failed apply means the state machine cannot be
				// trusted past this point: apply nothing further.
				return
			}
			if l := n.cfg.EventListener.ApplyEnd; l != nil {
				l(n.cfg.Clock.Now().Sub(start), len(ents))
			}
			last := ents[len(ents)-1].GetIndex()
			n.mu.Lock()
			n.mu.status.Applied = max(n.mu.status.Applied, last)
			n.mu.Unlock()
		}
		for _, m := range ms {
			n.deliver(m.GetResponses())
		}
	}
}

// withEarlyEntries is the planted bug AckBeforeCommit's apply: the
// entries of ms, the leader's appended ones included where they follow on
// from what is applied.
func (n *Node) withEarlyEntries(ms []*raftpb.Message) []*raftpb.Entry {
	var ents []*raftpb.Entry
	n.mu.Lock()
	next := n.mu.status.Applied + 1
	n.mu.Unlock()
	for _, m := range ms {
		es := m.GetEntries()
		if m.GetFrom() == earlyApply {
			for len(es) > 0 && es[0].GetIndex() < next {
				es = es[1:]
			}
			if len(es) == 0 || es[0].GetIndex() != next {
				continue
			}
		}
		if len(es) > 0 {
			next = max(next, es[len(es)-1].GetIndex()+1)
		}
		ents = append(ents, es...)
	}
	return ents
}

// snapshotStorage is raft's storage with snapshots taken from the state
// machine on demand: a follower then installs exactly the state at the
// snapshot's index, and applies every entry after it normally.
type snapshotStorage struct {
	*raft.MemoryStorage
	snap func() (*raftpb.Snapshot, error)
}

func (s snapshotStorage) Snapshot() (*raftpb.Snapshot, error) {
	snap, err := s.snap()
	if err != nil {
		return nil, raft.ErrSnapshotTemporarilyUnavailable
	}
	return snap, nil
}

// msgQueue is an unbounded FIFO of messages with a wake-up signal. The raft
// goroutine pushes without ever blocking; the stages (and, for local
// responses, the raft goroutine) take everything queued at once, which is
// what batches appends and applies. It is bounded from outside: the
// proposer refuses new work when apply lags commit too far.
type msgQueue struct {
	mu     sync.Mutex
	q      []*raftpb.Message
	closed bool
	signal chan struct{}
}

func (q *msgQueue) init() { q.signal = make(chan struct{}, 1) }

func (q *msgQueue) push(ms ...*raftpb.Message) {
	q.mu.Lock()
	q.q = append(q.q, ms...)
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

func (q *msgQueue) popAll() []*raftpb.Message {
	q.mu.Lock()
	defer q.mu.Unlock()
	ms := q.q
	q.q = nil
	return ms
}

func (q *msgQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.signal <- struct{}{}:
	default:
	}
}

// wait returns everything queued, waiting for something if the queue is
// empty; false once the queue is closed or stop is closed.
func (q *msgQueue) wait(stop <-chan struct{}) ([]*raftpb.Message, bool) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return nil, false
		}
		if len(q.q) > 0 {
			ms := q.q
			q.q = nil
			q.mu.Unlock()
			return ms, true
		}
		q.mu.Unlock()
		select {
		case <-q.signal:
		case <-stop:
			return nil, false
		}
	}
}
