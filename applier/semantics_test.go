package applier_test

import (
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/applier/kvmodel"
)

// step is one request of a script and the answer etcd v3.7 gives.
type step struct {
	req  string // an InternalRaftRequest in prototext
	resp string // the response in prototext
	err  error
	// etcdPanics marks a request etcd v3.7 panics on; resp and err are
	// then strata's answer (see checkDeletedPuts).
	etcdPanics bool
}

// etcdSemantics spells out etcd's KV behaviour where it is easy to get
// wrong; each step notes the rule it shows. Lease 7 exists, 8 does not.
var etcdSemantics = []step{
	// A fresh store is at revision 1 and was never compacted (-1), so
	// compacting to 0 succeeds once.
	{req: `range:{key:"a"}`, resp: `header:{revision:1}`},
	{req: `compaction:{revision:0}`, resp: `header:{revision:1}`},
	{req: `compaction:{revision:0}`, err: rpctypes.ErrGRPCCompacted},

	{req: `put:{key:"a" value:"1"}`, resp: `header:{revision:2}`},
	{req: `put:{key:"a" value:"2" lease:7 prev_kv:true}`,
		resp: `header:{revision:3} prev_kv:{key:"a" create_revision:2 mod_revision:2 version:1 value:"1"}`},
	// Deleting nothing does not move the revision.
	{req: `delete_range:{key:"zz" prev_kv:true}`, resp: `header:{revision:3}`},
	// keys_only comes from etcd's index: no lease either, unless the sort
	// needs values.
	{req: `range:{key:"a" keys_only:true}`,
		resp: `header:{revision:3} kvs:{key:"a" create_revision:2 mod_revision:3 version:2} count:1`},
	{req: `range:{key:"a" keys_only:true sort_target:VALUE sort_order:DESCEND}`,
		resp: `header:{revision:3} kvs:{key:"a" create_revision:2 mod_revision:3 version:2 lease:7} count:1`},

	{req: `put:{key:"b" value:"1"}`, resp: `header:{revision:4}`},
	{req: `put:{key:"c" value:"0"}`, resp: `header:{revision:5}`},
	// sort_order NONE with another target sorts ascending, but only the
	// first limit+1 keys: c (the smallest value) is not among them.
	{req: `range:{key:"a" range_end:"d" limit:1 sort_target:VALUE}`,
		resp: `header:{revision:5} kvs:{key:"b" create_revision:4 mod_revision:4 version:1 value:"1"} more:true count:3`},
	{req: `range:{key:"a" range_end:"d" limit:1 sort_target:VALUE sort_order:ASCEND}`,
		resp: `header:{revision:5} kvs:{key:"c" create_revision:5 mod_revision:5 version:1 value:"0"} more:true count:3`},
	// count is the whole range at the revision: limit and filters do not
	// change it.
	{req: `range:{key:"a" range_end:"\x00" limit:1 min_mod_revision:5}`,
		resp: `header:{revision:5} kvs:{key:"c" create_revision:5 mod_revision:5 version:1 value:"0"} count:3`},
	// An old revision reads old values; the header has the current one.
	{req: `range:{key:"a" revision:2}`,
		resp: `header:{revision:5} kvs:{key:"a" create_revision:2 mod_revision:2 version:1 value:"1"} count:1`},

	// All compares, nested ones too, see the state before the txn; ranges
	// see the txn's earlier writes unless they ask for an older revision;
	// nested txn responses have an empty header.
	{req: `txn:{success:{request_put:{key:"x" value:"1"}}
	            success:{request_txn:{compare:{key:"x" target:VERSION result:EQUAL version:0}
	                                  success:{request_put:{key:"y"}} failure:{request_put:{key:"z"}}}}
	            success:{request_range:{key:"x"}}
	            success:{request_range:{key:"x" revision:5}}}`,
		resp: `header:{revision:6} succeeded:true
		       responses:{response_put:{header:{revision:6}}}
		       responses:{response_txn:{header:{} succeeded:true responses:{response_put:{header:{revision:6}}}}}
		       responses:{response_range:{header:{revision:6} kvs:{key:"x" create_revision:6 mod_revision:6 version:1 value:"1"} count:1}}
		       responses:{response_range:{header:{revision:6}}}`},
	// A put in a nested txn and a delete in a later sibling pass the
	// overlap check; both happen at the same revision.
	{req: `txn:{success:{request_txn:{success:{request_put:{key:"w"}}}}
	            success:{request_txn:{success:{request_delete_range:{key:"w"}}}}}`,
		resp: `header:{revision:7} succeeded:true
		       responses:{response_txn:{header:{} succeeded:true responses:{response_put:{header:{revision:7}}}}}
		       responses:{response_txn:{header:{} succeeded:true responses:{response_delete_range:{header:{revision:7} deleted:1}}}}`},
	{req: `range:{key:"w" revision:7}`, resp: `header:{revision:7}`},
	// Inside a txn a DeleteRange that deletes nothing answers the txn's
	// revision so far.
	{req: `txn:{success:{request_delete_range:{key:"nope"}} success:{request_put:{key:"a" value:"3"}}}`,
		resp: `header:{revision:8} succeeded:true
		       responses:{response_delete_range:{header:{revision:7}}}
		       responses:{response_put:{header:{revision:8}}}`},

	{req: `compaction:{revision:3}`, resp: `header:{revision:8}`},
	{req: `compaction:{revision:9}`, err: rpctypes.ErrGRPCFutureRev},
	{req: `range:{key:"a" revision:2}`, err: rpctypes.ErrGRPCCompacted},
	// The compacted revision itself is readable.
	{req: `range:{key:"a" revision:3}`,
		resp: `header:{revision:8} kvs:{key:"a" create_revision:2 mod_revision:3 version:2 value:"2" lease:7} count:1`},
	// A negative revision is "latest" for a Range, but a txn checks it
	// against the compacted revision first.
	{req: `range:{key:"a" revision:-1 count_only:true}`, resp: `header:{revision:8} count:1`},
	{req: `txn:{success:{request_range:{key:"a" revision:-1}}}`, err: rpctypes.ErrGRPCCompacted},
	{req: `txn:{success:{request_range:{key:"a" revision:9}}}`, err: rpctypes.ErrGRPCFutureRev},

	// Put's checks: the lease first, then ignore_* needs the key.
	{req: `put:{key:"nokey" ignore_value:true lease:8}`, err: rpctypes.ErrGRPCLeaseNotFound},
	{req: `put:{key:"nokey" ignore_value:true}`, err: rpctypes.ErrGRPCKeyNotFound},
	{req: `put:{key:"a" ignore_value:true ignore_lease:true prev_kv:true}`,
		resp: `header:{revision:9} prev_kv:{key:"a" create_revision:2 mod_revision:8 version:3 value:"3"}`},
	// A txn's checks run on the branch taken, before any write.
	{req: `txn:{success:{request_put:{key:"q"}} success:{request_put:{key:"nokey" ignore_lease:true}}}`,
		err: rpctypes.ErrGRPCKeyNotFound},
	{req: `txn:{compare:{key:"a" target:VALUE result:EQUAL value:"3"}
	            success:{request_range:{key:"q" count_only:true}} failure:{request_put:{key:"nokey" ignore_lease:true}}}`,
		resp: `header:{revision:9} succeeded:true responses:{response_range:{header:{revision:9}}}`},

	// A put with ignore_value after a delete of its key in the same txn:
	// etcd's overlap check skips the "\x00" range end, and etcd panics.
	{req: `txn:{success:{request_delete_range:{key:"b" range_end:"\x00"}} success:{request_put:{key:"c" ignore_value:true}}}`,
		err: rpctypes.ErrGRPCKeyNotFound, etcdPanics: true},
	{req: `txn:{success:{request_txn:{success:{request_delete_range:{key:"c" range_end:"\x00"}}}} success:{request_txn:{success:{request_put:{key:"c" ignore_lease:true}}}}}`,
		err: rpctypes.ErrGRPCKeyNotFound, etcdPanics: true},
	// A VALUE compare on a missing key is false; other targets compare
	// against zero.
	{req: `txn:{compare:{key:"nokey" target:VALUE result:NOT_EQUAL value:"x"}}`, resp: `header:{revision:9}`},
	{req: `txn:{compare:{key:"nokey" target:VERSION result:EQUAL version:0}}`, resp: `header:{revision:9} succeeded:true`},
	// A compare over a range must hold for every key in it.
	{req: `txn:{compare:{key:"a" range_end:"d" target:MOD result:GREATER mod_revision:3}}`, resp: `header:{revision:9} succeeded:true`},
	{req: `txn:{compare:{key:"a" range_end:"d" target:MOD result:GREATER mod_revision:4}}`, resp: `header:{revision:9}`},
	{req: `txn:{compare:{key:"a" range_end:"\x00" target:LEASE result:EQUAL lease:0}}`, resp: `header:{revision:9} succeeded:true`},
}

