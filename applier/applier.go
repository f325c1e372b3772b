package applier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/auth"
	"github.com/stratakv/strata/internal/failpoint"
	"github.com/stratakv/strata/internal/plantedbug"
)

// Config configures an Applier.
type Config struct {
	// Engine is the storage the state machine lives in. The Applier does
	// not close it.
	Engine Engine
	// Logger is used for rare events (open, compaction). nil: no logging.
	Logger *zap.Logger
	// ApplyConfChange applies a committed conf change to raft (called on
	// the apply goroutine, in order) and returns the resulting ConfState,
	// which the applier stores atomically with the applied index. A change
	// the applier rejects (see membership.go) is passed with NodeId zero,
	// which raft ignores. A nil func, or a nil result, leaves the
	// ConfState unchanged; an error fails the Apply (the member stops).
	ApplyConfChange func(cc raftpb.ConfChangeI) (*raftpb.ConfState, error)
	// MaxLearners bounds the learners in the cluster (etcd's
	// --max-learners); 0 means 1, etcd's default.
	MaxLearners int
	// Notify is called for every request of a normal entry (by
	// InternalRaftRequest.ID), in order, after the engine batch holding it
	// has been committed, so reads already see it. It is called on the
	// apply goroutine and should not block.
	Notify func(id uint64, res Result)
	// LeaseExists, when set, answers Put's lease check in place of the
	// replicated lease table (tests that model a fixed set of leases
	// without granting them). It must be deterministic.
	LeaseExists func(id int64) bool
	// OnLease, when set, hears the effect of every applied lease request
	// (grants, revokes, checkpoints; for a checkpoint of an unknown lease
	// too), in order, once its batch is committed and before its index is
	// published to WaitApplied; OnRestore hears the whole lease table after
	// a restore, likewise. Both run with the applier's write lock held, so
	// they are never interleaved with each other: the leader's lessor stays
	// exactly in step with the table. They must be quick and must not call
	// back into the Applier.
	OnLease   func(LeaseEvent)
	OnRestore func(leases []LeaseInfo)
	// OnCommit, when set, hears every committed batch that moved the
	// applied index, with its watch events (see events.go), and every
	// Restore, in order, after OnLease/OnRestore and before the index is
	// published: whoever waits for an index finds its events delivered.
	// It runs with the write lock held and must be quick.
	OnCommit func(Commit)
	// CompactionChunk bounds the history versions one physical compaction
	// step examines while it holds up writers. 0: 1024.
	CompactionChunk int
	// Auth, when set, is the auth store the Auth requests apply to; its
	// state is kept in the engine (auth.go). Tokens issues the tokens of
	// applied Authenticate requests. Nil Auth: Auth requests are refused
	// as unsupported and no request is checked.
	Auth   *auth.Store
	Tokens auth.TokenProvider
	// EventListener receives events for metrics; its fields may be nil.
	EventListener EventListener
	// Now is the clock that times events for EventListener; nil means
	// time.Now. The applier's behaviour never depends on it.
	Now func() time.Time
}

// EventListener is called on applier events, for metrics. Callbacks run on
// the apply goroutine and must be quick.
type EventListener struct {
	// CommitEnd is called after every commit of an apply batch to the
	// engine, with its duration: etcd's backend_commit_duration_seconds.
	CommitEnd func(time.Duration)
}

// Result is the outcome of one applied request.
type Result struct {
	// Resp is *pb.PutResponse, *pb.DeleteRangeResponse, *pb.TxnResponse,
	// *pb.CompactionResponse or *pb.RangeResponse (for a Range proposed
	// through raft); its header carries only the revision.
	Resp proto.Message
	// Err is a deterministic rejection: an rpctypes.ErrGRPC* value, or
	// ErrUnsupportedRequest.
	Err error
}

// AppliedState is the raft position the state machine reflects.
type AppliedState struct {
	Index, Term uint64
	// ConfState is the membership as of Index; the caller owns it. nil
	// until a conf change has been applied.
	ConfState *raftpb.ConfState
}

