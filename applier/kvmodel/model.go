package kvmodel

import (
	"bytes"
	"errors"
	"sort"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

// ErrUnsupported is returned by Apply for a request that is not a KV
// request.
var ErrUnsupported = errors.New("kvmodel: not a KV request")

// DefaultMaxTxnOps is etcd's default --max-txn-ops.
const DefaultMaxTxnOps = 128

// Model is an in-memory etcd KV store.
type Model struct {
	// MaxTxnOps is the op budget of a txn (etcd's --max-txn-ops).
	MaxTxnOps int
	// LeaseExists, when set, answers a Put's lease check in place of the
	// lease table (which LeaseGrant and LeaseRevoke keep).
	LeaseExists func(id int64) bool

	rev       int64 // current revision
	compacted int64 // -1 until the first compaction
	leases    map[int64]*Lease
	keys      []string
	versions  map[string][]version // per key, in revision order
}

// version is one write of a key: a value, or a deletion (kv == nil).
type version struct {
	main, sub int64
	kv        *mvccpb.KeyValue
}

// New returns an empty store at revision 1, as a fresh etcd is.
func New() *Model {
	return &Model{MaxTxnOps: DefaultMaxTxnOps, rev: 1, compacted: -1, versions: map[string][]version{}}
}

// Rev returns the current revision and the compacted revision (-1 if the
// store was never compacted).
func (m *Model) Rev() (current, compacted int64) { return m.rev, m.compacted }

// Apply executes one request: exactly one of r's Range, Put, DeleteRange,
// Txn, Compaction, LeaseGrant, LeaseRevoke or LeaseCheckpoint must be set. It returns the response (with a header
// holding only the revision) or the error etcd would send.
func (m *Model) Apply(r *pb.InternalRaftRequest) (proto.Message, error) {
	if err := Check(r, m.MaxTxnOps); err != nil {
		return nil, err
	}
	var (
		resp proto.Message
		err  error
	)
	switch {
	case r.Range != nil:
		resp, err = m.newTxn().rangeOp(r.Range)
	case r.Put != nil:
		t := m.newTxn()
		if err = t.checkPut(r.Put); err == nil {
			resp = t.put(r.Put)
			m.commit(t)
		}
	case r.DeleteRange != nil:
		t := m.newTxn()
		resp = t.deleteRange(r.DeleteRange)
		m.commit(t)
	case r.Txn != nil:
		t := m.newTxn()
		var tr *pb.TxnResponse
		if tr, err = t.txn(r.Txn); err == nil {
			tr.Header.Revision = t.rev()
			resp = tr
			m.commit(t)
		}
	case r.Compaction != nil:
		resp, err = m.compact(r.Compaction.Revision)
	case r.LeaseGrant != nil:
		resp, err = m.leaseGrant(r.LeaseGrant)
	case r.LeaseRevoke != nil:
		resp, err = m.leaseRevoke(r.LeaseRevoke)
	case r.LeaseCheckpoint != nil:
		resp = m.leaseCheckpoint(r.LeaseCheckpoint)
	default:
		err = ErrUnsupported
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// Check validates r as etcd's gRPC layer does before proposing it.
func Check(r *pb.InternalRaftRequest, maxTxnOps int) error {
	switch {
	case r.Range != nil:
		return checkRange(r.Range)
	case r.Put != nil:
		return checkPut(r.Put)
	case r.DeleteRange != nil:
		return checkDelete(r.DeleteRange)
	case r.Txn != nil:
		return CheckTxn(r.Txn, maxTxnOps)
	}
	return nil
}

func (m *Model) compact(rev int64) (proto.Message, error) {
	if rev <= m.compacted {
		return nil, rpctypes.ErrGRPCCompacted
	}
	if rev > m.rev {
		return nil, rpctypes.ErrGRPCFutureRev
	}
	m.compacted = rev
	return &pb.CompactionResponse{Header: &pb.ResponseHeader{Revision: m.rev}}, nil
}

// get returns key's value at rev, or nil if it does not exist then.
func (m *Model) get(key string, rev int64) *mvccpb.KeyValue {
	vs := m.versions[key]
	// The last version with main <= rev (the highest sub of that main).
	i := sort.Search(len(vs), func(i int) bool { return vs[i].main > rev })
	if i == 0 {
		return nil
	}
	return vs[i-1].kv
}

// inRange reports whether key is in etcd's range (key, rangeEnd).
func inRange(k string, key, rangeEnd []byte) bool {
	switch {
	case len(rangeEnd) == 0:
		return k == string(key)
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return k >= string(key)
	default:
		return k >= string(key) && k < string(rangeEnd)
	}
}

// LiveKeys returns the number of keys live at the current revision.
func (m *Model) LiveKeys() int64 {
	var n int64
	for _, k := range m.keys {
		if m.get(k, m.rev) != nil {
			n++
		}
	}
	return n
}

// live returns copies of the key-values in range at rev, in key order.
func (m *Model) live(key, rangeEnd []byte, rev int64) []*mvccpb.KeyValue {
	var out []*mvccpb.KeyValue
	for _, k := range m.keys {
		if !inRange(k, key, rangeEnd) {
			continue
		}
		if kv := m.get(k, rev); kv != nil {
			out = append(out, proto.Clone(kv).(*mvccpb.KeyValue))
		}
	}
	return out
}

func (m *Model) write(key string, main, sub int64, kv *mvccpb.KeyValue) {
	if _, ok := m.versions[key]; !ok {
		i := sort.SearchStrings(m.keys, key)
		m.keys = append(m.keys, "")
		copy(m.keys[i+1:], m.keys[i:])
		m.keys[i] = key
	}
	m.versions[key] = append(m.versions[key], version{main: main, sub: sub, kv: kv})
}

func (m *Model) commit(t *txn) {
	if t.changes > 0 {
		m.rev++
	}
}

// txn is one transaction: it writes revision begin+1 straight into the
// model (so reads at begin+1 see its writes and reads at begin do not),
// and the model's revision moves when it commits.
type txn struct {
	m       *Model
	begin   int64
	changes int64
}

func (m *Model) newTxn() *txn { return &txn{m: m, begin: m.rev} }

func (t *txn) rev() int64 {
	if t.changes > 0 {
		return t.begin + 1
	}
	return t.begin
}

func (t *txn) rangeOp(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	cur := t.rev()
	rev := r.Revision
	if rev > cur {
		return nil, rpctypes.ErrGRPCFutureRev
	}
	if rev <= 0 {
		rev = cur
	}
	if rev < t.m.compacted {
		return nil, rpctypes.ErrGRPCCompacted
	}
	all := t.m.live(r.Key, r.RangeEnd, rev)
	resp := &pb.RangeResponse{Header: &pb.ResponseHeader{Revision: cur}, Count: int64(len(all))}
	if r.CountOnly {
		return resp, nil
	}
	defaultOrder := r.SortOrder == pb.RangeRequest_NONE ||
		(r.SortTarget == pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_ASCEND)
	filtered := r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0
	// etcd fetches limit+1 keys in key order, unless a sort or a filter
	// needs them all.
	kvs := all
	if r.Limit > 0 && defaultOrder && !filtered && int64(len(kvs)) > r.Limit+1 && r.Limit+1 > 0 {
		kvs = kvs[:r.Limit+1]
	}
	if r.KeysOnly && r.SortTarget != pb.RangeRequest_VALUE {
		// etcd's index knows neither values nor leases.
		for _, kv := range kvs {
			kv.Value, kv.Lease = nil, 0
		}
	}
	var keep []*mvccpb.KeyValue
	for _, kv := range kvs {
		if (r.MaxModRevision == 0 || kv.ModRevision <= r.MaxModRevision) &&
			(r.MinModRevision == 0 || kv.ModRevision >= r.MinModRevision) &&
			(r.MaxCreateRevision == 0 || kv.CreateRevision <= r.MaxCreateRevision) &&
			(r.MinCreateRevision == 0 || kv.CreateRevision >= r.MinCreateRevision) {
			keep = append(keep, kv)
		}
	}
	kvs = keep
	sortLikeEtcd(kvs, r.SortTarget, r.SortOrder)
	if r.Limit > 0 && int64(len(kvs)) > r.Limit {
		kvs = kvs[:r.Limit]
		resp.More = true
	}
	if r.KeysOnly {
		for _, kv := range kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

// sortLikeEtcd sorts as etcd does, with the same unstable sort.Sort on the
// same (key-ordered) input, so that ties come out in the same order.
func sortLikeEtcd(kvs []*mvccpb.KeyValue, target pb.RangeRequest_SortTarget, order pb.RangeRequest_SortOrder) {
	if target != pb.RangeRequest_KEY && order == pb.RangeRequest_NONE {
		order = pb.RangeRequest_ASCEND
	}
	if order == pb.RangeRequest_NONE || (target == pb.RangeRequest_KEY && order == pb.RangeRequest_ASCEND) {
		return
	}
	field := map[pb.RangeRequest_SortTarget]func(a, b *mvccpb.KeyValue) bool{
		pb.RangeRequest_KEY:     func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Key, b.Key) < 0 },
		pb.RangeRequest_VERSION: func(a, b *mvccpb.KeyValue) bool { return a.Version < b.Version },
		pb.RangeRequest_CREATE:  func(a, b *mvccpb.KeyValue) bool { return a.CreateRevision < b.CreateRevision },
		pb.RangeRequest_MOD:     func(a, b *mvccpb.KeyValue) bool { return a.ModRevision < b.ModRevision },
		pb.RangeRequest_VALUE:   func(a, b *mvccpb.KeyValue) bool { return bytes.Compare(a.Value, b.Value) < 0 },
	}[target]
	s := &byField{kvs: kvs, less: field}
	switch order {
	case pb.RangeRequest_ASCEND:
		sort.Sort(s)
	case pb.RangeRequest_DESCEND:
		sort.Sort(sort.Reverse(s))
	}
}

type byField struct {
	kvs  []*mvccpb.KeyValue
	less func(a, b *mvccpb.KeyValue) bool
}

func (s *byField) Len() int           { return len(s.kvs) }
func (s *byField) Less(i, j int) bool { return s.less(s.kvs[i], s.kvs[j]) }
func (s *byField) Swap(i, j int)      { s.kvs[i], s.kvs[j] = s.kvs[j], s.kvs[i] }

func (t *txn) checkPut(p *pb.PutRequest) error {
	if p.Lease != 0 && !t.m.leaseExists(p.Lease) {
		return rpctypes.ErrGRPCLeaseNotFound
	}
	if (p.IgnoreValue || p.IgnoreLease) && t.m.get(string(p.Key), t.rev()) == nil {
		return rpctypes.ErrGRPCKeyNotFound
	}
	return nil
}

func (t *txn) put(p *pb.PutRequest) *pb.PutResponse {
	rev := t.begin + 1
	prev := t.m.get(string(p.Key), t.rev())
	resp := &pb.PutResponse{Header: &pb.ResponseHeader{Revision: rev}}
	kv := &mvccpb.KeyValue{
		Key: bytes.Clone(p.Key), Value: bytes.Clone(p.Value), Lease: p.Lease,
		CreateRevision: rev, ModRevision: rev, Version: 1,
	}
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
		if p.PrevKv {
			resp.PrevKv = proto.Clone(prev).(*mvccpb.KeyValue)
		}
		if p.IgnoreValue {
			kv.Value = bytes.Clone(prev.Value)
		}
		if p.IgnoreLease {
			kv.Lease = prev.Lease
		}
	}
	t.m.write(string(p.Key), rev, t.changes, kv)
	t.changes++
	return resp
}

func (t *txn) deleteRange(d *pb.DeleteRangeRequest) *pb.DeleteRangeResponse {
	resp := &pb.DeleteRangeResponse{Header: &pb.ResponseHeader{}}
	victims := t.m.live(d.Key, d.RangeEnd, t.rev())
	if d.PrevKv {
		resp.PrevKvs = victims
	}
	for _, kv := range victims {
		t.m.write(string(kv.Key), t.begin+1, t.changes, nil)
		t.changes++
	}
	resp.Deleted = int64(len(victims))
	resp.Header.Revision = t.rev()
	return resp
}

// txn runs a Txn. All compares, nested ones included, are evaluated first
// against the state the txn starts from; then the chosen ops are checked
// (in that state); then they run.
//
// One deviation from etcd: a Put with ignore_value or ignore_lease whose
// key an earlier op of the same txn deleted fails the txn with
// ErrGRPCKeyNotFound. etcd v3.7 accepts such a txn (its overlap check
// skips deletes with range_end "\x00") and then panics applying it;
// strata rejects it. See MayCrashEtcd.
func (t *txn) txn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	p := t.plan(r)
	if err := t.check(r, p); err != nil {
		return nil, err
	}
	var deleted []*pb.DeleteRangeRequest
	if putAfterDelete(r, p, &deleted) {
		return nil, rpctypes.ErrGRPCKeyNotFound
	}
	return t.run(r, p), nil
}

// putAfterDelete reports whether a Put with ignore_* in the ops the plan
// runs comes after a delete of its key in the same txn.
func putAfterDelete(r *pb.TxnRequest, p *plan, deleted *[]*pb.DeleteRangeRequest) bool {
	n := 0
	for _, op := range ops(r, p.ok) {
		switch v := op.GetRequest().(type) {
		case *pb.RequestOp_RequestDeleteRange:
			*deleted = append(*deleted, v.RequestDeleteRange)
		case *pb.RequestOp_RequestPut:
			if v.RequestPut.IgnoreValue || v.RequestPut.IgnoreLease {
				for _, d := range *deleted {
					if inRange(string(v.RequestPut.Key), d.Key, d.RangeEnd) {
						return true
					}
				}
			}
		case *pb.RequestOp_RequestTxn:
			if putAfterDelete(v.RequestTxn, p.nested[n], deleted) {
				return true
			}
			n++
		}
	}
	return false
}

// MayCrashEtcd reports whether a txn might make etcd v3.7 panic: it has a
// Put with ignore_value or ignore_lease whose key a DeleteRange anywhere in
// the txn covers. Tests that run generated requests against a real etcd
// skip these (the model and strata answer ErrGRPCKeyNotFound when the
// delete runs first).
func MayCrashEtcd(r *pb.TxnRequest) bool {
	var puts [][]byte
	var dels []*pb.DeleteRangeRequest
	var walk func(*pb.TxnRequest)
	walk = func(r *pb.TxnRequest) {
		for _, op := range append(append([]*pb.RequestOp(nil), r.GetSuccess()...), r.GetFailure()...) {
			switch v := op.GetRequest().(type) {
			case *pb.RequestOp_RequestPut:
				if v.RequestPut.GetIgnoreValue() || v.RequestPut.GetIgnoreLease() {
					puts = append(puts, v.RequestPut.Key)
				}
			case *pb.RequestOp_RequestDeleteRange:
				dels = append(dels, v.RequestDeleteRange)
			case *pb.RequestOp_RequestTxn:
				walk(v.RequestTxn)
			}
		}
	}
	walk(r)
	for _, k := range puts {
		for _, d := range dels {
			if inRange(string(k), d.GetKey(), d.GetRangeEnd()) {
				return true
			}
		}
	}
	return false
}

// plan is the compare outcome of a txn and of the nested txns it runs.
type plan struct {
	ok     bool
	nested []*plan
}

func (t *txn) plan(r *pb.TxnRequest) *plan {
	p := &plan{ok: true}
	for _, c := range r.GetCompare() {
		if !t.compare(c) {
			p.ok = false
			break
		}
	}
	for _, op := range ops(r, p.ok) {
		if n, isTxn := op.GetRequest().(*pb.RequestOp_RequestTxn); isTxn {
			p.nested = append(p.nested, t.plan(n.RequestTxn))
		}
	}
	return p
}

func ops(r *pb.TxnRequest, ok bool) []*pb.RequestOp {
	if ok {
		return r.GetSuccess()
	}
	return r.GetFailure()
}

func (t *txn) compare(c *pb.Compare) bool {
	kvs := t.m.live(c.GetKey(), c.GetRangeEnd(), t.rev())
	if len(kvs) == 0 {
		if c.GetTarget() == pb.Compare_VALUE {
			return false
		}
		kvs = []*mvccpb.KeyValue{{}}
	}
	for _, kv := range kvs {
		var d int
		switch c.GetTarget() {
		case pb.Compare_VALUE:
			d = bytes.Compare(kv.Value, c.GetValue())
		case pb.Compare_CREATE:
			d = sign(kv.CreateRevision - c.GetCreateRevision())
		case pb.Compare_MOD:
			d = sign(kv.ModRevision - c.GetModRevision())
		case pb.Compare_VERSION:
			d = sign(kv.Version - c.GetVersion())
		case pb.Compare_LEASE:
			d = sign(kv.Lease - c.GetLease())
		}
		holds := true
		switch c.GetResult() {
		case pb.Compare_EQUAL:
			holds = d == 0
		case pb.Compare_NOT_EQUAL:
			holds = d != 0
		case pb.Compare_GREATER:
			holds = d > 0
		case pb.Compare_LESS:
			holds = d < 0
		}
		if !holds {
			return false
		}
	}
	return true
}

func sign(d int64) int {
	switch {
	case d < 0:
		return -1
	case d > 0:
		return 1
	}
	return 0
}

func (t *txn) check(r *pb.TxnRequest, p *plan) error {
	n := 0
	for _, op := range ops(r, p.ok) {
		switch v := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rev := v.RequestRange.GetRevision()
			if rev != 0 && rev > t.rev() {
				return rpctypes.ErrGRPCFutureRev
			}
			if rev != 0 && rev < t.m.compacted {
				return rpctypes.ErrGRPCCompacted
			}
		case *pb.RequestOp_RequestPut:
			if err := t.checkPut(v.RequestPut); err != nil {
				return err
			}
		case *pb.RequestOp_RequestTxn:
			if err := t.check(v.RequestTxn, p.nested[n]); err != nil {
				return err
			}
			n++
		}
	}
	return nil
}

func (t *txn) run(r *pb.TxnRequest, p *plan) *pb.TxnResponse {
	resp := &pb.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: p.ok}
	n := 0
	for _, op := range ops(r, p.ok) {
		out := &pb.ResponseOp{}
		switch v := op.GetRequest().(type) {
		case *pb.RequestOp_RequestRange:
			rr, err := t.rangeOp(v.RequestRange)
			if err != nil {
				panic("kvmodel: range failed after its checks: " + err.Error())
			}
			out.Response = &pb.ResponseOp_ResponseRange{ResponseRange: rr}
		case *pb.RequestOp_RequestPut:
			out.Response = &pb.ResponseOp_ResponsePut{ResponsePut: t.put(v.RequestPut)}
		case *pb.RequestOp_RequestDeleteRange:
			out.Response = &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: t.deleteRange(v.RequestDeleteRange)}
		case *pb.RequestOp_RequestTxn:
			out.Response = &pb.ResponseOp_ResponseTxn{ResponseTxn: t.run(v.RequestTxn, p.nested[n])}
			n++
		}
		resp.Responses = append(resp.Responses, out)
	}
	return resp
}
