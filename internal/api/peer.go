package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// The services members serve each other on their peer URLs, as etcd's peer
// handlers do. Peers are not clients: what they call is not checked against
// users and roles (a member checked its own caller first), so the peer URLs
// must be protected by peer mTLS, as etcd's must.

// PeerCluster is the Cluster service members serve each other on their
// peer URLs, as etcd's peer handlers do: MemberList, open to any peer
// (joiners ask it before they are members; etcd's GET /members), and
// MemberPromote, which a follower forwards to the leader with its
// caller's token and which is checked again here (etcd's
// /members/promote). The other calls are the client URLs' only.
type PeerCluster struct {
	pb.UnimplementedClusterServer
	c *Cluster
}

// NewPeerCluster returns the peer URLs' Cluster service.
func NewPeerCluster(b Backend, m Membership, a AuthConfig) *PeerCluster {
	c := NewCluster(b, m)
	c.z = authz{cfg: a}
	return &PeerCluster{c: c}
}

// MemberList implements etcd's peer member list: no credentials asked.
func (p *PeerCluster) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	open := *p.c
	open.z = authz{}
	return open.MemberList(ctx, r)
}

// MemberPromote serves a promotion forwarded by a follower: the caller's
// token travels with it and must name root.
func (p *PeerCluster) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	ctx, err := p.c.z.withCaller(ctx, pb.Cluster_MemberPromote_FullMethodName)
	if err != nil {
		return nil, err
	}
	return p.c.MemberPromote(ctx, r)
}

// PeerLease serves lease calls a member forwards to the leader (etcd's peer
// /leases and /leases/internal): keep-alives and TimeToLive, checked by the
// member that received them from its client.
type PeerLease struct {
	pb.UnimplementedLeaseServer
	l *Lease
}

// NewPeerLease returns the peer URLs' Lease service.
func NewPeerLease(b Backend, l Leases) *PeerLease { return &PeerLease{l: NewLease(b, l)} }

// LeaseKeepAlive serves forwarded keep-alives.
func (p *PeerLease) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	return p.l.LeaseKeepAlive(stream)
}

// LeaseTimeToLive serves forwarded TimeToLive calls.
func (p *PeerLease) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return p.l.LeaseTimeToLive(ctx, r)
}

// PeerMaintenance serves what the corruption checks ask other members
// (etcd's peer /members/hashkv): HashKV, and Status for the revision to
// hash at.
type PeerMaintenance struct {
	pb.UnimplementedMaintenanceServer
	m *Maintenance
}

// NewPeerMaintenance returns the peer URLs' Maintenance service.
func NewPeerMaintenance(b Backend, st StatusSource, v Versions) *PeerMaintenance {
	return &PeerMaintenance{m: NewMaintenance(b, st, nil, nil, v)}
}

// HashKV serves a peer's hash comparison.
func (p *PeerMaintenance) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	return p.m.HashKV(ctx, r)
}

// Status serves a peer's status request.
func (p *PeerMaintenance) Status(ctx context.Context, r *pb.StatusRequest) (*pb.StatusResponse, error) {
	return p.m.Status(ctx, r)
}