// Applier is the replicated state machine. Apply is called by one
// goroutine (the apply stage); every other method may be called
// concurrently with it and with each other.
type Applier struct {
	cfg   Config
	lg    *zap.Logger
	chunk int
	// eng is the engine the state is in. Swap replaces it.
	// REQUIRES: writeMu or engMu to read it, both to change it.
	eng *engineRef
	// engMu guards eng and the read counts of engines.
	engMu sync.Mutex

	// readers is held shared by every read in progress (from opening its
	// snapshot to closing it) and exclusively by Close, so that the
	// engine is never closed under a read: the owner closes the engine
	// only after Close returned.
	readers sync.RWMutex
	// writeMu serializes the engine's write batches: Apply's and the
	// physical compactor's.
	writeMu sync.Mutex
	// st is the state as of the last committed batch.
	// REQUIRES: writeMu (to read it on the apply path, to write it).
	st applyState
	// kbuf and vbuf are Apply's scratch buffers. REQUIRES: writeMu.
	kbuf, vbuf []byte
	// emptyAuth is the encoding of an auth store never configured.
	emptyAuth []byte

	mu struct {
		sync.Mutex
		// applied mirrors st for concurrent readers.
		applied AppliedState
		rev     int64
		// compacted is the logical compacted revision.
		compacted int64
		// physical is the revision through which old versions have been
		// physically removed (see compact.go).
		physical int64
		// changed is closed and replaced whenever the above change.
		changed chan struct{}
		closed  bool
		// removed mirrors the c/r/ keys: members removed from the
		// cluster, asked about on every received peer message.
		removed map[uint64]bool
		// alarms mirrors st.alarms.
		alarms alarmSet
		// keys mirrors st.keys.
		keys int64
	}

	compactor compactor
}

// applyState is the state machine's position, stored in the meta keys in
// the same batch as the state it describes.
type applyState struct {
	index, term uint64
	confState   *raftpb.ConfState
	// rev is the current revision; compacted the logical compacted
	// revision (-1 until the first compaction, as in etcd).
	rev, compacted int64
	phys           compactorState
	// alarms are the active alarms (alarm.go).
	alarms alarmSet
	// keys counts the live keys (etcd_debugging_mvcc_keys_total). It is
	// derived from the latest view, kept in step by every put that
	// creates a key and every tombstone, and stored in keyMetaKeys so that
	// opening a large store need not count.
	keys int64
}

// New opens the state machine in cfg.Engine, initialising an empty engine
// to revision 1 at applied index 0.
func New(cfg Config) (*Applier, error) {
	if cfg.Engine == nil {
		return nil, errors.New("applier: Config.Engine is required")
	}
	a := &Applier{cfg: cfg, lg: cfg.Logger, eng: &engineRef{Engine: cfg.Engine}, chunk: cfg.CompactionChunk}
	if a.lg == nil {
		a.lg = zap.NewNop()
	}
	if a.chunk <= 0 {
		a.chunk = 1024
	}
	if a.cfg.Now == nil {
		a.cfg.Now = time.Now
	}
	if cfg.Auth != nil {
		var err error
		if a.emptyAuth, err = auth.NewStore(auth.DefaultBcryptCost, nil).Marshal(); err != nil {
			return nil, err
		}
	}
	snap := a.eng.NewSnapshot()
	st, found, err := loadState(snap)
	if err == nil {
		err = a.loadAuth(snap)
	}
	snap.Close()
	if err != nil {
		return nil, err
	}
	if !found {
		st = applyState{rev: 1, compacted: -1}
		b := a.eng.NewBatch()
		err := writeState(b, &st, true)
		if err == nil {
			err = b.Commit()
		}
		b.Close()
		if err != nil {
			return nil, fmt.Errorf("applier: initialise engine: %w", err)
		}
	}
	a.st = st
	a.mu.changed = make(chan struct{})
	a.publishLocked(&st)
	if a.mu.removed, err = loadRemoved(a.eng.Engine); err != nil {
		return nil, err
	}
	a.lg.Info("opened state machine",
		zap.Uint64("applied-index", st.index), zap.Uint64("applied-term", st.term),
		zap.Int64("revision", st.rev), zap.Int64("compacted-revision", st.compacted),
		zap.Int64("physically-compacted-revision", st.phys.done))
	a.compactor.start(a)
	return a, nil
}

