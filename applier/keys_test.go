package applier

import (
	"bytes"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestHistoryKeyOrder checks the property the history layout rests on:
// history keys sort by user key ascending, then by revision descending,
// for keys that are prefixes of each other and hold 0x00 and 0xFF bytes.
func TestHistoryKeyOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{0x00, 0x01, 0x02, 'a', 0xFE, 0xFF}
	type version struct {
		key       []byte
		main, sub int64
	}
	var vs []version
	for range 2000 {
		k := make([]byte, rng.IntN(4))
		for i := range k {
			k[i] = alphabet[rng.IntN(len(alphabet))]
		}
		vs = append(vs, version{k, rng.Int64N(1 << 40), rng.Int64N(3)})
	}
	sort.Slice(vs, func(i, j int) bool {
		if c := bytes.Compare(vs[i].key, vs[j].key); c != 0 {
			return c < 0
		}
		if vs[i].main != vs[j].main {
			return vs[i].main > vs[j].main
		}
		return vs[i].sub > vs[j].sub
	})
	var prev []byte
	for i, v := range vs {
		hk := historyKey(nil, v.key, v.main, v.sub)
		if i > 0 && bytes.Compare(prev, hk) > 0 {
			t.Fatalf("history key of %q@%d.%d sorts before its predecessor's", v.key, v.main, v.sub)
		}
		prev = hk

		p, main, sub, err := splitHistoryKey(hk)
		if err != nil || main != v.main || sub != v.sub {
			t.Fatalf("splitHistoryKey(%q) = %d.%d, %v", hk, main, sub, err)
		}
		if got := unescapeHistoryPrefix(nil, p); !bytes.Equal(got, v.key) {
			t.Fatalf("unescape = %q, want %q", got, v.key)
		}
		// The bounds used for range scans bracket the key's versions.
		if lo := historyLowerBound(nil, v.key); bytes.Compare(lo, hk) > 0 {
			t.Fatalf("lower bound of %q above its version", v.key)
		}
		past := append(append([]byte(nil), p[:len(p)-1]...), escPastTerm)
		if bytes.Compare(hk, past) >= 0 {
			t.Fatalf("version of %q not below its past-the-key bound", v.key)
		}
	}
	// A range [a, b) of user keys is exactly [lowerBound(a), lowerBound(b))
	// of history keys.
	for range 2000 {
		a, b := vs[rng.IntN(len(vs))].key, vs[rng.IntN(len(vs))].key
		v := vs[rng.IntN(len(vs))]
		hk := historyKey(nil, v.key, v.main, v.sub)
		in := bytes.Compare(a, v.key) <= 0 && bytes.Compare(v.key, b) < 0
		inBounds := bytes.Compare(historyLowerBound(nil, a), hk) <= 0 && bytes.Compare(hk, historyLowerBound(nil, b)) < 0
		if in != inBounds {
			t.Fatalf("key %q in [%q, %q) = %v, by history bounds %v", v.key, a, b, in, inBounds)
		}
	}
}

func TestKVEncoding(t *testing.T) {
	for _, m := range []kvMeta{{}, {1, 2, 3, 4}, {1 << 62, 1 << 62, 1 << 40, -5}} {
		for _, v := range [][]byte{nil, []byte("v"), bytes.Repeat([]byte{0}, 300)} {
			got, value, err := decodeKV(appendKV(nil, m, v))
			if err != nil || got != m || !bytes.Equal(value, v) {
				t.Fatalf("round trip of %+v %q = %+v %q %v", m, v, got, value, err)
			}
		}
	}
	if _, _, err := decodeKV([]byte{0x80}); err == nil {
		t.Fatal("truncated value decoded")
	}
}
