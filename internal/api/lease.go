package api

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/auth"
)

// Leases is what the Lease service needs from a member beyond Backend.
// Expiry and keep-alives belong to the leader: a member that is not the
// leader forwards them to it.
type Leases interface {
	// MinLeaseTTL is the shortest TTL a grant gets (etcd: 1.5 election
	// timeouts, rounded up to seconds).
	MinLeaseTTL() int64
	// Lease and LeaseList read the replicated lease table.
	Lease(id int64, withKeys bool) (applier.LeaseInfo, bool, error)
	LeaseList() ([]applier.LeaseInfo, error)
	// RenewLease renews lease id on the leader and returns its TTL; an
	// unknown or expired lease is ErrLeaseNotFound.
	RenewLease(ctx context.Context, id int64) (int64, error)
	// LeaseTimeToLive returns the leader's remaining TTL of lease id and
	// its granted TTL; found is false for an unknown lease.
	LeaseTimeToLive(ctx context.Context, id int64) (remaining, granted int64, found bool, err error)
}

// ErrLeaseNotFound is RenewLease's answer for a lease that is unknown or has
// expired.
var ErrLeaseNotFound = errors.New("lease not found")

// Lease implements etcdserverpb.LeaseServer.
type Lease struct {
	pb.UnimplementedLeaseServer
	b Backend
	l Leases
	z authz
}

// keys returns the keys attached to lease id, for the permission checks.
func (s *Lease) keys(id int64) ([][]byte, bool) {
	info, found, err := s.l.Lease(id, true)
	if err != nil || !found {
		return nil, false
	}
	return info.Keys, true
}

// NewLease returns the Lease service.
func NewLease(b Backend, l Leases) *Lease { return &Lease{b: b, l: l} }

// LeaseGrant implements etcd's LeaseGrant: the server picks a positive ID
// when the client gives none, a TTL below the minimum is raised to it, one
// above etcd's maximum is refused.
func (s *Lease) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	if err := auth.CheckLeaseGrant(s.z.access(ctx)); err != nil {
		return nil, err
	}
	g := &pb.LeaseGrantRequest{ID: r.ID, TTL: max(r.TTL, s.l.MinLeaseTTL())}
	if g.TTL > applier.MaxLeaseTTL {
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	for g.ID == 0 {
		id := rand.Int64N(1<<63-1) + 1
		if _, found, err := s.l.Lease(id, false); err != nil {
			return nil, togRPCError(err)
		} else if !found {
			g.ID = id
		}
	}
	resp, err := propose(ctx, s.b, &pb.InternalRaftRequest{Header: s.z.header(ctx), LeaseGrant: g})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseGrantResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// LeaseRevoke implements etcd's LeaseRevoke.
func (s *Lease) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	// Credentials here; the keys attached to the lease are checked as the
	// revoke applies.
	if err := auth.CheckLeaseGrant(s.z.access(ctx)); err != nil {
		return nil, err
	}
	resp, err := propose(ctx, s.b, &pb.InternalRaftRequest{Header: s.z.header(ctx), LeaseRevoke: &pb.LeaseRevokeRequest{ID: r.ID}})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.LeaseRevokeResponse)
	fillHeader(out.Header, s.b.Header())
	return out, nil
}

// LeaseTimeToLive implements etcd's LeaseTimeToLive: an unknown lease is
// TTL -1, not an error.
func (s *Lease) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (out *pb.LeaseTimeToLiveResponse, err error) {
	rev := s.z.revision()
	if err := auth.CheckLeaseTimeToLive(s.z.access(ctx), r, s.keys); err != nil {
		return nil, err
	}
	if r.Keys {
		// As etcd: the key names are not given out under an auth state
		// that changed during the check.
		defer func() {
			if s.z.revision() != rev {
				out, err = nil, rpctypes.ErrGRPCAuthOldRevision
			}
		}()
	}
	remaining, granted, found, lerr := s.l.LeaseTimeToLive(ctx, r.ID)
	if lerr != nil {
		return nil, togRPCError(lerr)
	}
	out = &pb.LeaseTimeToLiveResponse{Header: s.b.Header(), ID: r.ID, TTL: -1}
	if !found {
		return out, nil
	}
	out.TTL, out.GrantedTTL = remaining, granted
	if r.Keys {
		info, found, err := s.l.Lease(r.ID, true)
		if err != nil {
			return nil, togRPCError(err)
		}
		if found {
			out.Keys = info.Keys
		}
	}
	return out, nil
}

// LeaseLeases implements etcd's LeaseLeases: the IDs of all leases.
func (s *Lease) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ls, err := s.l.LeaseList()
	if err != nil {
		return nil, togRPCError(err)
	}
	if s.z.enabled() {
		var attached [][]byte
		for _, l := range ls {
			keys, _ := s.keys(l.ID)
			attached = append(attached, keys...)
		}
		if err := auth.CheckLeaseLeases(s.z.access(ctx), attached); err != nil {
			return nil, err
		}
	}
	out := &pb.LeaseLeasesResponse{Header: s.b.Header()}
	for _, l := range ls {
		out.Leases = append(out.Leases, &pb.LeaseStatus{ID: l.ID})
	}
	return out, nil
}

// LeaseKeepAlive implements etcd's LeaseKeepAlive stream: each request
// renews its lease on the leader; an unknown or expired lease answers TTL
// 0, not an error. The header is taken before the renewal, as etcd does.
func (s *Lease) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	ctx := stream.Context()
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		a, _, err := s.z.accessNow(ctx)
		if err != nil {
			return err
		}
		if err := auth.CheckLeaseKeepAlive(a, r.ID, s.keys); err != nil {
			return err
		}
		out := &pb.LeaseKeepAliveResponse{Header: s.b.Header(), ID: r.ID}
		ttl, err := s.l.RenewLease(ctx, r.ID)
		switch {
		case errors.Is(err, ErrLeaseNotFound):
		case err != nil:
			return togRPCError(err)
		default:
			out.TTL = ttl
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}
