package readernode

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/applier/applytest"
	"github.com/stratakv/strata/applier/kvmodel"
	"github.com/stratakv/strata/writernode"
)

func TestBoltEngineConformance(t *testing.T) {
	applytest.RunEngineConformance(t, func(dir string) (applier.Engine, error) {
		return OpenBolt(filepath.Join(dir, "db.bolt"), BoltOptions{InitialMmapSize: 1 << 20})
	})
}

// TestBoltEngineModelCheck runs the applier on BoltEngine against the
// reference model, with restarts.
func TestBoltEngineModelCheck(t *testing.T) {
	ops := 5000
	if testing.Short() {
		ops = 1000
	}
	path := filepath.Join(t.TempDir(), "db.bolt")
	applytest.RunModelCheck(t, applytest.ModelCheckConfig{
		Seed: 44, Ops: ops, FS: vfs.Default, ReopenEvery: 1000,
		Open: func(vfs.FS) (applier.Engine, error) { return OpenBolt(path, BoltOptions{InitialMmapSize: 1 << 20}) },
	})
}

// TestHashKVSameOnPebbleAndBolt applies one random request sequence (puts,
// deletes, txns, leases, compactions) to an applier on Pebble (a writer's
// engine) and one on bbolt (a reader's), entry by entry, and requires the
// same answers, the same HashKV at every revision still readable, the same
// events read back, and the same byte-for-byte key space.
func TestHashKVSameOnPebbleAndBolt(t *testing.T) {
	peb, err := writernode.OpenPebble(filepath.Join(t.TempDir(), "pebble"), writernode.PebbleOptions{MemTableSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer peb.Close()
	bo, err := OpenBolt(filepath.Join(t.TempDir(), "db.bolt"), BoltOptions{InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer bo.Close()
	var results [2][]string
	var apps [2]*applier.Applier
	for i, eng := range []applier.Engine{peb, bo} {
		apps[i], err = applier.New(applier.Config{Engine: eng, CompactionChunk: 5, Notify: func(id uint64, r applier.Result) {
			results[i] = append(results[i], fmt.Sprintf("%d %v %v", id, r.Resp, r.Err))
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer apps[i].Close()
	}
	gen := kvmodel.NewGenerator(9, kvmodel.GenOptions{Leases: []int64{7, 8}, LeasePercent: 5, CompactPercent: 2})
	for n := range 3000 {
		rev, comp := apps[0].Rev()
		var raw [][]byte
		for j := range 1 + n%3 {
			r := gen.Next(rev, comp)
			r.ID = uint64(n*3 + j + 1)
			b, err := proto.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, b)
		}
		ent := &raftpb.Entry{Index: new(uint64(n + 1)), Term: new(uint64(1)), Type: raftpb.EntryNormal.Enum(), Data: applier.EncodeEntry(nil, raw)}
		for _, a := range apps {
			if err := a.Apply([]*raftpb.Entry{ent}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !slices.Equal(results[0], results[1]) {
		t.Fatal("answers differ between Pebble and bbolt")
	}
	rev, comp := apps[0].Rev()
	if r, c := apps[1].Rev(); r != rev || c != comp {
		t.Fatalf("revisions: pebble %d/%d, bbolt %d/%d", rev, comp, r, c)
	}
	for _, a := range apps {
		if err := a.WaitCompaction(t.Context(), comp); err != nil {
			t.Fatal(err)
		}
	}
	hashes := 0
	for r := max(comp, 1); r <= rev; r++ {
		h0, err0 := apps[0].HashKV(r)
		h1, err1 := apps[1].HashKV(r)
		if err0 != nil || err1 != nil || h0 != h1 {
			t.Fatalf("HashKV(%d): pebble %+v %v, bbolt %+v %v", r, h0, err0, h1, err1)
		}
		hashes++
	}
	e0, err0 := apps[0].Events(max(comp, 1), 1<<30, 1<<30, true)
	e1, err1 := apps[1].Events(max(comp, 1), 1<<30, 1<<30, true)
	if err0 != nil || err1 != nil || len(e0.Events) != len(e1.Events) {
		t.Fatalf("events: %d %v, %d %v", len(e0.Events), err0, len(e1.Events), err1)
	}
	for i := range e0.Events {
		if !proto.Equal(e0.Events[i], e1.Events[i]) {
			t.Fatalf("event %d: pebble %v, bbolt %v", i, e0.Events[i], e1.Events[i])
		}
	}
	requireSameKeySpace(t, peb, bo)
	t.Logf("%d revisions (compacted at %d), %d hashes and %d events agree", rev, comp, hashes, len(e0.Events))
}

// requireSameKeySpace compares every key and value of two engines.
func requireSameKeySpace(t *testing.T, a, b applier.Engine) {
	t.Helper()
	sa, sb := a.NewSnapshot(), b.NewSnapshot()
	defer sa.Close()
	defer sb.Close()
	ia, err := sa.NewIter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ia.Close()
	ib, err := sb.NewIter(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ib.Close()
	n := 0
	oka, okb := ia.First(), ib.First()
	for ; oka && okb; oka, okb = ia.Next(), ib.Next() {
		if !bytes.Equal(ia.Key(), ib.Key()) || !bytes.Equal(ia.Value(), ib.Value()) {
			t.Fatalf("key %d: pebble %q=%q, bbolt %q=%q", n, ia.Key(), ia.Value(), ib.Key(), ib.Value())
		}
		n++
	}
	if oka != okb {
		t.Fatalf("after %d keys one engine has more (pebble %v, bbolt %v)", n, oka, okb)
	}
}

// TestOpenBoltRepairingReplacesACorruptFile: a file whose pages were
// overwritten is moved aside and replaced by an empty engine (the member
// then seeds it); a healthy file opens as it is.
func TestOpenBoltRepairingReplacesACorruptFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db.bolt")
	e, err := OpenBolt(path, BoltOptions{InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBatch()
	for i := range 2000 {
		if err := b.Set(fmt.Appendf(nil, "k/%05d", i), bytes.Repeat([]byte("v"), 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := e.Sync(); err != nil {
		t.Fatal(err)
	}
	e.Close()

	var heard error
	e, err = OpenBoltRepairing(path, BoltOptions{InitialMmapSize: 1 << 20}, func(err error) { heard = err })
	if err != nil || heard != nil {
		t.Fatalf("healthy file: %v, corrupt %v", err, heard)
	}
	snap := e.NewSnapshot()
	if v, err := snap.Get([]byte("k/01000")); err != nil || len(v) != 100 {
		t.Fatalf("healthy file lost its data: %q %v", v, err)
	}
	snap.Close()
	e.Close()

	// Overwrite the pages after the meta pages with garbage.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	junk := bytes.Repeat([]byte{0xAB}, int(st.Size())-16384)
	if _, err := f.WriteAt(junk, 16384); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e, err = OpenBoltRepairing(path, BoltOptions{InitialMmapSize: 1 << 20}, func(err error) { heard = err })
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !errors.Is(heard, ErrCorruptEngine) {
		t.Fatalf("corruption not reported: %v", heard)
	}
	snap = e.NewSnapshot()
	defer snap.Close()
	if _, err := snap.Get([]byte("k/01000")); !errors.Is(err, applier.ErrNotFound) {
		t.Fatalf("the replacement engine is not empty: %v", err)
	}
	if _, err := os.Stat(path + ".corrupt"); err != nil {
		t.Fatalf("the corrupt file was not kept aside: %v", err)
	}
}
