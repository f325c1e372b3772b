package applier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// countingEngine counts the batches committed through it.
type countingEngine struct {
	Engine
	commits int
}

func (e *countingEngine) NewBatch() Batch { return &countingBatch{e.Engine.NewBatch(), e} }

type countingBatch struct {
	Batch
	e *countingEngine
}

func (b *countingBatch) Commit() error {
	b.e.commits++
	return b.Batch.Commit()
}

type testEnv struct {
	t     *testing.T
	eng   *countingEngine
	a     *Applier
	index uint64
	res   map[uint64]Result
	next  uint64
}

func newTestEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	eng, err := OpenTestPebble(vfs.NewMem(), "db")
	if err != nil {
		t.Fatal(err)
	}
	e := &testEnv{t: t, eng: &countingEngine{Engine: eng}, res: map[uint64]Result{}}
	cfg.Engine = e.eng
	cfg.Notify = func(id uint64, r Result) { e.res[id] = r }
	if e.a, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.a.Close()
		eng.Close()
	})
	return e
}

// entry returns the next normal entry holding reqs (their IDs are set).
func (e *testEnv) entry(reqs ...*pb.InternalRaftRequest) *raftpb.Entry {
	var raw [][]byte
	for _, r := range reqs {
		e.next++
		r.ID = e.next
		b, err := proto.Marshal(r)
		if err != nil {
			e.t.Fatal(err)
		}
		raw = append(raw, b)
	}
	e.index++
	var data []byte
	if len(reqs) > 0 {
		data = EncodeEntry(nil, raw)
	}
	return &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(e.index), Term: proto.Uint64(1), Data: data}
}

func (e *testEnv) apply(ents ...*raftpb.Entry) {
	e.t.Helper()
	if err := e.a.Apply(ents); err != nil {
		e.t.Fatalf("Apply: %v", err)
	}
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

func TestApplyOneBatchWithItsIndex(t *testing.T) {
	e := newTestEnv(t, Config{})
	before := e.eng.commits
	e.apply(e.entry(put("a", "1"), put("b", "2")), e.entry(), e.entry(del("a", "")))
	if n := e.eng.commits - before; n != 1 {
		t.Fatalf("Apply of three entries committed %d batches, want 1", n)
	}
	if got := e.a.Applied(); got.Index != 3 || got.Term != 1 {
		t.Fatalf("Applied = %+v, want index 3 term 1", got)
	}
	if rev, _ := e.a.Rev(); rev != 4 {
		t.Fatalf("revision %d, want 4", rev)
	}
	// Requests of one entry see each other; each write is a revision.
	if r := e.res[2].Resp.(*pb.PutResponse); r.Header.Revision != 3 {
		t.Fatalf("second put at revision %d, want 3", r.Header.Revision)
	}

	// Entries already applied are skipped, and commit nothing.
	before = e.eng.commits
	e.apply(&raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(2), Term: proto.Uint64(1)})
	if e.eng.commits != before {
		t.Fatal("re-applying an old entry committed a batch")
	}
	// A gap is an error, and commits nothing.
	err := e.a.Apply([]*raftpb.Entry{{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(5), Term: proto.Uint64(1)}})
	if !errors.Is(err, ErrIndexGap) || e.eng.commits != before {
		t.Fatalf("Apply past a gap: %v, %d commits", err, e.eng.commits-before)
	}
	// A corrupt entry fails the whole Apply, including the good entries
	// before it.
	good := e.entry(put("c", "3"))
	bad := &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(good.GetIndex() + 1), Term: proto.Uint64(1), Data: []byte{9}}
	if err := e.a.Apply([]*raftpb.Entry{good, bad}); !errors.Is(err, ErrCorruptEntry) {
		t.Fatalf("Apply of a corrupt entry: %v", err)
	}
	if e.eng.commits != before || e.a.Applied().Index != 3 {
		t.Fatal("a failed Apply committed something")
	}
}

