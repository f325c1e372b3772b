package applier

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func grant(id, ttl int64) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: ttl}}
}

func revoke(id int64) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}}
}

func putLease(k, v string, lease int64) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte(v), Lease: lease}}
}

// applyOne applies one request in its own entry and returns its result.
func (e *testEnv) applyOne(r *pb.InternalRaftRequest) Result {
	e.t.Helper()
	e.apply(e.entry(r))
	return e.res[r.ID]
}

func (e *testEnv) leaseKeys(id int64) []string {
	e.t.Helper()
	info, ok, err := e.a.Lease(id, true)
	if err != nil || !ok {
		e.t.Fatalf("Lease(%d) = %v, %v", id, ok, err)
	}
	var ks []string
	for _, k := range info.Keys {
		ks = append(ks, string(k))
	}
	return ks
}

func TestLeaseGrantAndAttach(t *testing.T) {
	e := newTestEnv(t, Config{})
	if r := e.applyOne(grant(5, 30)); r.Err != nil || r.Resp.(*pb.LeaseGrantResponse).ID != 5 || r.Resp.(*pb.LeaseGrantResponse).TTL != 30 {
		t.Fatalf("grant: %+v", r)
	}
	for _, c := range []struct {
		req  *pb.InternalRaftRequest
		want error
	}{
		{grant(5, 10), rpctypes.ErrGRPCLeaseExist},
		{grant(6, MaxLeaseTTL+1), rpctypes.ErrGRPCLeaseTTLTooLarge},
		{grant(0, 10), rpctypes.ErrGRPCLeaseNotFound},
		{putLease("x", "1", 99), rpctypes.ErrGRPCLeaseNotFound},
		{revoke(99), rpctypes.ErrGRPCLeaseNotFound},
	} {
		if r := e.applyOne(c.req); !errors.Is(r.Err, c.want) {
			t.Errorf("%v: %v, want %v", c.req, r.Err, c.want)
		}
	}
	if rev, _ := e.a.Rev(); rev != 1 {
		t.Fatalf("revision %d after grants and refusals, want 1", rev)
	}

	e.applyOne(grant(7, 60))
	e.applyOne(putLease("b", "1", 5))
	e.applyOne(putLease("a", "1", 5))
	e.applyOne(putLease("c", "1", 5))
	e.applyOne(putLease("c", "2", 7)) // moves to lease 7
	e.applyOne(putLease("a", "2", 0)) // no lease any more
	e.applyOne(putLease("b", "3", 5)) // same lease: unchanged
	if got := e.leaseKeys(5); !slices.Equal(got, []string{"b"}) {
		t.Fatalf("lease 5 keys %q, want [b]", got)
	}
	if got := e.leaseKeys(7); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("lease 7 keys %q, want [c]", got)
	}
	// A delete detaches; a txn's put attaches.
	e.applyOne(del("b", ""))
	e.applyOne(&pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{
		{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("d"), Value: []byte("1"), Lease: 5}}},
	}}})
	if got := e.leaseKeys(5); !slices.Equal(got, []string{"d"}) {
		t.Fatalf("lease 5 keys %q, want [d]", got)
	}
	ls, err := e.a.Leases()
	if err != nil || len(ls) != 2 || ls[0].ID != 5 || ls[1].ID != 7 || ls[1].TTL != 60 {
		t.Fatalf("Leases = %+v, %v", ls, err)
	}
}

