package wal

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// BenchmarkSave measures one Save of a batch of entries plus a HardState,
// as the raft append stage issues them.
func BenchmarkSave(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, n := range []int{1, 8, 64} {
			for _, size := range []int{128, 1024, 8192} {
				name := fmt.Sprintf("sync=%v/entries=%d/size=%d", sync, n, size)
				b.Run(name, func(b *testing.B) { benchmarkSave(b, !sync, n, size) })
			}
		}
	}
}

func benchmarkSave(b *testing.B, noSync bool, n, size int) {
	w := mustOpen(b, b.TempDir(), Options{NoSync: noSync})
	defer mustClose(b, w)
	data := []byte(strings.Repeat("v", size))
	batch := make([]*raftpb.Entry, n)
	for i := range batch {
		batch[i] = &raftpb.Entry{Index: new(uint64), Term: new(uint64(1)), Data: data}
	}
	hs := hardState(1, 1, 0)
	next := uint64(1)
	b.SetBytes(int64(n * size))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, e := range batch {
			*e.Index = next
			next++
		}
		*hs.Commit = next - 1
		if err := w.Save(hs, batch); err != nil {
			b.Fatal(err)
		}
		if w.segmentCount() > 4 {
			// Keep the disk footprint bounded, outside the timing.
			b.StopTimer()
			if err := w.SaveSnapshot(SnapshotMarker{Index: next - 1, Term: 1}); err != nil {
				b.Fatal(err)
			}
			if err := w.ReleaseTo(next - 1); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	}
}

// BenchmarkGroupCommit measures pipelined appends from many clients that
// share fsyncs: each appends one entry in turn and waits concurrently.
func BenchmarkGroupCommit(b *testing.B) {
	for _, clients := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("clients=%d/size=256", clients), func(b *testing.B) {
			w := mustOpen(b, b.TempDir(), Options{})
			defer mustClose(b, w)
			data := []byte(strings.Repeat("v", 256))
			var (
				order sync.Mutex
				next  = uint64(1)
				wg    sync.WaitGroup
			)
			b.SetBytes(256)
			b.ReportAllocs()
			b.ResetTimer()
			per := (b.N + clients - 1) / clients
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						order.Lock()
						e := &raftpb.Entry{Index: new(next), Term: new(uint64(1)), Data: data}
						next++
						p, err := w.Append(nil, []*raftpb.Entry{e})
						order.Unlock()
						if err == nil {
							err = w.WaitDurable(p)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
		})
	}
}

func (w *WAL) segmentCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.mu.segs)
}
