package watch

import (
	"bytes"
	"slices"
)

// index finds the synced watchers interested in a key. Watchers of a
// single key sit in a map; range watchers are grouped by their exact range
// (many watchers usually share a few prefixes), and the groups sit in a
// slice sorted by start key with a max-end tree over it, rebuilt lazily
// after the set of ranges changed. A lookup costs a map probe plus
// O(m log n) for m matching range groups among n.
type index struct {
	keys   map[string]*group
	ranges map[string]*group // by rangeID
	sorted []*group          // range groups by begin; valid unless dirty
	maxEnd []bound           // segment tree over sorted: largest end below each node
	dirty  bool
	// n counts the watchers indexed.
	n int
}

// group holds the watchers of one key or one range.
type group struct {
	begin []byte
	end   bound // for a single key: unset
	ws    []*watcher
}

// bound is a range end: a key, or +infinity (etcd's "\x00" range end).
type bound struct {
	key []byte
	inf bool
}

// after reports whether k lies below the bound (so inside a range ending
// there).
func (b bound) after(k []byte) bool { return b.inf || bytes.Compare(k, b.key) < 0 }

// less orders bounds, +infinity last.
func (b bound) less(o bound) bool {
	switch {
	case b.inf:
		return false
	case o.inf:
		return true
	}
	return bytes.Compare(b.key, o.key) < 0
}

func newIndex() *index {
	return &index{keys: map[string]*group{}, ranges: map[string]*group{}}
}

func rangeID(begin []byte, end bound) string {
	// A tag byte tells infinite ranges from finite ones, and begin and end
	// are separated by a length prefix, so that distinct ranges never
	// share an ID (and a group, whose bounds would then be wrong for one).
	if end.inf {
		return "\x01" + string(begin)
	}
	return string(append(append(appendLen([]byte{0}, len(begin)), begin...), end.key...))
}

func appendLen(dst []byte, n int) []byte {
	return append(dst, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

// add indexes w. REQUIRES: w is not indexed.
func (x *index) add(w *watcher) {
	var g *group
	if !w.isRange {
		g = x.keys[string(w.key)]
		if g == nil {
			g = &group{begin: w.key}
			x.keys[string(w.key)] = g
		}
	} else {
		id := rangeID(w.key, w.end)
		g = x.ranges[id]
		if g == nil {
			g = &group{begin: w.key, end: w.end}
			x.ranges[id] = g
			x.dirty = true
		}
	}
	w.slot = len(g.ws)
	w.group = g
	g.ws = append(g.ws, w)
	x.n++
}

// remove unindexes w. REQUIRES: w is indexed.
func (x *index) remove(w *watcher) {
	g := w.group
	last := g.ws[len(g.ws)-1]
	g.ws[w.slot] = last
	last.slot = w.slot
	g.ws[len(g.ws)-1] = nil
	g.ws = g.ws[:len(g.ws)-1]
	w.group, w.slot = nil, -1
	x.n--
	if len(g.ws) > 0 {
		return
	}
	if !w.isRange {
		delete(x.keys, string(w.key))
		return
	}
	delete(x.ranges, rangeID(w.key, w.end))
	x.dirty = true
}

// match calls fn for every indexed watcher whose key or range holds k.
func (x *index) match(k []byte, fn func(*watcher)) {
	if g := x.keys[string(k)]; g != nil {
		for _, w := range g.ws {
			fn(w)
		}
	}
	if len(x.ranges) == 0 {
		return
	}
	if x.dirty {
		x.rebuild()
	}
	// Groups that start at or below k: a prefix of sorted.
	n, _ := slices.BinarySearchFunc(x.sorted, k, func(g *group, k []byte) int {
		if bytes.Compare(g.begin, k) <= 0 {
			return -1
		}
		return 1
	})
	x.visit(1, 0, len(x.sorted), n, k, fn)
}

// visit walks tree node i, covering sorted[lo:hi], for groups below n whose
// end lies after k.
func (x *index) visit(i, lo, hi, n int, k []byte, fn func(*watcher)) {
	if lo >= n || !x.maxEnd[i].after(k) {
		return
	}
	if hi-lo == 1 {
		for _, w := range x.sorted[lo].ws {
			fn(w)
		}
		return
	}
	mid := (lo + hi) / 2
	x.visit(2*i, lo, mid, n, k, fn)
	x.visit(2*i+1, mid, hi, n, k, fn)
}

func (x *index) rebuild() {
	x.sorted = x.sorted[:0]
	for _, g := range x.ranges {
		x.sorted = append(x.sorted, g)
	}
	slices.SortFunc(x.sorted, func(a, b *group) int { return bytes.Compare(a.begin, b.begin) })
	size := 1
	for size < len(x.sorted) {
		size *= 2
	}
	x.maxEnd = slices.Grow(x.maxEnd[:0], 2*size)[:2*size]
	if len(x.sorted) > 0 {
		x.build(1, 0, len(x.sorted))
	}
	x.dirty = false
}

func (x *index) build(i, lo, hi int) bound {
	if hi-lo == 1 {
		x.maxEnd[i] = x.sorted[lo].end
		return x.maxEnd[i]
	}
	mid := (lo + hi) / 2
	a, b := x.build(2*i, lo, mid), x.build(2*i+1, mid, hi)
	if a.less(b) {
		a = b
	}
	x.maxEnd[i] = a
	return a
}
