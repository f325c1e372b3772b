package watch

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/stratakv/strata/applier"
)

// The hub's hot path: Commit fanning one revision out to the synced
// watchers it matches, and each stream taking its watchers' events into
// responses (what Next does before gRPC marshals them).
//
//	go test -run=NONE -bench=. ./internal/watch/

// benchHub opens streams × perStream watchers, watcher i on key(i), with
// their created responses taken.
func benchHub(b *testing.B, streams, perStream int, key func(i int) []byte, rangeEnd func(i int) []byte) (*Hub, []*Stream) {
	h := New(Config{Rev: 1, Compacted: -1})
	ss := make([]*Stream, streams)
	for s := range ss {
		ss[s] = h.NewStream(StreamOptions{})
		created := 0
		for j := range perStream {
			if j%maxCtrl == maxCtrl-1 { // Handle waits for room beyond maxCtrl
				out, _ := ss[s].collect()
				created += len(out)
			}
			i := s*perStream + j
			cr := &pb.WatchCreateRequest{Key: key(i)}
			if rangeEnd != nil {
				cr.RangeEnd = rangeEnd(i)
			}
			ss[s].Handle(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}})
		}
		out, _ := ss[s].collect()
		if created += len(out); created != perStream {
			b.Fatalf("stream %d: %d created responses", s, created)
		}
	}
	b.Cleanup(func() {
		for _, s := range ss {
			s.Close()
		}
	})
	return h, ss
}

func benchCommit(b *testing.B, h *Hub, ss []*Stream, key func(n int) []byte, wantPerCommit int) {
	ev := func(rev int64, k []byte) *mvccpb.Event {
		// An update, as most are: it carries the previous version, which
		// these watchers (no prev_kv) must not get.
		return &mvccpb.Event{Type: mvccpb.PUT,
			Kv:     &mvccpb.KeyValue{Key: k, Value: make([]byte, 128), ModRevision: rev, CreateRevision: 1, Version: rev},
			PrevKv: &mvccpb.KeyValue{Key: k, Value: make([]byte, 128), ModRevision: rev - 1, CreateRevision: 1, Version: rev - 1}}
	}
	b.ReportAllocs()
	b.ResetTimer()
	delivered := 0
	for n := range b.N {
		rev := int64(n + 2)
		h.Commit(applier.Commit{Rev: rev, Compacted: -1, Events: []*mvccpb.Event{ev(rev, key(n))}})
		for _, s := range ss {
			out, _ := s.collect()
			for _, r := range out {
				delivered += len(r.Events)
			}
		}
	}
	b.StopTimer()
	if delivered != b.N*wantPerCommit {
		b.Fatalf("%d events delivered, want %d", delivered, b.N*wantPerCommit)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(delivered), "ns/event")
}

// BenchmarkFanoutOneKey: 10,000 watchers on one key, 100 streams.
func BenchmarkFanoutOneKey(b *testing.B) {
	k := []byte("hot")
	h, ss := benchHub(b, 100, 100, func(int) []byte { return k }, nil)
	benchCommit(b, h, ss, func(int) []byte { return k }, 10000)
}

// BenchmarkFanoutManyKeys: 10,000 watchers on 10,000 keys; each commit
// matches one.
func BenchmarkFanoutManyKeys(b *testing.B) {
	key := func(i int) []byte { return fmt.Appendf(nil, "k/%05d", i%10000) }
	h, ss := benchHub(b, 100, 100, key, nil)
	benchCommit(b, h, ss, func(n int) []byte { return key(n * 7919) }, 1)
}

// BenchmarkFanoutRanges: 10,000 watchers on 1,000 distinct ranges; each
// commit matches the 10 watchers of one range.
func BenchmarkFanoutRanges(b *testing.B) {
	begin := func(i int) []byte { return fmt.Appendf(nil, "r/%04d/", i%1000) }
	end := func(i int) []byte { return fmt.Appendf(nil, "r/%04d0", i%1000) }
	h, ss := benchHub(b, 100, 100, begin, end)
	benchCommit(b, h, ss, func(n int) []byte { return append(begin(n*7919), 'x') }, 10)
}
