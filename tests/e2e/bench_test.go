package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stratakv/strata/perf"
)

// BenchmarkPutVsEtcd measures the whole write path — gRPC, batching, raft,
// WAL fsync, apply — of a single-member etcd and a single-member strata
// started side by side in the same run, with 1, 16 and 64 concurrent
// clients writing 256-byte values to distinct keys. Besides ns/op (wall
// time per put across all clients) it reports the server process's CPU
// per put, which is less sensitive to a noisy machine:
//
//	go test -run=NONE -bench=PutVsEtcd -benchtime=3000x ./tests/e2e/
func BenchmarkPutVsEtcd(b *testing.B) {
	bins := needSubject(b)
	for _, server := range []string{"etcd", "strata"} {
		bin := bins.Etcd
		if server == "strata" {
			bin = bins.Subject
		}
		ms, err := StartClusterErr(b, server, 1, MemberConfig{Binary: bin})
		if err != nil {
			b.Fatal(err)
		}
		m := ms[0]
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		for _, clients := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("server=%s/clients=%d", server, clients), func(b *testing.B) {
				benchPuts(b, cli, m, clients)
			})
		}
		cli.Close()
		if err := m.Stop(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPuts(b *testing.B, cli *clientv3.Client, m *Member, clients int) {
	val := strings.Repeat("v", 256)
	ctx := context.Background()
	cpu0 := processCPU(b, m)
	b.SetBytes(int64(len(val)))
	b.ResetTimer()
	concurrently(b, clients, b.N, func(i int) error {
		_, err := cli.Put(ctx, "bench/"+strconv.Itoa(i+1), val)
		return err
	})
	b.StopTimer()
	cpu := processCPU(b, m) - cpu0
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "server-cpu-µs/op")
}

// processCPU returns the user+system CPU time the member's process has used.
func processCPU(b *testing.B, m *Member) time.Duration {
	cpu, err := perf.ProcCPU(m.current().cmd.Process.Pid)
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	return cpu
}

// concurrently runs fn(0) .. fn(n-1) from workers goroutines and waits;
// a worker stops at its first error, which fails the benchmark.
func concurrently(b *testing.B, workers, n int, fn func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
