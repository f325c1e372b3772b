package applier

import (
	"bytes"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Request validation as etcd does it in its gRPC layer, before a request is
// proposed. The API layer calls these; Apply calls them again (without the
// op-count limit, which is the API layer's configuration) so that a request
// that did not come through the API layer is rejected deterministically
// instead of reaching code that assumes it is well formed.
//
// A nil sub-request (a RequestOp whose oneof holds a nil message, or a nil
// op) is treated as the empty message it would decode to on the wire, so
// validation never panics.

// CheckRangeRequest validates a Range: a key, and known sort enums.
func CheckRangeRequest(r *pb.RangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if _, ok := pb.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	if _, ok := pb.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return rpctypes.ErrGRPCInvalidSortOption
	}
	return nil
}

// CheckPutRequest validates a Put: a key, and no value (lease) together
// with ignore_value (ignore_lease).
func CheckPutRequest(r *pb.PutRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return rpctypes.ErrGRPCValueProvided
	}
	if r.GetIgnoreLease() && r.GetLease() != 0 {
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

// CheckDeleteRangeRequest validates a DeleteRange: a key.
func CheckDeleteRangeRequest(r *pb.DeleteRangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

// CheckTxnRequest validates a Txn as etcd's gRPC layer does, in etcd's
// order: first the op budget and every op, recursively; then the
// put/delete overlap rules of the success ops, then of the failure ops.
//
// Op budget: max(len(compare), len(success), len(failure)) must not exceed
// maxTxnOps; a nested txn is checked against what its parent leaves
// (maxTxnOps minus the parent's count). An empty RequestOp is
// ErrGRPCKeyNotFound.
//
// Overlaps (ErrGRPCDuplicateKey), per branch and at every nesting level:
//   - a key may be put only once, except that the success and failure
//     branches of one nested txn may put the same key (only one runs);
//   - a put may not fall inside a delete of the same level, of a nested txn
//     (any depth) of this level, or of a nested txn earlier in this level.
//
// Deletes may overlap each other, and a put in a nested txn may precede a
// delete of the same key in a later sibling nested txn. A delete's range is
// [key, range_end) compared byte-wise; a range_end of "\x00" ("every key
// >= key") is, as in etcd, an empty interval for this check.
func CheckTxnRequest(r *pb.TxnRequest, maxTxnOps int) error {
	if err := checkTxnOps(r, maxTxnOps); err != nil {
		return err
	}
	if _, _, err := checkOverlaps(r.GetSuccess()); err != nil {
		return err
	}
	_, _, err := checkOverlaps(r.GetFailure())
	return err
}

func checkTxnOps(r *pb.TxnRequest, maxTxnOps int) error {
	opc := max(len(r.GetCompare()), len(r.GetSuccess()), len(r.GetFailure()))
	if opc > maxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.GetCompare() {
		if len(c.GetKey()) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, ops := range [2][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			if err := checkRequestOp(op, maxTxnOps-opc); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkRequestOp(op *pb.RequestOp, maxTxnOps int) error {
	switch tv := op.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return CheckRangeRequest(tv.RequestRange)
	case *pb.RequestOp_RequestPut:
		return CheckPutRequest(tv.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return CheckDeleteRangeRequest(tv.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return checkTxnOps(tv.RequestTxn, maxTxnOps)
	default:
		return rpctypes.ErrGRPCKeyNotFound
	}
}

// checkOverlaps checks the ops of one branch and returns the keys they put
// and the ranges they delete, nested txns included.
// REQUIRES: checkTxnOps passed (keys are not empty).
func checkOverlaps(ops []*pb.RequestOp) (map[string]struct{}, *coverSet, error) {
	dels := &coverSet{}
	var level []span
	for _, op := range ops {
		if d := op.GetRequestDeleteRange(); d != nil {
			if sp, ok := deleteSpan(d); ok {
				level = append(level, sp)
			}
		}
	}
	dels.add(level)

	puts := make(map[string]struct{})
	for _, op := range ops {
		tv, ok := op.GetRequest().(*pb.RequestOp_RequestTxn)
		if !ok {
			continue
		}
		putsThen, delsThen, err := checkOverlaps(tv.RequestTxn.GetSuccess())
		if err != nil {
			return nil, nil, err
		}
		putsElse, delsElse, err := checkOverlaps(tv.RequestTxn.GetFailure())
		if err != nil {
			return nil, nil, err
		}
		for k := range putsThen {
			if _, dup := puts[k]; dup || dels.covers(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		for k := range putsElse {
			if _, dup := puts[k]; dup {
				if _, inThen := putsThen[k]; !inThen {
					return nil, nil, rpctypes.ErrGRPCDuplicateKey
				}
			}
			if dels.covers(k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = struct{}{}
		}
		dels.merge(delsThen)
		dels.merge(delsElse)
	}

	for _, op := range ops {
		p := op.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.Key)
		if _, dup := puts[k]; dup || dels.covers(k) {
			return nil, nil, rpctypes.ErrGRPCDuplicateKey
		}
		puts[k] = struct{}{}
	}
	return puts, dels, nil
}

// deleteSpan is the interval a DeleteRange occupies for the overlap check:
// the point key, or [key, range_end) when that is not empty.
func deleteSpan(d *pb.DeleteRangeRequest) (span, bool) {
	if len(d.RangeEnd) == 0 {
		return span{begin: string(d.Key), end: string(d.Key) + "\x00"}, true
	}
	if bytes.Compare(d.Key, d.RangeEnd) >= 0 {
		return span{}, false
	}
	return span{begin: string(d.Key), end: string(d.RangeEnd)}, true
}

// span is the half-open interval [begin, end) of keys.
type span struct{ begin, end string }

// coverSet is a set of key intervals answering "is k inside any of them".
// It keeps runs of sorted, disjoint intervals whose lengths at least halve
// from first to last, like a binary counter: adding n intervals costs
// O(n log^2 n) in total and a query O(log^2 n), so hostile txns with many
// nested deletes cannot make validation quadratic.
type coverSet struct {
	runs [][]span
}

// add inserts intervals (in any order) into the set.
func (c *coverSet) add(spans []span) {
	if len(spans) == 0 {
		return
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].begin < spans[j].begin })
	c.push(coalesce(spans))
}

// merge inserts every interval of o into c. o must not be used afterwards.
func (c *coverSet) merge(o *coverSet) {
	for _, r := range o.runs {
		c.push(r)
	}
}

// push adds a sorted, disjoint run and restores the size invariant.
func (c *coverSet) push(r []span) {
	c.runs = append(c.runs, r)
	for n := len(c.runs); n >= 2 && len(c.runs[n-2]) <= 2*len(c.runs[n-1]); n = len(c.runs) {
		c.runs[n-2] = mergeRuns(c.runs[n-2], c.runs[n-1])
		c.runs = c.runs[:n-1]
	}
}

func (c *coverSet) covers(k string) bool {
	for _, r := range c.runs {
		// The last interval beginning at or before k is the only candidate.
		i := sort.Search(len(r), func(i int) bool { return r[i].begin > k })
		if i > 0 && k < r[i-1].end {
			return true
		}
	}
	return false
}

// mergeRuns merges two sorted, disjoint runs into one.
func mergeRuns(a, b []span) []span {
	out := make([]span, 0, len(a)+len(b))
	for len(a) > 0 || len(b) > 0 {
		if len(b) == 0 || (len(a) > 0 && a[0].begin <= b[0].begin) {
			out, a = append(out, a[0]), a[1:]
		} else {
			out, b = append(out, b[0]), b[1:]
		}
	}
	return coalesce(out)
}

// coalesce merges overlapping or touching intervals of a run sorted by
// begin, in place.
func coalesce(r []span) []span {
	out := r[:0]
	for _, s := range r {
		if n := len(out); n > 0 && s.begin <= out[n-1].end {
			if s.end > out[n-1].end {
				out[n-1].end = s.end
			}
			continue
		}
		out = append(out, s)
	}
	return out
}

// IsReadOnlyTxn reports whether every op of both branches is a Range (a
// nested txn makes a txn read-write, as in etcd). Read-only txns are
// evaluated on a snapshot (ReadTxn) and never proposed.
func IsReadOnlyTxn(r *pb.TxnRequest) bool {
	for _, ops := range [2][]*pb.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range ops {
			if op.GetRequestRange() == nil {
				return false
			}
		}
	}
	return true
}
