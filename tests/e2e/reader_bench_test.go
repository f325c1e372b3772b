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

// BenchmarkReaderSeed measures how long a new reader takes to join a
// cluster holding STRATA_BENCH_SEED_MB MiB of values (default 64; the
// issue's figure is 1024): from `member add --learner` to ready, which is
// the leader streaming its state machine (zstd) and the reader installing
// it into bbolt. b.N is ignored beyond the first iteration's join.
//
//	STRATA_BENCH_SEED_MB=1024 go test -run=NONE -bench=ReaderSeed -benchtime=1x -timeout=30m ./tests/e2e/
func BenchmarkReaderSeed(b *testing.B) {
	mb := benchEnv("STRATA_BENCH_SEED_MB", 64)
	bins := needSubject(b)
	if bins.SubjectName != "strata" {
		b.Skip("readers are strata's")
	}
	ms := StartCluster(b, "sb", 3, MemberConfig{Binary: bins.Subject, ExtraArgs: append(fastRaft, "--quota-backend-bytes=17179869184")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ms[0].Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	// Load: txns of 100 puts of 8 KiB (about 800 KiB each), 4 at a time.
	val := strings.Repeat("s", 8<<10)
	txns := mb * (1 << 20) / (100 * len(val))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(txns) {
					return
				}
				ops := make([]clientv3.Op, 100)
				for j := range ops {
					ops[j] = clientv3.OpPut(fmt.Sprintf("seed/%06d/%03d", i, j), val)
				}
				if _, err := c.Txn(ctx).Then(ops...).Commit(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ResetTimer()
	start := time.Now()
	_, _ = joinLearner(ctx, b, bins, ms, c, "reader0", append(fastRaft, "--role=reader")...)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(elapsed.Seconds(), "seconds-to-ready")
	b.ReportMetric(float64(mb)/elapsed.Seconds(), "MiB/s")
}
