package pipeline

import (
	"encoding/binary"

	"go.etcd.io/raft/v3"
)

// readBatcher batches ReadIndex requests: at most one raft ReadIndex is
// outstanding; every read that arrives meanwhile waits for the next one.
// It is owned by the raft goroutine.
type readBatcher struct {
	pending  []*readWaiter
	inflight []*readWaiter
	ctx      uint64 // request context of the outstanding ReadIndex
	age      int    // ticks since it was issued
}

func (b *readBatcher) add(w *readWaiter) { b.pending = append(b.pending, w) }

// maybeIssue starts a ReadIndex round for the pending reads if none is
// outstanding, and reports whether it did.
func (b *readBatcher) maybeIssue(rn *raft.RawNode) bool {
	if len(b.inflight) > 0 || len(b.pending) == 0 {
		return false
	}
	b.ctx++
	b.age = 0
	b.inflight, b.pending = b.pending, nil
	var rctx [8]byte
	binary.BigEndian.PutUint64(rctx[:], b.ctx)
	rn.ReadIndex(rctx[:])
	return true
}

func (b *readBatcher) resolve(rs raft.ReadState) {
	if len(rs.RequestCtx) != 8 || binary.BigEndian.Uint64(rs.RequestCtx) != b.ctx {
		return // an answer to a request we gave up on
	}
	for _, w := range b.inflight {
		w.resC <- readResult{index: rs.Index}
	}
	b.inflight = nil
}

// tick forgets waiters whose callers have gone, and re-arms a ReadIndex
// that got no answer within an election timeout (raft drops it silently
// when leadership is lost mid-round).
func (b *readBatcher) tick(electionTicks int) {
	b.pending = liveWaiters(b.pending)
	if len(b.inflight) == 0 {
		return
	}
	b.age++
	if b.age < electionTicks {
		return
	}
	b.pending = append(liveWaiters(b.inflight), b.pending...)
	b.inflight = nil
}

func liveWaiters(ws []*readWaiter) []*readWaiter {
	live := ws[:0]
	for _, w := range ws {
		if w.ctx.Err() == nil {
			live = append(live, w)
		}
	}
	clear(ws[len(live):])
	return live
}

func (b *readBatcher) failAll(err error) {
	for _, w := range append(b.inflight, b.pending...) {
		w.resC <- readResult{err: err}
	}
	b.inflight, b.pending = nil, nil
}
