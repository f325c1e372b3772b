package perf

import (
	"math/rand/v2"
	"strconv"
)

// keyGen draws keys of a key space for one worker. Keys are the run's
// prefix and the key's number, zero-padded to the key size (longer when the
// number needs it), so they sort in numeric order.
type keyGen struct {
	prefix string
	size   int
	space  int
	dist   string
	next   int // sequential: the next key number
	rng    *rand.Rand
	zipf   *rand.Zipf
	buf    []byte
}

func newKeyGen(c Config, worker int, rng *rand.Rand) *keyGen {
	g := &keyGen{prefix: c.Prefix, size: c.KeySize, space: c.KeySpace, dist: c.KeyDist, rng: rng}
	// Sequential workers start spread over the space.
	g.next = int(int64(worker) * int64(c.KeySpace) / int64(max(c.Clients, 1)))
	if c.KeyDist == "zipf" {
		g.zipf = rand.NewZipf(rng, c.ZipfS, 1, uint64(c.KeySpace-1))
	}
	return g
}

// Next returns the next key number.
func (g *keyGen) Next() int {
	switch g.dist {
	case "sequential":
		n := g.next
		g.next = (g.next + 1) % g.space
		return n
	case "zipf":
		return int(g.zipf.Uint64())
	}
	return g.rng.IntN(g.space)
}

// Key returns key number n; the slice is reused by the next call.
func (g *keyGen) Key(n int) []byte {
	g.buf = appendKey(g.buf[:0], g.prefix, g.size, n)
	return g.buf
}

func appendKey(dst []byte, prefix string, size, n int) []byte {
	dst = append(dst, prefix...)
	digits := strconv.AppendInt(nil, int64(n), 10)
	for i := len(digits); i < size; i++ {
		dst = append(dst, '0')
	}
	return append(dst, digits...)
}
