package applier

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// keySpan is an etcd key range with etcd's range_end conventions resolved.
type keySpan struct {
	key []byte
	// end is the exclusive upper bound; nil means unbounded (unless single).
	end []byte
	// single means exactly key.
	single bool
}

// spanOf resolves etcd's conventions: an empty range_end names the single
// key, "\x00" means every key >= key, anything else is [key, range_end).
// An empty and an absent range_end are the same on the wire, so they are
// the same here.
func spanOf(key, rangeEnd []byte) keySpan {
	switch {
	case len(rangeEnd) == 0:
		return keySpan{key: key, single: true}
	case len(rangeEnd) == 1 && rangeEnd[0] == 0:
		return keySpan{key: key}
	default:
		return keySpan{key: key, end: rangeEnd}
	}
}

// empty reports whether the span can hold no key.
func (s keySpan) empty() bool {
	return !s.single && s.end != nil && bytes.Compare(s.key, s.end) >= 0
}

// visitFunc is called for each live key of a visit, in key order. key and
// value are valid only during the call. It returns false to stop.
type visitFunc func(key []byte, m kvMeta, value []byte) (bool, error)

// visitLatest visits the keys of s live in the latest view of r.
func visitLatest(r Reader, s keySpan, fn visitFunc) error {
	if s.empty() {
		return nil
	}
	if s.single {
		v, err := r.Get(latestKey(nil, s.key))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		m, value, err := decodeKV(v)
		if err != nil {
			return err
		}
		_, err = fn(s.key, m, value)
		return err
	}
	lower := latestKey(nil, s.key)
	upper := latestEnd
	if s.end != nil {
		upper = latestKey(nil, s.end)
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		m, value, err := decodeKV(it.Value())
		if err != nil {
			return iterCorrupt(it, err)
		}
		more, err := fn(it.Key()[len(prefixLatest):], m, value)
		if err != nil || !more {
			it.Close()
			return err
		}
	}
	return closeIter(it)
}

// maxNextPerKey is how many versions visitAt steps over with Next before it
// seeks instead: a Next is cheaper than a seek while keys have few versions.
const maxNextPerKey = 3

// visitAt visits the keys of s live at revision rev, reading history. For
// each key it positions on the newest version at or below rev (one seek,
// since versions are ordered newest first) and skips the older ones.
func visitAt(r Reader, s keySpan, rev int64, fn visitFunc) error {
	if s.empty() {
		return nil
	}
	var lower, upper []byte
	switch {
	case s.single:
		lower = historyKeyPrefix(nil, s.key)
		upper = append(lower[:len(lower)-1:len(lower)-1], escPastTerm)
	case s.end == nil:
		lower, upper = historyLowerBound(nil, s.key), historyEnd
	default:
		lower, upper = historyLowerBound(nil, s.key), historyLowerBound(nil, s.end)
	}
	it, err := r.NewIter(lower, upper)
	if err != nil {
		return err
	}
	var (
		seek []byte
		ukey []byte
	)
	ok := it.First()
	for ok {
		prefix, main, _, err := splitHistoryKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		if main > rev {
			// Seek to the newest version at or below rev.
			seek = append(append(seek[:0], prefix...), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
			putRevDesc(seek[len(prefix):], rev)
			if !it.SeekGE(seek) {
				break
			}
			p, m, _, err := splitHistoryKey(it.Key())
			if err != nil {
				it.Close()
				return err
			}
			if !bytes.Equal(p, seek[:len(prefix)]) {
				continue // no version of that key at or below rev
			}
			prefix, main = p, m
		}
		v := it.Value()
		if len(v) == 0 {
			return iterCorrupt(it, errCorruptValue)
		}
		if v[0] == kindPut {
			m, value, err := decodeKV(v[1:])
			if err != nil {
				return iterCorrupt(it, err)
			}
			ukey = unescapeHistoryPrefix(ukey[:0], prefix)
			more, err := fn(ukey, m, value)
			if err != nil || !more {
				it.Close()
				return err
			}
		}
		// Skip the older versions of this key.
		seek = append(seek[:0], prefix...)
		ok = false
		for i := 0; i < maxNextPerKey; i++ {
			if !it.Next() {
				break
			}
			if !bytes.HasPrefix(it.Key(), seek) {
				ok = true
				break
			}
		}
		if !ok && it.Valid() {
			seek[len(seek)-1] = escPastTerm
			ok = it.SeekGE(seek)
		}
	}
	return closeIter(it)
}

// putRevDesc writes the descending encoding of (main, max sub) to dst[:16]:
// the smallest history suffix whose main revision is <= main.
func putRevDesc(dst []byte, main int64) {
	binary.BigEndian.PutUint64(dst, ^uint64(main))
	binary.BigEndian.PutUint64(dst[8:], 0)
}

// iterCorrupt returns the error for a value of it that does not decode:
// the iterator's own error if reading the value failed, else err.
func iterCorrupt(it Iterator, err error) error {
	if ierr := it.Error(); ierr != nil {
		err = ierr
	}
	it.Close()
	return err
}

func closeIter(it Iterator) error {
	err := it.Error()
	if cerr := it.Close(); err == nil {
		err = cerr
	}
	return err
}

// newKeyValue builds a response KeyValue, copying key and value.
func newKeyValue(key []byte, m kvMeta, value []byte) *mvccpb.KeyValue {
	kv := &mvccpb.KeyValue{
		Key:            append([]byte(nil), key...),
		CreateRevision: m.create,
		ModRevision:    m.mod,
		Version:        m.version,
		Lease:          m.lease,
	}
	if len(value) > 0 {
		kv.Value = append([]byte(nil), value...)
	}
	return kv
}

// getLatest returns the live version of key in r's latest view.
func getLatest(r Reader, key []byte, buf []byte) (m kvMeta, value []byte, found bool, err error) {
	v, err := r.Get(latestKey(buf[:0], key))
	if errors.Is(err, ErrNotFound) {
		return kvMeta{}, nil, false, nil
	}
	if err != nil {
		return kvMeta{}, nil, false, err
	}
	m, value, err = decodeKV(v)
	if err != nil {
		return kvMeta{}, nil, false, fmt.Errorf("key %q: %w", key, err)
	}
	return m, value, true, nil
}
