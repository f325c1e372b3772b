package kvmodel

import (
	"math"
	"math/rand/v2"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// DefaultKeys is a small key space in which requests collide often. It
// holds keys that are prefixes of others, keys with 0x00 and 0xFF bytes
// (which exercise "\x00" range ends and order-preserving key encodings),
// and the smallest and a large key.
var DefaultKeys = []string{
	"\x00", "\x01", "a", "a\x00", "a\x00b", "a\xff", "ab", "abc", "b", "b\x00\x00", "ba", "c", "\xff", "\xff\xff",
}

// GenOptions tunes a Generator. The zero value is usable.
type GenOptions struct {
	// Keys is the key space; nil means DefaultKeys.
	Keys []string
	// Values are the values puts choose from (plus random ones); nil means
	// a few short ones, the empty value included.
	Values []string
	// MaxTxnOps is the op budget the store enforces; the generator mostly
	// stays within it and sometimes exceeds it. 0 means DefaultMaxTxnOps.
	MaxTxnOps int
	// Leases are lease IDs puts sometimes attach (the store decides whether
	// they exist); nil means {7}.
	Leases []int64
	// InvalidPercent is the share of requests that are deliberately
	// malformed (empty keys, duplicate keys in a txn, bad enums, ...); 0
	// means 3. A negative value means none.
	InvalidPercent int
	// EtcdSafe avoids txns that may make etcd v3.7 panic (MayCrashEtcd),
	// for runs against a real etcd.
	EtcdSafe bool
	// CompactPercent is the share of Compact requests; 0 means 1. A
	// negative value means none.
	CompactPercent int
	// LeasePercent is the share of LeaseGrant, LeaseRevoke and
	// LeaseCheckpoint requests on the IDs of Leases; 0 means none.
	LeasePercent int
}

// Generator produces a reproducible random sequence of KV requests for a
// seed. It needs the store's current and compacted revision to pick
// revisions that are sometimes valid, sometimes compacted and sometimes in
// the future.
type Generator struct {
	rng     *rand.Rand
	o       GenOptions
	rev     int64
	comp    int64
	invalid bool // generating a request meant to be invalid
}

// NewGenerator returns a Generator for seed.
func NewGenerator(seed int64, o GenOptions) *Generator {
	if o.Keys == nil {
		o.Keys = DefaultKeys
	}
	if o.Values == nil {
		o.Values = []string{"", "v0", "v1", "v2", "v10", "w"}
	}
	if o.MaxTxnOps == 0 {
		o.MaxTxnOps = DefaultMaxTxnOps
	}
	if o.Leases == nil {
		o.Leases = []int64{7}
	}
	if o.InvalidPercent == 0 {
		o.InvalidPercent = 3
	}
	if o.CompactPercent == 0 {
		o.CompactPercent = 1
	}
	return &Generator{rng: rand.New(rand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15)), o: o}
}

// Next returns the next request for a store at revision rev that is
// compacted at compacted. Exactly one of Range, Put, DeleteRange, Txn and
// Compaction is set.
func (g *Generator) Next(rev, compacted int64) *pb.InternalRaftRequest {
	g.rev, g.comp = rev, compacted
	g.invalid = g.o.InvalidPercent > 0 && g.pct(g.o.InvalidPercent)
	if g.o.LeasePercent > 0 && g.pct(g.o.LeasePercent) {
		return g.leaseReq()
	}
	switch n := g.rng.IntN(100); {
	case g.o.CompactPercent > 0 && n < g.o.CompactPercent:
		return &pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: g.revision(true)}}
	case n < 30:
		return &pb.InternalRaftRequest{Range: g.rangeReq()}
	case n < 55:
		return &pb.InternalRaftRequest{Put: g.put()}
	case n < 65:
		return &pb.InternalRaftRequest{DeleteRange: g.deleteRange()}
	default:
		return &pb.InternalRaftRequest{Txn: g.txn(0, g.o.MaxTxnOps)}
	}
}

func (g *Generator) pct(p int) bool { return g.rng.IntN(100) < p }

func (g *Generator) key() []byte {
	if g.invalid && g.pct(10) {
		return nil
	}
	return []byte(g.o.Keys[g.rng.IntN(len(g.o.Keys))])
}

