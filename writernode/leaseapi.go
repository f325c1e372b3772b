package writernode

import (
	"context"
	"errors"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/internal/auth"
	"github.com/stratakv/strata/internal/lessor"
)

var _ api.Leases = (*backend)(nil)

// MinLeaseTTL implements api.Leases.
func (b *backend) MinLeaseTTL() int64 { return lessor.MinTTL((*Member)(b).electionTimeout()) }

// Lease implements api.Leases.
func (b *backend) Lease(id int64, withKeys bool) (applier.LeaseInfo, bool, error) {
	return b.app.Lease(id, withKeys)
}

// LeaseList implements api.Leases.
func (b *backend) LeaseList() ([]applier.LeaseInfo, error) { return b.app.Leases() }

// leaderReady reports whether this member is the leader and may renew: as
// etcd does before a renewal, it confirms leadership with a quorum and
// waits until everything committed is applied (so the lessor knows every
// granted lease), and its lessor must be promoted in the current term.
func (b *backend) leaderReady(ctx context.Context) (bool, error) {
	if !b.node.Status().IsLeader {
		return false, nil
	}
	if err := b.LinearizableBarrier(ctx); err != nil {
		return false, err
	}
	st := b.node.Status()
	if !st.IsLeader {
		return false, nil
	}
	if !(*Member)(b).ensurePromoted(st.Term) {
		// Leadership moved meanwhile: the client retries.
		return false, rpctypes.ErrGRPCNoLeader
	}
	return true, nil
}

// RenewLease implements api.Leases: on the leader its lessor renews; a
// follower forwards the keep-alive to the leader's client URL.
func (b *backend) RenewLease(ctx context.Context, id int64) (int64, error) {
	leader, err := b.leaderReady(ctx)
	if err != nil {
		return 0, err
	}
	if leader {
		ttl, err := b.lessor.Renew(id)
		switch {
		case errors.Is(err, lessor.ErrLeaseNotFound):
			return 0, api.ErrLeaseNotFound
		case errors.Is(err, lessor.ErrNotPrimary):
			return 0, rpctypes.ErrGRPCNoLeader
		}
		return ttl, err
	}
	if api.Forwarded(ctx) {
		return 0, rpctypes.ErrGRPCNotLeader // forwarded to a member that lost leadership meanwhile
	}
	c, err := b.leaderConn(ctx)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.requestTimeout())
	defer cancel()
	stream, err := pb.NewLeaseClient(c).LeaseKeepAlive(forwardCtx(ctx, b.id.MemberID))
	if err != nil {
		return 0, err
	}
	if err := stream.Send(&pb.LeaseKeepAliveRequest{ID: id}); err != nil {
		return 0, err
	}
	resp, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	_ = stream.CloseSend()
	if resp.TTL <= 0 {
		return 0, api.ErrLeaseNotFound
	}
	return resp.TTL, nil
}

// LeaseTimeToLive implements api.Leases, forwarding like RenewLease.
func (b *backend) LeaseTimeToLive(ctx context.Context, id int64) (remaining, granted int64, found bool, err error) {
	leader, err := b.leaderReady(ctx)
	if err != nil {
		return 0, 0, false, err
	}
	if leader {
		remaining, granted, found = b.lessor.TimeToLive(id)
		return remaining, granted, found, nil
	}
	if api.Forwarded(ctx) {
		return 0, 0, false, rpctypes.ErrGRPCNotLeader
	}
	c, err := b.leaderConn(ctx)
	if err != nil {
		return 0, 0, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, b.requestTimeout())
	defer cancel()
	resp, err := pb.NewLeaseClient(c).LeaseTimeToLive(forwardCtx(ctx, b.id.MemberID), &pb.LeaseTimeToLiveRequest{ID: id})
	if err != nil {
		return 0, 0, false, err
	}
	if resp.TTL == -1 {
		return 0, 0, false, nil
	}
	return resp.TTL, resp.GrantedTTL, true, nil
}

// forwardCtx marks a request forwarded to the leader, and passes the
// caller's token along: the leader checks the caller again.
func forwardCtx(ctx context.Context, self uint64) context.Context {
	kv := []string{api.ForwardedMetadata, idString(self)}
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if tok, ok := auth.TokenFromMetadata(md); ok {
			kv = append(kv, rpctypes.TokenFieldNameGRPC, tok)
		}
	}
	return metadata.AppendToOutgoingContext(ctx, kv...)
}

// leaderConns caches one connection to the leader's peer URL.
type leaderConns struct {
	mu   sync.Mutex
	id   uint64
	conn *grpc.ClientConn
}

func (l *leaderConns) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn != nil {
		l.conn.Close()
		l.conn, l.id = nil, 0
	}
}

// leaderConn returns a connection to the current leader's peer URL, where
// it serves forwarded lease calls and hash comparisons (api.PeerLease,
// api.PeerMaintenance), as etcd's leader does on its peer port.
func (b *backend) leaderConn(ctx context.Context) (*grpc.ClientConn, error) {
	lead := b.node.Status().Lead
	if lead == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	lc := &b.leaderConns
	lc.mu.Lock()
	defer lc.mu.Unlock()
	if lc.conn != nil && lc.id == lead {
		return lc.conn, nil
	}
	members, err := b.app.Members()
	if err != nil {
		return nil, err
	}
	var peerURLs []string
	for _, m := range members {
		if m.ID == lead {
			peerURLs = m.PeerURLs
		}
	}
	if len(peerURLs) == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	c, err := dialPeer(b.cfg.PeerTLS, peerURLs[0])
	if err != nil {
		return nil, err
	}
	if lc.conn != nil {
		lc.conn.Close()
	}
	lc.conn, lc.id = c, lead
	return c, nil
}
