package applier

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Engine key prefixes. Every key the applier writes starts with one of
// them; see doc.go for the layout and the invariants that tie them together.
var (
	prefixLatest   = []byte("k/")
	prefixHistory  = []byte("h/")
	prefixRevision = []byte("r/")
	prefixMeta     = []byte("m/")

	// keyMetaApplied holds the applied raft index and term (16 bytes).
	keyMetaApplied = []byte("m/applied")
	// keyMetaConfState holds the marshaled raftpb.ConfState.
	keyMetaConfState = []byte("m/confstate")
	// keyMetaRev holds the current and the compacted revision (16 bytes).
	keyMetaRev = []byte("m/rev")
	// keyMetaCompactor holds the physical compactor's progress (32 bytes).
	keyMetaCompactor = []byte("m/compactor")
	// keyMetaKeys holds the number of live keys (8 bytes), a count of the
	// latest view kept with it.
	keyMetaKeys = []byte("m/keys")
)

// History key framing. A user key is escaped so that escaped keys sort like
// the raw keys and no escaped key is a prefix of another's framing: every
// 0x00 byte becomes 0x00 0xFF, and the key ends with 0x00 0x01. No escaped
// key contains 0x00 followed by a byte below 0xFF other than at its
// terminator, which makes 0x00 0x02 a bound between one key's versions and
// the next key.
const (
	escByte     = 0x00
	escEscaped  = 0xFF
	escTerm     = 0x01
	escPastTerm = 0x02
)

// revLen is the encoded length of a (main, sub) revision pair.
const revLen = 16

// Kinds of history and revision-index records.
const (
	kindPut       byte = 'p'
	kindTombstone byte = 't'
)

// prefixEnd returns the smallest key greater than every key with prefix p.
// p must not end in 0xFF (none of ours do).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	end[len(end)-1]++
	return end
}

var (
	latestEnd   = prefixEnd(prefixLatest)
	historyEnd  = prefixEnd(prefixHistory)
	revisionEnd = prefixEnd(prefixRevision)
)

// latestKey appends the latest-view key of user key k to dst.
func latestKey(dst, k []byte) []byte {
	dst = append(dst, prefixLatest...)
	return append(dst, k...)
}

// appendEscaped appends the escaped, terminated form of k to dst.
func appendEscaped(dst, k []byte) []byte {
	for {
		i := bytes.IndexByte(k, escByte)
		if i < 0 {
			dst = append(dst, k...)
			break
		}
		dst = append(dst, k[:i+1]...)
		dst = append(dst, escEscaped)
		k = k[i+1:]
	}
	return append(dst, escByte, escTerm)
}

// historyKeyPrefix appends h/<escaped k> (with terminator) to dst: the
// common prefix of every version of k.
func historyKeyPrefix(dst, k []byte) []byte {
	dst = append(dst, prefixHistory...)
	return appendEscaped(dst, k)
}

// historyLowerBound appends the smallest history key of user key k, or of
// any key >= k, to dst (the escaped key without its terminator).
func historyLowerBound(dst, k []byte) []byte {
	dst = historyKeyPrefix(dst, k)
	return dst[:len(dst)-2]
}

// appendRevDesc appends (main, sub) so that larger revisions sort first.
func appendRevDesc(dst []byte, main, sub int64) []byte {
	dst = binary.BigEndian.AppendUint64(dst, ^uint64(main))
	return binary.BigEndian.AppendUint64(dst, ^uint64(sub))
}

// historyKey appends the key of version (main, sub) of k to dst.
func historyKey(dst, k []byte, main, sub int64) []byte {
	dst = historyKeyPrefix(dst, k)
	return appendRevDesc(dst, main, sub)
}

// splitHistoryKey splits a history key into the prefix shared by the
// versions of its user key (h/<escaped key><terminator>) and its revision.
func splitHistoryKey(hk []byte) (keyPrefix []byte, main, sub int64, err error) {
	if len(hk) < len(prefixHistory)+2+revLen || !bytes.HasPrefix(hk, prefixHistory) {
		return nil, 0, 0, fmt.Errorf("applier: malformed history key %q", hk)
	}
	n := len(hk) - revLen
	if hk[n-2] != escByte || hk[n-1] != escTerm {
		return nil, 0, 0, fmt.Errorf("applier: malformed history key %q", hk)
	}
	main = int64(^binary.BigEndian.Uint64(hk[n:]))
	sub = int64(^binary.BigEndian.Uint64(hk[n+8:]))
	return hk[:n], main, sub, nil
}

// unescapeHistoryPrefix appends the user key of a history key prefix (as
// returned by splitHistoryKey) to dst.
func unescapeHistoryPrefix(dst, keyPrefix []byte) []byte {
	e := keyPrefix[len(prefixHistory) : len(keyPrefix)-2]
	for {
		i := bytes.IndexByte(e, escByte)
		if i < 0 {
			return append(dst, e...)
		}
		dst = append(dst, e[:i+1]...)
		e = e[i+2:] // skip the escape's 0xFF
	}
}

// revisionKey appends the revision-index key of (main, sub) to dst.
func revisionKey(dst []byte, main, sub int64) []byte {
	dst = append(dst, prefixRevision...)
	dst = binary.BigEndian.AppendUint64(dst, uint64(main))
	return binary.BigEndian.AppendUint64(dst, uint64(sub))
}

// splitRevisionKey returns the revision of a revision-index key.
func splitRevisionKey(rk []byte) (main, sub int64, err error) {
	if len(rk) != len(prefixRevision)+revLen || !bytes.HasPrefix(rk, prefixRevision) {
		return 0, 0, fmt.Errorf("applier: malformed revision key %q", rk)
	}
	rk = rk[len(prefixRevision):]
	return int64(binary.BigEndian.Uint64(rk)), int64(binary.BigEndian.Uint64(rk[8:])), nil
}

// kvMeta is the MVCC metadata of one version of a key.
type kvMeta struct {
	create, mod, version, lease int64
}

// appendKV appends the encoding of a live version to dst:
//
//	create:uvarint mod:uvarint version:uvarint lease:varint value
//
// The same encoding is the value of a latest-view key and, after a kindPut
// byte, of a history key.
func appendKV(dst []byte, m kvMeta, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(m.create))
	dst = binary.AppendUvarint(dst, uint64(m.mod))
	dst = binary.AppendUvarint(dst, uint64(m.version))
	dst = binary.AppendVarint(dst, m.lease)
	return append(dst, value...)
}

// decodeKV decodes an appendKV encoding. value aliases b.
func decodeKV(b []byte) (m kvMeta, value []byte, err error) {
	var u [3]uint64
	for i := range u {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return kvMeta{}, nil, errCorruptValue
		}
		u[i], b = v, b[n:]
	}
	l, n := binary.Varint(b)
	if n <= 0 {
		return kvMeta{}, nil, errCorruptValue
	}
	return kvMeta{create: int64(u[0]), mod: int64(u[1]), version: int64(u[2]), lease: l}, b[n:], nil
}
