//go:build linux

package robustness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"

	"github.com/anishathalye/porcupine"

	"github.com/stratakv/strata/tests/robustness/model"
)

// History records operations as porcupine sees them.
type History struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// Unknown counts writes whose outcome was lost; Failed reads are
	// left out of the history (a read changes nothing).
	Unknown, FailedReads int
}

func newHistory() *History { return &History{start: time.Now()} }

func (h *History) now() int64 { return int64(time.Since(h.start)) }

func (h *History) add(client int, call int64, req model.Request, resp model.Response) {
	ret := h.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if resp.Unknown {
		ret = math.MaxInt64 // it may take effect at any time from its call on
		h.Unknown++
	}
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Call: call, Return: ret, Input: req, Output: resp})
}

func (h *History) failedRead() {
	h.mu.Lock()
	h.FailedReads++
	h.mu.Unlock()
}

// Operations returns the recorded operations.
func (h *History) Operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Profile is a traffic mix.
type Profile int

const (
	// Etcd is etcd's robustness mix: gets, puts, compare-and-swaps on
	// the mod_revision last seen, deletes, and leases (grants, puts
	// attached to one, revokes).
	Etcd Profile = iota
	// Kubernetes is the API server's: lists, gets, creates (a swap on
	// mod_revision 0), updates and deletes conditional on the
	// mod_revision last seen, each reading the key back when its compare
	// fails.
	Kubernetes
)

func (p Profile) String() string {
	if p == Kubernetes {
		return "kubernetes"
	}
	return "etcd"
}

// Traffic drives a profile's mix on a few keys, each client on one
// member, paced at Rate operations per second per client. No write is
// retried: a write that fails is recorded as unknown.
type Traffic struct {
	Profile Profile
	Clients int
	Keys    int
	Rate    float64
	Timeout time.Duration // per operation
}

// leaseKeys are the keys puts attached to a lease write (etcd profile):
// no other write deletes them, so each of their delete events is a
// revocation's.
var leaseKeys = []string{"keyL0", "keyL1"}

// Run drives conns (client i uses conns[i%len(conns)]) until ctx ends.
func (tr Traffic) Run(ctx context.Context, seed uint64, conns []grpc.ClientConnInterface, h *History) {
	var wg sync.WaitGroup
	for i := range tr.Clients {
		c := &client{id: i, rng: rand.New(rand.NewPCG(seed, uint64(i))), conn: conns[i%len(conns)], seen: map[string]int64{}}
		wg.Go(func() { tr.client(ctx, c, h) })
	}
	wg.Wait()
}

// client is one traffic client's state.
type client struct {
	id   int
	rng  *rand.Rand
	conn grpc.ClientConnInterface
	// seen is the mod_revision last seen per key.
	seen map[string]int64
	// leases are the client's leases granted and not revoked (or
	// possibly revoked): only those are used, never one whose grant's
	// outcome is unknown.
	leases []int64
	grants int
}

func (tr Traffic) client(ctx context.Context, c *client, h *History) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / tr.Rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C: // paces the client
		}
		var req model.Request
		if tr.Profile == Kubernetes {
			req = tr.kubernetes(c, n)
		} else {
			req = tr.etcd(c, n)
		}
		call := h.now()
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tr.Timeout)
		resp, err := do(octx, c.conn, req)
		cancel()
		read := req.Kind == model.Get || req.Kind == model.List
		switch {
		case err != nil && read:
			h.failedRead()
		case err != nil:
			h.add(c.id, call, req, model.Response{Unknown: true})
		default:
			h.add(c.id, call, req, resp)
			c.observe(req, resp)
		}
		if req.Kind == model.LeaseRevoke {
			// Revoked or perhaps revoked: not used again.
			c.leases = slices.DeleteFunc(c.leases, func(l int64) bool { return l == req.Lease })
		}
	}
}

// observe notes what a response shows of the keys and leases.
func (c *client) observe(req model.Request, resp model.Response) {
	switch req.Kind {
	case model.Get:
		c.seen[req.Key] = resp.ModRevision
	case model.CAS, model.CASDelete:
		switch {
		case !resp.Succeeded && req.ElseGet:
			c.seen[req.Key] = resp.ModRevision
		case resp.Succeeded && req.Kind == model.CAS:
			c.seen[req.Key] = resp.Revision
		case resp.Succeeded:
			c.seen[req.Key] = 0
		}
	case model.List:
		for k := range c.seen {
			c.seen[k] = 0
		}
		for _, kv := range strings.Split(resp.List, ",") {
			if k, rest, ok := strings.Cut(kv, "="); ok {
				c.seen[k], _ = strconv.ParseInt(rest[strings.LastIndex(rest, "@")+1:], 10, 64)
			}
		}
	case model.LeaseGrant:
		c.leases = append(c.leases, req.Lease)
	}
}

func (tr Traffic) key(c *client) string { return fmt.Sprintf("key%d", c.rng.IntN(tr.Keys)) }

