package applytest

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/stratakv/strata/applier"
)

// OpenFunc opens (or reopens) an engine stored in dir.
type OpenFunc func(dir string) (applier.Engine, error)

// RunEngineConformance checks that engines opened by open honour the Engine
// contract. Each subtest opens its engine in a fresh t.TempDir().
func RunEngineConformance(t *testing.T, open OpenFunc) {
	mustOpen := func(t *testing.T, dir string) applier.Engine {
		t.Helper()
		e, err := open(dir)
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		return e
	}
	withEngine := func(name string, f func(t *testing.T, e applier.Engine)) {
		t.Run(name, func(t *testing.T) {
			e := mustOpen(t, t.TempDir())
			defer func() {
				if err := e.Close(); err != nil {
					t.Errorf("close: %v", err)
				}
			}()
			f(t, e)
		})
	}

	withEngine("empty", func(t *testing.T, e applier.Engine) {
		s := e.NewSnapshot()
		defer s.Close()
		if _, err := s.Get([]byte("a")); !errors.Is(err, applier.ErrNotFound) {
			t.Fatalf("Get on empty engine: err = %v, want ErrNotFound", err)
		}
		if got := scan(t, s, nil, nil); len(got) != 0 {
			t.Fatalf("scan of empty engine = %q", got)
		}
	})

	withEngine("batch reads its own writes; snapshots are isolated", func(t *testing.T, e applier.Engine) {
		commit(t, e, map[string]string{"a": "1", "b": "2"}, nil)
		before := e.NewSnapshot()
		defer before.Close()

		b := e.NewBatch()
		set(t, b, "c", "3")
		set(t, b, "a", "1'")
		if err := b.Delete([]byte("b")); err != nil {
			t.Fatal(err)
		}
		expectGet(t, b, "a", "1'")
		expectGet(t, b, "c", "3")
		expectMissing(t, b, "b")
		expectScan(t, b, nil, nil, "a=1'", "c=3")
		// Nothing is visible outside the batch before Commit.
		mid := e.NewSnapshot()
		expectScan(t, mid, nil, nil, "a=1", "b=2")
		mid.Close()
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("Close after Commit: %v", err)
		}
		after := e.NewSnapshot()
		defer after.Close()
		expectScan(t, after, nil, nil, "a=1'", "c=3")
		expectScan(t, before, nil, nil, "a=1", "b=2")
	})

	withEngine("closing an uncommitted batch discards it", func(t *testing.T, e applier.Engine) {
		b := e.NewBatch()
		set(t, b, "a", "1")
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		s := e.NewSnapshot()
		defer s.Close()
		expectMissing(t, s, "a")
	})

	withEngine("arguments and results are copies", func(t *testing.T, e applier.Engine) {
		b := e.NewBatch()
		k, v := []byte("key"), []byte("value")
		if err := b.Set(k, v); err != nil {
			t.Fatal(err)
		}
		copy(k, "xxx")
		copy(v, "XXXXX")
		if err := b.Commit(); err != nil {
			t.Fatal(err)
		}
		b.Close()
		s := e.NewSnapshot()
		defer s.Close()
		got, err := s.Get([]byte("key"))
		if err != nil || string(got) != "value" {
			t.Fatalf("Get = %q, %v; want value (Set must copy its arguments)", got, err)
		}
		copy(got, "XXXXX")
		expectGet(t, s, "key", "value")
	})

	withEngine("iterators", func(t *testing.T, e applier.Engine) {
		keys := []string{"\x00", "\x00\x00", "a", "a\x00", "a\x00b", "a\xff", "b", "\xff", "\xff\xff"}
		kv := map[string]string{}
		for i, k := range keys {
			kv[k] = fmt.Sprint(i)
		}
		commit(t, e, kv, nil)
		s := e.NewSnapshot()
		defer s.Close()
		var all []string
		for _, k := range keys {
			all = append(all, k+"="+kv[k])
		}
		expectScan(t, s, nil, nil, all...)
		expectScan(t, s, []byte("a"), []byte("b"), all[2:6]...)
		expectScan(t, s, []byte("a\x00"), nil, all[3:]...)
		expectScan(t, s, []byte("b"), []byte("b"))

		it, err := s.NewIter([]byte("a"), []byte("b"))
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		steps := []struct {
			name string
			move func() bool
			want string
		}{
			{"Last", it.Last, "a\xff"},
			{"Prev", it.Prev, "a\x00b"},
			{"SeekGE(a\\x00a)", func() bool { return it.SeekGE([]byte("a\x00a")) }, "a\x00b"},
			{"SeekLT(a\\x00b)", func() bool { return it.SeekLT([]byte("a\x00b")) }, "a\x00"},
			{"Next", it.Next, "a\x00b"},
			{"SeekGE below the lower bound", func() bool { return it.SeekGE([]byte("0")) }, "a"},
			{"SeekLT above the upper bound", func() bool { return it.SeekLT([]byte("z")) }, "a\xff"},
			{"First", it.First, "a"},
		}
		for _, s := range steps {
			if ok := s.move(); !ok || !it.Valid() || string(it.Key()) != s.want {
				t.Fatalf("%s: ok=%v valid=%v key=%q, want %q", s.name, ok, it.Valid(), it.Key(), s.want)
			}
			if string(it.Value()) != kv[s.want] {
				t.Fatalf("%s: value %q, want %q", s.name, it.Value(), kv[s.want])
			}
		}
		if it.Prev() || it.Valid() {
			t.Fatalf("Prev before the lower bound: valid at %q", it.Key())
		}
		if it.SeekGE([]byte("b")) {
			t.Fatalf("SeekGE at the upper bound: valid at %q", it.Key())
		}
		if err := it.Error(); err != nil {
			t.Fatal(err)
		}
	})

	withEngine("sync and stats", func(t *testing.T, e applier.Engine) {
		commit(t, e, map[string]string{"a": "1"}, nil)
		if err := e.Sync(); err != nil {
			t.Fatalf("Sync: %v", err)
		}
		if st := e.Stats(); st.SizeBytes < 0 || st.LiveBytes < 0 {
			t.Fatalf("Stats = %+v", st)
		}
	})

	t.Run("reopen keeps committed batches", func(t *testing.T) {
		dir := t.TempDir()
		e := mustOpen(t, dir)
		commit(t, e, map[string]string{"a": "1", "b": "2"}, nil)
		commit(t, e, map[string]string{"c": "3"}, []string{"a"})
		if err := e.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e = mustOpen(t, dir)
		defer e.Close()
		s := e.NewSnapshot()
		defer s.Close()
		expectScan(t, s, nil, nil, "b=2", "c=3")
	})
}

