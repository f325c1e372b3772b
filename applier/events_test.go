package applier

import (
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier/kvmodel"
)

// TestEventsLiveMatchStorage drives random requests (puts, deletes, txns,
// lease revokes, compactions) through Apply and checks the watch events
// three ways: the live events of OnCommit, the events read back by Events
// (whole and in small chunks) and, for every event's previous version, a
// Range at the revision before it. The live events come from the write
// path, Events from the revision index and history: two independent
// derivations that must agree event for event.
func TestEventsLiveMatchStorage(t *testing.T) {
	var live []*mvccpb.Event
	lastRev := int64(1)
	e := newTestEnv(t, Config{OnCommit: func(c Commit) {
		for _, ev := range c.Events {
			if ev.Kv.ModRevision <= lastRev {
				t.Errorf("live event at revision %d after revision %d", ev.Kv.ModRevision, lastRev)
			}
		}
		if n := len(c.Events); n > 0 && c.Events[n-1].Kv.ModRevision != c.Rev {
			t.Errorf("commit at revision %d ends with an event at %d", c.Rev, c.Events[n-1].Kv.ModRevision)
		}
		live = append(live, c.Events...)
		lastRev = c.Rev
	}})
	gen := kvmodel.NewGenerator(7, kvmodel.GenOptions{
		Leases: []int64{7, 8}, LeasePercent: 10, CompactPercent: -1, InvalidPercent: -1,
	})
	for i := 0; i < 3000; i++ {
		rev, _ := e.a.Rev()
		var reqs []*pb.InternalRaftRequest
		for j := 0; j < 1+i%4; j++ {
			reqs = append(reqs, gen.Next(rev, -1))
		}
		e.apply(e.entry(reqs...))
	}
	rev, _ := e.a.Rev()
	if len(live) < 1000 {
		t.Fatalf("only %d events from %d revisions", len(live), rev)
	}

	all, err := e.a.Events(1, 1<<30, 1<<30, true)
	if err != nil {
		t.Fatal(err)
	}
	if all.Through != rev || all.Rev != rev {
		t.Fatalf("Events: through %d, rev %d; want %d", all.Through, all.Rev, rev)
	}
	compareEvents(t, "Events(1)", all.Events, live)

	// Chunks: whole revisions, consecutive, concatenating to the same.
	var chunked []*mvccpb.Event
	for from := int64(1); from <= rev; {
		er, err := e.a.Events(from, 5, 1<<30, true)
		if err != nil {
			t.Fatal(err)
		}
		if er.Through < from {
			t.Fatalf("Events(%d) made no progress (through %d)", from, er.Through)
		}
		if len(er.Events) > 0 && er.Events[len(er.Events)-1].Kv.ModRevision != er.Through {
			t.Fatalf("Events(%d): chunk through %d ends at revision %d", from, er.Through, er.Events[len(er.Events)-1].Kv.ModRevision)
		}
		chunked = append(chunked, er.Events...)
		from = er.Through + 1
	}
	compareEvents(t, "chunked Events", chunked, live)

	// Without prev: the same events, no previous versions.
	bare, err := e.a.Events(1, 1<<30, 1<<30, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, ev := range bare.Events {
		if ev.PrevKv != nil {
			t.Fatalf("event %d has a previous version without withPrev", i)
		}
		want := proto.Clone(live[i]).(*mvccpb.Event)
		want.PrevKv = nil
		if !proto.Equal(ev, want) {
			t.Fatalf("event %d without prev: %v, want %v", i, ev, want)
		}
	}

	// Previous versions are what a Range at the revision before shows.
	for i, ev := range live {
		r, err := e.a.Range(&pb.RangeRequest{Key: ev.Kv.Key, Revision: ev.Kv.ModRevision - 1})
		if err != nil {
			t.Fatal(err)
		}
		// etcd gives no previous version with a creation event, even one
		// that follows a delete of the same key in the same txn.
		var want *mvccpb.KeyValue
		if len(r.Kvs) == 1 && !(ev.Type == mvccpb.PUT && ev.Kv.Version == 1) {
			want = r.Kvs[0]
		}
		if !proto.Equal(ev.PrevKv, want) {
			t.Fatalf("event %d (%v): prev %v, Range at %d says %v", i, ev.Kv, ev.PrevKv, ev.Kv.ModRevision-1, want)
		}
		if ev.Type == mvccpb.DELETE && (ev.Kv.Value != nil || ev.Kv.CreateRevision != 0 || ev.Kv.Version != 0) {
			t.Fatalf("delete event %d carries more than key and revision: %v", i, ev.Kv)
		}
	}
}

func compareEvents(t *testing.T, what string, got, want []*mvccpb.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: event %d = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// TestEventsCompacted: reading from below the compacted revision fails with
// ErrCompacted; from the compacted revision itself it gives what etcd's
// compaction keeps (the newest put of each key at or below it, without a
// previous version, since the revision before is compacted), also once the
// physical compactor has run and whatever its progress.
func TestEventsCompacted(t *testing.T) {
	e := newTestEnv(t, Config{CompactionChunk: 2})
	for i := range 10 {
		e.apply(e.entry(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: fmt.Appendf(nil, "v%d", i)}}))
	}
	e.apply(e.entry(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("k")}})) // rev 12
	e.apply(e.entry(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("again")}}))
	for _, c := range []int64{6, 12} {
		e.apply(e.entry(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: c}}))
		if err := e.a.WaitCompaction(t.Context(), c); err != nil {
			t.Fatal(err)
		}
		er, err := e.a.Events(c-1, 100, 1<<20, true)
		if !errors.Is(err, rpctypes.ErrGRPCCompacted) || er.Compacted != c {
			t.Fatalf("Events(%d) after compacting %d: %v, compacted %d", c-1, c, err, er.Compacted)
		}
		if _, err = e.a.Events(c, 100, 1<<20, true); err != nil {
			t.Fatalf("Events(%d) at the compacted revision: %v", c, err)
		}
	}
	e.apply(e.entry(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 6}})) // refused: already past
	er, _ := e.a.Events(12, 100, 1<<20, true)
	if len(er.Events) != 1 || er.Events[0].Type != mvccpb.PUT || string(er.Events[0].Kv.Value) != "again" {
		t.Fatalf("events from a compacted delete: %v (the delete is compacted away, as in etcd)", er.Events)
	}
}

