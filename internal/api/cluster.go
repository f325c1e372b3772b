package api

import (
	"context"
	"errors"
	"net"
	"net/url"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc/metadata"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/auth"
)

// Membership is what the Cluster service needs from a member.
type Membership interface {
	// Members is the replicated member list.
	Members() ([]*pb.Member, error)
	// ProposeConfChange replicates a membership change and returns once
	// it is applied locally: nil, or the etcd error the state machine
	// rejected it with.
	ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error
	// NewMemberID picks the ID of a member to be added.
	NewMemberID(peerURLs []string) uint64
	// LearnerReady reports whether learner id has caught up with the
	// leader enough to be promoted (etcd: 90% of the leader's log). Only
	// the leader can tell: others answer ErrGRPCNotLeader.
	LearnerReady(id uint64) error
	// StrictReconfigCheck is etcd's --strict-reconfig-check.
	StrictReconfigCheck() bool
	// PromoteOnLeader forwards a MemberPromote to the leader, which alone
	// can tell whether the learner has caught up (etcd forwards it over
	// its peer API). The request carries ForwardedMetadata, so that a
	// member that is no longer leader when it arrives answers rather than
	// forwards again.
	PromoteOnLeader(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error)
}

// ForwardedMetadata marks a request one member forwarded to another.
const ForwardedMetadata = "strata-forwarded"

// Forwarded reports whether the request of ctx was forwarded by another
// member (it carries ForwardedMetadata).
func Forwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, ForwardedMetadata)) > 0
}

// Cluster implements etcdserverpb.ClusterServer.
type Cluster struct {
	pb.UnimplementedClusterServer
	b Backend
	m Membership
	z authz // zero on the peer URLs: peers are not clients
}

// NewCluster returns the Cluster service.
func NewCluster(b Backend, m Membership) *Cluster { return &Cluster{b: b, m: m} }

// header is the Cluster service's header: membership is not MVCC state, so
// like etcd it carries no revision.
func (s *Cluster) header() *pb.ResponseHeader {
	h := s.b.Header()
	h.Revision = 0
	return h
}

// MemberList implements etcd's Cluster.MemberList. A linearizable list
// first passes the same barrier as a linearizable read.
func (s *Cluster) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.Linearizable {
		if err := s.b.LinearizableBarrier(ctx); err != nil {
			return nil, togRPCError(err)
		}
	}
	if err := s.z.access(ctx).RequireAuthInfo(); err != nil {
		return nil, err
	}
	members, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MemberListResponse{Header: s.header(), Members: members}, nil
}

// MemberAdd implements etcd's Cluster.MemberAdd: the member is added to
// raft's configuration (as a voter or a learner) and to the member list,
// unnamed until it starts and publishes itself.
func (s *Cluster) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	// As etcd: the URLs are checked before the caller.
	if !validPeerURLs(r.PeerURLs) {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	members, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	if !r.IsLearner && s.m.StrictReconfigCheck() && !readyToAddVoter(members) {
		return nil, rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	m := &pb.Member{ID: s.m.NewMemberID(r.PeerURLs), PeerURLs: r.PeerURLs, IsLearner: r.IsLearner}
	typ := raftpb.ConfChangeAddNode
	if r.IsLearner {
		typ = raftpb.ConfChangeAddLearnerNode
	}
	if err := s.m.ProposeConfChange(ctx, &raftpb.ConfChange{Type: typ.Enum(), NodeId: new(m.ID), Context: applier.MemberContext(m)}); err != nil {
		return nil, togRPCError(err)
	}
	after, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MemberAddResponse{Header: s.header(), Member: m, Members: after}, nil
}

// MemberRemove implements etcd's Cluster.MemberRemove.
func (s *Cluster) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	members, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	if s.m.StrictReconfigCheck() && !readyToRemove(members, r.ID) {
		return nil, rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	if err := s.m.ProposeConfChange(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(r.ID)}); err != nil {
		return nil, togRPCError(err)
	}
	after, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MemberRemoveResponse{Header: s.header(), Members: after}, nil
}

// MemberUpdate implements etcd's Cluster.MemberUpdate (peer URLs only).
func (s *Cluster) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	if !validPeerURLs(r.PeerURLs) {
		return nil, rpctypes.ErrGRPCMemberBadURLs
	}
	m := &pb.Member{ID: r.ID, PeerURLs: r.PeerURLs}
	if err := s.m.ProposeConfChange(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeUpdateNode.Enum(), NodeId: new(r.ID), Context: applier.MemberContext(m)}); err != nil {
		return nil, togRPCError(err)
	}
	after, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MemberUpdateResponse{Header: s.header(), Members: after}, nil
}

// MemberPromote implements etcd's Cluster.MemberPromote: a learner that has
// caught up with the leader becomes a voter.
func (s *Cluster) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	members, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	var target *pb.Member
	for _, m := range members {
		if m.ID == r.ID {
			target = m
		}
	}
	switch {
	case target == nil:
		return nil, rpctypes.ErrGRPCMemberNotFound
	case !target.IsLearner:
		return nil, rpctypes.ErrGRPCMemberNotLearner
	}
	if err := s.m.LearnerReady(r.ID); err != nil {
		if errors.Is(err, rpctypes.ErrGRPCNotLeader) && !Forwarded(ctx) {
			return s.m.PromoteOnLeader(ctx, r)
		}
		return nil, togRPCError(err)
	}
	if s.m.StrictReconfigCheck() && !readyToPromote(members, r.ID) {
		return nil, rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	if err := s.m.ProposeConfChange(ctx, &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(r.ID),
		Context: applier.MemberContext(&pb.Member{ID: r.ID})}); err != nil {
		return nil, togRPCError(err)
	}
	after, err := s.m.Members()
	if err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MemberPromoteResponse{Header: s.header(), Members: after}, nil
}

// validPeerURLs applies etcd's URL rules: at least one, each absolute with
// scheme http, https, unix or unixs, a host:port (for http and https), and
// no path.
func validPeerURLs(us []string) bool {
	if len(us) == 0 {
		return false
	}
	for _, s := range us {
		u, err := url.Parse(s)
		if err != nil {
			return false
		}
		switch u.Scheme {
		case "http", "https":
			if _, _, err := net.SplitHostPort(u.Host); err != nil {
				return false
			}
		case "unix", "unixs":
		default:
			return false
		}
		if u.Path != "" {
			return false
		}
	}
	return true
}

// started counts voting members that have published themselves.
func startedVoters(members []*pb.Member, skip uint64) (voters, started int) {
	for _, m := range members {
		if m.IsLearner || m.ID == skip {
			continue
		}
		voters++
		if m.Name != "" {
			started++
		}
	}
	return voters, started
}

// readyToAddVoter is etcd's rule: after adding, the started voters still
// make a quorum — except that a lone started member may add a second.
func readyToAddVoter(members []*pb.Member) bool {
	voters, started := startedVoters(members, 0)
	if started == 1 && voters == 1 {
		return true
	}
	return started >= (voters+1)/2+1
}

// readyToRemove: removing a learner is always fine; removing a voter must
// leave a quorum of started voters among the rest.
func readyToRemove(members []*pb.Member, id uint64) bool {
	for _, m := range members {
		if m.ID == id && m.IsLearner {
			return true
		}
	}
	voters, started := startedVoters(members, id)
	return started >= voters/2+1
}

// readyToPromote: counting the learner as a started voter, the started
// voters must make a quorum of the grown configuration.
func readyToPromote(members []*pb.Member, id uint64) bool {
	voters, started := startedVoters(members, id)
	return started+1 >= (voters+1)/2+1
}
