package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// BenchmarkReaderReads: three writers and one reader on this machine, 1,000
// keys of 1 KiB; single-key Gets from 32 concurrent clients on one member,
// serializable and linearizable, served by the reader, by a follower writer
// and by the leader. b.N is the number of Gets. Reports reads per second,
// the serving member's CPU per read and the leader's CPU per 1,000 reads
// (what a linearizable read served elsewhere costs the leader: its
// ReadIndex round).
//
//	go test -run=NONE -bench=ReaderReads -benchtime=20000x ./tests/e2e/
func BenchmarkReaderReads(b *testing.B) {
	bins := needSubject(b)
	if bins.SubjectName != "strata" {
		b.Skip("readers are strata's")
	}
	ms := StartCluster(b, "rb", 3, MemberConfig{Binary: bins.Subject, ExtraArgs: fastRaft})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	clients := make([]*clientv3.Client, 3)
	for i, m := range ms {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		clients[i] = c
	}
	reader, _ := joinLearner(ctx, b, bins, ms, clients[0], "reader0", append(fastRaft, "--role=reader")...)
	val := strings.Repeat("v", 1024)
	for i := range 1000 {
		if _, err := clients[0].Put(ctx, fmt.Sprintf("rb/%04d", i), val); err != nil {
			b.Fatal(err)
		}
	}
	leader := leaderIndex(ctx, b, clients)
	follower := (leader + 1) % 3
	targets := []struct {
		name string
		m    *Member
	}{{"reader", reader}, {"follower", ms[follower]}, {"leader", ms[leader]}}
	for _, tg := range targets {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{tg.m.Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		for _, serializable := range []bool{true, false} {
			kind := "linearizable"
			var opts []clientv3.OpOption
			if serializable {
				kind = "serializable"
				opts = append(opts, clientv3.WithSerializable())
			}
			b.Run(fmt.Sprintf("member=%s/%s", tg.name, kind), func(b *testing.B) {
				cpu0, lcpu0 := processCPU(b, tg.m), processCPU(b, ms[leader])
				var next atomic.Int64
				var wg sync.WaitGroup
				b.ResetTimer()
				start := time.Now()
				for range 32 {
					wg.Go(func() {
						for {
							i := next.Add(1)
							if i > int64(b.N) {
								return
							}
							if _, err := c.Get(ctx, fmt.Sprintf("rb/%04d", i%1000), opts...); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
				elapsed := time.Since(start)
				b.StopTimer()
				cpu, lcpu := processCPU(b, tg.m)-cpu0, processCPU(b, ms[leader])-lcpu0
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "reads/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "member-cpu-µs/read")
				b.ReportMetric(float64(lcpu.Microseconds())*1000/float64(b.N)/1000, "leader-cpu-ms/1000reads")
			})
		}
	}
}
