package applytest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/applier/kvmodel"
)

// ModelCheckConfig configures RunModelCheck.
type ModelCheckConfig struct {
	// Seed makes the run reproducible.
	Seed int64
	// Ops is the number of generated requests.
	Ops int
	// FS is the file system the engine lives in. If it is a crashable
	// *vfs.MemFS (vfs.NewCrashableMem), CrashEvery simulates crashes.
	FS vfs.FS
	// Open opens (or reopens) the engine stored in fs.
	Open func(fs vfs.FS) (applier.Engine, error)
	// ReopenEvery is the mean number of requests between clean restarts
	// (close and reopen engine and applier); 0: never.
	ReopenEvery int
	// CrashEvery is the mean number of requests between simulated crashes:
	// the engine is reopened on a crash clone of FS that keeps only part of
	// what was not synced, and the harness replays the entries after the
	// applied index the engine recovered, as raft would from its WAL; 0:
	// never.
	CrashEvery int
	// MaxTxnOps is the txn op budget; 0: 8 (small, so that the budget is
	// exercised).
	MaxTxnOps int
	// CompactionChunk is the applier's CompactionChunk; 0: 7 (small, so
	// that compaction runs take many steps).
	CompactionChunk int
	// Keys is the generator's key space; nil: kvmodel.DefaultKeys.
	Keys []string
}

// The lease IDs requests use; which exist is up to the LeaseGrant and
// LeaseRevoke requests the generator mixes in.
var testLeases = []int64{7, 8, 9}

// RunModelCheck drives an Applier on the configured engine with a random
// request sequence and compares every response (with proto.Equal) and
// every error (by identity) with kvmodel's.
//
// Requests go the way the API layer sends them: validation first; Ranges
// and read-only txns straight to Range/ReadTxn (some Ranges through raft
// instead); writes batched into entries of several requests, several
// entries per Apply, with raft no-ops and conf changes mixed in. Along the
// way the harness restarts and crashes the store, syncs the engine and
// truncates its log below the synced index, checks that a crash loses
// nothing synced and that replay answers exactly as the first apply did,
// and compares whole states at several revisions.
func RunModelCheck(t testing.TB, cfg ModelCheckConfig) {
	if cfg.MaxTxnOps == 0 {
		cfg.MaxTxnOps = 8
	}
	if cfg.CompactionChunk == 0 {
		cfg.CompactionChunk = 7
	}
	h := &harness{
		t:        t,
		cfg:      cfg,
		rng:      rand.New(rand.NewPCG(uint64(cfg.Seed), 0x5eed)),
		model:    kvmodel.New(),
		gen:      kvmodel.NewGenerator(cfg.Seed, kvmodel.GenOptions{MaxTxnOps: cfg.MaxTxnOps, Keys: cfg.Keys, Leases: testLeases, LeasePercent: 8}),
		fs:       cfg.FS,
		expected: map[uint64]want{},
		term:     1,
	}
	h.model.MaxTxnOps = cfg.MaxTxnOps
	h.open()
	defer h.close()
	for i := 1; i <= cfg.Ops; i++ {
		cur, compacted := h.model.Rev()
		req := h.gen.Next(cur, compacted)
		req.ID = uint64(i)
		h.step(req)
		if cfg.ReopenEvery > 0 && h.rng.IntN(cfg.ReopenEvery) == 0 {
			h.flush()
			h.reopen()
		}
		if cfg.CrashEvery > 0 && h.rng.IntN(cfg.CrashEvery) == 0 {
			h.flush()
			h.crash()
		}
	}
	h.flush()
	h.compareStates("end")
	_, compacted := h.model.Rev()
	if compacted > 0 {
		if err := h.app.WaitCompaction(context.Background(), compacted); err != nil {
			t.Fatalf("WaitCompaction(%d): %v", compacted, err)
		}
		h.compareStates("after physical compaction")
	}
	cur, _ := h.model.Rev()
	t.Logf("%d requests: %d entries, %d restarts, %d crashes; final revision %d, compacted %d; %s",
		cfg.Ops, h.index, h.reopens, h.crashes, cur, compacted, h.stats)
}

// want is the model's answer to a request.
type want struct {
	resp proto.Message
	err  error
	req  *pb.InternalRaftRequest
	seq  int
}

type confAt struct {
	index uint64
	cs    *raftpb.ConfState
}

