package watch

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestIndexMatchesBruteForce adds and removes random key and range
// watchers (ranges ending at a key or at +infinity, many sharing exact
// bounds) and checks every lookup against a scan of all watchers.
func TestIndexMatchesBruteForce(t *testing.T) {
	keys := []string{"\x00", "\x00\x00", "\x01", "a", "a\x00", "a\x00b", "a\xff", "ab", "abc", "b", "b\x00", "ba", "c", "d", "\xff", "\xff\xff"}
	probes := append([]string{"", "0", "aa", "bb", "\xfe", "\xff\xff\xff"}, keys...)
	for seed := range uint64(4) {
		rng := rand.New(rand.NewPCG(seed, 42))
		x := newIndex()
		var live []*watcher
		for step := range 3000 {
			if len(live) > 0 && rng.IntN(100) < 40+int(seed)*5 {
				i := rng.IntN(len(live))
				x.remove(live[i])
				if live[i].group != nil || live[i].slot != -1 {
					t.Fatalf("removed watcher still points at its group")
				}
				live[i] = live[len(live)-1]
				live = live[:len(live)-1]
			} else {
				w := &watcher{slot: -1}
				i := rng.IntN(len(keys))
				w.key = []byte(keys[i])
				switch n := rng.IntN(10); {
				case n < 4: // single key
				case n < 6:
					w.isRange, w.end = true, bound{inf: true}
				default:
					if i == len(keys)-1 {
						w.isRange, w.end = true, bound{inf: true}
						break
					}
					w.isRange, w.end = true, bound{key: []byte(keys[i+1+rng.IntN(len(keys)-i-1)])}
				}
				x.add(w)
				live = append(live, w)
			}
			if x.n != len(live) {
				t.Fatalf("step %d: index counts %d watchers, %d live", step, x.n, len(live))
			}
			for range 3 {
				k := []byte(probes[rng.IntN(len(probes))])
				got := map[*watcher]int{}
				x.match(k, func(w *watcher) { got[w]++ })
				n := 0
				for _, w := range live {
					var in bool
					if !w.isRange {
						in = bytes.Equal(k, w.key)
					} else {
						in = bytes.Compare(k, w.key) >= 0 && (w.end.inf || bytes.Compare(k, w.end.key) < 0)
					}
					if w.matches(k) != in {
						t.Fatalf("watcher [%q, %+v).matches(%q) = %v", w.key, w.end, k, !in)
					}
					if in {
						n++
						if got[w] != 1 {
							t.Fatalf("seed %d step %d: key %q: watcher [%q, %+v) matched %d times, want once", seed, step, k, w.key, w.end, got[w])
						}
					}
				}
				if len(got) != n {
					t.Fatalf("seed %d step %d: key %q: %d watchers matched, want %d", seed, step, k, len(got), n)
				}
			}
		}
		// Remove everything: the index is empty again.
		for _, w := range live {
			x.remove(w)
		}
		if x.n != 0 || len(x.keys) != 0 || len(x.ranges) != 0 {
			t.Fatalf("emptied index: n %d, %d keys, %d ranges", x.n, len(x.keys), len(x.ranges))
		}
		x.match([]byte("a"), func(*watcher) { t.Fatal("empty index matched") })
	}
}

func TestRangeIDDistinct(t *testing.T) {
	// Distinct (begin, end) pairs whose concatenations coincide.
	pairs := [][2]string{{"a", "bc"}, {"ab", "c"}, {"", "abc"}, {"abc", ""}}
	seen := map[string]bool{}
	for _, p := range pairs {
		id := rangeID([]byte(p[0]), bound{key: []byte(p[1])})
		if seen[id] {
			t.Fatalf("range [%q, %q) shares its ID", p[0], p[1])
		}
		seen[id] = true
	}
	// An infinite range and a finite one: ["\x00\x00\x00\x01ab", +inf)
	// and ["a", "b\x00\x00inf") must not share a group, or each would be
	// given the other's events.
	inf := &watcher{key: []byte("\x00\x00\x00\x01ab"), isRange: true, end: bound{inf: true}, slot: -1}
	fin := &watcher{key: []byte("a"), isRange: true, end: bound{key: []byte("b\x00\x00inf")}, slot: -1}
	if rangeID(inf.key, inf.end) == rangeID(fin.key, fin.end) {
		t.Errorf("ranges [%q, +inf) and [%q, %q) share an ID", inf.key, fin.key, fin.end.key)
	}
	x := newIndex()
	x.add(inf)
	x.add(fin)
	for _, k := range []string{"\x00\x00\x00\x01ac", "a", "b", "c"} {
		var got []*watcher
		x.match([]byte(k), func(w *watcher) { got = append(got, w) })
		n := 0
		for _, w := range []*watcher{inf, fin} {
			if w.matches([]byte(k)) {
				n++
			}
		}
		if len(got) != n {
			t.Errorf("key %q: %d watchers matched, want %d", k, len(got), n)
		}
	}
}
