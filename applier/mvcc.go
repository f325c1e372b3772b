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

// contains reports whether k is in the span.
func (s keySpan) contains(k []byte) bool {
	switch {
	case s.single:
		return bytes.Equal(k, s.key)
	case bytes.Compare(k, s.key) < 0:
		return false
	}
	return s.end == nil || bytes.Compare(k, s.end) < 0
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
// each key it positions on the newest version at or below rev (versions
// are ordered newest first, so this is a seek, or a few Nexts) and then
// skips the older ones.
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
		cur  []byte // the current key's history prefix, then a seek key
		ukey []byte
	)
	ok := it.First()
	for ok {
		prefix, main, _, err := splitHistoryKey(it.Key())
		if err != nil {
			it.Close()
			return err
		}
		cur = append(cur[:0], prefix...)
		n := len(cur)
		// Step to the newest version at or below rev.
		for steps := 0; main > rev; steps++ {
			if steps < maxNextPerKey {
				ok = it.Next()
			} else {
				cur = append(cur[:n], make([]byte, revLen)...)
				putRevDesc(cur[n:], rev)
				ok = it.SeekGE(cur)
				cur = cur[:n]
			}
			if !ok {
				break
			}
			if prefix, main, _, err = splitHistoryKey(it.Key()); err != nil {
				it.Close()
				return err
			}
			if !bytes.Equal(prefix, cur) {
				break // no version of that key at or below rev
			}
		}
		if !ok {
			break
		}
		if !bytes.Equal(prefix, cur) {
			continue // positioned on the next key already
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
			ukey = unescapeHistoryPrefix(ukey[:0], cur)
			more, err := fn(ukey, m, value)
			if err != nil || !more {
				it.Close()
				return err
			}
		}
		// Skip the older versions of this key.
		for steps := 0; ; steps++ {
			if steps < maxNextPerKey {
				ok = it.Next()
			} else {
				cur[n-1] = escPastTerm
				ok = it.SeekGE(cur)
			}
			if !ok || !bytes.HasPrefix(it.Key(), cur) {
				break
			}
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

// kvArena allocates the KeyValues of one response, and their keys and
// values, in blocks rather than one by one: a large Range costs a few
// allocations instead of three per key. Every KeyValue keeps its block
// alive, which is fine for the life of a response.
type kvArena struct {
	kvs []mvccpb.KeyValue
	buf []byte
}

// newKV returns a KeyValue for key and m, with a copy of value unless
// value is nil.
func (a *kvArena) newKV(key []byte, m kvMeta, value []byte) *mvccpb.KeyValue {
	if len(a.kvs) == cap(a.kvs) {
		a.kvs = make([]mvccpb.KeyValue, 0, min(max(2*cap(a.kvs), 1), 1024))
	}
	a.kvs = a.kvs[:len(a.kvs)+1]
	kv := &a.kvs[len(a.kvs)-1]
	kv.Key = a.bytes(key)
	if len(value) > 0 {
		kv.Value = a.bytes(value)
	}
	kv.CreateRevision, kv.ModRevision, kv.Version, kv.Lease = m.create, m.mod, m.version, m.lease
	return kv
}

// bytes returns a copy of b whose capacity ends with it.
func (a *kvArena) bytes(b []byte) []byte {
	if cap(a.buf)-len(a.buf) < len(b) {
		a.buf = make([]byte, 0, max(len(b), min(2*cap(a.buf), 64<<10)))
	}
	n := len(a.buf)
	a.buf = append(a.buf, b...)
	return a.buf[n:len(a.buf):len(a.buf)]
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
