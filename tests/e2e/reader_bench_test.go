package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stratakv/strata/perf/workload"
)

// readerBenchCluster starts three writers (fastRaft), a client on each and,
// unless noReader, one reader, for the reader benchmarks; it skips unless
// strata is the subject. Everything stops with the benchmark.
func readerBenchCluster(b *testing.B, prefix string, noReader ...bool) (context.Context, []*Member, []*clientv3.Client, *Member) {
	b.Helper()
	bins := needSubject(b)
	if bins.SubjectName != "strata" {
		b.Skip("readers are strata's")
	}
	ms := StartCluster(b, prefix, 3, MemberConfig{Binary: bins.Subject, ExtraArgs: fastRaft})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	b.Cleanup(cancel)
	clients := make([]*clientv3.Client, 3)
	for i, m := range ms {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		clients[i] = c
	}
	if len(noReader) > 0 && noReader[0] {
		return ctx, ms, clients, nil
	}
	reader, _ := joinLearner(ctx, b, bins, ms, clients[0], "reader0", append(fastRaft, "--role=reader")...)
	return ctx, ms, clients, reader
}

// BenchmarkReaderReads: three writers and one reader on this machine, 1,000
// keys of 1 KiB; single-key Gets from 32 concurrent clients on one member,
// serializable and linearizable, served by the reader, by a follower writer
// and by the leader; then the same on a three-member etcd started after
// strata stopped (its follower and leader: etcd's learners serve no reads).
// b.N is the number of Gets. Reports reads per second, the serving member's
// CPU per read and the leader's CPU per 1,000 reads (what a linearizable
// read served elsewhere costs the leader: its ReadIndex round).
//
//	go test -run=NONE -bench=ReaderReads -benchtime=20000x ./tests/e2e/
func BenchmarkReaderReads(b *testing.B) {
	ctx, ms, clients, reader := readerBenchCluster(b, "rb")
	leader := leaderIndex(ctx, b, clients)
	benchReads(ctx, b, "strata", clients[0], ms[leader], map[string]*Member{
		"reader": reader, "follower": ms[(leader+1)%3], "leader": ms[leader]})
	for _, m := range append(ms, reader) {
		if err := m.Stop(); err != nil {
			b.Fatal(err)
		}
	}
	ems := StartCluster(b, "re", 3, MemberConfig{Binary: needEtcd(b).Etcd, ExtraArgs: fastRaft})
	eclients := make([]*clientv3.Client, 3)
	for i, m := range ems {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		eclients[i] = c
	}
	eleader := leaderIndex(ctx, b, eclients)
	benchReads(ctx, b, "etcd", eclients[0], ems[eleader], map[string]*Member{
		"follower": ems[(eleader+1)%3], "leader": ems[eleader]})
}

