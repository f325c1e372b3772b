package applier

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

// keyMetaAlarms holds the active alarms: a marshaled pb.AlarmResponse
// whose Alarms are sorted by member, then alarm type. Alarms are state
// machine state, replicated like any write, and travel in snapshots with
// the other meta keys.
var keyMetaAlarms = []byte("m/alarms")

// alarmSet is the active alarms, sorted; it is replaced, never changed in
// place, so applyState copies may share it.
type alarmSet []*pb.AlarmMember

func (s alarmSet) has(t pb.AlarmType) bool {
	return slices.ContainsFunc(s, func(m *pb.AlarmMember) bool { return m.Alarm == t })
}

func compareAlarms(a, b *pb.AlarmMember) int {
	return cmp.Or(cmp.Compare(a.MemberID, b.MemberID), cmp.Compare(a.Alarm, b.Alarm))
}

func loadAlarms(r Reader) (alarmSet, error) {
	v, err := r.Get(keyMetaAlarms)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var resp pb.AlarmResponse
	if err := proto.Unmarshal(v, &resp); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errCorruptValue, keyMetaAlarms, err)
	}
	return resp.Alarms, nil
}

func writeAlarms(b Batch, s alarmSet) error {
	if len(s) == 0 {
		return b.Delete(keyMetaAlarms)
	}
	v, err := proto.Marshal(&pb.AlarmResponse{Alarms: s})
	if err != nil {
		return err
	}
	return b.Set(keyMetaAlarms, v)
}

// applyAlarm applies etcd's AlarmRequest: GET lists the active alarms (of
// every member when MemberID is 0, of that member otherwise); ACTIVATE
// raises one and answers it, or nothing if it was already active;
// DEACTIVATE clears one and answers it, or nothing if it was not active.
func applyAlarm(b Batch, st *applyState, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	resp := &pb.AlarmResponse{Header: &pb.ResponseHeader{Revision: st.rev}}
	m := &pb.AlarmMember{MemberID: r.MemberID, Alarm: r.Alarm}
	switch r.Action {
	case pb.AlarmRequest_GET:
		for _, a := range st.alarms {
			if r.MemberID == 0 || a.MemberID == r.MemberID {
				resp.Alarms = append(resp.Alarms, proto.Clone(a).(*pb.AlarmMember))
			}
		}
		return resp, nil
	case pb.AlarmRequest_ACTIVATE:
		if r.Alarm == pb.AlarmType_NONE {
			return resp, nil
		}
		i, found := slices.BinarySearchFunc(st.alarms, m, compareAlarms)
		if found {
			return resp, nil
		}
		st.alarms = slices.Insert(slices.Clone(st.alarms), i, m)
	case pb.AlarmRequest_DEACTIVATE:
		i, found := slices.BinarySearchFunc(st.alarms, m, compareAlarms)
		if !found {
			return resp, nil
		}
		st.alarms = slices.Delete(slices.Clone(st.alarms), i, i+1)
	default:
		return resp, nil
	}
	if err := writeAlarms(b, st.alarms); err != nil {
		return nil, err
	}
	resp.Alarms = []*pb.AlarmMember{proto.Clone(m).(*pb.AlarmMember)}
	return resp, nil
}

// capped is what an active alarm refuses, as etcd's capped and corrupt
// appliers do: under CORRUPT every key-value request and lease grant or
// revocation (rpctypes.ErrGRPCCorrupt); under NOSPACE what would take
// space: puts, transactions with a put in either branch (nested ones
// included), lease grants (rpctypes.ErrGRPCNoSpace). Deletes, compactions
// and reads stay allowed under NOSPACE, so space can be reclaimed.
func (s alarmSet) capped(r *pb.InternalRaftRequest) error {
	if len(s) == 0 {
		return nil
	}
	if s.has(pb.AlarmType_CORRUPT) {
		switch {
		case r.Put != nil, r.DeleteRange != nil, r.Txn != nil, r.Range != nil,
			r.Compaction != nil, r.LeaseGrant != nil, r.LeaseRevoke != nil:
			return rpctypes.ErrGRPCCorrupt
		}
	}
	if s.has(pb.AlarmType_NOSPACE) && TakesSpace(r) {
		return rpctypes.ErrGRPCNoSpace
	}
	return nil
}

// TakesSpace reports whether r would grow the state machine: a put, a
// transaction with a put in either branch (nested ones included), a lease
// grant. These are what the NOSPACE alarm refuses and what the quota check
// weighs before proposing.
func TakesSpace(r *pb.InternalRaftRequest) bool {
	switch {
	case r.Put != nil, r.LeaseGrant != nil:
		return true
	case r.Txn != nil:
		return txnPuts(r.Txn)
	}
	return false
}

func txnPuts(t *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch {
			case op.GetRequestPut() != nil:
				return true
			case op.GetRequestTxn() != nil && txnPuts(op.GetRequestTxn()):
				return true
			}
		}
	}
	return false
}

// AlarmActive reports whether member has alarm t active. It copies
// nothing: reads ask it on every request.
func (a *Applier) AlarmActive(member uint64, t pb.AlarmType) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, found := slices.BinarySearchFunc(a.mu.alarms, &pb.AlarmMember{MemberID: member, Alarm: t}, compareAlarms)
	return found
}

// Alarms returns the active alarms, sorted by member and type.
func (a *Applier) Alarms() []*pb.AlarmMember {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*pb.AlarmMember, len(a.mu.alarms))
	for i, m := range a.mu.alarms {
		out[i] = proto.Clone(m).(*pb.AlarmMember)
	}
	return out
}

// Compacter is an engine that can rewrite its files to drop what
// deletions and compactions left behind (Pebble: a manual compaction of
// the whole key space). Defragment uses it where the engine has it.
type Compacter interface {
	CompactAll(ctx context.Context) error
}

// Defragment is etcd's Defragment for a state machine whose engine
// reclaims space by itself: it runs the engine's compaction over every key
// now (Compacter), so that space freed by a compaction is returned before
// the NOSPACE alarm is disarmed. An engine without one has nothing to do.
// Reads and writes go on meanwhile.
func (a *Applier) Defragment(ctx context.Context) error {
	a.readers.RLock()
	defer a.readers.RUnlock()
	if a.closed() {
		return ErrClosed
	}
	ref := a.acquire()
	defer a.release(ref)
	if c, ok := ref.Engine.(Compacter); ok {
		return c.CompactAll(ctx)
	}
	return nil
}