func set(t *testing.T, b applier.Batch, k, v string) {
	t.Helper()
	if err := b.Set([]byte(k), []byte(v)); err != nil {
		t.Fatal(err)
	}
}

func commit(t *testing.T, e applier.Engine, sets map[string]string, dels []string) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	for k, v := range sets {
		set(t, b, k, v)
	}
	for _, k := range dels {
		if err := b.Delete([]byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

func expectGet(t *testing.T, r applier.Reader, k, want string) {
	t.Helper()
	got, err := r.Get([]byte(k))
	if err != nil || string(got) != want {
		t.Fatalf("Get(%q) = %q, %v; want %q", k, got, err, want)
	}
}

func expectMissing(t *testing.T, r applier.Reader, k string) {
	t.Helper()
	if got, err := r.Get([]byte(k)); !errors.Is(err, applier.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", k, got, err)
	}
}

func scan(t *testing.T, r applier.Reader, lower, upper []byte) []string {
	t.Helper()
	it, err := r.NewIter(lower, upper)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, string(it.Key())+"="+string(it.Value()))
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	// Backwards must agree.
	it, _ = r.NewIter(lower, upper)
	var back []string
	for ok := it.Last(); ok; ok = it.Prev() {
		back = append([]string{string(it.Key()) + "=" + string(it.Value())}, back...)
	}
	it.Close()
	if fmt.Sprint(back) != fmt.Sprint(out) {
		t.Fatalf("scan forwards %q, backwards %q", out, back)
	}
	return out
}

func expectScan(t *testing.T, r applier.Reader, lower, upper []byte, want ...string) {
	t.Helper()
	got := scan(t, r, lower, upper)
	if len(got) != len(want) {
		t.Fatalf("scan [%q, %q) = %q, want %q", lower, upper, got, want)
	}
	for i := range got {
		if !bytes.Equal([]byte(got[i]), []byte(want[i])) {
			t.Fatalf("scan [%q, %q) = %q, want %q", lower, upper, got, want)
		}
	}
}
