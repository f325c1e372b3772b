package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Membership reports the cluster's members.
type Membership interface {
	Members() ([]*pb.Member, error)
}

// Cluster implements etcdserverpb.ClusterServer. Membership changes arrive
// with the multi-member cluster; today it lists members.
type Cluster struct {
	pb.UnimplementedClusterServer
	b Backend
	m Membership
}

// NewCluster returns the Cluster service.
func NewCluster(b Backend, m Membership) *Cluster { return &Cluster{b: b, m: m} }

// MemberList implements etcd's Cluster.MemberList. A linearizable list
// first passes the same barrier as a linearizable read.
func (s *Cluster) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.b.LinearizableBarrier(ctx); err != nil {
			return nil, togRPCError(err)
		}
	}
	// Membership is not MVCC state: like etcd, the header carries no
	// revision.
	members, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	h := s.b.Header()
	h.Revision = 0
	return &pb.MemberListResponse{Header: h, Members: members}, nil
}
