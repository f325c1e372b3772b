package wal

import (
	"bytes"
	"os"
	"testing"
)

// TestInspect: Inspect reads what a stopped member's WAL still holds,
// entries below the latest marker included, and changes nothing, not even
// a torn tail that Open would truncate.
func TestInspect(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, Options{})
	mustSave(t, w, hardState(2, 1, 5), ents(1, 5, 2))
	if err := w.SaveSnapshot(SnapshotMarker{Index: 3, Term: 2}); err != nil {
		t.Fatal(err)
	}
	if err := w.ReleaseTo(3); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, hardState(3, 1, 7), ents(6, 7, 3))
	mustClose(t, w)
	seg := lastSegment(t, dir)
	mutate(t, seg, func(b []byte) []byte {
		rs := records(t, seg)
		copy(b[rs[len(rs)-1].next:], "torn") // junk after the last record: a torn tail
		return b
	})
	before, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}

	hs, snap, es, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	checkHardState(t, hs, hardState(3, 1, 7))
	if snap.Index != 3 {
		t.Fatalf("marker at %d, want 3", snap.Index)
	}
	checkEntries(t, es, append(ents(1, 5, 2), ents(6, 7, 3)...))
	after, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("Inspect changed the segment")
	}
	if _, _, _, err := Inspect(t.TempDir()); err == nil {
		t.Fatal("Inspect of an empty directory succeeded")
	}
}

// TestInspectAcrossReceivedSnapshot: a follower that received a snapshot
// from the leader has a marker ahead of its last entry, and the log goes
// on after the marker. Inspect keeps the old entries too, and skips the
// range the snapshot covers (recovery itself keeps only what follows).
func TestInspectAcrossReceivedSnapshot(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, Options{})
	mustSave(t, w, hardState(2, 1, 5), ents(1, 5, 2))
	if err := w.SaveSnapshot(SnapshotMarker{Index: 20, Term: 3}); err != nil {
		t.Fatal(err)
	}
	mustSave(t, w, hardState(3, 1, 22), ents(21, 22, 3))
	mustClose(t, w)

	_, snap, es, err := Inspect(dir)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Index != 20 {
		t.Fatalf("marker at %d, want 20", snap.Index)
	}
	checkEntries(t, es, append(ents(1, 5, 2), ents(21, 22, 3)...))

	w = mustOpen(t, dir, Options{})
	defer mustClose(t, w)
	_, _, got, err := w.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	checkEntries(t, got, ents(21, 22, 3))
}
