package wal

import "testing"

// TestSaveNothingIsABarrier: a Save with nothing to write still makes the
// entries appended before it durable. The pipeline's append stage saves
// the last of a batch of raft's appends with a wait and the others
// without; when that last one carries only responses (a duplicate
// append's acknowledgement), the entries before it must be on disk before
// those responses go out. They once were not: a follower acknowledged
// entries it then lost in a power loss (the robustness suite's
// kill-follower, snapshot-lag and crash faults with the crash ledger).
func TestSaveNothingIsABarrier(t *testing.T) {
	w := mustOpen(t, t.TempDir(), Options{})
	defer mustClose(t, w)
	p, err := w.Append(nil, ents(1, 3, 1))
	if err != nil {
		t.Fatal(err)
	}
	w.syncer.Lock()
	before := w.syncer.durable
	w.syncer.Unlock()
	if before >= p.lsn {
		t.Fatalf("the append was durable before any wait (durable %d, appended %d)", before, p.lsn)
	}
	if err := w.Save(nil, nil); err != nil {
		t.Fatal(err)
	}
	w.syncer.Lock()
	after := w.syncer.durable
	w.syncer.Unlock()
	if after < p.lsn {
		t.Fatalf("Save(nil, nil) returned with the earlier append not durable (durable %d, appended %d)", after, p.lsn)
	}
}
