//go:build linux

package robustness

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

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

// Traffic is the etcd-style mix: gets, puts, compare-and-swaps on the
// mod_revision last seen, deletes, on a few keys, each client on one
// member, paced at Rate operations per second per client. No write is
// retried: a write that fails is recorded as unknown.
type Traffic struct {
	Clients int
	Keys    int
	Rate    float64
	Timeout time.Duration // per operation
}

// Run drives kvs (client i uses kvs[i%len(kvs)]) until ctx ends.
func (tr Traffic) Run(ctx context.Context, seed uint64, kvs []pb.KVClient, h *History) {
	var wg sync.WaitGroup
	for i := range tr.Clients {
		wg.Go(func() { tr.client(ctx, i, rand.New(rand.NewPCG(seed, uint64(i))), kvs[i%len(kvs)], h) })
	}
	wg.Wait()
}

func (tr Traffic) client(ctx context.Context, id int, rng *rand.Rand, kv pb.KVClient, h *History) {
	tick := time.NewTicker(time.Duration(float64(time.Second) / tr.Rate))
	defer tick.Stop()
	seen := map[string]int64{} // mod_revision last seen per key
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C: // paces the client
		}
		key := fmt.Sprintf("key%d", rng.IntN(tr.Keys))
		value := fmt.Sprintf("c%d-%d", id, n)
		var req model.Request
		switch p := rng.IntN(100); {
		case p < 40:
			req = model.Request{Kind: model.Get, Key: key}
		case p < 70:
			req = model.Request{Kind: model.Put, Key: key, Value: value}
		case p < 90:
			req = model.Request{Kind: model.CAS, Key: key, Value: value, Expect: seen[key]}
		default:
			req = model.Request{Kind: model.Delete, Key: key}
		}
		call := h.now()
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), tr.Timeout)
		resp, err := do(octx, kv, req)
		cancel()
		switch {
		case err != nil && req.Kind == model.Get:
			h.failedRead()
		case err != nil:
			h.add(id, call, req, model.Response{Unknown: true})
		default:
			h.add(id, call, req, resp)
			if req.Kind == model.Get {
				seen[key] = resp.ModRevision
			}
		}
	}
}

// do sends req as etcd's API calls.
func do(ctx context.Context, kv pb.KVClient, req model.Request) (model.Response, error) {
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
	case model.Put:
		r, err := kv.Put(ctx, &pb.PutRequest{Key: k, Value: []byte(req.Value)})
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
	case model.CAS:
		r, err := kv.Txn(ctx, &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: k, Target: pb.Compare_MOD, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_ModRevision{ModRevision: req.Expect}}},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: []byte(req.Value)}}}},
		})
		if err != nil {
			return model.Response{}, err
		}
		return model.Response{Revision: r.Header.GetRevision(), Succeeded: r.Succeeded}, nil
	}
	return model.Response{}, fmt.Errorf("unknown request kind %v", req.Kind)
}