// rangeEnd picks a range_end for key: none, "\x00" (from key), the
// prefix end, or another key of the space (possibly below key: empty).
func (g *Generator) rangeEnd(key []byte) []byte {
	switch n := g.rng.IntN(10); {
	case n < 4:
		return nil
	case n < 6:
		return []byte{0}
	case n < 8:
		return prefixEnd(key)
	default:
		return []byte(g.o.Keys[g.rng.IntN(len(g.o.Keys))])
	}
}

// prefixEnd is clientv3's GetPrefixRangeEnd.
func prefixEnd(key []byte) []byte {
	end := append([]byte(nil), key...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return []byte{0}
}

func (g *Generator) value() []byte {
	if g.pct(10) {
		b := make([]byte, g.rng.IntN(8))
		for i := range b {
			b[i] = byte(g.rng.IntN(256))
		}
		return b
	}
	return []byte(g.o.Values[g.rng.IntN(len(g.o.Values))])
}

// revision picks a revision around the store's: mostly valid, sometimes
// the compacted one, compacted away, in the future, zero or negative.
func (g *Generator) revision(forCompact bool) int64 {
	switch n := g.rng.IntN(20); {
	case n < 2:
		return g.comp - int64(g.rng.IntN(2))
	case n < 3:
		return g.rev + 1 + int64(g.rng.IntN(2))
	case n < 4:
		return -int64(g.rng.IntN(3))
	case n < 5 && !forCompact:
		return g.rev
	default:
		lo := max(g.comp, 1)
		if lo > g.rev {
			return g.rev
		}
		span := g.rev - lo + 1
		if forCompact {
			// Compact a little at a time, so that plenty of history
			// stays readable.
			span = span/8 + 1
		}
		return lo + g.rng.Int64N(span)
	}
}

func (g *Generator) rangeReq() *pb.RangeRequest {
	k := g.key()
	r := &pb.RangeRequest{Key: k, RangeEnd: g.rangeEnd(k)}
	if g.pct(40) {
		r.Revision = g.revision(false)
	}
	switch n := g.rng.IntN(10); {
	case n < 3:
		r.Limit = 1 + int64(g.rng.IntN(4))
	case n < 4:
		r.Limit = []int64{-1, math.MaxInt64}[g.rng.IntN(2)]
	}
	if g.pct(40) {
		r.SortOrder = pb.RangeRequest_SortOrder(g.rng.IntN(3))
		r.SortTarget = pb.RangeRequest_SortTarget(g.rng.IntN(5))
		if g.invalid && g.pct(30) {
			r.SortTarget = 9
		}
		if g.invalid && g.pct(30) {
			r.SortOrder = 4
		}
	}
	r.KeysOnly = g.pct(15)
	r.CountOnly = g.pct(10)
	if g.pct(15) {
		pick := func() int64 {
			if g.pct(50) {
				return 0
			}
			return int64(g.rng.IntN(int(max(g.rev, 1)) + 2))
		}
		r.MinModRevision, r.MaxModRevision = pick(), pick()
		r.MinCreateRevision, r.MaxCreateRevision = pick(), pick()
	}
	r.Serializable = g.pct(50)
	return r
}

func (g *Generator) put() *pb.PutRequest {
	p := &pb.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.pct(30)}
	if g.pct(15) {
		p.Lease = g.o.Leases[g.rng.IntN(len(g.o.Leases))]
	}
	if g.pct(10) {
		p.IgnoreValue = true
		if !g.invalid || g.pct(50) {
			p.Value = nil
		}
	}
	if g.pct(10) {
		p.IgnoreLease = true
		if !g.invalid || g.pct(50) {
			p.Lease = 0
		}
	}
	return p
}

func (g *Generator) deleteRange() *pb.DeleteRangeRequest {
	k := g.key()
	return &pb.DeleteRangeRequest{Key: k, RangeEnd: g.rangeEnd(k), PrevKv: g.pct(30)}
}

