package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// callRecorder is a unary interceptor placed inside client/v3's own
// interceptors, so it sees the request on the wire and the gRPC status each
// attempt really returned (client/v3 maps errors by message, which would
// hide a wrong code).
type callRecorder struct {
	mu      sync.Mutex
	lastReq any
	lastErr error
}

func (r *callRecorder) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	r.mu.Lock()
	r.lastReq, r.lastErr = req, err
	r.mu.Unlock()
	return err
}

// take returns and forgets the last call's request and error.
func (r *callRecorder) take() (req any, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	req, err = r.lastReq, r.lastErr
	r.lastReq, r.lastErr = nil, nil
	return req, err
}

// describeReq renders a recorded request on one line, for failure reports.
func describeReq(req any) string {
	m, ok := req.(proto.Message)
	if !ok {
		return fmt.Sprintf("%v", req)
	}
	s := fmt.Sprintf("%s{%s}", m.ProtoReflect().Descriptor().Name(), prototext.MarshalOptions{}.Format(m))
	if len(s) > 600 {
		s = s[:600] + fmt.Sprintf("…(%d bytes)", len(s))
	}
	return s
}

// testClient is a client/v3 client for one side.
type testClient struct {
	*clientv3.Client
	raw *callRecorder
}

func newTestClient(t *testing.T, m *Member) *testClient {
	t.Helper()
	rec := &callRecorder{}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{m.Endpoint()},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithChainUnaryInterceptor(rec.intercept)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return &testClient{Client: cli, raw: rec}
}

// describeErr renders an error for comparison: the client/v3-facing error
// (its rpctypes identity) and the raw gRPC code and message on the wire.
func describeErr(err, raw error) string {
	if err == nil {
		return "error: <nil>\n"
	}
	var b strings.Builder
	mapped := rpctypes.Error(err)
	if ee, ok := mapped.(rpctypes.EtcdError); ok {
		fmt.Fprintf(&b, "error: rpctypes %s (code %s)\n", rpctypes.ErrorDesc(ee), ee.Code())
	} else {
		fmt.Fprintf(&b, "error: %T %q\n", err, err.Error())
	}
	if raw == nil {
		raw = err
	}
	if s, ok := status.FromError(raw); ok {
		fmt.Fprintf(&b, "wire: code=%s message=%q\n", s.Code(), s.Message())
	} else {
		fmt.Fprintf(&b, "wire: not a gRPC status: %q\n", raw.Error())
	}
	return b.String()
}

// kvStep is one call; it returns the response as an etcdserverpb message.
type kvStep struct {
	name string
	do   func(ctx context.Context, c *testClient) (proto.Message, error)
}