// etcd is the next request of the etcd profile.
func (tr Traffic) etcd(c *client, n int) model.Request {
	value := fmt.Sprintf("c%d-%d", c.id, n)
	switch p := c.rng.IntN(100); {
	case p < 35:
		key := tr.key(c)
		if c.rng.IntN(4) == 0 {
			key = leaseKeys[c.rng.IntN(len(leaseKeys))]
		}
		return model.Request{Kind: model.Get, Key: key}
	case p < 55:
		return model.Request{Kind: model.Put, Key: tr.key(c), Value: value}
	case p < 70:
		key := tr.key(c)
		return model.Request{Kind: model.CAS, Key: key, Value: value, Expect: c.seen[key]}
	case p < 80:
		return model.Request{Kind: model.Delete, Key: tr.key(c)}
	case p < 90 && len(c.leases) > 0:
		return model.Request{Kind: model.PutLease, Key: leaseKeys[c.rng.IntN(len(leaseKeys))], Value: value,
			Lease: c.leases[c.rng.IntN(len(c.leases))]}
	case p >= 95 && len(c.leases) > 0:
		return model.Request{Kind: model.LeaseRevoke, Lease: c.leases[0]}
	}
	c.grants++
	// Client-chosen IDs: unique per client and grant.
	return model.Request{Kind: model.LeaseGrant, Lease: int64(c.id+1)<<32 | int64(c.grants)}
}

// kubernetes is the next request of the Kubernetes profile.
func (tr Traffic) kubernetes(c *client, n int) model.Request {
	value := fmt.Sprintf("c%d-%d", c.id, n)
	key := tr.key(c)
	switch p := c.rng.IntN(100); {
	case p < 30:
		return model.Request{Kind: model.List}
	case p < 40:
		return model.Request{Kind: model.Get, Key: key}
	case p < 85 && c.seen[key] == 0:
		return model.Request{Kind: model.CAS, Key: key, Value: value, ElseGet: true} // create
	case p < 85:
		return model.Request{Kind: model.CAS, Key: key, Value: value, Expect: c.seen[key], ElseGet: true} // update
	default:
		return model.Request{Kind: model.CASDelete, Key: key, Expect: c.seen[key], ElseGet: true}
	}
}

// leaseTTL outlives every run: no lease expires in the history.
const leaseTTL = 3600

// do sends req as etcd's API calls.
func do(ctx context.Context, conn grpc.ClientConnInterface, req model.Request) (model.Response, error) {
	kv := pb.NewKVClient(conn)
	k := []byte(req.Key)
	switch req.Kind {
	case model.Get:
		r, err := kv.Range(ctx, &pb.RangeRequest{Key: k})
		if err != nil {
			return model.Response{}, err
		}
		resp := model.Response{Revision: r.Header.GetRevision()}
		if len(r.Kvs) == 1 {
			resp.Found, resp.Value, resp.ModRevision = true, string(r.Kvs[0].Value), r.Kvs[0].ModRevision
		}
		return resp, nil
	case model.List:
		r, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("key"), RangeEnd: []byte("kez")})
		if err != nil {
			return model.Response{}, err
		}
		var b strings.Builder
		for _, e := range r.Kvs {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%s@%d", e.Key, e.Value, e.ModRevision)
		}
		return model.Response{Revision: r.Header.GetRevision(), List: b.String()}, nil
	case model.Put, model.PutLease:
		r, err := kv.Put(ctx, &pb.PutRequest{Key: k, Value: []byte(req.Value), Lease: req.Lease})
		if isLeaseNotFound(err) {
			return model.Response{LeaseNotFound: true}, nil
		}
		if err != nil {
			return model.Response{}, err
		}
		return model.Response{Revision: r.Header.GetRevision()}, nil
	case model.Delete:
		r, err := kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: k})
		if err != nil {
			return model.Response{}, err
		}
		return model.Response{Revision: r.Header.GetRevision(), Deleted: r.Deleted}, nil
	case model.CAS, model.CASDelete:
		then := &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: []byte(req.Value)}}}
		if req.Kind == model.CASDelete {
			then = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k}}}
		}
		txn := &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: k, Target: pb.Compare_MOD, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_ModRevision{ModRevision: req.Expect}}},
			Success: []*pb.RequestOp{then},
		}
		if req.ElseGet {
			txn.Failure = []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: k}}}}
		}
		r, err := kv.Txn(ctx, txn)
		if err != nil {
			return model.Response{}, err
		}
		resp := model.Response{Revision: r.Header.GetRevision(), Succeeded: r.Succeeded}
		if len(r.Responses) == 1 {
			if d := r.Responses[0].GetResponseDeleteRange(); d != nil {
				resp.Deleted = d.Deleted
			}
			if g := r.Responses[0].GetResponseRange(); g != nil && len(g.Kvs) == 1 {
				resp.Found, resp.Value, resp.ModRevision = true, string(g.Kvs[0].Value), g.Kvs[0].ModRevision
			}
		}
		return resp, nil
	case model.LeaseGrant:
		r, err := pb.NewLeaseClient(conn).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: req.Lease, TTL: leaseTTL})
		if err != nil {
			return model.Response{}, err
		}
		if r.Error != "" {
			return model.Response{}, errors.New(r.Error)
		}
		return model.Response{Revision: r.Header.GetRevision()}, nil
	case model.LeaseRevoke:
		r, err := pb.NewLeaseClient(conn).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: req.Lease})
		if isLeaseNotFound(err) {
			return model.Response{LeaseNotFound: true}, nil
		}
		if err != nil {
			return model.Response{}, err
		}
		return model.Response{Revision: r.Header.GetRevision()}, nil
	}
	return model.Response{}, fmt.Errorf("unknown request kind %v", req.Kind)
}

// isLeaseNotFound reports etcd's "requested lease not found", a definite
// failure (the request was applied and refused).
func isLeaseNotFound(err error) bool {
	return err != nil && rpctypes.ErrorDesc(err) == rpctypes.ErrLeaseNotFound.Error()
}