func TestLeaseRevokeDeletesKeysInOneRevision(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.applyOne(grant(5, 30))
	e.applyOne(grant(6, 30))
	e.applyOne(putLease("z", "1", 5))
	e.applyOne(putLease("m", "1", 5))
	e.applyOne(putLease("other", "1", 6))
	e.applyOne(putLease("free", "1", 0))
	before, _ := e.a.Rev()
	r := e.applyOne(revoke(5))
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	after, _ := e.a.Rev()
	if after != before+1 || r.Resp.(*pb.LeaseRevokeResponse).Header.Revision != after {
		t.Fatalf("revoke took revision %d -> %d, header %v; want one revision", before, after, r.Resp)
	}
	got, err := e.a.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, kv := range got.Kvs {
		live = append(live, string(kv.Key))
	}
	if !slices.Equal(live, []string{"free", "other"}) {
		t.Fatalf("live keys after revoke %q", live)
	}
	// Both deletions are at the revoke's revision, in key order.
	hist, _ := layout(t, e.eng)
	want := []string{fmt.Sprintf("m@%d.0t", after), fmt.Sprintf("z@%d.1t", after)}
	for _, w := range want {
		if !slices.Contains(hist, w) {
			t.Fatalf("history %q lacks the tombstone %s", hist, w)
		}
	}
	if _, found, _ := e.a.Lease(5, false); found {
		t.Fatal("lease 5 survives its revoke")
	}
	if r := e.applyOne(revoke(5)); !errors.Is(r.Err, rpctypes.ErrGRPCLeaseNotFound) {
		t.Fatalf("second revoke: %v", r.Err)
	}
	// A lease without keys is revoked without a new revision.
	if r := e.applyOne(revoke(6)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if rev, _ := e.a.Rev(); rev != after+1 {
		t.Fatalf("revoking lease 6 (one key) moved the revision to %d, want %d", rev, after+1)
	}
	e.applyOne(grant(8, 30))
	if r := e.applyOne(revoke(8)); r.Err != nil {
		t.Fatal(r.Err)
	}
	if rev, _ := e.a.Rev(); rev != after+1 {
		t.Fatalf("revoking a lease without keys moved the revision to %d", rev)
	}
}

func TestLeaseCheckpoint(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.applyOne(grant(5, 30))
	e.applyOne(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{
		{ID: 5, Remaining_TTL: 12}, {ID: 99, Remaining_TTL: 3},
	}}})
	info, ok, err := e.a.Lease(5, false)
	if err != nil || !ok || info.TTL != 30 || info.RemainingTTL != 12 {
		t.Fatalf("Lease(5) = %+v %v %v", info, ok, err)
	}
	if _, ok, _ := e.a.Lease(99, false); ok {
		t.Fatal("a checkpoint created lease 99")
	}
}

func TestLeaseEventsFollowTheTable(t *testing.T) {
	var evs []LeaseEvent
	var restored []LeaseInfo
	e := newTestEnv(t, Config{
		OnLease:   func(ev LeaseEvent) { evs = append(evs, ev) },
		OnRestore: func(ls []LeaseInfo) { restored = ls },
	})
	e.applyOne(grant(5, 30))
	e.applyOne(grant(5, 30)) // refused: no event
	e.applyOne(putLease("k", "v", 5))
	e.applyOne(&pb.InternalRaftRequest{LeaseCheckpoint: &pb.LeaseCheckpointRequest{Checkpoints: []*pb.LeaseCheckpoint{{ID: 5, Remaining_TTL: 9}}}})
	e.applyOne(revoke(5))
	e.applyOne(revoke(5)) // refused: no event
	want := []LeaseEvent{
		{Kind: LeaseGranted, ID: 5, TTL: 30},
		{Kind: LeaseCheckpointed, ID: 5, Remaining: 9},
		{Kind: LeaseRevoked, ID: 5},
	}
	if !slices.Equal(evs, want) {
		t.Fatalf("events %+v, want %+v", evs, want)
	}

	// A restore reports the table it installed.
	src := newTestEnv(t, Config{})
	src.applyOne(grant(3, 10))
	src.applyOne(grant(4, 20))
	src.applyOne(put("x", "1"))
	// (The snapshot index only has to be above e's applied index.)
	if err := e.a.Restore(e.a.Applied().Index+1, copyState(t, src.eng)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if len(restored) != 2 || restored[0].ID != 3 || restored[1].TTL != 20 {
		t.Fatalf("OnRestore got %+v", restored)
	}
}

// TestLeaseExtremeIDs: the attachment index bounds one lease's keys for
// every ID, negative ones and the largest included (their encodings end in
// 0xFF bytes or sort after the positive IDs).
func TestLeaseExtremeIDs(t *testing.T) {
	e := newTestEnv(t, Config{})
	const maxID = int64(1<<63 - 1)
	ids := map[int64]string{-1: "neg1", -5: "neg5", maxID: "max", 1: "one"}
	for id, key := range ids {
		if r := e.applyOne(grant(id, 30)); r.Err != nil {
			t.Fatalf("grant %d: %v", id, r.Err)
		}
		e.applyOne(putLease(key, "v", id))
	}
	for id, key := range ids {
		if got := e.leaseKeys(id); !slices.Equal(got, []string{key}) {
			t.Fatalf("lease %d keys %q, want [%s]", id, got, key)
		}
	}
	ls, _ := e.a.Leases()
	var order []int64
	for _, l := range ls {
		order = append(order, l.ID)
	}
	if !slices.Equal(order, []int64{-5, -1, 1, maxID}) {
		t.Fatalf("Leases order %v", order)
	}
	for _, id := range []int64{maxID, -1} {
		if r := e.applyOne(revoke(id)); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	got, _ := e.a.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	var live []string
	for _, kv := range got.Kvs {
		live = append(live, string(kv.Key))
	}
	if !slices.Equal(live, []string{"neg5", "one"}) {
		t.Fatalf("live keys after revoking the extreme leases: %q", live)
	}
}