// publishLocked makes st visible to the concurrent readers. REQUIRES: a.mu
// (or no concurrent access, in New).
func (a *Applier) publishLocked(st *applyState) {
	a.mu.applied = AppliedState{Index: st.index, Term: st.term, ConfState: st.confState}
	a.mu.rev, a.mu.compacted, a.mu.physical = st.rev, st.compacted, st.phys.done
	a.mu.alarms = st.alarms
	a.mu.keys = st.keys
	close(a.mu.changed)
	a.mu.changed = make(chan struct{})
}

func (a *Applier) publish(st *applyState) {
	a.mu.Lock()
	a.publishLocked(st)
	a.mu.Unlock()
}

type notification struct {
	id  uint64
	res Result
}

// Apply applies committed entries, in index order, in one engine batch that
// also records the new applied index, term and ConfState. Entries at or
// below the applied index are skipped (a replay after restart may overlap
// what the engine already holds). Once the batch is committed, Notify is
// called for every request applied.
//
// A request that fails etcd's checks is answered with its error and changes
// nothing; it is not an error of Apply. Apply fails only when the engine
// fails, an entry is corrupt (ErrCorruptEntry) or entries are missing
// (ErrIndexGap); the member must then stop, because its state machine
// could diverge from the others'. A failed Apply commits nothing.
func (a *Applier) Apply(ents []*raftpb.Entry) error {
	a.writeMu.Lock()
	notes, err := a.applyLocked(ents)
	a.writeMu.Unlock()
	if err != nil {
		return err
	}
	if a.cfg.Notify != nil {
		for _, n := range notes {
			a.cfg.Notify(n.id, n.res)
		}
	}
	return nil
}

func (a *Applier) applyLocked(ents []*raftpb.Entry) ([]notification, error) {
	if a.closed() {
		return nil, ErrClosed
	}
	st := a.st
	confChanged := false
	var removed []uint64
	b := a.eng.NewBatch()
	defer b.Close()
	var notes []notification
	var leaseEvs []LeaseEvent
	var events *[]*mvccpb.Event
	if a.cfg.OnCommit != nil {
		events = new([]*mvccpb.Event)
	}
	for _, e := range ents {
		idx := e.GetIndex()
		if idx <= st.index {
			continue
		}
		if idx != st.index+1 {
			return nil, fmt.Errorf("%w: entry %d, applied %d", ErrIndexGap, idx, st.index)
		}
		switch e.GetType() {
		case raftpb.EntryNormal:
			reqs, err := DecodeEntry(e.GetData())
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", idx, err)
			}
			for _, r := range reqs {
				res, err := a.applyRequest(b, &st, r, events, idx)
				if err != nil {
					return nil, fmt.Errorf("applier: entry %d: %w", idx, err)
				}
				if idx%50 == 0 && plantedbug.On(plantedbug.ApplyTwice) && (r.Put != nil || r.Txn != nil) {
					if _, err := a.applyRequest(b, &st, r, events, idx); err != nil {
						return nil, fmt.Errorf("applier: entry %d: %w", idx, err)
					}
				}
				notes = append(notes, notification{id: r.GetID(), res: res})
				if res.Err == nil {
					leaseEvs = append(leaseEvs, leaseEvents(r)...)
				}
			}
		case raftpb.EntryConfChange, raftpb.EntryConfChangeV2:
			cc, err := decodeConfChange(e)
			if err != nil {
				return nil, fmt.Errorf("entry %d: %w", idx, err)
			}
			reject, err := validateMembershipChange(b, cc, a.cfg.MaxLearners)
			if err != nil {
				return nil, fmt.Errorf("applier: entry %d: %w", idx, err)
			}
			if reject != nil {
				cc = noopConfChange(cc)
			} else {
				if err := applyMembershipChange(b, cc); err != nil {
					return nil, fmt.Errorf("applier: entry %d: %w", idx, err)
				}
				for _, ch := range cc.AsV2().GetChanges() {
					if ch.GetType() == raftpb.ConfChangeRemoveNode {
						removed = append(removed, ch.GetNodeId())
					}
				}
			}
			if a.cfg.ApplyConfChange != nil {
				cs, err := a.cfg.ApplyConfChange(cc)
				if err != nil {
					return nil, fmt.Errorf("applier: entry %d: %w", idx, err)
				}
				if cs != nil {
					st.confState = proto.Clone(cs).(*raftpb.ConfState)
					confChanged = true
				}
			}
			if v1, ok := cc.(*raftpb.ConfChange); ok && v1.GetId() != 0 {
				notes = append(notes, notification{id: v1.GetId(), res: Result{Err: reject}})
			}
		default:
			return nil, fmt.Errorf("%w: entry %d has unknown type %d", ErrCorruptEntry, idx, e.GetType())
		}
		st.index, st.term = idx, e.GetTerm()
	}
	if st.index == a.st.index {
		return nil, nil
	}
	if err := writeState(b, &st, confChanged); err != nil {
		return nil, err
	}
	failpoint.BeforeCommit.Hit()
	var start time.Time
	if a.cfg.EventListener.CommitEnd != nil {
		start = a.cfg.Now()
	}
	if err := b.Commit(); err != nil {
		return nil, fmt.Errorf("applier: commit: %w", err)
	}
	if a.cfg.EventListener.CommitEnd != nil {
		a.cfg.EventListener.CommitEnd(a.cfg.Now().Sub(start))
	}
	failpoint.AfterCommit.Hit()
	a.st = st
	// Lease hooks before publishing: whoever waits for this index (a
	// renewal on the leader) must find the lessor up to date.
	if a.cfg.OnLease != nil {
		for _, ev := range leaseEvs {
			a.cfg.OnLease(ev)
		}
	}
	if events != nil {
		a.cfg.OnCommit(Commit{Rev: st.rev, Compacted: st.compacted, Events: *events})
	}
	a.mu.Lock()
	for _, id := range removed {
		a.mu.removed[id] = true
	}
	a.publishLocked(&st)
	a.mu.Unlock()
	if st.compacted > st.phys.done {
		a.compactor.kick()
	}
	return notes, nil
}

