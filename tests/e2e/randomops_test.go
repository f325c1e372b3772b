package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stratakv/strata/applier/kvmodel"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

// kvRequest is one request of a random sequence: exactly one field is set.
type kvRequest struct {
	Op      *pb.RequestOp         // Range, Put, DeleteRange or Txn
	Compact *pb.CompactionRequest // Compact
}

func (r kvRequest) String() string {
	if r.Compact != nil {
		return "Compact{" + prototext.MarshalOptions{}.Format(r.Compact) + "}"
	}
	return prototext.MarshalOptions{}.Format(r.Op)
}

// requestGenerator yields a random request sequence. observe is told each
// response etcd gave (nil on error), so a generator can track the store's
// revision and compaction point.
type requestGenerator interface {
	Next() kvRequest
	Observe(req kvRequest, resp proto.Message, err error)
}

// kvmodelKeys is the key space for kvmodel's generator: a 12-key subset of
// kvmodel.DefaultKeys (keeping the 0x00 and 0xFF cases). At most 12 keys
// can be in any range, so etcd's sort (Go's sort.Sort, which is an
// insertion sort below 13 elements) is stable and ties keep key order; with
// more keys etcd's order of ties is an accident of pdqsort that strata need
// not copy.
var kvmodelKeys = []string{"\x00", "\x01", "a", "a\x00", "a\x00b", "a\xff", "ab", "b", "ba", "c", "\xff", "\xff\xff"}

// kvmodelGenerator adapts applier/kvmodel's generator (the same one the
// applier's property tests use) to requestGenerator.
type kvmodelGenerator struct {
	g          *kvmodel.Generator
	rev        int64 // highest revision etcd reported
	compactRev int64 // etcd's compaction point
}

func newKVModelGenerator(seed uint64) *kvmodelGenerator {
	return &kvmodelGenerator{g: kvmodel.NewGenerator(int64(seed), kvmodel.GenOptions{Keys: kvmodelKeys}), rev: 1}
}

func (k *kvmodelGenerator) Next() kvRequest {
	r := k.g.Next(k.rev, k.compactRev)
	var req kvRequest
	switch {
	case r.Range != nil:
		req.Op = &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r.Range}}
	case r.Put != nil:
		req.Op = &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: r.Put}}
	case r.DeleteRange != nil:
		req.Op = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: r.DeleteRange}}
	case r.Txn != nil:
		avoidFromKeyDeletes(r.Txn)
		req.Op = &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: r.Txn}}
	case r.Compaction != nil:
		req.Compact = r.Compaction
	default:
		panic(fmt.Sprintf("kvmodel generated an empty request: %v", r))
	}
	return req
}

func (k *kvmodelGenerator) Observe(req kvRequest, resp proto.Message, err error) {
	k.rev, k.compactRev = observe(k.rev, k.compactRev, req, resp, err)
}

// avoidFromKeyDeletes rewrites, at every depth of a txn, a DeleteRange with
// range_end "\x00" (all keys from key) into the same range bounded just past
// every generated key. etcd v3.7.3's duplicate-key check (v3rpc/key.go
// checkIntervals builds the interval [key, "\x00"), which is empty) lets a
// txn both delete a key that way and put it, writing a tombstone and a put
// of that key at the same main revision; a later compaction at that revision
// makes etcd's next Range at it die with "range failed to find revision
// pair" (level fatal). That is the oracle's bug, not behaviour to compare.
func avoidFromKeyDeletes(t *pb.TxnRequest) {
	for _, ops := range [][]*pb.RequestOp{t.Success, t.Failure} {
		for _, op := range ops {
			switch r := op.Request.(type) {
			case *pb.RequestOp_RequestDeleteRange:
				if r.RequestDeleteRange != nil && bytes.Equal(r.RequestDeleteRange.RangeEnd, []byte{0}) {
					r.RequestDeleteRange.RangeEnd = []byte("\xff\xff\xff")
				}
			case *pb.RequestOp_RequestTxn:
				if r.RequestTxn != nil {
					avoidFromKeyDeletes(r.RequestTxn)
				}
			}
		}
	}
}

