package readernode

import (
	"os"
	"path/filepath"
	"testing"
)

func put(t *testing.T, e *BoltEngine, k, v string) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	if err := b.Set([]byte(k), []byte(v)); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

func value(t *testing.T, e *BoltEngine, k string) string {
	t.Helper()
	s := e.NewSnapshot()
	defer s.Close()
	v, err := s.Get([]byte(k))
	if err != nil {
		return ""
	}
	return string(v)
}

func TestReplacement(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bolt.db")
	opts := BoltOptions{InitialMmapSize: 1 << 20}
	cur, err := OpenBolt(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	put(t, cur, "k", "old")

	// Discarded: the current file is untouched and nothing is left.
	r, err := OpenBoltReplacement(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	put(t, r.BoltEngine, "k", "discarded")
	if err := r.Discard(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path + nextSuffix); !os.IsNotExist(err) {
		t.Fatalf("a discarded replacement left %s: %v", path+nextSuffix, err)
	}
	if v := value(t, cur, "k"); v != "old" {
		t.Fatalf("k = %q after a discarded replacement", v)
	}

	// Promoted: still usable, and the file at path from then on.
	r, err = OpenBoltReplacement(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	put(t, r.BoltEngine, "k", "new")
	if err := r.Promote(); err != nil {
		t.Fatal(err)
	}
	put(t, r.BoltEngine, "k2", "after")
	if v := value(t, cur, "k"); v != "old" {
		t.Fatalf("the replaced engine reads k = %q, want its own %q", v, "old")
	}
	cur.Close()
	r.Close()
	reopened, err := OpenBoltRepairing(path, opts, func(err error) { t.Fatalf("corrupt: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	if v, v2 := value(t, reopened, "k"), value(t, reopened, "k2"); v != "new" || v2 != "after" {
		t.Fatalf("reopened after promote: k=%q k2=%q", v, v2)
	}
	reopened.Close()

	// A replacement a crash left unfinished is removed on open.
	if err := os.WriteFile(path+nextSuffix, []byte("half a file"), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := OpenBoltRepairing(path, opts, func(err error) { t.Fatalf("corrupt: %v", err) })
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := os.Stat(path + nextSuffix); !os.IsNotExist(err) {
		t.Fatalf("an unfinished replacement survived the open: %v", err)
	}
	if v := value(t, e, "k"); v != "new" {
		t.Fatalf("k = %q", v)
	}
}