func decodeConfChange(e *raftpb.Entry) (raftpb.ConfChangeI, error) {
	var cc interface {
		proto.Message
		raftpb.ConfChangeI
	}
	if e.GetType() == raftpb.EntryConfChange {
		cc = &raftpb.ConfChange{}
	} else {
		cc = &raftpb.ConfChangeV2{}
	}
	if err := proto.Unmarshal(e.GetData(), cc); err != nil {
		return nil, fmt.Errorf("%w: conf change: %v", ErrCorruptEntry, err)
	}
	return cc, nil
}

// rejections are the errors a request may be answered with. Any other
// error while applying is a storage failure.
var rejections = map[error]bool{
	rpctypes.ErrGRPCEmptyKey:          true,
	rpctypes.ErrGRPCKeyNotFound:       true,
	rpctypes.ErrGRPCValueProvided:     true,
	rpctypes.ErrGRPCLeaseProvided:     true,
	rpctypes.ErrGRPCTooManyOps:        true,
	rpctypes.ErrGRPCDuplicateKey:      true,
	rpctypes.ErrGRPCInvalidSortOption: true,
	rpctypes.ErrGRPCCompacted:         true,
	rpctypes.ErrGRPCFutureRev:         true,
	rpctypes.ErrGRPCLeaseNotFound:     true,
	rpctypes.ErrGRPCLeaseExist:        true,
	rpctypes.ErrGRPCLeaseTTLTooLarge:  true,
	rpctypes.ErrGRPCNoSpace:           true,
	rpctypes.ErrGRPCCorrupt:           true,
	ErrUnsupportedRequest:             true,
}