// TestEtcdSemantics runs etcdSemantics against the applier and the model.
func TestEtcdSemantics(t *testing.T) {
	leases := func(id int64) bool { return id == 7 }
	m := kvmodel.New()
	m.LeaseExists = leases
	eng, err := applier.OpenTestPebble(vfs.NewMem(), "db")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var got applier.Result
	a, err := applier.New(applier.Config{
		Engine:      eng,
		LeaseExists: leases,
		Notify:      func(_ uint64, res applier.Result) { got = res },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if rev, compacted := a.Rev(); rev != 1 || compacted != -1 {
		t.Fatalf("fresh store at revision %d compacted %d, want 1 and -1", rev, compacted)
	}

	for i, s := range etcdSemantics {
		req := &pb.InternalRaftRequest{}
		if err := prototext.Unmarshal([]byte(s.req), req); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		var want proto.Message
		switch {
		case req.Range != nil:
			want = &pb.RangeResponse{}
		case req.Put != nil:
			want = &pb.PutResponse{}
		case req.DeleteRange != nil:
			want = &pb.DeleteRangeResponse{}
		case req.Txn != nil:
			want = &pb.TxnResponse{}
		case req.Compaction != nil:
			want = &pb.CompactionResponse{}
		}
		if err := prototext.Unmarshal([]byte(s.resp), want); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if s.err != nil {
			want = nil
		}

		mresp, merr := m.Apply(req)
		check(t, i, "model", s, want, mresp, merr)

		var resp proto.Message
		switch {
		case req.Range != nil:
			resp, err = a.Range(req.Range)
		case req.Txn != nil && applier.IsReadOnlyTxn(req.Txn):
			resp, err = a.ReadTxn(req.Txn)
		default:
			req.ID = uint64(i)
			data, merr := proto.Marshal(req)
			if merr != nil {
				t.Fatal(merr)
			}
			idx := a.Applied().Index + 1
			if aerr := a.Apply([]*raftpb.Entry{{
				Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(idx), Term: proto.Uint64(1),
				Data: applier.EncodeEntry(nil, [][]byte{data}),
			}}); aerr != nil {
				t.Fatalf("step %d: Apply: %v", i, aerr)
			}
			resp, err = got.Resp, got.Err
		}
		check(t, i, "applier", s, want, resp, err)
	}
}

func check(t *testing.T, i int, who string, s step, want, got proto.Message, err error) {
	t.Helper()
	if s.err != nil || err != nil {
		if err != s.err {
			t.Fatalf("step %d %s (%s): error %v, want %v", i, who, s.req, err, s.err)
		}
		return
	}
	if !proto.Equal(want, got) {
		t.Fatalf("step %d %s (%s):\ngot  %v\nwant %v", i, who, s.req, got, want)
	}
}