// TestRandomOpsMatchEtcd sends the same random sequence of Range, Put,
// DeleteRange, Txn (with nested txns) and Compact requests over raw
// etcdserverpb gRPC to a fresh etcd and a fresh subject, and requires equal
// responses (headers' cluster_id, member_id and raft_term zeroed) or equal
// gRPC errors (code and message) for every request; every 100 requests it
// also compares a full read of the store. It runs two generators, each on
// its own pair of servers: applier/kvmodel's (the one the applier's property
// tests use, so a sequence found here replays there) and the suite's own
// localGenerator. The seed is logged; set STRATA_E2E_SEED to replay one.
func TestRandomOpsMatchEtcd(t *testing.T) {
	b := needSubject(t)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("STRATA_E2E_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("STRATA_E2E_SEED=%q: %v", s, err)
		}
		seed = v
	}
	const n = 2000 // per generator
	t.Logf("seed %d (replay with STRATA_E2E_SEED=%d), %d requests", seed, seed, n)

	for _, g := range []struct {
		name string
		gen  requestGenerator
	}{
		{"kvmodel", newKVModelGenerator(seed)},
		{"local", newLocalGenerator(seed)},
	} {
		t.Run(g.name, func(t *testing.T) { runRandomOps(t, b, g.gen, seed, n) })
	}
}

// runRandomOps runs n requests from gen against a fresh etcd and a fresh
// subject and stops at the first difference.
func runRandomOps(t *testing.T, b *Binaries, gen requestGenerator, seed uint64, n int) {
	etcd, sub := pair(t)
	ke, ks := rawKV(t, etcd), rawKV(t, sub)
	var history []string
	transcript := newTranscript(t)
	outcomes := map[string]int{}
	defer func() { t.Logf("etcd's outcomes: %v", outcomes) }()
	for i := range n {
		req := gen.Next()
		history = append(history, req.String())
		re, ee := doKV(ke, req)
		rs, es := doKV(ks, req)
		if ee != nil && etcd.Exited() {
			t.Fatalf("seed %d, request %d: the oracle etcd died (%v): %s\n%s", seed, i, ee, req, tail(etcd.Output(), 5))
		}
		gen.Observe(req, re, ee)
		outcomes[outcome(req, re, ee)]++
		we, ws := renderKV(re, ee), renderKV(rs, es)
		transcript.add(fmt.Sprintf("%d: %s", i, req), we)
		if d := Diff("etcd", we, b.SubjectName, ws); d != "" {
			from := max(0, len(history)-6)
			t.Fatalf("seed %d, request %d: %s\n%s\nprevious requests:\n  %s", seed, i, req, d, strings.Join(history[from:len(history)-1], "\n  "))
		}
		if i%100 == 99 || i == n-1 {
			all := kvRequest{Op: &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}}}}
			re, ee := doKV(ke, all)
			rs, es := doKV(ks, all)
			if d := Diff("etcd", renderKV(re, ee), b.SubjectName, renderKV(rs, es)); d != "" {
				t.Fatalf("seed %d: after request %d the stores differ:\n%s", seed, i, d)
			}
		}
	}
}

func rawKV(t *testing.T, m *Member) pb.KVClient {
	t.Helper()
	conn, err := grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewKVClient(conn)
}

func doKV(kv pb.KVClient, req kvRequest) (proto.Message, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if req.Compact != nil {
		return kv.Compact(ctx, req.Compact)
	}
	switch r := req.Op.Request.(type) {
	case *pb.RequestOp_RequestRange:
		return kv.Range(ctx, r.RequestRange)
	case *pb.RequestOp_RequestPut:
		return kv.Put(ctx, r.RequestPut)
	case *pb.RequestOp_RequestDeleteRange:
		return kv.DeleteRange(ctx, r.RequestDeleteRange)
	case *pb.RequestOp_RequestTxn:
		return kv.Txn(ctx, r.RequestTxn)
	}
	panic(fmt.Sprintf("unknown request %T", req.Op.Request))
}

func renderKV(resp proto.Message, err error) string {
	if err != nil {
		s, _ := status.FromError(err)
		return fmt.Sprintf("error: code=%s message=%q\n", s.Code(), s.Message())
	}
	resp = proto.Clone(resp)
	NormaliseHeaders(resp)
	return ProtoText(resp)
}

