package api

import (
	"context"
	"crypto/sha256"
	"hash"
	"io"
	"regexp"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratakv/strata/internal/auth"

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

// Snapshotter writes backups of the member's state (Maintenance.Snapshot).
type Snapshotter interface {
	// WriteSnapshot writes one consistent snapshot of the state machine
	// to w, in strata's snapshot format (package snapshot). It stops with
	// ctx, and with etcd's "server stopped" when the member stops.
	WriteSnapshot(ctx context.Context, w io.Writer) error
}

// Maintenance implements etcdserverpb.MaintenanceServer; what is not built
// yet answers Unimplemented.
type Maintenance struct {
	pb.UnimplementedMaintenanceServer
	z        authz
	b        Backend
	st       StatusSource
	lm       LeaderMover
	snaps    Snapshotter
	versions Versions
}

// NewMaintenance returns the Maintenance service.
func NewMaintenance(b Backend, st StatusSource, lm LeaderMover, snaps Snapshotter, v Versions) *Maintenance {
	return &Maintenance{b: b, st: st, lm: lm, snaps: snaps, versions: v}
}

const (
	// snapshotChunkBytes is the blob size of Snapshot's messages, etcd's.
	snapshotChunkBytes = 32 << 10
	// snapshotPadding is the unit the data before the checksum is padded
	// to: a bbolt page size, which clients expect.
	snapshotPadding = 512
)

// Snapshot implements etcd's Maintenance.Snapshot: the member's state in
// messages of 32 KiB, zero-padded to a multiple of 512 bytes, then a last message whose blob is the SHA-256 of all
// the bytes before it, which restore checks; every message carries the
// storage version. The content is strata's snapshot stream (package
// snapshot), not a bbolt file: strata restores it, etcd's tools do not
// (docs/compat.md). It is produced as it is sent, so remaining_bytes (the
// blob bytes still to come, the checksum not counted), exact in etcd, is
// here a lower bound: the bytes already known to follow. As in etcd it is
// 0 exactly on the last data message and on the checksum message.
func (s *Maintenance) Snapshot(_ *pb.SnapshotRequest, srv pb.Maintenance_SnapshotServer) error {
	a, _, err := s.z.accessNow(srv.Context())
	if err != nil {
		return err
	}
	if err := auth.CheckAdmin(a); err != nil {
		return err
	}
	if s.snaps == nil {
		return status.Error(codes.Unimplemented, "method Snapshot not implemented")
	}
	w := &snapshotSender{srv: srv, sum: sha256.New(), version: s.versions.Storage}
	if err := s.snaps.WriteSnapshot(srv.Context(), w); err != nil {
		return togRPCError(err)
	}
	return w.finish()
}

// snapshotSender cuts the stream into messages. It holds one full chunk
// back, so that when it sends a chunk it knows how many bytes at least
// follow it.
type snapshotSender struct {
	srv       pb.Maintenance_SnapshotServer
	sum       hash.Hash
	version   string
	pending   []byte // a full chunk not sent yet
	buf       []byte // the chunk being filled
	sentBytes int
}

func (w *snapshotSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, snapshotChunkBytes)
		}
		c := min(len(p), snapshotChunkBytes-len(w.buf))
		w.buf = append(w.buf, p[:c]...)
		p = p[c:]
		if len(w.buf) == snapshotChunkBytes {
			if w.pending != nil {
				if err := w.send(w.pending, uint64(len(w.buf))); err != nil {
					return 0, err
				}
			}
			w.pending, w.buf = w.buf, nil
		}
	}
	return n, nil
}

func (w *snapshotSender) send(blob []byte, remaining uint64) error {
	w.sum.Write(blob)
	w.sentBytes += len(blob)
	return w.srv.Send(&pb.SnapshotResponse{RemainingBytes: remaining, Blob: blob, Version: w.version})
}

