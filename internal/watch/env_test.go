package watch

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/clock"
	"github.com/stratakv/strata/readernode"
)

// The hub's tests drive a real applier over a reader's engine (bbolt, in a
// temporary directory): its OnCommit hook feeds the hub and its Events is
// the hub's Source, so that the brute-force expectations (Events from
// revision 1, filtered) come from the same store the hub was fed from.

func openEngine(t *testing.T) *readernode.BoltEngine {
	t.Helper()
	e, err := readernode.OpenBolt(filepath.Join(t.TempDir(), "db.bolt"), readernode.BoltOptions{InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// testEnv is an applier feeding a hub.
type testEnv struct {
	t   *testing.T
	eng *readernode.BoltEngine
	a   *applier.Applier
	hub *Hub
	clk *clock.Manual

	// mu serializes apply (entry indexes are assigned in order).
	mu           sync.Mutex
	index, reqID uint64

	// hold, when set, makes the next commits wait in OnCommit (after the
	// engine batch is committed, before the hub hears of it): entered is
	// signaled, then the hook waits for release.
	holdMu sync.Mutex
	hold   *commitHold
}

type commitHold struct {
	entered chan struct{}
	release chan struct{}
}

// newEnv opens a fresh applier and a hub on it; cfg's Source, Rev,
// Compacted and Clock are filled in unless set.
func newEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	e := &testEnv{t: t, eng: openEngine(t), clk: clock.NewManual(time.Unix(1e9, 0))}
	a, err := applier.New(applier.Config{Engine: e.eng, OnCommit: e.onCommit})
	if err != nil {
		t.Fatal(err)
	}
	e.a = a
	t.Cleanup(func() {
		a.Close()
		e.eng.Close()
	})
	cfg.Rev, cfg.Compacted = a.Rev()
	if cfg.Source == nil {
		cfg.Source = a
	}
	if cfg.Clock == nil {
		cfg.Clock = e.clk
	}
	e.hub = New(cfg)
	return e
}

func (e *testEnv) onCommit(c applier.Commit) {
	e.holdMu.Lock()
	h := e.hold
	e.holdMu.Unlock()
	if h != nil {
		h.entered <- struct{}{}
		<-h.release
	}
	e.hub.Commit(c)
}

// holdCommits makes the following commits wait in the hook.
func (e *testEnv) holdCommits() *commitHold {
	h := &commitHold{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e.holdMu.Lock()
	e.hold = h
	e.holdMu.Unlock()
	return h
}

func (e *testEnv) unhold() {
	e.holdMu.Lock()
	e.hold = nil
	e.holdMu.Unlock()
}

// entry builds the next entry holding reqs. REQUIRES: e.mu.
func (e *testEnv) entry(reqs ...*pb.InternalRaftRequest) *raftpb.Entry {
	var raw [][]byte
	for _, r := range reqs {
		e.reqID++
		r.ID = e.reqID
		b, err := proto.Marshal(r)
		if err != nil {
			panic(err)
		}
		raw = append(raw, b)
	}
	e.index++
	var data []byte
	if len(reqs) > 0 {
		data = applier.EncodeEntry(nil, raw)
	}
	return &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(e.index), Term: proto.Uint64(1), Data: data}
}

// tryApply applies one entry holding reqs and returns the new revision.
// Safe from any goroutine.
func (e *testEnv) tryApply(reqs ...*pb.InternalRaftRequest) (int64, error) {
	return e.tryApplyEntries(reqs)
}

// tryApplyEntries applies one entry for each element of ents in one Apply
// (one engine batch, one Commit of several revisions).
func (e *testEnv) tryApplyEntries(ents ...[]*pb.InternalRaftRequest) (int64, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	var batch []*raftpb.Entry
	for _, reqs := range ents {
		batch = append(batch, e.entry(reqs...))
	}
	if err := e.a.Apply(batch); err != nil {
		return 0, err
	}
	rev, _ := e.a.Rev()
	return rev, nil
}

// apply applies one entry holding reqs and returns the new revision. Only
// from the test's goroutine.
func (e *testEnv) apply(reqs ...*pb.InternalRaftRequest) int64 {
	e.t.Helper()
	rev, err := e.tryApply(reqs...)
	if err != nil {
		e.t.Fatalf("Apply: %v", err)
	}
	return rev
}

func (e *testEnv) rev() int64 {
	rev, _ := e.a.Rev()
	return rev
}

func put(k, v string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}
}

func del(k, end string) *pb.InternalRaftRequest {
	d := &pb.DeleteRangeRequest{Key: []byte(k)}
	if end != "" {
		d.RangeEnd = []byte(end)
	}
	return &pb.InternalRaftRequest{DeleteRange: d}
}

// txnPuts is a txn putting key/value pairs kv, all at one revision.
func txnPuts(kv ...string) *pb.InternalRaftRequest {
	var ops []*pb.RequestOp
	for i := 0; i+1 < len(kv); i += 2 {
		ops = append(ops, &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(kv[i]), Value: []byte(kv[i+1])}}})
	}
	return &pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: ops}}
}

func compact(rev int64) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: rev}}
}

