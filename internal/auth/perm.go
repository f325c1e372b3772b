package auth

import (
	"bytes"
	"slices"
	"sort"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/pkg/v3/adt"
)

// span is the half-open key interval [begin, end). A nil end means the
// interval is unbounded above.
//
// Invariant: begin is not empty, and begin < end when end is not nil.
type span struct {
	begin, end []byte
}

// endBefore reports whether x < y, a nil bound standing for +infinity.
func endBefore(x, y []byte) bool {
	switch {
	case x == nil:
		return false
	case y == nil:
		return true
	default:
		return bytes.Compare(x, y) < 0
	}
}

// rangeSet is a union of key intervals, the role etcd's interval trees play
// in its range permission cache (etcd@v3.7.3:server/auth/range_perm_cache.go).
// The zero rangeSet is empty.
//
// Invariant: spans are sorted by begin, and each span ends strictly before
// the next one begins (overlapping and touching intervals are merged).
type rangeSet struct {
	spans []span
}

// newRangeSet returns the union of the given spans. It reorders spans.
func newRangeSet(spans []span) rangeSet {
	if len(spans) == 0 {
		return rangeSet{}
	}
	sort.Slice(spans, func(i, j int) bool { return bytes.Compare(spans[i].begin, spans[j].begin) < 0 })
	merged := spans[:1]
	for _, s := range spans[1:] {
		last := &merged[len(merged)-1]
		if endBefore(last.end, s.begin) {
			merged = append(merged, s)
			continue
		}
		// s begins inside or right at the end of last: extend last.
		if endBefore(last.end, s.end) {
			last.end = s.end
		}
	}
	return rangeSet{spans: merged}
}

// find returns the span with the largest begin <= k, if any.
func (s rangeSet) find(k []byte) (span, bool) {
	i := sort.Search(len(s.spans), func(i int) bool { return bytes.Compare(s.spans[i].begin, k) > 0 })
	if i == 0 {
		return span{}, false
	}
	return s.spans[i-1], true
}

// containsKey reports whether key k is in the set.
func (s rangeSet) containsKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	sp, ok := s.find(k)
	return ok && endBefore(k, sp.end)
}

// covers reports whether every key in [begin, end) is in the set; a nil end
// means unbounded above. begin must not be empty and must be below end.
func (s rangeSet) covers(begin, end []byte) bool {
	sp, ok := s.find(begin)
	if !ok || !endBefore(begin, sp.end) {
		return false
	}
	return sp.end == nil || (end != nil && bytes.Compare(end, sp.end) <= 0)
}

// isOpenEnded reports whether rangeEnd is "\x00", which etcd reads as "every
// key >= key" in requests and permissions alike.
func isOpenEnded(rangeEnd []byte) bool {
	return len(rangeEnd) == 1 && rangeEnd[0] == 0
}

// pointEnd returns the end of the interval holding key k alone: k+"\x00",
// the next key in byte order.
func pointEnd(k []byte) []byte {
	e := make([]byte, len(k)+1)
	copy(e, k)
	return e
}

// ValidPermRange reports whether etcd accepts [key, rangeEnd) in a
// RoleGrantPermission (etcd@v3.7.3:server/auth/range_perm_cache.go
// isValidPermissionRange): key not empty, and rangeEnd empty (the single
// key), above key, or "\x00" (every key >= key).
func ValidPermRange(key, rangeEnd []byte) bool {
	if len(key) == 0 {
		return false
	}
	return len(rangeEnd) == 0 || bytes.Compare(key, rangeEnd) < 0 || isOpenEnded(rangeEnd)
}

// permSpan returns the keys a granted permission covers. ok is false for a
// range etcd refuses to grant (see ValidPermRange), which a Store never
// holds.
func permSpan(key, rangeEnd []byte) (_ span, ok bool) {
	if !ValidPermRange(key, rangeEnd) {
		return span{}, false
	}
	switch {
	case len(rangeEnd) == 0:
		return span{begin: key, end: pointEnd(key)}, true
	case isOpenEnded(rangeEnd):
		return span{begin: key}, true
	default:
		return span{begin: key, end: rangeEnd}, true
	}
}

