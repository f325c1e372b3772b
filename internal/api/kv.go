package api

import (
	"bytes"
	"context"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/auth"
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
	// Defragment reclaims the space compactions and deletions freed
	// (etcd's Defragment; an LSM's manual compaction).
	Defragment(ctx context.Context) error
	// Hash hashes the whole state machine (etcd's Hash) and returns the
	// revision it did so at.
	Hash() (hash uint32, rev int64, err error)
	// Header returns a response header with this member's cluster ID,
	// member ID and current raft term.
	Header() *pb.ResponseHeader
}

// Limits are the request limits etcd enforces at its gRPC layer.
type Limits struct {
	MaxTxnOps int
	// MaxRequestBytes is also the size RangeStream aims its chunks at.
	MaxRequestBytes int
}

// KV implements etcdserverpb.KVServer.
type KV struct {
	pb.UnimplementedKVServer
	b      Backend
	limits Limits
	z      authz
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
	if err := auth.CheckRange(s.z.access(ctx), r); err != nil {
		return nil, err
	}
	resp, err := s.b.Range(r)
	if err != nil {
		return nil, togRPCError(err)
	}
	if err := s.z.recheck(ctx); err != nil {
		return nil, err
	}
	s.fill(resp.Header)
	return resp, nil
}

// initialStreamChunkLimit is the key count of RangeStream's first chunk.
const initialStreamChunkLimit = 10

// RangeStream implements etcd v3.7's RangeStream: the result of a Range, in
// key order, as a stream of chunks whose merge (proto.Merge) is the Range
// response. The revision is pinned by the first chunk; only the last chunk
// carries the header, more and count. Chunks start at 10 keys and double or
// halve to land near --max-request-bytes. As in etcd, custom sort orders and
// revision filters are refused with Unimplemented.
func (s *KV) RangeStream(r *pb.RangeRequest, rs pb.KV_RangeStreamServer) error {
	if err := applier.CheckRangeRequest(r); err != nil {
		return err
	}
	if !isDefaultOrdering(r) {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	if !r.Serializable {
		if err := s.b.LinearizableBarrier(rs.Context()); err != nil {
			return togRPCError(err)
		}
	}
	a, info, err := s.z.accessNow(rs.Context())
	if err != nil {
		return err
	}
	if err := auth.CheckRange(a, r); err != nil {
		return err
	}
	r = proto.Clone(r).(*pb.RangeRequest)
	if r.CountOnly {
		resp, err := s.b.Range(r)
		if err != nil {
			return togRPCError(err)
		}
		out := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: resp.Header.Revision}, Count: resp.Count}
		if err := s.z.recheckInfo(info); err != nil {
			return err
		}
		s.fill(out.Header)
		return rs.Send(&pb.RangeStreamResponse{RangeResponse: out})
	}
	total := r.Limit
	if total == 0 {
		total = math.MaxInt64
	}
	r.Limit = min(initialStreamChunkLimit, total)
	var sent, headerRev int64
	for {
		resp, err := s.b.Range(r)
		if err != nil {
			return togRPCError(err)
		}
		if headerRev == 0 {
			// Pin the stream to the revision current when it began.
			headerRev = resp.Header.Revision
			if r.Revision == 0 {
				r.Revision = headerRev
			}
		}
		sent += int64(len(resp.Kvs))
		var next []byte
		if resp.More {
			next = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		}
		out := &pb.RangeResponse{Kvs: resp.Kvs}
		done := !resp.More || sent == total
		if done {
			out.Header = &pb.ResponseHeader{Revision: headerRev}
			out.More = resp.More
			out.Count = sent
			if resp.More {
				rest, err := s.b.Range(&pb.RangeRequest{Key: next, RangeEnd: r.RangeEnd, Revision: r.Revision, CountOnly: true, Serializable: true})
				if err != nil {
					return togRPCError(err)
				}
				out.Count += rest.Count
			}
			// As Range: a token outdated by a change to users or roles
			// while the chunks were read fails the stream.
			if err := s.z.recheckInfo(info); err != nil {
				return err
			}
			s.fill(out.Header)
		}
		if err := rs.Send(&pb.RangeStreamResponse{RangeResponse: out}); err != nil {
			return err
		}
		if done {
			return nil
		}
		r.Key = next
		r.Limit = min(adjustChunkLimit(r.Limit, proto.Size(resp), s.limits.MaxRequestBytes), total-sent)
	}
}

// isDefaultOrdering reports whether a Range comes back in key order without
// sorting, which is all RangeStream serves.
func isDefaultOrdering(r *pb.RangeRequest) bool {
	return r.SortOrder == pb.RangeRequest_NONE ||
		(r.SortTarget == pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_ASCEND)
}

// adjustChunkLimit doubles the next chunk's key count when the last chunk
// was under half the target size and halves it when over twice, never
// below one (a zero limit would mean "everything").
func adjustChunkLimit(last int64, lastSize, target int) int64 {
	switch {
	case lastSize < target/2:
		last *= 2
	case lastSize > target*2:
		last /= 2
	}
	return max(last, 1)
}

// Put implements etcd's Put.
func (s *KV) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := applier.CheckPutRequest(r); err != nil {
		return nil, err
	}
	resp, err := propose(ctx, s.b, &pb.InternalRaftRequest{Header: s.z.header(ctx), Put: r})
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
	resp, err := propose(ctx, s.b, &pb.InternalRaftRequest{Header: s.z.header(ctx), DeleteRange: r})
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
		if err := auth.CheckTxn(s.z.access(ctx), r, nil); err != nil {
			return nil, err
		}
		resp, err := s.b.ReadTxn(r)
		if err != nil {
			return nil, togRPCError(err)
		}
		if err := s.z.recheck(ctx); err != nil {
			return nil, err
		}
		s.fill(resp.Header)
		return resp, nil
	}
	resp, err := propose(ctx, s.b, &pb.InternalRaftRequest{Header: s.z.header(ctx), Txn: r})
	if err != nil {
		return nil, err
	}
	out := resp.(*pb.TxnResponse)
	s.fill(out.Header)
	return out, nil
}

// Compact implements etcd's Compact.
func (s *KV) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	if err := auth.CheckAdmin(s.z.access(ctx)); err != nil {
		return nil, err
	}
	resp, err := propose(ctx, s.b, &pb.InternalRaftRequest{Header: s.z.header(ctx), Compaction: r})
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

// propose replicates r and returns the state machine's response, or the
// error (raft's or the state machine's) as etcd's gRPC error.
func propose(ctx context.Context, b Backend, r *pb.InternalRaftRequest) (proto.Message, error) {
	res, err := b.Propose(ctx, r)
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