// applyRequest applies one request of the entry at index idx to the batch
// and advances st.
func (a *Applier) applyRequest(b Batch, st *applyState, r *pb.InternalRaftRequest, events *[]*mvccpb.Event, idx uint64) (Result, error) {
	t := &txnCtx{
		r: b, w: b, beginRev: st.rev, compacted: st.compacted,
		leaseOverride: a.cfg.LeaseExists, kbuf: a.kbuf, vbuf: a.vbuf,
		events: events,
	}
	n := 0
	if events != nil {
		n = len(*events)
	}
	var (
		resp proto.Message
		err  error
	)
	if c := a.caller(r); c != nil && (r.Put != nil || r.DeleteRange != nil || r.Txn != nil || r.LeaseRevoke != nil) {
		// Before the quota, as etcd's auth applier wraps its quota one.
		if cerr := t.checkKV(c, r); cerr != nil {
			err = authRejection{cerr}
		}
	}
	if err == nil {
		err = st.alarms.capped(r)
	}
	switch {
	case err != nil:
	case isAuthRequest(r):
		resp, err = a.applyAuth(b, r, idx)
	case r.Put != nil:
		if err = CheckPutRequest(r.Put); err == nil {
			if err = t.checkPut(r.Put); err == nil {
				resp, err = t.put(r.Put)
			}
		}
	case r.DeleteRange != nil:
		if err = CheckDeleteRangeRequest(r.DeleteRange); err == nil {
			resp, err = t.deleteRange(r.DeleteRange)
		}
	case r.Txn != nil:
		if err = CheckTxnRequest(r.Txn, math.MaxInt); err == nil {
			resp, err = t.txn(r.Txn)
		}
	case r.Compaction != nil:
		resp, err = compactLogical(st, r.Compaction)
	case r.Range != nil:
		if err = CheckRangeRequest(r.Range); err == nil {
			resp, err = t.rangeOp(r.Range)
		}
	case r.ClusterMemberAttrSet != nil:
		err = applyMemberAttrs(b, r.ClusterMemberAttrSet)
	case r.LeaseGrant != nil:
		resp, err = t.leaseGrant(r.LeaseGrant)
	case r.LeaseRevoke != nil:
		resp, err = t.leaseRevoke(r.LeaseRevoke)
	case r.LeaseCheckpoint != nil:
		resp, err = t.leaseCheckpoint(r.LeaseCheckpoint)
	case r.Alarm != nil:
		resp, err = applyAlarm(b, st, r.Alarm)
	default:
		err = ErrUnsupportedRequest
	}
	a.kbuf, a.vbuf = t.kbuf, t.vbuf
	if ar, ok := err.(authRejection); ok {
		err = ar.err // refused before writing anything
		if t.changes != 0 {
			panic(fmt.Sprintf("applier: request %d refused after %d writes: %v", r.GetID(), t.changes, err))
		}
		return Result{Err: err}, nil
	}
	if err != nil {
		if rejections[err] {
			if t.changes != 0 {
				// Checks run before writes; a rejection after a write
				// would leave a partial request in the batch.
				panic(fmt.Sprintf("applier: request %d rejected after %d writes: %v", r.GetID(), t.changes, err))
			}
			if events != nil {
				*events = (*events)[:n]
			}
			return Result{Err: err}, nil
		}
		return Result{}, err
	}
	if t.changes > 0 {
		st.rev++
	}
	st.keys += t.keysDelta
	return Result{Resp: resp}, nil
}

// compactLogical records a compaction: reads below rev fail from now on.
// The revision does not change; the header carries the current one.
func compactLogical(st *applyState, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	switch {
	case r.Revision <= st.compacted:
		return nil, rpctypes.ErrGRPCCompacted
	case r.Revision > st.rev:
		return nil, rpctypes.ErrGRPCFutureRev
	}
	st.compacted = r.Revision
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: st.rev}}, nil
}

// Applied returns the raft position the committed state reflects.
func (a *Applier) Applied() AppliedState {
	a.mu.Lock()
	s := a.mu.applied
	a.mu.Unlock()
	if s.ConfState != nil {
		s.ConfState = proto.Clone(s.ConfState).(*raftpb.ConfState)
	}
	return s
}

// WaitApplied returns once Applied().Index >= index, or with ctx's error,
// or ErrClosed.
func (a *Applier) WaitApplied(ctx context.Context, index uint64) error {
	return a.waitFor(ctx, func() bool { return a.mu.applied.Index >= index })
}

