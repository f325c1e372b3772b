package applier

import (
	"context"
	"errors"
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func hashScript(e *testEnv, last string) {
	e.apply(e.entry(
		put("a", "1"), put("a", "2"), put("b", "1"), del("b", ""),
		put("c", "1"), put("a", "3"), put("b", "2"), del("c", ""),
		put("d", "\x00"), put("a", last),
	))
}

func mustHash(t *testing.T, a *Applier, rev int64) HashKVResult {
	t.Helper()
	h, err := a.HashKV(rev)
	if err != nil {
		t.Fatalf("HashKV(%d): %v", rev, err)
	}
	return h
}

func TestHashKV(t *testing.T) {
	e1, e2, e3 := newTestEnv(t, Config{}), newTestEnv(t, Config{}), newTestEnv(t, Config{})
	hashScript(e1, "4")
	hashScript(e2, "4")
	hashScript(e3, "other")

	h1, h2, h3 := mustHash(t, e1.a, 0), mustHash(t, e2.a, 0), mustHash(t, e3.a, 0)
	if h1 != h2 {
		t.Fatalf("same entries, different hashes: %+v vs %+v", h1, h2)
	}
	if h1.Hash == h3.Hash {
		t.Fatal("different last write, same hash")
	}
	if h1.HashRev != 11 || h1.Rev != 11 || h1.CompactRev != -1 {
		t.Fatalf("revisions: %+v", h1)
	}
	// The writes differ only at revision 11: at 10 the states agree.
	if a, b := mustHash(t, e1.a, 10), mustHash(t, e3.a, 10); a.Hash != b.Hash || a.HashRev != 10 {
		t.Fatalf("hash at 10 differs: %+v vs %+v", a, b)
	}

	// Later writes do not change the hash at an earlier revision.
	e1.apply(e1.entry(put("z", "1")))
	if h := mustHash(t, e1.a, 11); h.Hash != h1.Hash || h.Rev != 12 {
		t.Fatalf("hash at 11 changed after a write at 12: %+v vs %+v", h, h1)
	}

	// Compaction changes what is hashed, not whether the old versions are
	// still on disk: a snapshot taken before the compactor ran hashes the
	// same as the compacted state.
	before := e1.eng.NewSnapshot()
	defer before.Close()
	e1.apply(e1.entry(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 8}}))
	if err := e1.a.WaitCompaction(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	after := e1.eng.NewSnapshot()
	defer after.Close()
	for _, rev := range []int64{8, 10, 12} {
		hb, err := hashHistory(before, rev, 8)
		if err != nil {
			t.Fatal(err)
		}
		ha, err := hashHistory(after, rev, 8)
		if err != nil {
			t.Fatal(err)
		}
		if hb != ha {
			t.Fatalf("rev %d: hash depends on physical compaction: %x before, %x after", rev, hb, ha)
		}
	}
	if h := mustHash(t, e1.a, 0); h.CompactRev != 8 || h.HashRev != 12 {
		t.Fatalf("after compaction: %+v", h)
	}

	for _, c := range []struct {
		rev  int64
		want error
	}{{13, rpctypes.ErrGRPCFutureRev}, {7, rpctypes.ErrGRPCCompacted}} {
		t.Run(fmt.Sprint(c.rev), func(t *testing.T) {
			if _, err := e1.a.HashKV(c.rev); !errors.Is(err, c.want) {
				t.Fatalf("HashKV(%d) = %v, want %v", c.rev, err, c.want)
			}
		})
	}
}

// TestKeysCount checks the live key count and that a store without the
// stored count (written before it existed) counts its keys when opened.
func TestKeysCount(t *testing.T) {
	e := newTestEnv(t, Config{})
	hashScript(e, "4")
	if got := e.a.Keys(); got != 3 { // a, b, d
		t.Fatalf("Keys = %d, want 3", got)
	}
	h1, _, err := e.a.Hash()
	if err != nil {
		t.Fatal(err)
	}
	b := e.eng.NewBatch()
	if err := b.Delete(keyMetaKeys); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if h2, _, err := e.a.Hash(); err != nil || h2 != h1 {
		t.Fatalf("Hash without the stored count = %d, %v; want %d (the count is derived)", h2, err, h1)
	}
	e.a.Close()
	a, err := New(Config{Engine: e.eng})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := a.Keys(); got != 3 {
		t.Fatalf("Keys after reopening without the stored count = %d, want 3", got)
	}
}
