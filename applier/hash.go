package applier

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HashKVResult is the answer to a HashKV.
type HashKVResult struct {
	Hash uint32
	// HashRev is the revision hashed; CompactRev the compacted revision
	// (-1 if never compacted); Rev the current revision.
	HashRev, CompactRev, Rev int64
}

// HashKV hashes the MVCC state as of revision rev (0 for the current one):
// every version written in (compacted, rev], and for each key its newest
// version at or below the compacted revision if that is a put — exactly the
// versions compaction keeps, whether or not the background compactor has
// removed the others yet. The hash covers only the logical content, in key
// then revision order, so any two members that applied the same entries
// agree, whatever their engine (writers on Pebble, readers on bbolt).
//
// As in etcd, a revision above the current one fails with ErrGRPCFutureRev
// and one below the compacted one with ErrGRPCCompacted.
func (a *Applier) HashKV(rev int64) (HashKVResult, error) {
	t, snap, err := a.readView()
	if err != nil {
		return HashKVResult{}, err
	}
	defer snap.Close()
	res := HashKVResult{HashRev: rev, CompactRev: t.compacted, Rev: t.beginRev}
	if rev > t.beginRev {
		return res, rpctypes.ErrGRPCFutureRev
	}
	if rev > 0 && rev < t.compacted {
		return res, rpctypes.ErrGRPCCompacted
	}
	if rev <= 0 {
		res.HashRev = t.beginRev
	}
	res.Hash, err = hashHistory(snap, res.HashRev, t.compacted)
	return res, err
}

func hashHistory(r Reader, rev, compacted int64) (uint32, error) {
	it, err := r.NewIter(prefixHistory, historyEnd)
	if err != nil {
		return 0, err
	}
	h := crc32.New(castagnoli)
	var (
		cur          []byte // history prefix of the key being walked
		keptBelowCmp bool   // its newest version <= compacted was seen
	)
	for ok := it.First(); ok; ok = it.Next() {
		prefix, main, _, err := splitHistoryKey(it.Key())
		if err != nil {
			it.Close()
			return 0, err
		}
		if !bytes.Equal(prefix, cur) {
			cur = append(cur[:0], prefix...)
			keptBelowCmp = false
		}
		if main > rev {
			continue
		}
		v := it.Value()
		if len(v) == 0 {
			return 0, iterCorrupt(it, errCorruptValue)
		}
		if main <= compacted {
			// Versions are newest first: only the first one at or below
			// the compacted revision can survive compaction, and only
			// if it is a put.
			if keptBelowCmp {
				continue
			}
			keptBelowCmp = true
			if v[0] != kindPut {
				continue
			}
		}
		h.Write(it.Key())
		h.Write(v)
	}
	if err := closeIter(it); err != nil {
		return 0, err
	}
	return h.Sum32(), nil
}

// Hash is etcd's Maintenance.Hash: a CRC-32 (IEEE) of the whole state
// machine, every key and value in key order, meta keys included but for
// the physical compactor's progress (a member's own pace) and the live key
// count (derived from the latest view, which is hashed). Two members
// at the same applied index hash alike, whatever their engines; a member
// applying meanwhile hashes differently (as in etcd, a tool for tests).
// It returns the revision it hashed at.
func (a *Applier) Hash() (uint32, int64, error) {
	snap, err := a.openSnapshot()
	if err != nil {
		return 0, 0, err
	}
	defer snap.Close()
	rev, _, err := loadRevs(snap)
	if err != nil {
		return 0, 0, err
	}
	it, err := snap.NewIter(nil, nil)
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	h := crc32.NewIEEE()
	var lens []byte
	for ok := it.First(); ok; ok = it.Next() {
		if bytes.Equal(it.Key(), keyMetaCompactor) || bytes.Equal(it.Key(), keyMetaKeys) {
			continue
		}
		// Lengths first, so that no two contents hash the same bytes.
		lens = binary.AppendUvarint(binary.AppendUvarint(lens[:0], uint64(len(it.Key()))), uint64(len(it.Value())))
		h.Write(lens)
		h.Write(it.Key())
		h.Write(it.Value())
	}
	if err := it.Error(); err != nil {
		return 0, 0, err
	}
	return h.Sum32(), rev, nil
}