func (g *Generator) compare() *pb.Compare {
	k := g.key()
	c := &pb.Compare{Key: k, Result: pb.Compare_CompareResult(g.rng.IntN(4)), Target: pb.Compare_CompareTarget(g.rng.IntN(5))}
	if g.pct(20) {
		c.RangeEnd = g.rangeEnd(k)
	}
	if g.pct(3) {
		c.Result = 7 // unknown: holds
	}
	if g.pct(3) {
		c.Target = 6 // unknown: compares equal
	}
	target := c.Target
	if g.pct(5) {
		target = pb.Compare_CompareTarget(g.rng.IntN(5)) // maybe the wrong union
	}
	switch target {
	case pb.Compare_VERSION:
		c.TargetUnion = &pb.Compare_Version{Version: int64(g.rng.IntN(4))}
	case pb.Compare_CREATE:
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: int64(g.rng.IntN(int(max(g.rev, 1)) + 1))}
	case pb.Compare_MOD:
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: int64(g.rng.IntN(int(max(g.rev, 1)) + 1))}
	case pb.Compare_VALUE:
		c.TargetUnion = &pb.Compare_Value{Value: g.value()}
	case pb.Compare_LEASE:
		c.TargetUnion = &pb.Compare_Lease{Lease: []int64{0, g.o.Leases[g.rng.IntN(len(g.o.Leases))]}[g.rng.IntN(2)]}
	}
	return c
}

// txn builds a txn at nesting depth. budget is the op budget etcd allows
// it; valid txns stay within it, invalid ones sometimes exceed it. Most
// top-level txns are regenerated a few times until their puts and deletes
// do not overlap, so that most of them pass validation.
func (g *Generator) txn(depth, budget int) *pb.TxnRequest {
	careful := !g.invalid && depth == 0 && g.pct(80)
	for try := 0; ; try++ {
		t := g.txnOnce(depth, budget)
		if depth == 0 && g.o.EtcdSafe && MayCrashEtcd(t) {
			continue
		}
		if !careful || try >= 8 || CheckTxn(t, g.o.MaxTxnOps) == nil {
			return t
		}
	}
}

func (g *Generator) txnOnce(depth, budget int) *pb.TxnRequest {
	t := &pb.TxnRequest{}
	width := min(4, budget)
	if g.invalid && g.pct(20) {
		width = budget + 1
	}
	for n := g.rng.IntN(min(width, 3) + 1); n > 0; n-- {
		t.Compare = append(t.Compare, g.compare())
	}
	t.Success = g.ops(depth, budget, width)
	t.Failure = g.ops(depth, budget, width)
	return t
}

func (g *Generator) ops(depth, budget, width int) []*pb.RequestOp {
	var ops []*pb.RequestOp
	n := g.rng.IntN(width + 1)
	if width > budget {
		n = width // over budget on purpose
	}
	for range n {
		var op *pb.RequestOp
		switch k := g.rng.IntN(100); {
		case k < 35:
			op = &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}
		case k < 65:
			op = &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: g.put()}}
		case k < 85:
			op = &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: g.deleteRange()}}
		case depth < 2:
			op = &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: g.txn(depth+1, max(budget-width, 0))}}
		default:
			op = &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: g.rangeReq()}}
		}
		if g.invalid && g.pct(5) {
			op = &pb.RequestOp{} // empty op
		}
		ops = append(ops, op)
	}
	return ops
}

// leaseReq is a grant, revoke or checkpoint of one of the lease IDs (an
// invalid one asks for ID 0 or a TTL above etcd's maximum).
func (g *Generator) leaseReq() *pb.InternalRaftRequest {
	id := g.o.Leases[g.rng.IntN(len(g.o.Leases))]
	switch n := g.rng.IntN(10); {
	case n < 5:
		ttl := 1 + g.rng.Int64N(100)
		if g.invalid {
			if g.pct(50) {
				id = 0
			} else {
				ttl = maxLeaseTTL + 1
			}
		}
		return &pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: ttl}}
	case n < 8:
		return &pb.InternalRaftRequest{LeaseRevoke: &pb.LeaseRevokeRequest{ID: id}}
	default:
		c := &pb.LeaseCheckpointRequest{}
		for range 1 + g.rng.IntN(2) {
			c.Checkpoints = append(c.Checkpoints, &pb.LeaseCheckpoint{
				ID: g.o.Leases[g.rng.IntN(len(g.o.Leases))], Remaining_TTL: g.rng.Int64N(50)})
		}
		return &pb.InternalRaftRequest{LeaseCheckpoint: c}
	}
}