func (w *snapshotSender) finish() error {
	// Zero padding to a multiple of 512 bytes, as a bbolt file has: clients
	// (client/v3's snapshot.Save, so etcdctl) look for the checksum only
	// in a file of 512n+32 bytes. The snapshot stream is self-delimiting,
	// so restore reads past the padding.
	var total int
	if w.pending != nil {
		total += len(w.pending)
	}
	total += len(w.buf) + w.sentBytes
	if pad := (snapshotPadding - total%snapshotPadding) % snapshotPadding; pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return err
		}
	}
	if w.pending != nil {
		if err := w.send(w.pending, uint64(len(w.buf))); err != nil {
			return err
		}
	}
	if len(w.buf) > 0 {
		if err := w.send(w.buf, 0); err != nil {
			return err
		}
	}
	return w.srv.Send(&pb.SnapshotResponse{Blob: w.sum.Sum(nil), Version: w.version})
}

// MoveLeader implements etcd's Maintenance.MoveLeader. Like etcd's, the
// response carries no header.
func (s *Maintenance) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	if err := s.lm.MoveLeader(ctx, r.TargetID); err != nil {
		return nil, togRPCError(err)
	}
	return &pb.MoveLeaderResponse{}, nil
}

// Status implements etcd's Maintenance.Status for this member.
func (s *Maintenance) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	if err := s.z.access(ctx).RequireAuthInfo(); err != nil {
		return nil, err
	}
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

// Alarm implements etcd's Maintenance.Alarm: every action, GET included,
// goes through the log, as in etcd, so the answer reflects every alarm
// raised or cleared before it.
func (s *Maintenance) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if err := auth.CheckAlarm(s.z.access(ctx), r); err != nil {
		return nil, err
	}
	resp, err := propose(ctx, s.b, &pb.InternalRaftRequest{Header: s.z.header(ctx), Alarm: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.AlarmResponse)
	out.Header = s.b.Header()
	return out, nil
}

// HashKV implements etcd's Maintenance.HashKV for this member. The hash is
// strata's own (engine-independent, see applier.HashKV): it is comparable
// between strata members, not with etcd's.
func (s *Maintenance) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
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

// Defragment implements etcd's Maintenance.Defragment. An LSM reclaims
// space by compaction in the background; here the member compacts its
// whole key space at once, so that the space a compaction freed is back
// when the call returns (as after etcd's defragmentation, which is what
// clears the way for disarming NOSPACE). Unlike etcd's it blocks neither
// reads nor writes (docs/compat.md).
func (s *Maintenance) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	if err := s.b.Defragment(ctx); err != nil {
		return nil, togRPCError(err)
	}
	return &pb.DefragmentResponse{Header: s.b.Header()}, nil
}

// Hash implements etcd's Maintenance.Hash: a hash of the member's whole
// state machine (applier.Hash; strata's, not comparable with etcd's).
func (s *Maintenance) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	h, rev, err := s.b.Hash()
	if err != nil {
		return nil, togRPCError(err)
	}
	hdr := s.b.Header()
	hdr.Revision = rev
	return &pb.HashResponse{Header: hdr, Hash: h}, nil
}

// downgradeVersion is what etcd accepts as a downgrade target: a semantic
// version, or major.minor.
var downgradeVersion = regexp.MustCompile(`^\d+\.\d+(\.\d+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?)?$`)

// Downgrade implements etcd's Maintenance.Downgrade with etcd's validation
// and errors. strata has no older version to go back to (an etcd 3.6
// binary cannot read its data), so no target is valid: VALIDATE and ENABLE
// answer etcd's "invalid downgrade target version" for any well-formed
// version. CANCEL, with no downgrade in progress (none can be), answers as
// etcd v3.7.3 does then: success, with the cluster version (major.minor).
func (s *Maintenance) Downgrade(ctx context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	switch r.Action {
	case pb.DowngradeRequest_VALIDATE, pb.DowngradeRequest_ENABLE:
		if !downgradeVersion.MatchString(r.Version) {
			return nil, rpctypes.ErrGRPCWrongDowngradeVersionFormat
		}
		return nil, rpctypes.ErrGRPCInvalidDowngradeTargetVersion
	case pb.DowngradeRequest_CANCEL:
		v := s.versions.Server
		if parts := strings.SplitN(v, ".", 3); len(parts) >= 2 {
			v = parts[0] + "." + parts[1]
		}
		return &pb.DowngradeResponse{Header: s.b.Header(), Version: v}, nil
	}
	// etcd's ErrUnknownMethod, which it has no gRPC mapping for.
	return nil, status.Error(codes.Unknown, "etcdserver: unknown method")
}
