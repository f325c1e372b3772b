package applier

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Leases are replicated state like keys: a grant, a revoke and a checkpoint
// are raft entries, and every member applies them alike. What is not
// replicated is time: when a lease expires is the leader's business (it
// proposes the revoke), as in etcd.
//
// Layout, under the reserved prefix l/:
//
//	l/r/<id:8 big endian>         → uvarint(ttl) uvarint(remaining ttl)
//	l/k/<id:8 big endian><key>    → empty: key is attached to lease id
//
// The attachment index makes a revoke touch only its own keys, and lets a
// new leader learn the leases without scanning every key.
var (
	prefixLeaseRecord = []byte("l/r/")
	prefixLeaseKey    = []byte("l/k/")
)

// MaxLeaseTTL is etcd's largest lease TTL, in seconds.
const MaxLeaseTTL = 9000000000

func leaseRecordKey(dst []byte, id int64) []byte {
	dst = append(dst, prefixLeaseRecord...)
	return binary.BigEndian.AppendUint64(dst, uint64(id))
}

func leaseKeysPrefix(dst []byte, id int64) []byte {
	dst = append(dst, prefixLeaseKey...)
	return binary.BigEndian.AppendUint64(dst, uint64(id))
}

// leaseRecord is a stored lease.
type leaseRecord struct {
	ttl, remaining int64
}

func (l leaseRecord) encode(dst []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(l.ttl))
	return binary.AppendUvarint(dst, uint64(l.remaining))
}

func decodeLeaseRecord(b []byte) (leaseRecord, error) {
	ttl, n := binary.Uvarint(b)
	if n <= 0 {
		return leaseRecord{}, fmt.Errorf("%w: lease record", errCorruptValue)
	}
	rem, m := binary.Uvarint(b[n:])
	if m <= 0 || n+m != len(b) {
		return leaseRecord{}, fmt.Errorf("%w: lease record", errCorruptValue)
	}
	return leaseRecord{ttl: int64(ttl), remaining: int64(rem)}, nil
}

// getLease reads lease id from r.
func getLease(r Reader, id int64, kbuf []byte) (leaseRecord, bool, error) {
	v, err := r.Get(leaseRecordKey(kbuf[:0], id))
	if errors.Is(err, ErrNotFound) {
		return leaseRecord{}, false, nil
	}
	if err != nil {
		return leaseRecord{}, false, err
	}
	l, err := decodeLeaseRecord(v)
	return l, err == nil, err
}

// leaseExists is the lease check of a Put: the configured override (tests
// that run without grants), else the lease table.
func (t *txnCtx) leaseExists(id int64) (bool, error) {
	if t.leaseOverride != nil {
		return t.leaseOverride(id), nil
	}
	_, ok, err := getLease(t.r, id, t.kbuf)
	return ok, err
}

// attach records key as attached to lease id; detach forgets it.
func (t *txnCtx) attach(id int64, key []byte) error {
	t.kbuf = append(leaseKeysPrefix(t.kbuf[:0], id), key...)
	return t.w.Set(t.kbuf, nil)
}

func (t *txnCtx) detach(id int64, key []byte) error {
	t.kbuf = append(leaseKeysPrefix(t.kbuf[:0], id), key...)
	return t.w.Delete(t.kbuf)
}

// leaseGrant creates lease r.ID with r.TTL (already within etcd's bounds:
// the server raises a short TTL to the minimum before proposing, as etcd's
// lessor does at grant).
func (t *txnCtx) leaseGrant(r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	switch {
	case r.ID == 0: // the server picks an ID before proposing
		return nil, rpctypes.ErrGRPCLeaseNotFound
	case r.TTL > MaxLeaseTTL:
		return nil, rpctypes.ErrGRPCLeaseTTLTooLarge
	}
	_, ok, err := getLease(t.r, r.ID, t.kbuf)
	if err != nil {
		return nil, err
	}
	if ok {
		return nil, rpctypes.ErrGRPCLeaseExist
	}
	t.vbuf = leaseRecord{ttl: r.TTL}.encode(t.vbuf[:0])
	t.kbuf = leaseRecordKey(t.kbuf[:0], r.ID)
	if err := t.w.Set(t.kbuf, t.vbuf); err != nil {
		return nil, err
	}
	return &pb.LeaseGrantResponse{Header: &pb.ResponseHeader{Revision: t.rev()}, ID: r.ID, TTL: r.TTL}, nil
}

// leaseRevoke deletes lease r.ID and, in one revision, every key attached
// to it, in key order (as etcd does).
func (t *txnCtx) leaseRevoke(r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	_, ok, err := getLease(t.r, r.ID, t.kbuf)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, rpctypes.ErrGRPCLeaseNotFound
	}
	keys, err := leaseKeys(t.r, r.ID)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		// An attachment always names a live key carrying this lease:
		// put and delete keep the index in step.
		if err := t.writeTombstone(k, r.ID, nil); err != nil {
			return nil, err
		}
	}
	t.kbuf = leaseRecordKey(t.kbuf[:0], r.ID)
	if err := t.w.Delete(t.kbuf); err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: &pb.ResponseHeader{Revision: t.rev()}}, nil
}

