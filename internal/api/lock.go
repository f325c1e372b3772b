package api

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc/metadata"

	"github.com/stratakv/strata/internal/auth"
)

// Lock and Election are etcd's v3lock and v3election services. As in etcd
// they are recipes over the KV, Lease and Watch API, run by the member on
// behalf of the client with client/v3's concurrency package through a
// client of the member itself (SelfClient): a lock is a key under the
// lock's name carrying the caller's lease, held once every older key under
// the name is gone. Their answers, errors included, are therefore exactly
// what the same recipe gives through the public API.

// Lock implements v3lockpb.LockServer.
type Lock struct {
	lpb.UnimplementedLockServer
	c *clientv3.Client
}

// NewLock returns the Lock service over c, a client of this member.
func NewLock(c *clientv3.Client) *Lock { return &Lock{c: c} }

// orphanSession returns a session on lease without keeping it alive: the
// caller owns the lease and its keep-alives.
// delegate passes the caller's token to the calls the member makes on its
// behalf through its own client, as etcd's in-process client does, so that
// they are checked as the caller's own.
func delegate(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	if tok, ok := auth.TokenFromMetadata(md); ok {
		return metadata.AppendToOutgoingContext(ctx, rpctypes.TokenFieldNameGRPC, tok)
	}
	// A caller known by its certificate's common name: the name rides
	// along, believed only on the in-process connection (authz.resolve).
	if info := caller(ctx); info != nil && info.Username != "" {
		return metadata.AppendToOutgoingContext(ctx, delegatedUserKey, info.Username)
	}
	return ctx
}

func orphanSession(ctx context.Context, c *clientv3.Client, lease int64) (*concurrency.Session, error) {
	s, err := concurrency.NewSession(c, concurrency.WithLease(clientv3.LeaseID(lease)), concurrency.WithContext(ctx))
	if err != nil {
		return nil, err
	}
	s.Orphan()
	return s, nil
}

// Lock waits until the caller holds the lock name, with a key attached to
// the caller's lease, and returns that key (which Unlock takes).
func (l *Lock) Lock(ctx context.Context, r *lpb.LockRequest) (*lpb.LockResponse, error) {
	ctx = delegate(ctx)
	s, err := orphanSession(ctx, l.c, r.Lease)
	if err != nil {
		return nil, err
	}
	m := concurrency.NewMutex(s, string(r.Name))
	if err := m.Lock(ctx); err != nil {
		return nil, err
	}
	return &lpb.LockResponse{Header: m.Header(), Key: []byte(m.Key())}, nil
}

// Unlock releases a lock by deleting its key.
func (l *Lock) Unlock(ctx context.Context, r *lpb.UnlockRequest) (*lpb.UnlockResponse, error) {
	ctx = delegate(ctx)
	resp, err := l.c.Delete(ctx, string(r.Key))
	if err != nil {
		return nil, err
	}
	return &lpb.UnlockResponse{Header: resp.Header}, nil
}

// ErrMissingLeaderKey is etcd's refusal of a Proclaim or Resign without a
// leader key.
var ErrMissingLeaderKey = errors.New(`"leader" field must be provided`)

// Election implements v3electionpb.ElectionServer.
type Election struct {
	epb.UnimplementedElectionServer
	c *clientv3.Client
}

// NewElection returns the Election service over c, a client of this member.
func NewElection(c *clientv3.Client) *Election { return &Election{c: c} }

// Campaign waits until the caller leads election name, having proposed
// value, and returns its leader key.
func (e *Election) Campaign(ctx context.Context, r *epb.CampaignRequest) (*epb.CampaignResponse, error) {
	ctx = delegate(ctx)
	s, err := orphanSession(ctx, e.c, r.Lease)
	if err != nil {
		return nil, err
	}
	el := concurrency.NewElection(s, string(r.Name))
	if err := el.Campaign(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	return &epb.CampaignResponse{Header: el.Header(), Leader: &epb.LeaderKey{
		Name: r.Name, Key: []byte(el.Key()), Rev: el.Rev(), Lease: int64(s.Lease()),
	}}, nil
}

// resume returns the election of a leader key.
func (e *Election) resume(ctx context.Context, lk *epb.LeaderKey) (*concurrency.Election, error) {
	if lk == nil {
		return nil, ErrMissingLeaderKey
	}
	s, err := orphanSession(ctx, e.c, lk.Lease)
	if err != nil {
		return nil, err
	}
	return concurrency.ResumeElection(s, string(lk.Name), string(lk.Key), lk.Rev), nil
}

// Proclaim lets the leader announce a new value.
func (e *Election) Proclaim(ctx context.Context, r *epb.ProclaimRequest) (*epb.ProclaimResponse, error) {
	ctx = delegate(ctx)
	el, err := e.resume(ctx, r.Leader)
	if err != nil {
		return nil, err
	}
	if err := el.Proclaim(ctx, string(r.Value)); err != nil {
		return nil, err
	}
	return &epb.ProclaimResponse{Header: el.Header()}, nil
}

// Resign gives leadership up.
func (e *Election) Resign(ctx context.Context, r *epb.ResignRequest) (*epb.ResignResponse, error) {
	ctx = delegate(ctx)
	el, err := e.resume(ctx, r.Leader)
	if err != nil {
		return nil, err
	}
	if err := el.Resign(ctx); err != nil {
		return nil, err
	}
	return &epb.ResignResponse{Header: el.Header()}, nil
}

// Leader returns the current leader's key and value.
func (e *Election) Leader(ctx context.Context, r *epb.LeaderRequest) (*epb.LeaderResponse, error) {
	ctx = delegate(ctx)
	s, err := orphanSession(ctx, e.c, -1)
	if err != nil {
		return nil, err
	}
	l, err := concurrency.NewElection(s, string(r.Name)).Leader(ctx)
	if err != nil {
		return nil, err
	}
	return &epb.LeaderResponse{Header: l.Header, Kv: l.Kvs[0]}, nil
}

// Observe streams the election's leaders as they change.
func (e *Election) Observe(r *epb.LeaderRequest, stream epb.Election_ObserveServer) error {
	ctx := delegate(stream.Context())
	s, err := orphanSession(ctx, e.c, -1)
	if err != nil {
		return err
	}
	ch := concurrency.NewElection(s, string(r.Name)).Observe(ctx)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case resp, ok := <-ch:
			if !ok {
				return ctx.Err()
			}
			if err := stream.Send(&epb.LeaderResponse{Header: resp.Header, Kv: resp.Kvs[0]}); err != nil {
				return err
			}
		}
	}
}
