package proposer

import (
	"sync/atomic"
	"time"
)

// idGen generates request IDs unique across members and restarts: the top
// 16 bits are the low bits of the member ID; the low 48 bits start at the
// process start time in milliseconds (shifted left by 8, leaving room for
// 256 IDs per millisecond of uptime before catching up with the clock) and
// count up. A restart therefore never reissues an ID that an entry still in
// the log could carry, unless the clock moved backwards.
type idGen struct {
	prefix uint64
	suffix atomic.Uint64
}

const (
	idSuffixBits = 48
	idSuffixMask = 1<<idSuffixBits - 1
)

func newIDGen(memberID uint64, now time.Time) *idGen {
	g := &idGen{prefix: memberID << idSuffixBits}
	g.suffix.Store((uint64(now.UnixMilli()) << 8) & idSuffixMask)
	return g
}

func (g *idGen) next() uint64 {
	return g.prefix | (g.suffix.Add(1) & idSuffixMask)
}
