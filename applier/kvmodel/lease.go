package kvmodel

import (
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// maxLeaseTTL is etcd's largest lease TTL, in seconds.
const maxLeaseTTL = 9000000000

// Lease is a lease as the model holds it.
type Lease struct {
	ID, TTL, RemainingTTL int64
}

// leaseExists is a Put's lease check: the LeaseExists override if set,
// else the lease table.
func (m *Model) leaseExists(id int64) bool {
	if m.LeaseExists != nil {
		return m.LeaseExists(id)
	}
	_, ok := m.leases[id]
	return ok
}

func (m *Model) leaseGrant(r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	switch {
	case r.ID == 0:
		return nil, rpctypes.ErrGRPCLeaseNotFound
	case r.TTL > maxLeaseTTL:
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	if _, ok := m.leases[r.ID]; ok {
		return nil, rpctypes.ErrGRPCLeaseExist
	}
	if m.leases == nil {
		m.leases = map[int64]*Lease{}
	}
	m.leases[r.ID] = &Lease{ID: r.ID, TTL: r.TTL}
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: m.rev}, ID: r.ID, TTL: r.TTL}, nil
}

// leaseRevoke deletes the lease and, in one revision, every live key that
// carries it, in key order.
func (m *Model) leaseRevoke(r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	if _, ok := m.leases[r.ID]; !ok {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	t := m.newTxn()
	for _, k := range m.LeaseKeys(r.ID) {
		t.deleteRange(&pb.DeleteRangeRequest{Key: []byte(k)})
	}
	m.commit(t)
	delete(m.leases, r.ID)
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: m.rev}}, nil
}

func (m *Model) leaseCheckpoint(r *pb.LeaseCheckpointRequest) *pb.LeaseCheckpointResponse {
	for _, c := range r.GetCheckpoints() {
		if l, ok := m.leases[c.GetID()]; ok {
			l.RemainingTTL = max(c.GetRemaining_TTL(), 0)
		}
	}
	return &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: m.rev}}
}

// Leases returns the lease table in ID order.
func (m *Model) Leases() []Lease {
	var out []Lease
	for _, l := range m.leases {
		out = append(out, *l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// LeaseKeys returns the live keys that carry lease id, in key order.
func (m *Model) LeaseKeys(id int64) []string {
	var keys []string
	for _, kv := range m.live([]byte{0}, []byte{0}, m.rev) {
		if kv.Lease == id {
			keys = append(keys, string(kv.Key))
		}
	}
	return keys
}