// localGenerator is the suite's own small random request generator (written
// before applier/kvmodel existed; kept because its mix differs) over a key space of 8
// keys (k0..k7) and a few values, so that requests collide, compares go both
// ways and sorts have ties. With at most 8 keys in any range etcd's sort
// (Go's sort.Sort, insertion sort below 12 elements) is stable, so ties keep
// key order and the outcome is defined.
type localGenerator struct {
	r          *rand.Rand
	rev        int64 // highest revision etcd reported
	compactRev int64 // etcd's compaction point
}

func newLocalGenerator(seed uint64) *localGenerator {
	return &localGenerator{r: rand.New(rand.NewPCG(seed, seed^0x5eed)), rev: 1}
}

var (
	genKeys   = []string{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"}
	genValues = []string{"", "a", "b", "c", "aa", "zz"}
)

func (g *localGenerator) pct(p int) bool { return g.r.IntN(100) < p }

func (g *localGenerator) key() []byte {
	if g.pct(1) {
		return nil // empty key: an error
	}
	return []byte(genKeys[g.r.IntN(len(genKeys))])
}

func (g *localGenerator) value() []byte { return []byte(genValues[g.r.IntN(len(genValues))]) }

// keyRange returns a key and a range end: one key, a span, a prefix, from
// key, everything, or an empty or inverted span.
func (g *localGenerator) keyRange() (key, end []byte) {
	key = g.key()
	switch g.r.IntN(7) {
	case 0, 1:
		return key, nil
	case 2:
		return key, []byte(genKeys[g.r.IntN(len(genKeys))]) // may be inverted or empty
	case 3:
		return []byte("k"), []byte("l") // prefix k
	case 4:
		return key, []byte{0} // from key
	case 5:
		return []byte{0}, []byte{0} // all keys
	default:
		return []byte("k1"), []byte("k4")
	}
}

// revision returns a revision around the interesting points: 0 (latest),
// compacted, at the compaction point, in range, current and future.
func (g *localGenerator) revision() int64 {
	switch g.r.IntN(6) {
	case 0, 1:
		return 0
	case 2:
		return max(g.compactRev-1, 0)
	case 3:
		return g.compactRev
	case 4:
		return g.rev + int64(g.r.IntN(2))
	default:
		return g.compactRev + g.r.Int64N(g.rev-g.compactRev+1)
	}
}

func (g *localGenerator) rangeReq() *pb.RangeRequest {
	k, e := g.keyRange()
	r := &pb.RangeRequest{Key: k, RangeEnd: e}
	if g.pct(30) {
		r.Limit = g.r.Int64N(5)
	}
	if g.pct(30) {
		r.Revision = g.revision()
	}
	if g.pct(35) {
		r.SortTarget = pb.RangeRequest_SortTarget(g.r.IntN(5))
		r.SortOrder = pb.RangeRequest_SortOrder(g.r.IntN(3))
	}
	r.Serializable = g.pct(20)
	r.KeysOnly = g.pct(10)
	r.CountOnly = g.pct(10)
	if g.pct(10) {
		r.MinModRevision = g.revision()
	}
	if g.pct(10) {
		r.MaxModRevision = g.revision()
	}
	if g.pct(10) {
		r.MinCreateRevision = g.revision()
	}
	if g.pct(10) {
		r.MaxCreateRevision = g.revision()
	}
	return r
}

func (g *localGenerator) putReq() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.pct(30)}
	if g.pct(5) {
		p.IgnoreValue = true
		if g.pct(70) {
			p.Value = nil
		}
	}
	if g.pct(5) {
		p.IgnoreLease = true
	}
	if g.pct(2) {
		p.Lease = 0x7e57 // never granted: lease not found
	}
	return p
}