// describeOp names a step after what client/v3 will send.
func describeOp(op clientv3.Op) string {
	var b strings.Builder
	switch {
	case op.IsGet():
		b.WriteString("Get")
	case op.IsPut():
		b.WriteString("Put")
	case op.IsDelete():
		b.WriteString("Delete")
	}
	fmt.Fprintf(&b, " key=%q", op.KeyBytes())
	if op.RangeBytes() != nil {
		fmt.Fprintf(&b, " end=%q", op.RangeBytes())
	}
	if v := op.ValueBytes(); op.IsPut() {
		if len(v) > 16 {
			fmt.Fprintf(&b, " value=(%d bytes)", len(v))
		} else {
			fmt.Fprintf(&b, " value=%q", v)
		}
	}
	for _, f := range []struct {
		name string
		v    int64
	}{{"rev", op.Rev()}, {"limit", op.Limit()}, {"minMod", op.MinModRev()}, {"maxMod", op.MaxModRev()}, {"minCreate", op.MinCreateRev()}, {"maxCreate", op.MaxCreateRev()}} {
		if f.v != 0 {
			fmt.Fprintf(&b, " %s=%d", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    bool
	}{{"sort", op.IsSortSet()}, {"serializable", op.IsSerializable()}, {"keysOnly", op.IsKeysOnly()}, {"countOnly", op.IsCountOnly()}, {"prevKV", op.IsPrevKV()}} {
		if f.v {
			b.WriteString(" " + f.name)
		}
	}
	return b.String()
}

// with appends a note to the step's name (for options describeOp cannot see).
func (s kvStep) with(note string) kvStep {
	s.name += " " + note
	return s
}

func get(key string, opts ...clientv3.OpOption) kvStep {
	return kvStep{describeOp(clientv3.OpGet(key, opts...)), func(ctx context.Context, c *testClient) (proto.Message, error) {
		r, err := c.Get(ctx, key, opts...)
		return (*pb.RangeResponse)(r), err
	}}
}

func put(key, val string, opts ...clientv3.OpOption) kvStep {
	return kvStep{describeOp(clientv3.OpPut(key, val, opts...)), func(ctx context.Context, c *testClient) (proto.Message, error) {
		r, err := c.Put(ctx, key, val, opts...)
		return (*pb.PutResponse)(r), err
	}}
}

func del(key string, opts ...clientv3.OpOption) kvStep {
	return kvStep{describeOp(clientv3.OpDelete(key, opts...)), func(ctx context.Context, c *testClient) (proto.Message, error) {
		r, err := c.Delete(ctx, key, opts...)
		return (*pb.DeleteRangeResponse)(r), err
	}}
}

func txn(name string, cmps []clientv3.Cmp, thenOps, elseOps []clientv3.Op) kvStep {
	return kvStep{"Txn " + name, func(ctx context.Context, c *testClient) (proto.Message, error) {
		r, err := c.Txn(ctx).If(cmps...).Then(thenOps...).Else(elseOps...).Commit()
		return (*pb.TxnResponse)(r), err
	}}
}

func compact(rev int64, opts ...clientv3.CompactOption) kvStep {
	return kvStep{fmt.Sprintf("Compact(%d, %d opts)", rev, len(opts)), func(ctx context.Context, c *testClient) (proto.Message, error) {
		r, err := c.Compact(ctx, rev, opts...)
		return (*pb.CompactionResponse)(r), err
	}}
}

func leaseGrant(id, ttl int64) kvStep {
	return kvStep{fmt.Sprintf("LeaseGrant(%#x, %d)", id, ttl), func(ctx context.Context, c *testClient) (proto.Message, error) {
		return pb.NewLeaseClient(c.ActiveConnection()).LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: ttl})
	}}
}

func leaseRevoke(id int64) kvStep {
	return kvStep{fmt.Sprintf("LeaseRevoke(%#x)", id), func(ctx context.Context, c *testClient) (proto.Message, error) {
		return pb.NewLeaseClient(c.ActiveConnection()).LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
	}}
}