// waitFor waits until cond, evaluated under a.mu, holds.
func (a *Applier) waitFor(ctx context.Context, cond func() bool) error {
	for {
		a.mu.Lock()
		ok, closed, ch := cond(), a.mu.closed, a.mu.changed
		a.mu.Unlock()
		switch {
		case ok:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Keys returns the number of live keys (etcd_debugging_mvcc_keys_total).
func (a *Applier) Keys() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.keys
}

// countLatest counts the keys of the latest view.
func countLatest(r Reader) (int64, error) {
	it, err := r.NewIter(prefixLatest, prefixEnd(prefixLatest))
	if err != nil {
		return 0, err
	}
	defer it.Close()
	var n int64
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n, it.Error()
}

// Rev returns the current revision and the compacted revision (-1 if the
// store has never been compacted, as etcd reports it).
func (a *Applier) Rev() (current, compacted int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.rev, a.mu.compacted
}

// Stats reports the engine's size.
func (a *Applier) Stats() EngineStats { return a.Engine().Stats() }

// Sync makes everything applied so far durable in the engine.
func (a *Applier) Sync() error { return a.Engine().Sync() }

// Engine is the engine the state machine is in now: the one it was opened
// with, or the last one Swap installed.
func (a *Applier) Engine() Engine {
	a.engMu.Lock()
	defer a.engMu.Unlock()
	return a.eng.Engine
}

// engineRef is an engine with the count of the reads open on it, so that
// an engine Swap replaced is retired only once its last read ended.
type engineRef struct {
	Engine
	reads int // REQUIRES: Applier.engMu
	// retire, set by Swap, runs once reads is 0. REQUIRES: engMu.
	retire func()
}

// acquire returns the current engine, counting a read on it.
func (a *Applier) acquire() *engineRef {
	a.engMu.Lock()
	defer a.engMu.Unlock()
	a.eng.reads++
	return a.eng
}

// release ends a read on ref, retiring it if it was replaced and this was
// its last read.
func (a *Applier) release(ref *engineRef) {
	a.engMu.Lock()
	ref.reads--
	var retire func()
	if ref.reads == 0 {
		retire, ref.retire = ref.retire, nil
	}
	a.engMu.Unlock()
	if retire != nil {
		retire()
	}
}

// readView opens a snapshot of the committed state with its revisions.
func (a *Applier) readView() (*txnCtx, Snapshot, error) {
	snap, err := a.openSnapshot()
	if err != nil {
		return nil, nil, err
	}
	rev, compacted, err := loadRevs(snap)
	if err != nil {
		snap.Close()
		return nil, nil, err
	}
	return &txnCtx{r: snap, beginRev: rev, compacted: compacted}, snap, nil
}

// Range serves a Range on a consistent snapshot of the committed state.
// The response header carries only the revision (the current one, also
// for reads at an older revision).
func (a *Applier) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := CheckRangeRequest(r); err != nil {
		return nil, err
	}
	t, snap, err := a.readView()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	return t.rangeOp(r)
}

// ReadTxn evaluates a read-only txn (IsReadOnlyTxn) on a consistent
// snapshot of the committed state, as etcd serves such txns without raft.
func (a *Applier) ReadTxn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if !IsReadOnlyTxn(r) {
		return nil, ErrNotReadOnly
	}
	if err := CheckTxnRequest(r, math.MaxInt); err != nil {
		return nil, err
	}
	t, snap, err := a.readView()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	return t.txn(r)
}

// Close stops the physical compactor, waits for an Apply in progress, and
// fails later calls with ErrClosed. It does not close the Engine, which the
// caller may close once Close has returned and no read is in progress.
func (a *Applier) Close() error {
	a.mu.Lock()
	if a.mu.closed {
		a.mu.Unlock()
		return nil
	}
	a.mu.closed = true
	close(a.mu.changed)
	a.mu.changed = make(chan struct{})
	a.mu.Unlock()
	a.readers.Lock() // wait out reads that began before Close
	a.readers.Unlock()
	a.compactor.stop()
	a.writeMu.Lock() // wait out an Apply that began before Close
	a.writeMu.Unlock()
	return nil
}