// leaseCheckpoint records the remaining TTLs the leader saw, so that a new
// leader does not give leases a full TTL again. Unknown leases are skipped.
func (t *txnCtx) leaseCheckpoint(r *pb.LeaseCheckpointRequest) (*pb.LeaseCheckpointResponse, error) {
	for _, c := range r.GetCheckpoints() {
		l, ok, err := getLease(t.r, c.GetID(), t.kbuf)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		l.remaining = max(c.GetRemaining_TTL(), 0)
		t.vbuf = l.encode(t.vbuf[:0])
		t.kbuf = leaseRecordKey(t.kbuf[:0], c.GetID())
		if err := t.w.Set(t.kbuf, t.vbuf); err != nil {
			return nil, err
		}
	}
	return &pb.LeaseCheckpointResponse{Header: &pb.ResponseHeader{Revision: t.rev()}}, nil
}

// leaseKeys returns the keys attached to lease id, in key order (the
// index's order).
func leaseKeys(r Reader, id int64) ([][]byte, error) {
	lo := leaseKeysPrefix(nil, id)
	hi := upperBound(lo)
	it, err := r.NewIter(lo, hi)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, append([]byte(nil), it.Key()[len(lo):]...))
	}
	return keys, it.Error()
}

// upperBound returns the smallest key above every key with prefix p, which
// may end in 0xFF bytes (a lease ID's do): they are dropped and the byte
// before them incremented.
func upperBound(p []byte) []byte {
	end := bytes.Clone(p)
	for len(end) > 0 && end[len(end)-1] == 0xFF {
		end = end[:len(end)-1]
	}
	end[len(end)-1]++ // p starts with "l/k/": never all 0xFF
	return end
}

// LeaseInfo is a lease as the state machine holds it.
type LeaseInfo struct {
	ID, TTL, RemainingTTL int64
	// Keys are the attached keys, in order (only when asked for).
	Keys [][]byte
}

// Lease returns lease id, with its keys if withKeys; found is false for an
// unknown lease.
func (a *Applier) Lease(id int64, withKeys bool) (info LeaseInfo, found bool, err error) {
	snap, err := a.openSnapshot()
	if err != nil {
		return LeaseInfo{}, false, err
	}
	defer snap.Close()
	l, ok, err := getLease(snap, id, nil)
	if err != nil || !ok {
		return LeaseInfo{}, false, err
	}
	info = LeaseInfo{ID: id, TTL: l.ttl, RemainingTTL: l.remaining}
	if withKeys {
		if info.Keys, err = leaseKeys(snap, id); err != nil {
			return LeaseInfo{}, false, err
		}
	}
	return info, true, nil
}

// Leases returns every lease (without keys), in ID order.
func (a *Applier) Leases() ([]LeaseInfo, error) {
	snap, err := a.openSnapshot()
	if err != nil {
		return nil, err
	}
	defer snap.Close()
	return leasesIn(snap)
}

// leasesIn reads the lease table from r, in ID order.
func leasesIn(r Reader) ([]LeaseInfo, error) {
	it, err := r.NewIter(prefixLeaseRecord, prefixEnd(prefixLeaseRecord))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []LeaseInfo
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != len(prefixLeaseRecord)+8 {
			return nil, fmt.Errorf("%w: lease record key %q", errCorruptValue, k)
		}
		l, err := decodeLeaseRecord(it.Value())
		if err != nil {
			return nil, err
		}
		out = append(out, LeaseInfo{ID: int64(binary.BigEndian.Uint64(k[len(prefixLeaseRecord):])), TTL: l.ttl, RemainingTTL: l.remaining})
	}
	// Keys order IDs as unsigned: negative IDs come last. Sort by value.
	slices.SortFunc(out, func(a, b LeaseInfo) int { return cmp.Compare(a.ID, b.ID) })
	return out, it.Error()
}

// LeaseEventKind says what an applied lease request did.
type LeaseEventKind int

const (
	LeaseGranted LeaseEventKind = iota + 1
	LeaseRevoked
	LeaseCheckpointed
)

// LeaseEvent is a lease request's effect, for Config.OnLease.
type LeaseEvent struct {
	Kind LeaseEventKind
	ID   int64
	// TTL is a grant's TTL; Remaining a checkpoint's remaining TTL.
	TTL, Remaining int64
}

// leaseEvents returns the effects of the lease request r, which applied
// without error.
func leaseEvents(r *pb.InternalRaftRequest) []LeaseEvent {
	switch {
	case r.LeaseGrant != nil:
		return []LeaseEvent{{Kind: LeaseGranted, ID: r.LeaseGrant.ID, TTL: r.LeaseGrant.TTL}}
	case r.LeaseRevoke != nil:
		return []LeaseEvent{{Kind: LeaseRevoked, ID: r.LeaseRevoke.ID}}
	case r.LeaseCheckpoint != nil:
		var evs []LeaseEvent
		for _, c := range r.LeaseCheckpoint.GetCheckpoints() {
			evs = append(evs, LeaseEvent{Kind: LeaseCheckpointed, ID: c.GetID(), Remaining: max(c.GetRemaining_TTL(), 0)})
		}
		return evs
	}
	return nil
}