type harness struct {
	t     testing.TB
	cfg   ModelCheckConfig
	rng   *rand.Rand
	model *kvmodel.Model
	gen   *kvmodel.Generator

	fs  vfs.FS
	eng applier.Engine
	app *applier.Applier

	// learner is the learner the last generated conf change added (0 if
	// it removed one).
	learner uint64

	// pending are validated writes (and some Ranges) not yet applied.
	pending []*pb.InternalRaftRequest
	// expected holds the model's answer for every request that went (or
	// goes) through raft, by ID, until its entry is synced.
	expected map[uint64]want
	// log holds the entries after the synced index, as a WAL would.
	log         []*raftpb.Entry
	index, term uint64
	synced      uint64
	confs       []confAt
	got         map[uint64]applier.Result

	reopens, crashes int
	stats            stats
}

type stats struct {
	reads, writes, rejected, viaRaft int
}

func (s stats) String() string {
	return fmt.Sprintf("%d direct reads, %d raft requests (%d ranges), %d rejected by validation",
		s.reads, s.writes, s.viaRaft, s.rejected)
}

func (h *harness) open() {
	h.t.Helper()
	eng, err := h.cfg.Open(h.fs)
	if err != nil {
		h.t.Fatalf("open engine: %v", err)
	}
	app, err := applier.New(applier.Config{
		Engine:          eng,
		ApplyConfChange: confStateOf,
		Notify: func(id uint64, res applier.Result) {
			if _, dup := h.got[id]; dup {
				h.t.Fatalf("request %d notified twice", id)
			}
			h.got[id] = res
		},
		CompactionChunk: h.cfg.CompactionChunk,
	})
	if err != nil {
		h.t.Fatalf("open applier: %v", err)
	}
	h.eng, h.app = eng, app
}

func (h *harness) close() {
	if h.app != nil {
		h.app.Close()
		h.eng.Close()
		h.app, h.eng = nil, nil
	}
}

// confStateOf is the ApplyConfChange stand-in: a ConfState that depends
// only on the change, so that replays reproduce it.
func confStateOf(cc raftpb.ConfChangeI) (*raftpb.ConfState, error) {
	id := cc.AsV2().GetChanges()[0].GetNodeId()
	return &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{id}}, nil
}

func (h *harness) step(req *pb.InternalRaftRequest) {
	h.t.Helper()
	w := want{req: req, seq: int(req.ID)}
	w.resp, w.err = h.model.Apply(req)
	if err := validate(req, h.cfg.MaxTxnOps); err != nil {
		h.stats.rejected++
		h.check("validation", w, nil, err)
		return
	}
	switch {
	case req.Range != nil && h.rng.IntN(5) != 0:
		h.flush()
		h.stats.reads++
		resp, err := h.app.Range(req.Range)
		h.check("Range", w, resp, err)
	case req.Txn != nil && applier.IsReadOnlyTxn(req.Txn):
		h.flush()
		h.stats.reads++
		resp, err := h.app.ReadTxn(req.Txn)
		h.check("ReadTxn", w, resp, err)
	default:
		if req.Range != nil {
			h.stats.viaRaft++
		}
		h.stats.writes++
		h.expected[req.ID] = w
		h.pending = append(h.pending, req)
		if len(h.pending) >= 1+h.rng.IntN(12) {
			h.flush()
		}
	}
}

// validate is the API layer's validation.
func validate(r *pb.InternalRaftRequest, maxTxnOps int) error {
	switch {
	case r.Range != nil:
		return applier.CheckRangeRequest(r.Range)
	case r.Put != nil:
		return applier.CheckPutRequest(r.Put)
	case r.DeleteRange != nil:
		return applier.CheckDeleteRangeRequest(r.DeleteRange)
	case r.Txn != nil:
		return applier.CheckTxnRequest(r.Txn, maxTxnOps)
	}
	return nil
}

func (h *harness) check(path string, w want, resp proto.Message, err error) {
	h.t.Helper()
	if w.err != nil || err != nil {
		if w.err != err {
			h.t.Fatalf("request %d (%s) %s:\nerror %v\nwant  %v", w.seq, path, text(w.req), err, w.err)
		}
		return
	}
	if !proto.Equal(w.resp, resp) {
		h.t.Fatalf("request %d (%s) %s:\ngot  %s\nwant %s", w.seq, path, text(w.req), text(resp), text(w.resp))
	}
}

func text(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	return prototext.MarshalOptions{}.Format(m)
}