// wreq is a watch create request.
type wreq = pb.WatchCreateRequest

func create(s *Stream, r *wreq) {
	s.Handle(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: r}})
}

func cancelWatch(s *Stream, id int64) {
	s.Handle(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}})
}

func requestProgress(s *Stream) {
	s.Handle(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
}

// next returns what s has due, waiting up to 5 s for something.
func next(t *testing.T, s *Stream) []*pb.WatchResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	out, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	if len(out) == 0 {
		t.Fatal("Next returned nothing")
	}
	return out
}

// nextN returns the next n responses (at least; Next may give more).
func nextN(t *testing.T, s *Stream, n int) []*pb.WatchResponse {
	t.Helper()
	var out []*pb.WatchResponse
	for len(out) < n {
		out = append(out, next(t, s)...)
	}
	return out
}

// nothingDue checks that s has nothing to send (within 50 ms).
func nothingDue(t *testing.T, s *Stream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	out, err := s.Next(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || len(out) > 0 {
		t.Fatalf("Next with nothing due: %v, %v", out, err)
	}
}

// drainEvents calls Next until every watcher in want has received want[id]
// events; it returns every response received, in order.
func drainEvents(t *testing.T, s *Stream, want map[int64]int) []*pb.WatchResponse {
	t.Helper()
	got := map[int64]int{}
	var out []*pb.WatchResponse
	done := func() bool {
		for id, n := range want {
			if got[id] < n {
				return false
			}
		}
		return true
	}
	for !done() {
		for _, r := range next(t, s) {
			got[r.WatchId] += len(r.Events)
			out = append(out, r)
		}
	}
	for id, n := range want {
		if got[id] != n {
			t.Fatalf("watcher %d: %d events, want %d", id, got[id], n)
		}
	}
	return out
}

// drain calls Next until done says the responses so far are complete, and
// returns them.
func drain(t *testing.T, s *Stream, done func([]*pb.WatchResponse) bool) []*pb.WatchResponse {
	t.Helper()
	var out []*pb.WatchResponse
	for !done(out) {
		out = append(out, next(t, s)...)
	}
	return out
}

// eventsOf returns the events of id's responses in resps, and checks that
// each response carries whole revisions not given before (a response in
// fragments may split one) and that no event lies above its header
// revision.
func eventsOf(t *testing.T, resps []*pb.WatchResponse, id int64) []*mvccpb.Event {
	t.Helper()
	var evs []*mvccpb.Event
	last := int64(0)
	fragment := false
	for _, r := range resps {
		if r.WatchId != id || len(r.Events) == 0 {
			continue
		}
		if first := r.Events[0].Kv.ModRevision; first < last || first == last && !fragment {
			t.Fatalf("watcher %d: response starts at revision %d after revision %d", id, r.Events[0].Kv.ModRevision, last)
		}
		for _, ev := range r.Events {
			if ev.Kv.ModRevision > r.Header.GetRevision() {
				t.Fatalf("watcher %d: event at revision %d in a response at header revision %d", id, ev.Kv.ModRevision, r.Header.GetRevision())
			}
		}
		last = r.Events[len(r.Events)-1].Kv.ModRevision
		fragment = r.Fragment
		evs = append(evs, r.Events...)
	}
	return evs
}

// matchKey is the brute-force key test of a create request.
func matchKey(r *wreq, key []byte) bool {
	begin := r.Key
	if len(begin) == 0 {
		begin = []byte{0}
	}
	switch {
	case len(r.RangeEnd) == 0:
		return bytes.Equal(key, begin)
	case len(r.RangeEnd) == 1 && r.RangeEnd[0] == 0:
		return bytes.Compare(key, begin) >= 0
	default:
		return bytes.Compare(key, begin) >= 0 && bytes.Compare(key, r.RangeEnd) < 0
	}
}

// want returns the events a watcher created by r must see among all (the
// store's events with previous versions, from revision 1), from revision
// from on (r's start revision, or the revision after creation for 0).
func want(r *wreq, all []*mvccpb.Event, from int64) []*mvccpb.Event {
	var out []*mvccpb.Event
	for _, ev := range all {
		if ev.Kv.ModRevision < from || !matchKey(r, ev.Kv.Key) {
			continue
		}
		drop := false
		for _, f := range r.Filters {
			if f == pb.WatchCreateRequest_NOPUT && ev.Type == mvccpb.PUT ||
				f == pb.WatchCreateRequest_NODELETE && ev.Type == mvccpb.DELETE {
				drop = true
			}
		}
		if drop {
			continue
		}
		if !r.PrevKv && ev.PrevKv != nil {
			ev = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		}
		out = append(out, ev)
	}
	return out
}

// allEvents reads every event of the store, with previous versions.
func (e *testEnv) allEvents() []*mvccpb.Event {
	e.t.Helper()
	er, err := e.a.Events(1, 1<<30, 1<<30, true)
	if err != nil {
		e.t.Fatal(err)
	}
	return er.Events
}

func sameEvents(t *testing.T, what string, got, want []*mvccpb.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d\ngot  %v\nwant %v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: event %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}