// TestEventsAtCompactedRevision: a txn that puts a key and then deletes it
// in a nested txn, compacted at its revision: neither write is an event
// any more (both versions are removed), the other put of the txn still is,
// without a previous version; the next revision's event keeps its previous
// version (read at the compacted revision, which is allowed). Checked
// before the physical compactor runs and after.
func TestEventsAtCompactedRevision(t *testing.T) {
	e := newTestEnv(t, Config{CompactionChunk: 1})
	put := func(k, v string) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	}
	e.apply(e.entry(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("a0")}})) // rev 2
	e.apply(e.entry(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("b"), Value: []byte("b0")}})) // rev 3
	nested := func(ops ...*pb.RequestOp) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: ops}}}
	}
	// etcd allows a put and a delete of one key in sibling nested txns.
	txn := &pb.TxnRequest{Success: []*pb.RequestOp{
		put("a", "a1"),
		nested(put("b", "b1")),
		nested(&pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("b")}}}),
	}}
	e.apply(e.entry(&pb.InternalRaftRequest{Txn: txn}))                                                   // rev 4
	e.apply(e.entry(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("a2")}})) // rev 5
	if r := e.res[e.next]; r.Err != nil {
		t.Fatalf("put: %v", r.Err)
	}
	if rev, _ := e.a.Rev(); rev != 5 {
		t.Fatalf("revision %d, want 5 (is the nested delete refused?)", rev)
	}
	e.apply(e.entry(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 4}}))
	check := func(when string) {
		t.Helper()
		er, err := e.a.Events(4, 100, 1<<20, true)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if len(er.Events) != 2 || string(er.Events[0].Kv.Value) != "a1" || er.Events[0].PrevKv != nil ||
			string(er.Events[1].Kv.Value) != "a2" || er.Events[1].PrevKv == nil || string(er.Events[1].PrevKv.Value) != "a1" {
			t.Fatalf("%s: events from the compacted revision: %v", when, er.Events)
		}
	}
	check("before physical compaction")
	if err := e.a.WaitCompaction(t.Context(), 4); err != nil {
		t.Fatal(err)
	}
	check("after physical compaction")
}