// benchReads loads the keys through c, then runs the read benchmark on
// each target member.
func benchReads(ctx context.Context, b *testing.B, server string, c *clientv3.Client, leader *Member, targets map[string]*Member) {
	val := strings.Repeat("v", 1024)
	for i := range 1000 {
		if _, err := c.Put(ctx, fmt.Sprintf("rb/%04d", i), val); err != nil {
			b.Fatal(err)
		}
	}
	for _, name := range []string{"reader", "follower", "leader"} {
		m := targets[name]
		if m == nil {
			continue
		}
		tc, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
		defer tc.Close()
		for _, serializable := range []bool{true, false} {
			kind := "linearizable"
			var opts []clientv3.OpOption
			if serializable {
				kind = "serializable"
				opts = append(opts, clientv3.WithSerializable())
			}
			b.Run(fmt.Sprintf("server=%s/member=%s/%s", server, name, kind), func(b *testing.B) {
				cpu0, lcpu0 := processCPU(b, m), processCPU(b, leader)
				b.ResetTimer()
				start := time.Now()
				concurrently(b, 32, b.N, func(i int) error {
					_, err := tc.Get(ctx, fmt.Sprintf("rb/%04d", i%1000), opts...)
					return err
				})
				elapsed := time.Since(start)
				b.StopTimer()
				cpu, lcpu := processCPU(b, m)-cpu0, processCPU(b, leader)-lcpu0
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
	concurrently(b, 4, txns, func(i int) error {
		ops := make([]clientv3.Op, 100)
		for j := range ops {
			ops[j] = clientv3.OpPut(fmt.Sprintf("seed/%06d/%03d", i, j), val)
		}
		_, err := c.Txn(ctx).Then(ops...).Commit()
		return err
	})
	b.ResetTimer()
	start := time.Now()
	_, _ = joinLearner(ctx, b, bins, ms, c, "reader0", append(fastRaft, "--role=reader")...)
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(elapsed.Seconds(), "seconds-to-ready")
	b.ReportMetric(float64(mb)/elapsed.Seconds(), "MiB/s")
}

// BenchmarkReaderLinkBytes: three writers and one reader, b.N puts of
// Kubernetes-like pod JSON (about 2.5 KiB each) through the leader from 16
// clients; then the leader is stopped and its log's per-link totals read.
// Reports, for the link to the reader (zstd, strata's default for readers)
// and to a follower writer (uncompressed by default), wire bytes per put
// and wire/raw: what a reader costs the leader in bytes on the wire, with
// and without compression, in the same run.
//
//	go test -run=NONE -bench=ReaderLinkBytes -benchtime=20000x ./tests/e2e/
func BenchmarkReaderLinkBytes(b *testing.B) {
	ctx, ms, clients, _ := readerBenchCluster(b, "lb")
	leader := leaderIndex(ctx, b, clients)
	pods := newPods(rand.New(rand.NewPCG(3, 4)), b.N)
	b.ResetTimer()
	putPods(ctx, b, clients[leader], pods)
	b.StopTimer()
	if err := ms[leader].Stop(); err != nil {
		b.Fatal(err)
	}
	type totals struct{ body, wire float64 }
	var reader, writer totals
	for _, line := range strings.Split(string(ms[leader].Output()), "\n") {
		if !strings.Contains(line, `"peer link totals"`) {
			continue
		}
		var rec struct {
			Learner bool    `json:"learner"`
			Body    float64 `json:"body-bytes"`
			Wire    float64 `json:"wire-bytes"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			b.Fatal(err)
		}
		if rec.Learner {
			reader = totals{rec.Body, rec.Wire}
		} else if writer.wire == 0 {
			writer = totals{rec.Body, rec.Wire}
		}
	}
	if reader.wire == 0 || writer.wire == 0 {
		b.Fatalf("no link totals in the leader's log")
	}
	b.ReportMetric(reader.wire/float64(b.N), "reader-wire-B/put")
	b.ReportMetric(reader.wire/reader.body, "reader-wire/raw")
	b.ReportMetric(writer.wire/float64(b.N), "writer-wire-B/put")
	b.ReportMetric(writer.wire/writer.body, "writer-wire/raw")
}

// BenchmarkLeaderCostPerReader: three writers take puts of pod JSON from
// 16 clients through the leader, first with no reader, then with one reader
// following, then with that reader killed (a dead reader must not slow
// commits, and the leader's queue to it is bounded). b.N puts per phase.
// Reports puts/s, the leader's CPU per put and its resident memory at the
// end of the phase.
//
//	go test -run=NONE -bench=LeaderCostPerReader -benchtime=10000x ./tests/e2e/
func BenchmarkLeaderCostPerReader(b *testing.B) {
	ctx, ms, clients, _ := readerBenchCluster(b, "lc", true)
	bins := needSubject(b)
	leader := leaderIndex(ctx, b, clients)
	rng := rand.New(rand.NewPCG(5, 6))
	var reader *Member
	for _, phase := range []string{"no-reader", "one-reader", "dead-reader"} {
		switch phase {
		case "one-reader":
			reader, _ = joinLearner(ctx, b, bins, ms, clients[leader], "reader0", append(fastRaft, "--role=reader")...)
		case "dead-reader":
			reader.Kill()
		}
		b.Run(phase, func(b *testing.B) {
			pods := newPods(rng, b.N)
			cpu0 := processCPU(b, ms[leader])
			b.ResetTimer()
			start := time.Now()
			putPods(ctx, b, clients[leader], pods)
			elapsed := time.Since(start)
			b.StopTimer()
			cpu := processCPU(b, ms[leader]) - cpu0
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "leader-cpu-µs/put")
			b.ReportMetric(float64(processRSS(b, ms[leader]))/(1<<20), "leader-rss-MiB")
		})
	}
}

// pod is a key and a value of the Kubernetes-like workload.
type pod struct{ key, value string }

// newPods returns n pods, keyed as kube-apiserver keys them.
func newPods(rng *rand.Rand, n int) []pod {
	pods := make([]pod, n)
	for i := range pods {
		pods[i] = pod{"/registry/pods/default/" + workload.PodName(rng), string(workload.PodJSON(rng))}
	}
	return pods
}

// putPods puts pods through c from 16 clients.
func putPods(ctx context.Context, b *testing.B, c *clientv3.Client, pods []pod) {
	concurrently(b, 16, len(pods), func(i int) error {
		_, err := c.Put(ctx, pods[i].key, pods[i].value)
		return err
	})
}
