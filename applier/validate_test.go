package applier

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier/kvmodel"
)

func opPut(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
}

func opDel(k, end string) *pb.RequestOp {
	d := &pb.DeleteRangeRequest{Key: []byte(k)}
	if end != "" {
		d.RangeEnd = []byte(end)
	}
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: d}}
}

func opGet(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
}

func opTxn(then, els []*pb.RequestOp) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{Success: then, Failure: els}}}
}

func ops(o ...*pb.RequestOp) []*pb.RequestOp { return o }

func TestCheckTxnRequest(t *testing.T) {
	four := ops(opGet("a"), opGet("b"), opGet("c"), opGet("d"))
	for _, tc := range []struct {
		name string
		txn  *pb.TxnRequest
		max  int
		want error
	}{
		{"empty", &pb.TxnRequest{}, 4, nil},
		{"at the budget", &pb.TxnRequest{Success: four, Failure: four}, 4, nil},
		{"over the budget", &pb.TxnRequest{Success: append(four, opGet("e"))}, 4, rpctypes.ErrGRPCTooManyOps},
		{"compares count", &pb.TxnRequest{Compare: make([]*pb.Compare, 5)}, 4, rpctypes.ErrGRPCTooManyOps},
		{"compare without key", &pb.TxnRequest{Compare: []*pb.Compare{{}}}, 4, rpctypes.ErrGRPCEmptyKey},
		{"nil compare", &pb.TxnRequest{Compare: []*pb.Compare{nil}}, 4, rpctypes.ErrGRPCEmptyKey},
		{"nested txn gets what its parent leaves",
			&pb.TxnRequest{Success: ops(opGet("a"), opTxn(ops(opGet("b"), opGet("c")), nil))}, 4, nil},
		{"nested txn over what its parent leaves",
			&pb.TxnRequest{Success: ops(opGet("a"), opGet("b"), opTxn(ops(opGet("b"), opGet("c")), nil))}, 4, rpctypes.ErrGRPCTooManyOps},
		{"empty op", &pb.TxnRequest{Success: ops(&pb.RequestOp{})}, 4, rpctypes.ErrGRPCKeyNotFound},
		{"nil op", &pb.TxnRequest{Failure: ops(nil)}, 4, rpctypes.ErrGRPCKeyNotFound},
		{"nil put", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{}})}, 4, rpctypes.ErrGRPCEmptyKey},
		{"nil nested txn is an empty txn", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{}})}, 4, nil},
		{"bad op before overlaps", &pb.TxnRequest{Success: ops(opPut("a"), opPut("a")), Failure: ops(opGet(""))}, 4, rpctypes.ErrGRPCEmptyKey},
		{"bad sort", &pb.TxnRequest{Success: ops(&pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a"), SortTarget: 9}}})}, 4, rpctypes.ErrGRPCInvalidSortOption},

		{"put twice", &pb.TxnRequest{Success: ops(opPut("a"), opPut("a"))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"same key in success and failure", &pb.TxnRequest{Success: ops(opPut("a")), Failure: ops(opPut("a"))}, 8, nil},
		{"put in a deleted range", &pb.TxnRequest{Success: ops(opDel("a", "c"), opPut("b"))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"put before a deleted range", &pb.TxnRequest{Success: ops(opPut("b"), opDel("a", "c"))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"put at a range end", &pb.TxnRequest{Success: ops(opDel("a", "c"), opPut("c"))}, 8, nil},
		{"put of a deleted key", &pb.TxnRequest{Success: ops(opDel("a", ""), opPut("a"))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"put next to a deleted key", &pb.TxnRequest{Success: ops(opDel("a", ""), opPut("a\x00"))}, 8, nil},
		{"overlapping deletes", &pb.TxnRequest{Success: ops(opDel("a", "c"), opDel("b", "d"), opDel("b", ""))}, 8, nil},
		{"delete from key is not checked (etcd)", &pb.TxnRequest{Success: ops(opDel("a", "\x00"), opPut("b"))}, 8, nil},
		{"inverted delete range holds nothing", &pb.TxnRequest{Success: ops(opDel("c", "a"), opPut("b"))}, 8, nil},
		{"nested put in a deleted range", &pb.TxnRequest{Success: ops(opDel("a", "c"), opTxn(ops(opPut("b")), nil))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"deep nested put in a deleted range",
			&pb.TxnRequest{Success: ops(opDel("b", ""), opTxn(nil, ops(opTxn(ops(opPut("b")), nil))))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"put in a range a nested txn deletes", &pb.TxnRequest{Success: ops(opTxn(nil, ops(opDel("a", "c"))), opPut("b"))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"nested then and else may put the same key", &pb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), ops(opPut("a"))))}, 8, nil},
		{"nested then put and outer put", &pb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), nil), opPut("a"))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"two nested txns put the same key", &pb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), nil), opTxn(nil, ops(opPut("a"))))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"nested delete then sibling put", &pb.TxnRequest{Success: ops(opTxn(ops(opDel("a", "")), nil), opTxn(ops(opPut("a")), nil))}, 8, rpctypes.ErrGRPCDuplicateKey},
		{"nested put then sibling delete (etcd allows)", &pb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), nil), opTxn(ops(opDel("a", "")), nil))}, 8, nil},
		{"then put and else delete of one nested txn", &pb.TxnRequest{Success: ops(opTxn(ops(opPut("a")), ops(opDel("a", ""))))}, 8, nil},
		{"overlaps are per branch", &pb.TxnRequest{Success: ops(opDel("a", "z")), Failure: ops(opPut("b"))}, 8, nil},
		{"failure branch checked too", &pb.TxnRequest{Failure: ops(opPut("b"), opPut("b"))}, 8, rpctypes.ErrGRPCDuplicateKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := CheckTxnRequest(tc.txn, tc.max); got != tc.want {
				t.Errorf("CheckTxnRequest = %v, want %v", got, tc.want)
			}
			if got := kvmodel.CheckTxn(tc.txn, tc.max); got != tc.want {
				t.Errorf("kvmodel.CheckTxn = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCoverSet(t *testing.T) {
	// Many small inserts, interleaved with queries, against a plain list.
	var c coverSet
	var all []span
	for i := 0; i < 300; i++ {
		b := string(rune('a'+i%26)) + string(rune('a'+(i*7)%26))
		e := b + string(rune('a'+(i*3)%26))
		c.add([]span{{b, e}})
		all = append(all, span{b, e})
		for _, k := range []string{"a", "ab", "abc", "mm", "mz", "z", "zz", b, e} {
			want := false
			for _, s := range all {
				want = want || (s.begin <= k && k < s.end)
			}
			if got := c.covers(k); got != want {
				t.Fatalf("after %d inserts covers(%q) = %v, want %v", i+1, k, got, want)
			}
		}
	}
	if len(c.runs) > 10 {
		t.Fatalf("%d runs for 300 intervals: the size invariant does not hold", len(c.runs))
	}
}

// FuzzCheckTxnRequest checks that validation of any decodable txn never
// panics, is deterministic and agrees with the model's plain
// implementation of etcd's rules.
func FuzzCheckTxnRequest(f *testing.F) {
	g := kvmodel.NewGenerator(1, kvmodel.GenOptions{MaxTxnOps: 6, InvalidPercent: 30})
	for n := 0; n < 32; {
		if r := g.Next(10, 2); r.Txn != nil {
			b, err := proto.Marshal(r.Txn)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b, uint8(6))
			n++
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, maxOps uint8) {
		r := &pb.TxnRequest{}
		if err := proto.Unmarshal(data, r); err != nil {
			return
		}
		got := CheckTxnRequest(r, int(maxOps))
		if again := CheckTxnRequest(r, int(maxOps)); again != got {
			t.Fatalf("not deterministic: %v, then %v", got, again)
		}
		if want := kvmodel.CheckTxn(r, int(maxOps)); got != want {
			t.Fatalf("CheckTxnRequest = %v, model says %v", got, want)
		}
		_ = IsReadOnlyTxn(r)
	})
}