// clientScript is run against both servers, which use the default limits
// (--max-txn-ops=128, --max-request-bytes=1.5 MiB). Revisions start at 1.
func clientScript() []kvStep {
	var (
		cmp  = clientv3.Compare
		val  = clientv3.Value
		ver  = clientv3.Version
		crev = clientv3.CreateRevision
		mrev = clientv3.ModRevision
		lval = clientv3.LeaseValue
		opG  = clientv3.OpGet
		opP  = clientv3.OpPut
		opD  = clientv3.OpDelete
		opT  = clientv3.OpTxn
	)
	const lease = 0x1234
	many := make([]clientv3.Op, 129)
	for i := range many {
		many[i] = opP(fmt.Sprintf("many%03d", i), "v")
	}
	var steps []kvStep
	add := func(s ...kvStep) { steps = append(steps, s...) }

	add(
		get("foo"),
		get("", clientv3.WithFromKey()),
		put("foo", "bar"),                         // 2
		put("foo", "bar2", clientv3.WithPrevKV()), // 3
		put("foo", "", clientv3.WithIgnoreValue(), clientv3.WithPrevKV()).with("ignoreValue"), // 4
		put("foo", "x", clientv3.WithIgnoreValue()).with("ignoreValue"),
		put("missing", "", clientv3.WithIgnoreValue()).with("ignoreValue"),
		put("missing", "v", clientv3.WithIgnoreLease()).with("ignoreLease"),
		put("foo", "v", clientv3.WithIgnoreLease(), clientv3.WithLease(5)).with("ignoreLease lease=5"),
		put("foo", "bar3", clientv3.WithIgnoreLease()).with("ignoreLease"), // 5
		put("", "v"),
		put("k", "v", clientv3.WithLease(lease)).with("lease=0x1234"),
		put("\x00", "nul"),                  // 6
		put("a1", "5"),                      // 7
		put("a2", "3"),                      // 8
		put("a3", "9"),                      // 9
		put("a4", "1"),                      // 10
		put("a5", "3"),                      // 11
		put("a3", "10"),                     // 12
		put("b", "x"),                       // 13
		put("\xff\xfe", "high"),             // 14
		put("c", "", clientv3.WithPrevKV()), // 15
	)
	// Range.
	add(
		get("foo"),
		get("a", clientv3.WithPrefix()),
		get("a2", clientv3.WithRange("a4")),
		get("a2", clientv3.WithRange("a2")),
		get("a4", clientv3.WithRange("a2")),
		get("b", clientv3.WithFromKey()),
		get("\x00", clientv3.WithFromKey()),
		get("\xff", clientv3.WithPrefix()),
		get("a", clientv3.WithPrefix(), clientv3.WithLimit(2)),
		get("a", clientv3.WithPrefix(), clientv3.WithLimit(5)),
		get("a", clientv3.WithPrefix(), clientv3.WithLimit(-1)),
		get("a", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		get("a", clientv3.WithPrefix(), clientv3.WithCountOnly()),
		get("a", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithLimit(1)),
		get("a", clientv3.WithPrefix(), clientv3.WithSerializable()),
		get("a", clientv3.WithPrefix(), clientv3.WithRev(9)),
		get("a", clientv3.WithPrefix(), clientv3.WithRev(1)),
		get("a", clientv3.WithPrefix(), clientv3.WithRev(15)),
		get("a", clientv3.WithPrefix(), clientv3.WithRev(16)),
		get("a", clientv3.WithPrefix(), clientv3.WithRev(-3)),
		get("a", clientv3.WithPrefix(), clientv3.WithMinModRev(9), clientv3.WithMaxModRev(11)),
		get("a", clientv3.WithPrefix(), clientv3.WithMinCreateRev(8), clientv3.WithMaxCreateRev(9)),
		get("a", clientv3.WithPrefix(), clientv3.WithMinModRev(11), clientv3.WithLimit(1)),
		get("", clientv3.WithPrefix()),
		get(""),
		get("a", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortTarget(99), clientv3.SortAscend)).with("target=99"),
		get("a", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortOrder(7))).with("order=7"),
	)
	for _, target := range []clientv3.SortTarget{clientv3.SortByKey, clientv3.SortByVersion, clientv3.SortByCreateRevision, clientv3.SortByModRevision, clientv3.SortByValue} {
		for _, order := range []clientv3.SortOrder{clientv3.SortNone, clientv3.SortAscend, clientv3.SortDescend} {
			note := fmt.Sprintf("by %v %v", pb.RangeRequest_SortTarget(target), pb.RangeRequest_SortOrder(order))
			add(get("a", clientv3.WithPrefix(), clientv3.WithSort(target, order)).with(note))
			add(get("a", clientv3.WithPrefix(), clientv3.WithSort(target, order), clientv3.WithLimit(3)).with(note))
		}
	}
	add(
		get("a", clientv3.WithFirstCreate()...).with("WithFirstCreate"),
		get("a", append(clientv3.WithLastCreate(), clientv3.WithPrefix(), clientv3.WithMaxCreateRev(9))...).with("WithLastCreate"),
		get("a", append(clientv3.WithLastRev(), clientv3.WithPrefix())...).with("WithLastRev"),
		get("a", append(clientv3.WithFirstKey(), clientv3.WithPrefix())...).with("WithFirstKey"),
		get("a", append(clientv3.WithLastKey(), clientv3.WithPrefix())...).with("WithLastKey"),
	)
	// Delete.
	add(
		del("nokey"),
		del("a1", clientv3.WithPrevKV()), // 16
		del("a", clientv3.WithPrefix(), clientv3.WithPrevKV()),     // 17
		del("b", clientv3.WithRange("c\x00")),                      // 18
		del("\xff", clientv3.WithFromKey(), clientv3.WithPrevKV()), // 19
		del(""),
		get("", clientv3.WithFromKey()),
	)
	// Txn.
	add(
		txn("empty", nil, nil, nil),
		txn("value eq", []clientv3.Cmp{cmp(val("foo"), "=", "bar3")},
			[]clientv3.Op{opP("t1", "1"), opG("foo")}, []clientv3.Op{opP("t2", "2")}), // 20
		txn("value ne", []clientv3.Cmp{cmp(val("foo"), "!=", "bar3")},
			[]clientv3.Op{opP("t1", "x")}, []clientv3.Op{opP("t2", "2", clientv3.WithPrevKV()), opG("t", clientv3.WithPrefix())}), // 21
		txn("missing key compares", []clientv3.Cmp{
			cmp(ver("nokey"), "=", 0), cmp(crev("nokey"), "=", 0), cmp(mrev("nokey"), "<", 1), cmp(lval("nokey"), "=", 0),
		}, []clientv3.Op{opP("m1", "1")}, []clientv3.Op{opP("m2", "2")}), // 22
		txn("value on missing key", []clientv3.Cmp{cmp(val("nokey"), "=", "")},
			[]clientv3.Op{opP("m3", "3")}, []clientv3.Op{opP("m4", "4")}), // 23
		txn("value ne on missing key", []clientv3.Cmp{cmp(val("nokey"), "!=", "x")},
			[]clientv3.Op{opP("m5", "5")}, []clientv3.Op{opP("m6", "6")}), // 24
		txn("value gt/lt", []clientv3.Cmp{cmp(val("foo"), ">", "bar"), cmp(val("foo"), "<", "bar4")},
			[]clientv3.Op{opG("m", clientv3.WithPrefix(), clientv3.WithKeysOnly())}, nil),
		txn("range compare prefix", []clientv3.Cmp{cmp(ver("m"), ">", 0).WithPrefix()},
			[]clientv3.Op{opP("r1", "1")}, []clientv3.Op{opP("r2", "2")}), // 25
		txn("range compare all hold", []clientv3.Cmp{cmp(mrev("m1"), "<", 100).WithRange("m9")},
			[]clientv3.Op{opP("r3", "3")}, []clientv3.Op{opP("r4", "4")}), // 26
		txn("range compare on empty range", []clientv3.Cmp{cmp(ver("zz"), "=", 0).WithPrefix()},
			[]clientv3.Op{opP("r5", "5")}, []clientv3.Op{opP("r6", "6")}), // 27
		txn("range compare from key", []clientv3.Cmp{cmp(crev("r"), ">", 20).WithRange("\x00")},
			[]clientv3.Op{opG("r", clientv3.WithPrefix())}, []clientv3.Op{opG("r", clientv3.WithPrefix(), clientv3.WithCountOnly())}),
		txn("nested", []clientv3.Cmp{cmp(ver("foo"), ">", 0)},
			[]clientv3.Op{
				opT([]clientv3.Cmp{cmp(val("t1"), "=", "1")},
					[]clientv3.Op{opP("n1", "a"), opD("m", clientv3.WithPrefix(), clientv3.WithPrevKV())},
					[]clientv3.Op{opP("n1", "b")}),
				opG("n", clientv3.WithPrefix()),
			}, nil), // 28
		txn("nested else with overlapping puts in both branches", nil,
			[]clientv3.Op{opT([]clientv3.Cmp{cmp(val("t1"), "=", "no")},
				[]clientv3.Op{opP("n2", "a")},
				[]clientv3.Op{opP("n2", "b"), opT(nil, []clientv3.Op{opP("n3", "c")}, nil)})}, nil), // 29
		txn("duplicate put", nil, []clientv3.Op{opP("d", "1"), opP("d", "2")}, nil),
		txn("put inside deleted range", nil, []clientv3.Op{opD("d", clientv3.WithPrefix()), opP("d1", "1")}, nil),
		txn("duplicate across nesting", nil, []clientv3.Op{opP("d", "1"), opT(nil, []clientv3.Op{opP("d", "2")}, nil)}, nil),
		txn("overlapping deletes", nil, []clientv3.Op{opD("n", clientv3.WithPrefix()), opD("n1")}, nil), // 30
		txn("delete then get", nil, []clientv3.Op{opD("t1"), opG("t1")}, nil),                           // 31
		txn("put then get same key", nil, []clientv3.Op{opP("t3", "v"), opG("t3")}, nil),                // 32
		txn("too many ops", nil, many, nil),
		txn("too many ops in else", nil, nil, many),
		txn("empty key", nil, []clientv3.Op{opP("", "v")}, nil),
		txn("empty key in compare", []clientv3.Cmp{cmp(ver(""), "=", 0)}, nil, nil),
		txn("get future rev", nil, []clientv3.Op{opG("foo", clientv3.WithRev(1000))}, nil),
		txn("lease not found", nil, []clientv3.Op{opP("l", "v", clientv3.WithLease(lease))}, nil),
		txn("ignore value on missing key", nil, []clientv3.Op{opP("missing", "", clientv3.WithIgnoreValue())}, nil),
		get("", clientv3.WithFromKey()),
	)
	// Request size: the default limit is 1.5 MiB.
	add(
		put("big", strings.Repeat("b", 1572864)),
		put("big", strings.Repeat("b", 1<<20)), // 33
		get("big", clientv3.WithKeysOnly()),
		del("big"), // 34
	)
	// Compaction.
	add(
		compact(5),
		compact(5),
		compact(4),
		compact(1000),
		compact(0),
		get("foo", clientv3.WithRev(4)),
		get("foo", clientv3.WithRev(5)),
		txn("get compacted rev", nil, []clientv3.Op{opG("foo", clientv3.WithRev(3))}, nil),
		compact(10, clientv3.WithCompactPhysical()).with("physical"),
		get("", clientv3.WithFromKey(), clientv3.WithRev(10)),
		get("", clientv3.WithFromKey(), clientv3.WithRev(9)),
		put("after", "compaction"), // 35
		compact(35),
		get("", clientv3.WithFromKey(), clientv3.WithRev(35), clientv3.WithKeysOnly()),
	)
	return steps
}

