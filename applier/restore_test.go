package applier

import (
	"errors"
	"testing"

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