func TestApplyConfChangeAndUnsupported(t *testing.T) {
	var seen []uint64
	e := newTestEnv(t, Config{ApplyConfChange: func(cc raftpb.ConfChangeI) (*raftpb.ConfState, error) {
		id := cc.AsV2().GetChanges()[0].GetNodeId()
		seen = append(seen, id)
		return &raftpb.ConfState{Voters: slices.Clone(seen)}, nil
	}})
	cc := func(id uint64) *raftpb.Entry {
		data, _ := proto.Marshal(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(id)})
		e.index++
		return &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Index: proto.Uint64(e.index), Term: proto.Uint64(2), Data: data}
	}
	cc2 := func(id uint64) *raftpb.Entry {
		data, _ := proto.Marshal(&raftpb.ConfChangeV2{Changes: []*raftpb.ConfChangeSingle{{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: proto.Uint64(id)}}})
		e.index++
		return &raftpb.Entry{Type: raftpb.EntryConfChangeV2.Enum(), Index: proto.Uint64(e.index), Term: proto.Uint64(2), Data: data}
	}
	e.apply(cc(1), cc(2), e.entry(&pb.InternalRaftRequest{AuthEnable: &pb.AuthEnableRequest{}}), cc2(3))
	got := e.a.Applied()
	if !proto.Equal(got.ConfState, &raftpb.ConfState{Voters: []uint64{1, 2, 3}}) || got.Index != 4 || got.Term != 2 {
		t.Fatalf("Applied = %+v", got)
	}
	if r := e.res[1]; r.Err != ErrUnsupportedRequest {
		t.Fatalf("auth enable answered %+v, want ErrUnsupportedRequest", r)
	}
	if rev, _ := e.a.Rev(); rev != 1 {
		t.Fatalf("revision %d after no writes, want 1", rev)
	}
}

func TestWaitAppliedAndClose(t *testing.T) {
	e := newTestEnv(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.a.WaitApplied(ctx, 1); err != context.Canceled {
		t.Fatalf("WaitApplied with a canceled context: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- e.a.WaitApplied(context.Background(), 2) }()
	e.apply(e.entry(put("a", "1")))
	e.apply(e.entry(put("a", "2")))
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied: %v", err)
	}
	go func() { done <- e.a.WaitApplied(context.Background(), 10) }()
	e.a.Close()
	if err := <-done; err != ErrClosed {
		t.Fatalf("WaitApplied across Close: %v", err)
	}
	if err := e.a.Apply([]*raftpb.Entry{e.entry(put("a", "3"))}); err != ErrClosed {
		t.Fatalf("Apply after Close: %v", err)
	}
}

// layout lists the engine's h/ and r/ keys in a readable form.
func layout(t *testing.T, eng Engine) (history, revisions []string) {
	t.Helper()
	s := eng.NewSnapshot()
	defer s.Close()
	it, err := s.NewIter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		switch {
		case strings.HasPrefix(string(k), "h/"):
			p, main, sub, err := splitHistoryKey(k)
			if err != nil {
				t.Fatal(err)
			}
			history = append(history, fmt.Sprintf("%s@%d.%d%c", unescapeHistoryPrefix(nil, p), main, sub, it.Value()[0]))
		case strings.HasPrefix(string(k), "r/"):
			main, sub, err := splitRevisionKey(k)
			if err != nil {
				t.Fatal(err)
			}
			revisions = append(revisions, fmt.Sprintf("%d.%d", main, sub))
		}
	}
	return history, revisions
}

// TestPhysicalCompaction checks exactly what the compactor removes and
// keeps, with a one-entry step budget so that every run is cut into many
// steps, some inside one key's versions.
func TestPhysicalCompaction(t *testing.T) {
	e := newTestEnv(t, Config{CompactionChunk: 1})
	txn := func(ops ...*pb.RequestOp) *pb.InternalRaftRequest {
		return &pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: ops}}
	}
	nested := func(r *pb.InternalRaftRequest) *pb.RequestOp {
		op := &pb.RequestOp{}
		switch {
		case r.Put != nil:
			op.Request = &pb.RequestOp_RequestPut{RequestPut: r.Put}
		case r.DeleteRange != nil:
			op.Request = &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r.DeleteRange}
		}
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: []*pb.RequestOp{op}}}}
	}
	e.apply(e.entry(
		put("a", "1"), // 2
		put("a", "2"), // 3
		put("b", "1"), // 4
		del("b", ""),  // 5
		put("c", "1"), // 6
		put("a", "3"), // 7
		put("b", "2"), // 8: b again, after its tombstone
		del("c", ""),  // 9: tombstone exactly at the compaction
		txn(nested(put("d", "1")), nested(del("d", ""))), // 10: put and tombstone in one revision
		put("a", "4"), // 11: after the compaction
		put("e", "\x00"),
	))
	e.apply(e.entry(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 10}}))
	if err := e.a.WaitCompaction(context.Background(), 10); err != nil {
		t.Fatal(err)
	}
	hist, revs := layout(t, e.eng)
	wantHist := []string{"a@11.0p", "a@7.0p", "b@8.0p", "e@12.0p"}
	wantRevs := []string{"10.0", "10.1", "11.0", "12.0"}
	if !slices.Equal(hist, wantHist) || !slices.Equal(revs, wantRevs) {
		t.Fatalf("after compacting to 10:\nhistory   %q\nwant      %q\nrevisions %q\nwant      %q", hist, wantHist, revs, wantRevs)
	}

	// The next run starts where this one ended.
	e.apply(e.entry(put("b", "3"), del("a", "")))
	e.apply(e.entry(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 14}}))
	if err := e.a.WaitCompaction(context.Background(), 14); err != nil {
		t.Fatal(err)
	}
	hist, revs = layout(t, e.eng)
	wantHist = []string{"b@13.0p", "e@12.0p"}
	wantRevs = []string{"14.0"}
	if !slices.Equal(hist, wantHist) || !slices.Equal(revs, wantRevs) {
		t.Fatalf("after compacting to 14:\nhistory   %q\nwant      %q\nrevisions %q\nwant      %q", hist, wantHist, revs, wantRevs)
	}
}