// clientLeaseScript extends clientScript with lease steps, with a
// client-chosen ID so that both sides agree.
func clientLeaseScript() []kvStep {
	const lease = 0x1234
	var (
		cmp  = clientv3.Compare
		lval = clientv3.LeaseValue
		opG  = clientv3.OpGet
	)
	steps := clientScript()
	add := func(s ...kvStep) { steps = append(steps, s...) }
	add(
		leaseGrant(lease, 600),
		leaseGrant(lease, 600),
		put("l1", "v", clientv3.WithLease(lease)).with("lease=0x1234"), // 36
		put("l2", "v", clientv3.WithLease(lease)).with("lease=0x1234"), // 37
		get("l", clientv3.WithPrefix()),
		put("l1", "w", clientv3.WithIgnoreLease()).with("ignoreLease"), // 38
		txn("lease compare", []clientv3.Cmp{cmp(lval("l1"), "=", lease)}, []clientv3.Op{opG("l1")}, nil),
		put("l2", "w"), // 39: drops the lease
		get("l", clientv3.WithPrefix()),
		leaseRevoke(lease), // 40: deletes l1
		leaseRevoke(lease),
		get("l", clientv3.WithPrefix()),
		get("", clientv3.WithFromKey(), clientv3.WithKeysOnly()),
	)
	return steps
}

