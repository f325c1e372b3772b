package applier

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// copyState returns an install function that copies src's whole engine.
func copyState(t *testing.T, src Engine) func(Engine) error {
	return func(dst Engine) error {
		s := src.NewSnapshot()
		defer s.Close()
		it, err := s.NewIter(nil, nil)
		if err != nil {
			return err
		}
		defer it.Close()
		b := dst.NewBatch()
		defer b.Close()
		for ok := it.First(); ok; ok = it.Next() {
			if err := b.Set(append([]byte(nil), it.Key()...), append([]byte(nil), it.Value()...)); err != nil {
				return err
			}
		}
		if err := it.Error(); err != nil {
			return err
		}
		return b.Commit()
	}
}

func get(t *testing.T, a *Applier, key string) string {
	t.Helper()
	r, err := a.Range(&pb.RangeRequest{Key: []byte(key), Serializable: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Value)
}

func TestRestoreRefusesStaleSnapshot(t *testing.T) {
	leader := newTestEnv(t, Config{})
	leader.apply(leader.entry(put("k", "old")), leader.entry(put("x", "1")))
	snapIndex := leader.a.Applied().Index // 2

	// A follower already past the snapshot (it got the log from a newer
	// leader while the snapshot was in flight) must not roll back.
	ahead := newTestEnv(t, Config{})
	ahead.apply(ahead.entry(put("k", "old")), ahead.entry(put("x", "1")), ahead.entry(put("k", "new")))
	err := ahead.a.Restore(snapIndex, copyState(t, leader.eng))
	if !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("Restore of a snapshot at %d over applied %d: %v, want ErrStaleSnapshot", snapIndex, ahead.a.Applied().Index, err)
	}
	if got := ahead.a.Applied().Index; got != 3 {
		t.Fatalf("applied index after refused restore = %d, want 3", got)
	}
	if v := get(t, ahead.a, "k"); v != "new" {
		t.Fatalf("k = %q after a refused restore, want the newer %q", v, "new")
	}
	// Equal to the applied index is stale too.
	if err := ahead.a.Restore(3, copyState(t, leader.eng)); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("Restore at the applied index: %v, want ErrStaleSnapshot", err)
	}

	// A follower behind it installs it.
	behind := newTestEnv(t, Config{})
	behind.apply(behind.entry(put("k", "old")))
	if err := behind.a.Restore(snapIndex, copyState(t, leader.eng)); err != nil {
		t.Fatalf("Restore of a newer snapshot: %v", err)
	}
	if got := behind.a.Applied().Index; got != snapIndex {
		t.Fatalf("applied index after restore = %d, want %d", got, snapIndex)
	}
	if v := get(t, behind.a, "x"); v != "1" {
		t.Fatalf("x = %q after restore, want %q", v, "1")
	}
}

func TestSwapServesReadsUntilInstalled(t *testing.T) {
	leader := newTestEnv(t, Config{})
	leader.apply(leader.entry(put("k", "old")), leader.entry(put("x", "1")), leader.entry(put("k", "new")))
	snapIndex := leader.a.Applied().Index

	f := newTestEnv(t, Config{})
	f.apply(f.entry(put("k", "old")))
	orig := f.a.Engine()
	newFresh := func() Engine {
		e, err := OpenTestPebble(vfs.NewMem(), "fresh")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	retired := make(chan Engine, 1)
	retire := func(e Engine) { retired <- e }
	isEmpty := func(e Engine) bool {
		s := e.NewSnapshot()
		defer s.Close()
		it, err := s.NewIter(nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer it.Close()
		return !it.First()
	}

	// A stale snapshot leaves fresh untouched.
	stale := newFresh()
	if err := f.a.Swap(f.a.Applied().Index, stale, copyState(t, leader.eng), retire); !errors.Is(err, ErrStaleSnapshot) {
		t.Fatalf("Swap at the applied index: %v, want ErrStaleSnapshot", err)
	}
	if !isEmpty(stale) {
		t.Fatal("a refused swap wrote into the fresh engine")
	}

	// A failed install leaves the applier as it was.
	boom := errors.New("stream broke")
	err := f.a.Swap(snapIndex, newFresh(), func(e Engine) error {
		if err := copyState(t, leader.eng)(e); err != nil {
			return err
		}
		return boom
	}, retire)
	if !errors.Is(err, boom) {
		t.Fatalf("Swap with a failing install: %v, want %v", err, boom)
	}
	if f.a.Engine() != orig || f.a.Applied().Index != 1 || get(t, f.a, "k") != "old" {
		t.Fatalf("after a failed swap: engine replaced %v, applied %d, k=%q", f.a.Engine() != orig, f.a.Applied().Index, get(t, f.a, "k"))
	}

	// A read open across the whole swap: the swap does not wait for it,
	// it keeps its old view, and the old engine retires when it ends.
	long, err := f.a.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	fresh := newFresh()
	err = f.a.Swap(snapIndex, fresh, func(e Engine) error {
		// While the install runs, reads are served from the old engine.
		got := make(chan string, 1)
		go func() {
			r, err := f.a.Range(&pb.RangeRequest{Key: []byte("k"), Serializable: true})
			if err != nil || len(r.Kvs) != 1 {
				got <- fmt.Sprintf("error %v", err)
				return
			}
			got <- string(r.Kvs[0].Value)
		}()
		select {
		case v := <-got:
			if v != "old" {
				return fmt.Errorf("read during the install saw k=%q, want the old state", v)
			}
		case <-time.After(10 * time.Second):
			return errors.New("a read waited for the install")
		}
		return copyState(t, leader.eng)(e)
	}, retire)
	if err != nil {
		t.Fatal(err)
	}
	if f.a.Engine() != fresh {
		t.Fatalf("engine after swap is not the fresh one")
	}
	if got := f.a.Applied().Index; got != snapIndex {
		t.Fatalf("applied index after swap = %d, want %d", got, snapIndex)
	}
	if v := get(t, f.a, "k"); v != "new" {
		t.Fatalf("k = %q after swap, want %q", v, "new")
	}
	select {
	case <-retired:
		t.Fatal("the old engine retired while a read was open on it")
	default:
	}
	if v, err := long.Get(latestKey(nil, []byte("x"))); err == nil || v != nil {
		t.Fatalf("the read open across the swap sees x: %q %v", v, err)
	}
	long.Close()
	select {
	case e := <-retired:
		if e != orig {
			t.Fatal("retired the wrong engine")
		}
	default:
		t.Fatal("the old engine did not retire when its last read ended")
	}

	// Later applies go to the new engine, not the old.
	f.index = snapIndex
	f.apply(f.entry(put("y", "2")))
	for _, c := range []struct {
		e    Engine
		want bool
	}{{fresh, true}, {orig, false}} {
		s := c.e.NewSnapshot()
		_, err := s.Get(latestKey(nil, []byte("y")))
		s.Close()
		if has := err == nil; has != c.want {
			t.Fatalf("engine %p holds y: %v (%v), want %v", c.e, has, err, c.want)
		}
	}
}