// flush proposes the pending requests: entries of a few requests each,
// raft no-ops and conf changes mixed in, several entries per Apply.
func (h *harness) flush() {
	h.t.Helper()
	var ents []*raftpb.Entry
	for len(h.pending) > 0 {
		if h.rng.IntN(10) == 0 {
			h.term++ // a new leader appends an empty entry
			ents = append(ents, h.entry(raftpb.EntryNormal, nil))
		}
		if h.rng.IntN(50) == 0 {
			// Alternate adding and removing one learner, so that every
			// change passes the applier's membership checks (at most one
			// learner; no duplicates) and the predicted ConfState holds.
			cc := &raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(uint64(4 + h.rng.IntN(5)))}
			if h.learner != 0 {
				cc = &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: proto.Uint64(h.learner)}
				h.learner = 0
			} else {
				h.learner = cc.GetNodeId()
			}
			data, err := proto.Marshal(cc)
			if err != nil {
				h.t.Fatal(err)
			}
			ents = append(ents, h.entry(raftpb.EntryConfChange, data))
			cs, _ := confStateOf(cc)
			h.confs = append(h.confs, confAt{h.index, cs})
		}
		n := min(1+h.rng.IntN(4), len(h.pending))
		var reqs [][]byte
		for _, r := range h.pending[:n] {
			data, err := proto.Marshal(r)
			if err != nil {
				h.t.Fatal(err)
			}
			reqs = append(reqs, data)
		}
		h.pending = h.pending[n:]
		ents = append(ents, h.entry(raftpb.EntryNormal, applier.EncodeEntry(nil, reqs)))
		if h.rng.IntN(3) == 0 || len(h.pending) == 0 {
			h.apply(ents)
			ents = nil
		}
	}
	if len(ents) > 0 {
		h.apply(ents)
	}
	cur, _ := h.model.Rev()
	if rev, _ := h.app.Rev(); rev != cur {
		h.t.Fatalf("applier at revision %d after apply, model at %d", rev, cur)
	}
	if got, want := h.app.Keys(), h.model.LiveKeys(); got != want {
		h.t.Fatalf("applier counts %d live keys at revision %d, model %d", got, cur, want)
	}
	if h.rng.IntN(20) == 0 {
		h.sync()
	}
}

func (h *harness) entry(typ raftpb.EntryType, data []byte) *raftpb.Entry {
	h.index++
	e := &raftpb.Entry{Type: typ.Enum(), Term: proto.Uint64(h.term), Index: proto.Uint64(h.index), Data: data}
	h.log = append(h.log, e)
	return e
}

// apply applies entries and checks every request's answer.
func (h *harness) apply(ents []*raftpb.Entry) {
	h.t.Helper()
	h.got = map[uint64]applier.Result{}
	if err := h.app.Apply(ents); err != nil {
		h.t.Fatalf("Apply: %v", err)
	}
	h.checkNotified(ents)
}

// checkNotified compares the notifications for ents with the model.
func (h *harness) checkNotified(ents []*raftpb.Entry) {
	h.t.Helper()
	n := 0
	for _, e := range ents {
		if e.GetType() != raftpb.EntryNormal {
			continue
		}
		reqs, err := applier.DecodeEntry(e.GetData())
		if err != nil {
			h.t.Fatal(err)
		}
		for _, r := range reqs {
			w, ok := h.expected[r.ID]
			if !ok {
				h.t.Fatalf("no expectation for request %d", r.ID)
			}
			res, ok := h.got[r.ID]
			if !ok {
				h.t.Fatalf("request %d (entry %d) was not notified", r.ID, e.GetIndex())
			}
			h.check("apply", w, res.Resp, res.Err)
			n++
		}
	}
	if n != len(h.got) {
		h.t.Fatalf("%d notifications for %d requests", len(h.got), n)
	}
}

// sync makes the engine durable and truncates the log below what it holds,
// as the member does with its WAL.
func (h *harness) sync() {
	h.t.Helper()
	if err := h.eng.Sync(); err != nil {
		h.t.Fatalf("Sync: %v", err)
	}
	h.synced = h.app.Applied().Index
	i := 0
	for i < len(h.log) && h.log[i].GetIndex() <= h.synced {
		if reqs, err := applier.DecodeEntry(h.log[i].GetData()); err == nil {
			for _, r := range reqs {
				delete(h.expected, r.ID)
			}
		}
		i++
	}
	h.log = append([]*raftpb.Entry(nil), h.log[i:]...)
}