// deleteReq returns a DeleteRange. Inside a txn (inTxn) it never uses the
// from-key form (range_end "\x00"): etcd v3.7.3's duplicate-key check
// (v3rpc/key.go checkIntervals builds the interval [key, "\x00"), which is
// empty) lets a txn both delete a key that way and put it, writing a
// tombstone and a put of that key at the same main revision; a later
// compaction at that revision makes etcd's next Range at it die with
// "range failed to find revision pair" (level fatal). The oracle's bug is
// not something to compare against, so such txns are not generated; a
// bounded range covering the same keys is used instead.
func (g *localGenerator) deleteReq(inTxn bool) *pb.DeleteRangeRequest {
	k, e := g.keyRange()
	if inTxn && bytes.Equal(e, []byte{0}) {
		e = []byte("l") // past every generated key
	}
	return &pb.DeleteRangeRequest{Key: k, RangeEnd: e, PrevKv: g.pct(40)}
}

func (g *localGenerator) compare() *pb.Compare {
	c := &pb.Compare{Key: g.key(), Result: pb.Compare_CompareResult(g.r.IntN(4))}
	if g.pct(15) {
		_, c.RangeEnd = g.keyRange()
	}
	switch g.r.IntN(5) {
	case 0:
		c.Target = pb.Compare_VERSION
		c.TargetUnion = &pb.Compare_Version{Version: g.r.Int64N(4)}
	case 1:
		c.Target = pb.Compare_CREATE
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: g.revision()}
	case 2:
		c.Target = pb.Compare_MOD
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: g.revision()}
	case 3:
		c.Target = pb.Compare_VALUE
		c.TargetUnion = &pb.Compare_Value{Value: g.value()}
	default:
		c.Target = pb.Compare_LEASE
		c.TargetUnion = &pb.Compare_Lease{Lease: 0}
	}
	return c
}

func (g *localGenerator) ops(depth int) []*pb.RequestOp {
	ops := make([]*pb.RequestOp, g.r.IntN(4))
	for i := range ops {
		switch n := g.r.IntN(10); {
		case n < 4:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq()}}
		case n < 7:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}
		case n < 9 || depth >= 2:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteReq(true)}}
		default:
			ops[i] = &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnReq(depth + 1)}}
		}
	}
	return ops
}

func (g *localGenerator) txnReq(depth int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	for range g.r.IntN(4) {
		t.Compare = append(t.Compare, g.compare())
	}
	t.Success = g.ops(depth)
	t.Failure = g.ops(depth)
	return t
}

func (g *localGenerator) Next() kvRequest {
	switch n := g.r.IntN(100); {
	case n < 30:
		return kvRequest{Op: &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}}
	case n < 63:
		return kvRequest{Op: &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.putReq()}}}
	case n < 73:
		return kvRequest{Op: &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteReq(false)}}}
	case n < 97:
		return kvRequest{Op: &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txnReq(0)}}}
	default:
		rev := g.compactRev + g.r.Int64N(g.rev-g.compactRev+2) - 1 // from compacted to one past current
		return kvRequest{Compact: &pb.CompactionRequest{Revision: rev, Physical: g.pct(50)}}
	}
}

type headered interface{ GetHeader() *pb.ResponseHeader }

func (g *localGenerator) Observe(req kvRequest, resp proto.Message, err error) {
	g.rev, g.compactRev = observe(g.rev, g.compactRev, req, resp, err)
}

// observe advances a generator's view of etcd's revision and compaction
// point with one of etcd's responses.
func observe(rev, compactRev int64, req kvRequest, resp proto.Message, err error) (int64, int64) {
	if err != nil {
		return rev, compactRev
	}
	if h, ok := resp.(headered); ok && h.GetHeader() != nil {
		rev = max(rev, h.GetHeader().GetRevision())
	}
	if req.Compact != nil {
		compactRev = max(compactRev, req.Compact.Revision)
	}
	return rev, compactRev
}

// outcome classifies a response for the test's summary.
func outcome(req kvRequest, resp proto.Message, err error) string {
	if err != nil {
		s, _ := status.FromError(err)
		return strings.TrimPrefix(s.Message(), "etcdserver: ")
	}
	if req.Compact != nil {
		return "compact ok"
	}
	switch r := resp.(type) {
	case *pb.TxnResponse:
		return "txn succeeded=" + strconv.FormatBool(r.Succeeded)
	case *pb.RangeResponse:
		return "range ok"
	case *pb.PutResponse:
		return "put ok"
	case *pb.DeleteRangeResponse:
		return "delete ok"
	}
	return "ok"
}
