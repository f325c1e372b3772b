package applier_test

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
)

// benchEnv is an Applier on Pebble on disk, with an entry builder.
type benchEnv struct {
	b     *testing.B
	a     *applier.Applier
	index uint64
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	eng, err := applier.OpenTestPebble(vfs.Default, b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	a, err := applier.New(applier.Config{Engine: eng})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		a.Close()
		eng.Close()
	})
	return &benchEnv{b: b, a: a}
}

// entry encodes reqs as the next entry.
func (e *benchEnv) entry(reqs ...*pb.InternalRaftRequest) *raftpb.Entry {
	raw := make([][]byte, len(reqs))
	for i, r := range reqs {
		var err error
		if raw[i], err = proto.Marshal(r); err != nil {
			e.b.Fatal(err)
		}
	}
	e.index++
	return &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(e.index), Term: proto.Uint64(1), Data: applier.EncodeEntry(nil, raw)}
}

func (e *benchEnv) apply(ents ...*raftpb.Entry) {
	if err := e.a.Apply(ents); err != nil {
		e.b.Fatal(err)
	}
}

func benchKey(i int) []byte { return fmt.Appendf(nil, "/registry/pods/ns%02d/pod-%06d", i%16, i) }

var benchValue = make([]byte, 256)

// load writes n keys, 256 requests per entry.
func (e *benchEnv) load(n int) {
	for i := 0; i < n; i += 256 {
		var reqs []*pb.InternalRaftRequest
		for j := i; j < min(i+256, n); j++ {
			reqs = append(reqs, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: benchKey(j), Value: benchValue}})
		}
		e.apply(e.entry(reqs...))
	}
}

// BenchmarkPut applies puts of 256-byte values over 10k keys; batch is
// the number of requests per Apply (one entry each).
func BenchmarkPut(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			e := newBenchEnv(b)
			e.load(10_000)
			var ents []*raftpb.Entry
			for i := 0; i < b.N; i += batch {
				var reqs []*pb.InternalRaftRequest
				for j := i; j < min(i+batch, b.N); j++ {
					reqs = append(reqs, &pb.InternalRaftRequest{ID: uint64(j), Put: &pb.PutRequest{Key: benchKey(j % 10_000), Value: benchValue}})
				}
				ents = append(ents, e.entry(reqs...))
			}
			b.ReportAllocs()
			b.SetBytes(int64(len(benchValue)))
			b.ResetTimer()
			for _, ent := range ents {
				e.apply(ent)
			}
		})
	}
}

// BenchmarkGet reads single keys at the current revision.
func BenchmarkGet(b *testing.B) {
	e := newBenchEnv(b)
	e.load(10_000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := e.a.Range(&pb.RangeRequest{Key: benchKey(i % 10_000)})
		if err != nil || len(resp.Kvs) != 1 {
			b.Fatal(resp, err)
		}
	}
}

// BenchmarkRange reads ranges of n keys (a prefix holding exactly n of
// the store's keys), at the current revision and at an old one (through
// history); every key has two versions.
func BenchmarkRange(b *testing.B) {
	for _, n := range []int{10, 100, 1000} {
		for _, old := range []bool{false, true} {
			b.Run(fmt.Sprintf("n=%d/old=%v", n, old), func(b *testing.B) {
				e := newBenchEnv(b)
				var oldRev int64
				for pass := 0; pass < 2; pass++ {
					e.load(10_000)
					for _, m := range []int{10, 100, 1000} {
						var reqs []*pb.InternalRaftRequest
						for i := range m {
							reqs = append(reqs, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: fmt.Appendf(nil, "/range/%d/%06d", m, i), Value: benchValue}})
						}
						e.apply(e.entry(reqs...))
					}
					if pass == 0 {
						oldRev, _ = e.a.Rev()
					}
				}
				prefix := fmt.Appendf(nil, "/range/%d/", n)
				req := &pb.RangeRequest{Key: prefix, RangeEnd: append(prefix[:len(prefix)-1:len(prefix)-1], '/'+1)}
				if old {
					req.Revision = oldRev
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					resp, err := e.a.Range(req)
					if err != nil || len(resp.Kvs) != n {
						b.Fatal(len(resp.GetKvs()), err)
					}
				}
			})
		}
	}
}

// BenchmarkTxn applies compare-and-swap txns (mod revision equal, then
// put), one per Apply, as a lock or a Kubernetes update does.
func BenchmarkTxn(b *testing.B) {
	e := newBenchEnv(b)
	e.load(10_000)
	// Each key's mod revision is known: key i was last written at
	// revision i+2 (one put per key, in order).
	mod := make([]int64, 10_000)
	for i := range mod {
		mod[i] = int64(i) + 2
	}
	rev, _ := e.a.Rev()
	var ents []*raftpb.Entry
	for i := 0; i < b.N; i++ {
		k := i % 10_000
		ents = append(ents, e.entry(&pb.InternalRaftRequest{ID: uint64(i), Txn: &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: benchKey(k), Target: pb.Compare_MOD, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_ModRevision{ModRevision: mod[k]}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: benchKey(k), Value: benchValue}}}},
		}}))
		rev++
		mod[k] = rev
	}
	var failed int
	b.ReportAllocs()
	b.ResetTimer()
	for _, ent := range ents {
		e.apply(ent)
	}
	b.StopTimer()
	if r, _ := e.a.Rev(); r != rev || failed != 0 {
		b.Fatalf("revision %d, want %d: some compares failed", r, rev)
	}
}