// TestClientV3MatchesEtcd runs clientScript through go.etcd.io/etcd/client/v3
// against a fresh etcd and a fresh subject. Responses must be proto.Equal
// after zeroing cluster_id, member_id and raft_term in every header; errors
// must map to the same rpctypes error and carry the same gRPC code and
// message on the wire.
func TestClientV3MatchesEtcd(t *testing.T) {
	runClientScript(t, clientScript())
}

// TestClientV3LeasesMatchEtcd is clientScript plus leases: grant (and a
// duplicate grant), puts with the lease, ignore_lease, a lease compare,
// revoke (and a second revoke), compared with etcd.
func TestClientV3LeasesMatchEtcd(t *testing.T) {
	needSubject(t)
	runClientScript(t, clientLeaseScript())
}

func runClientScript(t *testing.T, steps []kvStep) {
	b := needSubject(t)
	etcd, sub := pair(t)
	ce, cs := newTestClient(t, etcd), newTestClient(t, sub)
	const maxMismatches = 15
	mismatches := 0
	transcript := newTranscript(t)
	for i, st := range steps {
		we, req := runKVStep(ce, st)
		ws, _ := runKVStep(cs, st)
		transcript.add(st.name, we)
		if d := Diff("etcd", we, b.SubjectName, ws); d != "" {
			mismatches++
			t.Errorf("step %d: %s\nrequest: %s\n%s", i, st.name, describeReq(req), d)
			if mismatches >= maxMismatches {
				t.Fatalf("stopping after %d mismatching steps (of %d)", mismatches, len(steps))
			}
		}
	}
	t.Logf("%d steps, %d mismatching", len(steps), mismatches)
}

// runKVStep runs st and renders its normalised outcome; it also returns the
// request that went on the wire.
func runKVStep(c *testClient, st kvStep) (string, any) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.raw.take()
	resp, err := st.do(ctx, c)
	req, raw := c.raw.take()
	if err != nil {
		return describeErr(err, raw), req
	}
	resp = proto.Clone(resp)
	NormaliseHeaders(resp)
	return ProtoText(resp), req
}