func (h *harness) reopen() {
	h.t.Helper()
	h.close()
	h.open()
	h.reopens++
	if got := h.app.Applied().Index; got != h.index {
		h.t.Fatalf("after a clean restart applied index %d, want %d", got, h.index)
	}
	h.checkRecovered("restart")
}

// crash simulates a crash: the engine restarts from a crash clone of its
// file system, and the entries after its applied index are replayed.
func (h *harness) crash() {
	h.t.Helper()
	mem, ok := h.fs.(*vfs.MemFS)
	if !ok {
		h.t.Fatalf("CrashEvery needs a crashable *vfs.MemFS, have %T", h.fs)
	}
	clone := mem.CrashClone(vfs.CrashCloneCfg{
		UnsyncedDataPercent: h.rng.IntN(101),
		RNG:                 rand.New(rand.NewPCG(h.rng.Uint64(), h.rng.Uint64())),
	})
	h.close()
	h.fs = clone
	h.open()
	h.crashes++
	applied := h.app.Applied().Index
	if applied < h.synced || applied > h.index {
		h.t.Fatalf("after a crash applied index %d, want within [synced %d, last %d]", applied, h.synced, h.index)
	}
	var replay []*raftpb.Entry
	for _, e := range h.log {
		if e.GetIndex() > applied {
			replay = append(replay, e)
		}
	}
	if len(replay) > 0 && replay[0].GetIndex() != applied+1 {
		h.t.Fatalf("log starts at %d but the engine recovered only %d", replay[0].GetIndex(), applied)
	}
	// Replay in pieces of random size, as raft would hand them over;
	// the answers must be exactly the first apply's.
	for len(replay) > 0 {
		n := min(1+h.rng.IntN(8), len(replay))
		h.apply(replay[:n])
		replay = replay[n:]
	}
	h.checkRecovered("crash")
}

func (h *harness) checkRecovered(what string) {
	h.t.Helper()
	as := h.app.Applied()
	var wantCS *raftpb.ConfState
	for _, c := range h.confs {
		if c.index <= as.Index {
			wantCS = c.cs
		}
	}
	if !proto.Equal(as.ConfState, wantCS) {
		h.t.Fatalf("after %s ConfState %v, want %v", what, as.ConfState, wantCS)
	}
	cur, compacted := h.model.Rev()
	if rev, comp := h.app.Rev(); rev != cur || comp != compacted {
		h.t.Fatalf("after %s at revision %d compacted %d, model at %d compacted %d", what, rev, comp, cur, compacted)
	}
	h.compareStates(what)
}

// compareStates compares the whole key space at several revisions.
func (h *harness) compareStates(what string) {
	h.t.Helper()
	cur, compacted := h.model.Rev()
	revs := []int64{0, max(compacted, 1)}
	if lo := max(compacted, 1); cur > lo {
		revs = append(revs, lo+h.rng.Int64N(cur-lo))
	}
	for _, rev := range revs {
		r := &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
		wresp, werr := h.model.Apply(&pb.InternalRaftRequest{Range: r})
		resp, err := h.app.Range(r)
		h.check(fmt.Sprintf("%s: whole state at revision %d", what, rev),
			want{resp: wresp, err: werr, req: &pb.InternalRaftRequest{Range: r}}, resp, err)
	}
	h.compareLeases(what)
}

// compareLeases compares the lease tables and, for every lease, the keys
// attached to it (the model derives them from the live keys; the applier
// keeps an index).
func (h *harness) compareLeases(what string) {
	h.t.Helper()
	got, err := h.app.Leases()
	if err != nil {
		h.t.Fatalf("%s: Leases: %v", what, err)
	}
	want := h.model.Leases()
	if len(got) != len(want) {
		h.t.Fatalf("%s: %d leases, model has %d: %+v vs %+v", what, len(got), len(want), got, want)
	}
	for i, w := range want {
		g := got[i]
		if g.ID != w.ID || g.TTL != w.TTL || g.RemainingTTL != w.RemainingTTL {
			h.t.Fatalf("%s: lease %+v, model has %+v", what, g, w)
		}
		info, ok, err := h.app.Lease(w.ID, true)
		if err != nil || !ok {
			h.t.Fatalf("%s: Lease(%d) = %v, %v", what, w.ID, ok, err)
		}
		var keys []string
		for _, k := range info.Keys {
			keys = append(keys, string(k))
		}
		if wk := h.model.LeaseKeys(w.ID); !slices.Equal(keys, wk) {
			h.t.Fatalf("%s: lease %d keys %q, model has %q", what, w.ID, keys, wk)
		}
	}
}