// Perms is the union of the key permissions of a set of roles, one rangeSet
// per direction: READWRITE counts as both. It is immutable.
type Perms struct {
	read, write rangeSet

	// readOrder and writeOrder are the permissions' spans in the order
	// etcd inserts them into its interval trees, which is all that
	// decides its answer for an empty range (see Allowed).
	readOrder, writeOrder []span
}

// MergePerms merges the key permissions of roles, as etcd's getMergedPerms
// does for a user's roles in the user's order
// (etcd@v3.7.3:server/auth/range_perm_cache.go). Permissions with a range
// etcd refuses to grant are ignored. The root role's unlimited access is
// not a key permission: see Access.
func MergePerms(roles ...*authpb.Role) *Perms {
	var read, write []span
	for _, r := range roles {
		for _, p := range r.GetKeyPermission() {
			sp, ok := permSpan(p.Key, p.RangeEnd)
			if !ok {
				continue
			}
			switch p.PermType {
			case authpb.Permission_READ:
				read = append(read, sp)
			case authpb.Permission_WRITE:
				write = append(write, sp)
			case authpb.Permission_READWRITE:
				read = append(read, sp)
				write = append(write, sp)
			}
		}
	}
	return &Perms{
		read:       newRangeSet(slices.Clone(read)),
		write:      newRangeSet(slices.Clone(write)),
		readOrder:  read,
		writeOrder: write,
	}
}

// Allowed reports whether the permissions allow a request of type t on
// [key, rangeEnd), with etcd's rule (etcd@v3.7.3:server/auth/range_perm_cache.go
// isRangeOpPermitted, checkKeyPoint, checkKeyInterval, on the
// BytesAffineComparable interval trees of pkg/adt):
//
//   - rangeEnd empty: the single key must be permitted;
//   - rangeEnd "\x00": every key >= key must be permitted (only a
//     permission ending in "\x00" can allow it);
//   - rangeEnd > key: every key in [key, rangeEnd) must be permitted,
//     possibly by several permissions that together leave no gap;
//   - key empty: never allowed (etcd's interval tree orders the empty key
//     above every other key, so no permission reaches it);
//   - rangeEnd <= key, an empty range: etcd's answer depends on the shape
//     of its interval tree. It is allowed only if key itself is
//     permitted, but etcd's tree search, not meant for such ranges, may
//     skip the permissions that hold key and refuse. Allowed reproduces
//     that answer with etcd's own tree (go.etcd.io/etcd/pkg/v3/adt),
//     built in etcd's insertion order.
//
// READWRITE asks for both directions.
func (p *Perms) Allowed(key, rangeEnd []byte, t authpb.Permission_Type) bool {
	switch t {
	case authpb.Permission_READ:
		return allowed(p.read, p.readOrder, key, rangeEnd)
	case authpb.Permission_WRITE:
		return allowed(p.write, p.writeOrder, key, rangeEnd)
	case authpb.Permission_READWRITE:
		return allowed(p.read, p.readOrder, key, rangeEnd) && allowed(p.write, p.writeOrder, key, rangeEnd)
	default:
		return false
	}
}

func allowed(s rangeSet, order []span, key, rangeEnd []byte) bool {
	switch {
	case len(key) == 0:
		return false
	case len(rangeEnd) == 0:
		return s.containsKey(key)
	case isOpenEnded(rangeEnd):
		return s.covers(key, nil)
	case bytes.Compare(rangeEnd, key) <= 0:
		return s.containsKey(key) && etcdTreeContains(order, key, rangeEnd)
	default:
		return s.covers(key, rangeEnd)
	}
}

// etcdTreeContains answers as etcd's interval tree of the spans, inserted
// in order, does for [key, rangeEnd). It is only needed where the answer
// depends on the tree's shape: rarely, so the tree is not kept.
func etcdTreeContains(order []span, key, rangeEnd []byte) bool {
	t := adt.NewIntervalTree()
	for _, sp := range order {
		// A nil end is adt's largest BytesAffineComparable, as in etcd.
		t.Insert(adt.NewBytesAffineInterval(sp.begin, sp.end), struct{}{})
	}
	return t.Contains(adt.NewBytesAffineInterval(key, rangeEnd))
}
