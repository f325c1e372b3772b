package proposer

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/clock"
)

// applyingRaft answers every request of an entry as soon as it is
// proposed, so that a benchmark measures the proposer alone: marshaling,
// queueing, batching and the wait.
type applyingRaft struct {
	p *Proposer
}

func (r *applyingRaft) Propose(_ context.Context, data []byte) (uint64, error) {
	reqs, err := applier.DecodeEntry(data)
	if err != nil {
		return 0, err
	}
	go func() {
		for _, q := range reqs {
			r.p.Notify(q.ID, applier.Result{Resp: &pb.PutResponse{}})
		}
	}()
	return 1, nil
}

func (r *applyingRaft) ProposeConfChange(context.Context, raftpb.ConfChangeI) error { return nil }

// BenchmarkPropose is 64 concurrent callers putting 256-byte values; the
// "timed" case adds event listeners of the cost of a member's metrics
// (a clock read and an atomic add per call).
func BenchmarkPropose(b *testing.B) {
	var n atomic.Int64
	observe := func(d time.Duration) { n.Add(int64(d)) }
	for _, c := range []struct {
		name string
		l    EventListener
	}{
		{"plain", EventListener{}},
		{"timed", EventListener{Proposed: func(r, by int) { n.Add(int64(r + by)) }, Queued: observe, Committed: observe}},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := &applyingRaft{}
			p := New(Config{Raft: r, MemberID: 1, Clock: clock.Real{}, MaxRequestBytes: 1 << 20, EventListener: c.l})
			r.p = p
			defer p.Stop()
			val := make([]byte, 256)
			b.SetParallelism(32)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb_ *testing.PB) {
				for pb_.Next() {
					req := &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("key"), Value: val}}
					if _, err := p.Propose(context.Background(), req); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
