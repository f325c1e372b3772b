package api

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// StatusSource reports a member's state for Maintenance.Status.
type StatusSource interface {
	Status() MemberStatus
}

// MemberStatus is the member state Maintenance.Status reports.
type MemberStatus struct {
	Leader           uint64
	RaftIndex        uint64 // committed index
	RaftAppliedIndex uint64
	RaftTerm         uint64
	DBSize           int64
	DBSizeInUse      int64
	DBSizeQuota      int64
	IsLearner        bool
	// Errors are etcd's status error strings ("etcdserver: no leader",
	// active alarms).
	Errors []string
}

// ErrTimeoutLeaderTransfer is etcd's answer when a MoveLeader did not finish
// in time. etcd has no rpctypes value for it, so it reaches clients as
// codes.Unknown with etcd's text; strata sends exactly that.
var ErrTimeoutLeaderTransfer = status.Error(codes.Unknown, "etcdserver: request timed out, leader transfer took too long")

// LeaderMover moves leadership (Maintenance.MoveLeader).
type LeaderMover interface {
	// MoveLeader transfers leadership from this member, which must lead,
	// to the voting member target, and waits for it: etcd's errors
	// ErrGRPCNotLeader, ErrGRPCBadLeaderTransferee,
	// ErrTimeoutLeaderTransfer.
	MoveLeader(ctx context.Context, target uint64) error
}

// Versions are the version strings strata reports as an etcd server.
type Versions struct {
	// Server is the etcd server version strata implements (Status.version,
	// /version's etcdserver, etcd_server_version).
	Server string
	// Storage is the storage version (Status.storageVersion).
	Storage string
}

// Maintenance implements etcdserverpb.MaintenanceServer: Status and Alarm
// today; the rest answer Unimplemented until they are built.
type Maintenance struct {
	pb.UnimplementedMaintenanceServer
	b        Backend
	st       StatusSource
	lm       LeaderMover
	versions Versions
}

// NewMaintenance returns the Maintenance service.
func NewMaintenance(b Backend, st StatusSource, lm LeaderMover, v Versions) *Maintenance {
	return &Maintenance{b: b, st: st, lm: lm, versions: v}
}

// MoveLeader implements etcd's Maintenance.MoveLeader. Like etcd's, the
// response carries no header.
func (s *Maintenance) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := s.lm.MoveLeader(ctx, r.TargetID); err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MoveLeaderResponse{}, nil
}

// Status implements etcd's Maintenance.Status for this member.
func (s *Maintenance) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	ms := s.st.Status()
	h := s.b.Header()
	return &pb.StatusResponse{
		Header:           h,
		Version:          s.versions.Server,
		DbSize:           ms.DBSize,
		DbSizeInUse:      ms.DBSizeInUse,
		DbSizeQuota:      ms.DBSizeQuota,
		Leader:           ms.Leader,
		RaftIndex:        ms.RaftIndex,
		RaftTerm:         ms.RaftTerm,
		RaftAppliedIndex: ms.RaftAppliedIndex,
		Errors:           ms.Errors,
		IsLearner:        ms.IsLearner,
		StorageVersion:   s.versions.Storage,
		// No downgrade is ever in progress; etcd reports the empty info.
		DowngradeInfo: &pb.DowngradeInfo{},
	}, nil
}

// Alarm implements etcd's Maintenance.Alarm. strata raises no alarms yet
// (quotas and corruption checks come later), so GET lists none.
func (s *Maintenance) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return &pb.AlarmResponse{Header: s.b.Header()}, nil
}

// HashKV implements etcd's Maintenance.HashKV for this member. The hash is
// strata's own (engine-independent, see applier.HashKV): it is comparable
// between strata members, not with etcd's.
func (s *Maintenance) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	res, err := s.b.HashKV(r.Revision)
	if err != nil {
		return nil, togRPCError(err)
	}
	h := s.b.Header()
	h.Revision = res.Rev
	return &pb.HashKVResponse{
		Header:          h,
		Hash:            res.Hash,
		CompactRevision: res.CompactRev,
		HashRevision:    res.HashRev,
	}, nil
}

// Defragment implements etcd's Maintenance.Defragment. An LSM reclaims space
// by compaction in the background, so there is nothing to do: the call
// succeeds at once (docs/compat.md).
func (s *Maintenance) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return &pb.DefragmentResponse{Header: s.b.Header()}, nil
}
