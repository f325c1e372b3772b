package applier

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func alarm(action pb.AlarmRequest_AlarmAction, member uint64, t pb.AlarmType) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{Action: action, MemberID: member, Alarm: t}}
}

func txnPut(k, v string, nested bool) *pb.InternalRaftRequest {
	op := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	if nested {
		op = &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Failure: []*pb.RequestOp{op}}}}
	}
	return &pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{op}}}
}

// TestAlarms: alarms are raised, listed and cleared through the log, as
// etcd's Alarm RPC; NOSPACE refuses what takes space and nothing else;
// CORRUPT refuses every key-value request; the alarms survive a reopen.
func TestAlarms(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.apply(e.entry(put("a", "1"),
		alarm(pb.AlarmRequest_ACTIVATE, 7, pb.AlarmType_NOSPACE),
		alarm(pb.AlarmRequest_ACTIVATE, 7, pb.AlarmType_NOSPACE), // already active: answers nothing
		alarm(pb.AlarmRequest_ACTIVATE, 3, pb.AlarmType_NOSPACE),
		alarm(pb.AlarmRequest_GET, 0, pb.AlarmType_NONE),
		alarm(pb.AlarmRequest_GET, 7, pb.AlarmType_NONE)))
	alarms := func(id uint64) []*pb.AlarmMember { return e.res[id].Resp.(*pb.AlarmResponse).Alarms }
	if got := alarms(2); len(got) != 1 || got[0].MemberID != 7 || got[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("activate: %v", got)
	}
	if got := alarms(3); len(got) != 0 {
		t.Fatalf("activating an active alarm answered %v", got)
	}
	if got := alarms(5); len(got) != 2 || got[0].MemberID != 3 || got[1].MemberID != 7 {
		t.Fatalf("get all: %v", got)
	}
	if got := alarms(6); len(got) != 1 || got[0].MemberID != 7 {
		t.Fatalf("get member 7: %v", got)
	}

	e.apply(e.entry(put("b", "2"), txnPut("c", "3", true), del("a", ""),
		&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: 5, TTL: 60}},
		&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 2}},
		&pb.InternalRaftRequest{Txn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte("zz")}}}}}}))
	for id, want := range map[uint64]error{7: rpctypes.ErrGRPCNoSpace, 8: rpctypes.ErrGRPCNoSpace, 9: nil, 10: rpctypes.ErrGRPCNoSpace, 11: nil, 12: nil} {
		if got := e.res[id].Err; got != want {
			t.Errorf("request %d under NOSPACE: %v, want %v", id, got, want)
		}
	}
	if rev, _ := e.a.Rev(); rev != 3 {
		t.Fatalf("revision %d after NOSPACE, want 3 (the delete alone)", rev)
	}

	// Disarm both; writes go through again.
	e.apply(e.entry(alarm(pb.AlarmRequest_DEACTIVATE, 7, pb.AlarmType_NOSPACE),
		alarm(pb.AlarmRequest_DEACTIVATE, 7, pb.AlarmType_NOSPACE),
		alarm(pb.AlarmRequest_DEACTIVATE, 3, pb.AlarmType_NOSPACE),
		put("b", "2")))
	if got := alarms(13); len(got) != 1 {
		t.Fatalf("deactivate: %v", got)
	}
	if got := alarms(14); len(got) != 0 {
		t.Fatalf("deactivating an inactive alarm answered %v", got)
	}
	if err := e.res[16].Err; err != nil || len(e.a.Alarms()) != 0 {
		t.Fatalf("put after disarming: %v, alarms %v", err, e.a.Alarms())
	}

	// CORRUPT refuses every key-value request, deletes included, and
	// is still active after the state machine is reopened.
	e.apply(e.entry(alarm(pb.AlarmRequest_ACTIVATE, 3, pb.AlarmType_CORRUPT), del("b", ""), put("d", "4")))
	for _, id := range []uint64{18, 19} {
		if got := e.res[id].Err; got != rpctypes.ErrGRPCCorrupt {
			t.Errorf("request %d under CORRUPT: %v", id, got)
		}
	}
	e.a.Close()
	a, err := New(Config{Engine: e.eng})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if got := a.Alarms(); len(got) != 1 || got[0].Alarm != pb.AlarmType_CORRUPT || got[0].MemberID != 3 {
		t.Fatalf("alarms after reopening: %v", got)
	}
}

func TestTakesSpace(t *testing.T) {
	for _, tc := range []struct {
		r    *pb.InternalRaftRequest
		want bool
	}{
		{put("a", "1"), true},
		{txnPut("a", "1", false), true},
		{txnPut("a", "1", true), true},
		{del("a", ""), false},
		{&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{TTL: 5}}, true},
		{&pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: 5}}, false},
		{&pb.InternalRaftRequest{Txn: &pb.TxnRequest{}}, false},
	} {
		if got := TakesSpace(tc.r); got != tc.want {
			t.Errorf("TakesSpace(%v) = %v", tc.r, got)
		}
	}
}

// TestHash: members that applied the same entries hash alike; one more
// entry changes the hash.
func TestHash(t *testing.T) {
	a, b := newTestEnv(t, Config{}), newTestEnv(t, Config{})
	for _, e := range []*testEnv{a, b} {
		e.apply(e.entry(put("a", "1"), put("b", "2")), e.entry(del("a", "")))
	}
	ha, ra, err := a.a.Hash()
	if err != nil {
		t.Fatal(err)
	}
	hb, rb, err := b.a.Hash()
	if err != nil || ha != hb || ra != rb || ra != 4 {
		t.Fatalf("hashes %x@%d and %x@%d (%v); want equal at 4", ha, ra, hb, rb, err)
	}
	b.apply(b.entry(put("c", "3")))
	if hc, _, _ := b.a.Hash(); hc == ha {
		t.Fatal("another entry left the hash unchanged")
	}
}