// TestReadsAreConsistentSnapshots reads while Apply writes: every read must
// see one committed state, whose revision its header carries.
func TestReadsAreConsistentSnapshots(t *testing.T) {
	e := newTestEnv(t, Config{})
	const writes = 300
	done := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for {
			select {
			case <-done:
				return
			default:
			}
			resp, err := e.a.Range(&pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})
			if err != nil {
				errc <- err
				return
			}
			if len(resp.Kvs) == 0 {
				continue
			}
			if len(resp.Kvs) != 2 || resp.Kvs[0].ModRevision != resp.Header.Revision ||
				resp.Kvs[1].ModRevision != resp.Header.Revision || string(resp.Kvs[0].Value) != string(resp.Kvs[1].Value) {
				errc <- fmt.Errorf("torn read: %v", resp)
				return
			}
			txn, err := e.a.ReadTxn(&pb.TxnRequest{
				Compare: []*pb.Compare{{Key: []byte("a"), Target: pb.Compare_VALUE, Result: pb.Compare_EQUAL, TargetUnion: &pb.Compare_Value{Value: resp.Kvs[0].Value}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("b")}}}},
			})
			if err != nil {
				errc <- err
				return
			}
			if txn.Succeeded {
				if got := txn.Responses[0].GetResponseRange().Kvs[0].Value; string(got) != string(resp.Kvs[0].Value) {
					errc <- fmt.Errorf("torn read txn: %v", txn)
					return
				}
			}
		}
	}()
	for i := range writes {
		v := fmt.Sprint(i)
		e.apply(e.entry(&pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("a"), Value: []byte(v)}}},
			{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("b"), Value: []byte(v)}}},
		}}}))
		if i%50 == 0 {
			e.apply(e.entry(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: int64(i)}}))
		}
	}
	close(done)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}