func (a *Applier) closed() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mu.closed
}

// loadState reads the meta keys. found is false for an empty engine.
func loadState(r Reader) (st applyState, found bool, err error) {
	v, err := r.Get(keyMetaApplied)
	if errors.Is(err, ErrNotFound) {
		return applyState{}, false, nil
	}
	if err != nil {
		return applyState{}, false, err
	}
	if len(v) != 16 {
		return applyState{}, false, fmt.Errorf("%w: %s", errCorruptValue, keyMetaApplied)
	}
	st.index, st.term = binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:])
	if st.rev, st.compacted, err = loadRevs(r); err != nil {
		return applyState{}, false, err
	}
	switch v, err := r.Get(keyMetaConfState); {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return applyState{}, false, err
	default:
		st.confState = &raftpb.ConfState{}
		if err := proto.Unmarshal(v, st.confState); err != nil {
			return applyState{}, false, fmt.Errorf("%w: %s: %v", errCorruptValue, keyMetaConfState, err)
		}
	}
	if st.phys, err = loadCompactorState(r); err != nil {
		return applyState{}, false, err
	}
	if st.alarms, err = loadAlarms(r); err != nil {
		return applyState{}, false, err
	}
	switch v, err := r.Get(keyMetaKeys); {
	case errors.Is(err, ErrNotFound):
		// A store written before the count existed: count once; the next
		// batch stores it.
		if st.keys, err = countLatest(r); err != nil {
			return applyState{}, false, err
		}
	case err != nil:
		return applyState{}, false, err
	case len(v) != 8:
		return applyState{}, false, fmt.Errorf("%w: %s", errCorruptValue, keyMetaKeys)
	default:
		st.keys = int64(binary.BigEndian.Uint64(v))
	}
	return st, true, nil
}

func loadRevs(r Reader) (rev, compacted int64, err error) {
	v, err := r.Get(keyMetaRev)
	if err != nil {
		return 0, 0, fmt.Errorf("applier: read %s: %w", keyMetaRev, err)
	}
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("%w: %s", errCorruptValue, keyMetaRev)
	}
	return int64(binary.BigEndian.Uint64(v)), int64(binary.BigEndian.Uint64(v[8:])), nil
}

// writeState records st's position in the meta keys.
func writeState(b Batch, st *applyState, confChanged bool) error {
	var v [16]byte
	binary.BigEndian.PutUint64(v[:], st.index)
	binary.BigEndian.PutUint64(v[8:], st.term)
	if err := b.Set(keyMetaApplied, v[:]); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(v[:], uint64(st.rev))
	binary.BigEndian.PutUint64(v[8:], uint64(st.compacted))
	if err := b.Set(keyMetaRev, v[:]); err != nil {
		return err
	}
	binary.BigEndian.PutUint64(v[:8], uint64(st.keys))
	if err := b.Set(keyMetaKeys, v[:8]); err != nil {
		return err
	}
	if confChanged && st.confState != nil {
		data, err := proto.Marshal(st.confState)
		if err != nil {
			return err
		}
		if err := b.Set(keyMetaConfState, data); err != nil {
			return err
		}
	}
	return nil
}

// openSnapshot opens an engine snapshot for a read, or fails with ErrClosed.
// The read holds a.readers until it closes the snapshot.
func (a *Applier) openSnapshot() (Snapshot, error) {
	a.readers.RLock()
	if a.closed() {
		a.readers.RUnlock()
		return nil, ErrClosed
	}
	ref := a.acquire()
	return &readSnapshot{Snapshot: ref.NewSnapshot(), a: a, ref: ref}, nil
}

// readSnapshot releases the applier's read hold, and its engine's, when
// closed.
type readSnapshot struct {
	Snapshot
	a    *Applier
	ref  *engineRef
	done bool
}

func (s *readSnapshot) Close() error {
	if s.done {
		return nil
	}
	s.done = true
	err := s.Snapshot.Close()
	s.a.release(s.ref)
	s.a.readers.RUnlock()
	return err
}
