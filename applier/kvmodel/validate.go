package kvmodel

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// The checks of etcd's gRPC layer (server/etcdserver/api/v3rpc/key.go),
// written plainly: quadratic where etcd uses an interval tree, which is
// fine for a model.

func checkRange(r *pb.RangeRequest) error {
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

func checkPut(r *pb.PutRequest) error {
	switch {
	case len(r.GetKey()) == 0:
		return rpctypes.ErrGRPCEmptyKey
	case r.GetIgnoreValue() && len(r.GetValue()) != 0:
		return rpctypes.ErrGRPCValueProvided
	case r.GetIgnoreLease() && r.GetLease() != 0:
		return rpctypes.ErrGRPCLeaseProvided
	}
	return nil
}

func checkDelete(r *pb.DeleteRangeRequest) error {
	if len(r.GetKey()) == 0 {
		return rpctypes.ErrGRPCEmptyKey
	}
	return nil
}

// CheckTxn validates a Txn as etcd's gRPC layer does: op counts and every
// op first, then put/delete overlaps in the success ops, then in the
// failure ops.
func CheckTxn(r *pb.TxnRequest, maxTxnOps int) error {
	if err := checkTxnOps(r, maxTxnOps); err != nil {
		return err
	}
	if _, _, err := overlaps(r.GetSuccess()); err != nil {
		return err
	}
	_, _, err := overlaps(r.GetFailure())
	return err
}

func checkTxnOps(r *pb.TxnRequest, maxTxnOps int) error {
	n := len(r.GetCompare())
	n = max(n, len(r.GetSuccess()), len(r.GetFailure()))
	if n > maxTxnOps {
		return rpctypes.ErrGRPCTooManyOps
	}
	for _, c := range r.GetCompare() {
		if len(c.GetKey()) == 0 {
			return rpctypes.ErrGRPCEmptyKey
		}
	}
	for _, op := range append(append([]*pb.RequestOp(nil), r.GetSuccess()...), r.GetFailure()...) {
		var err error
		switch v := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			err = checkRange(v.RequestRange)
		case *pb.RequestOp_RequestPut:
			err = checkPut(v.RequestPut)
		case *pb.RequestOp_RequestDeleteRange:
			err = checkDelete(v.RequestDeleteRange)
		case *pb.RequestOp_RequestTxn:
			err = checkTxnOps(v.RequestTxn, maxTxnOps-n)
		default:
			err = rpctypes.ErrGRPCKeyNotFound
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// del is a DeleteRange as an interval: a single key when end is empty,
// else [key, end) compared byte-wise (so a range_end of "\x00" or one not
// above key holds no key: etcd's interval tree treats them so).
type del struct{ key, end string }

func (d del) covers(k string) bool {
	if d.end == "" {
		return k == d.key
	}
	return d.key <= k && k < d.end
}

func covered(dels []del, k string) bool {
	for _, d := range dels {
		if d.covers(k) {
			return true
		}
	}
	return false
}

// overlaps returns the keys put and the ranges deleted by ops (nested txns
// included), or ErrGRPCDuplicateKey. At one level: this level's deletes are
// known first; each nested txn in turn may not put a key already put or
// deleted so far, except that its then and else branches may put the same
// key; then its deletes join; last, this level's puts may not hit any key
// put or deleted so far.
func overlaps(reqs []*pb.RequestOp) (map[string]bool, []del, error) {
	var dels []del
	for _, op := range reqs {
		if d := op.GetRequestDeleteRange(); d != nil {
			dels = append(dels, del{string(d.Key), string(d.RangeEnd)})
		}
	}
	puts := map[string]bool{}
	for _, op := range reqs {
		n := op.GetRequestTxn()
		if _, isTxn := op.GetRequest().(*pb.RequestOp_RequestTxn); !isTxn {
			continue
		}
		thenPuts, thenDels, err := overlaps(n.GetSuccess())
		if err != nil {
			return nil, nil, err
		}
		elsePuts, elseDels, err := overlaps(n.GetFailure())
		if err != nil {
			return nil, nil, err
		}
		for k := range thenPuts {
			if puts[k] || covered(dels, k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = true
		}
		for k := range elsePuts {
			if (puts[k] && !thenPuts[k]) || covered(dels, k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = true
		}
		dels = append(append(dels, thenDels...), elseDels...)
	}
	for _, op := range reqs {
		if p := op.GetRequestPut(); p != nil {
			k := string(p.Key)
			if puts[k] || covered(dels, k) {
				return nil, nil, rpctypes.ErrGRPCDuplicateKey
			}
			puts[k] = true
		}
	}
	return puts, dels, nil
}
