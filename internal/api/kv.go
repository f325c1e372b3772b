// Package api implements etcd's v3 gRPC services on top of a member's
// stages. The handlers validate requests exactly as etcd's gRPC layer does,
// route reads to the local state machine (after a linearizable barrier
// unless the request is serializable) and writes to the proposer, and fill
// response headers. They hold no state of their own: a member kind (writer
// or reader) provides a Backend.
package api

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
)

// Backend is what the services need from a member.
type Backend interface {
	// Range and ReadTxn read the local state machine. The response
	// header carries only the revision.
	Range(r *pb.RangeRequest) (*pb.RangeResponse, error)
	ReadTxn(r *pb.TxnRequest) (*pb.TxnResponse, error)
	// LinearizableBarrier returns once the local state machine reflects
	// every write committed before the call (ReadIndex + wait for apply).
	LinearizableBarrier(ctx context.Context) error
	// Propose replicates a write through raft and returns the applier's
	// result once the write is applied locally.
	Propose(ctx context.Context, r *pb.InternalRaftRequest) (applier.Result, error)
	// WaitCompaction returns once the state machine has physically
	// removed what a compaction at rev made unreachable.
	WaitCompaction(ctx context.Context, rev int64) error
	// HashKV hashes the MVCC state at rev (0 for the current one).
	HashKV(rev int64) (applier.HashKVResult, error)
	// Header returns a response header with this member's cluster ID,
	// member ID and current raft term.
	Header() *pb.ResponseHeader
}

// Limits are the request limits etcd enforces at its gRPC layer.
type Limits struct {
	MaxTxnOps int
}

// KV implements etcdserverpb.KVServer.
type KV struct {
	pb.UnimplementedKVServer
	b      Backend
	limits Limits
}

// NewKV returns the KV service over b.
func NewKV(b Backend, l Limits) *KV { return &KV{b: b, limits: l} }

// Range implements etcd's Range.
func (s *KV) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := applier.CheckRangeRequest(r); err != nil {
		return nil, err
	}
	if !r.Serializable {
		if err := s.b.LinearizableBarrier(ctx); err != nil {
			return nil, togRPCError(err)
		}
	}
	resp, err := s.b.Range(r)
	if err != nil {
		return nil, togRPCError(err)
	}
	s.fill(resp.Header)
	return resp, nil
}

// Put implements etcd's Put.
func (s *KV) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := applier.CheckPutRequest(r); err != nil {
		return nil, err
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Put: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.PutResponse)
	s.fill(out.Header)
	return out, nil
}

// DeleteRange implements etcd's DeleteRange.
func (s *KV) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := applier.CheckDeleteRangeRequest(r); err != nil {
		return nil, err
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{DeleteRange: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.DeleteRangeResponse)
	s.fill(out.Header)
	return out, nil
}

// Txn implements etcd's Txn. A txn of ranges only is served without raft,
// behind a linearizable barrier unless every range in it is serializable.
func (s *KV) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := applier.CheckTxnRequest(r, s.limits.MaxTxnOps); err != nil {
		return nil, err
	}
	if applier.IsReadOnlyTxn(r) {
		if !isTxnSerializable(r) {
			if err := s.b.LinearizableBarrier(ctx); err != nil {
				return nil, togRPCError(err)
			}
		}
		resp, err := s.b.ReadTxn(r)
		if err != nil {
			return nil, togRPCError(err)
		}
		s.fill(resp.Header)
		return resp, nil
	}
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Txn: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.TxnResponse)
	s.fill(out.Header)
	return out, nil
}

// Compact implements etcd's Compact.
func (s *KV) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := s.propose(ctx, &pb.InternalRaftRequest{Compaction: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.CompactionResponse)
	if r.Physical {
		// etcd answers a physical compaction only once the compacted
		// versions are gone from the backend.
		if err := s.b.WaitCompaction(ctx, r.Revision); err != nil {
			return nil, togRPCError(err)
		}
	}
	s.fill(out.Header)
	return out, nil
}

func (s *KV) propose(ctx context.Context, r *pb.InternalRaftRequest) (proto.Message, error) {
	res, err := s.b.Propose(ctx, r)
	if err != nil {
		return nil, togRPCError(err)
	}
	if res.Err != nil {
		return nil, togRPCError(res.Err)
	}
	return res.Resp, nil
}

// fill completes a header the state machine started (it sets the revision).
func (s *KV) fill(h *pb.ResponseHeader) {
	if h == nil {
		return
	}
	fillHeader(h, s.b.Header())
}

func fillHeader(h, from *pb.ResponseHeader) {
	h.ClusterId = from.ClusterId
	h.MemberId = from.MemberId
	h.RaftTerm = from.RaftTerm
}

func isTxnSerializable(r *pb.TxnRequest) bool {
	for _, ops := range [][]*pb.RequestOp{r.Success, r.Failure} {
		for _, op := range ops {
			switch v := op.Request.(type) {
			case *pb.RequestOp_RequestRange:
				if !v.RequestRange.Serializable {
					return false
				}
			case *pb.RequestOp_RequestTxn:
				if !isTxnSerializable(v.RequestTxn) {
					return false
				}
			}
		}
	}
	return true
}

// togRPCError maps an error to the gRPC status etcd would send. rpctypes
// gRPC errors pass through; context errors become etcd's.
func togRPCError(err error) error {
	switch err {
	case context.Canceled:
		return rpctypes.ErrGRPCCanceled
	case context.DeadlineExceeded:
		return rpctypes.ErrGRPCTimeout
	}
	return err
}
