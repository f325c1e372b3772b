package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stratakv/strata/perf/workload"
)

// learnerKind is how a server adds a read member: strata's reader, etcd's
// learner.
type learnerKind struct {
	server, binary string
	flags          []string
}

// learnerKinds are strata's reader and etcd's learner, for the benchmarks
// that compare them; it skips unless strata is the subject.
func learnerKinds(b *testing.B) []learnerKind {
	bins := needSubject(b)
	if bins.SubjectName != "strata" {
		b.Skip("readers are strata's")
	}
	return []learnerKind{{"strata", bins.Subject, []string{"--role=reader"}}, {"etcd", bins.Etcd, nil}}
}

// readerBenchCluster starts three writers (fastRaft), a client on each and,
// unless noReader, one reader, for the reader benchmarks; it skips unless
// strata is the subject. Everything stops with the benchmark.
func readerBenchCluster(b *testing.B, prefix string) (context.Context, []*Member, []*clientv3.Client, *Member) {
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
		clients[i] = newEndpointClient(b, m)
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
		eclients[i] = newEndpointClient(b, m)
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
		tc := newEndpointClient(b, m)
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

// BenchmarkReaderSeed measures how long a new member takes to join a
// three-member cluster holding STRATA_BENCH_SEED_MB MiB of values (default
// 64; the issue's figure is 1024) and hold all of it: from `member add
// --learner` until it is ready and has applied the leader's commit index of
// the moment it was added. On strata the member is a reader: the leader
// streams its state machine (zstd) and the reader installs it into bbolt.
// On etcd v3.7.3, run next on the same machine, it is etcd's learner,
// caught up by the log or a snapshot as etcd decides. b.N is ignored.
//
//	STRATA_BENCH_SEED_MB=1024 go test -run=NONE -bench=ReaderSeed -benchtime=1x -timeout=60m ./tests/e2e/
func BenchmarkReaderSeed(b *testing.B) {
	mb := benchEnv("STRATA_BENCH_SEED_MB", 64)
	for _, lk := range learnerKinds(b) {
		server, binary, extra := lk.server, lk.binary, lk.flags
		b.Run("server="+server, func(b *testing.B) {
			ms := StartCluster(b, "sb"+server[:1], 3, MemberConfig{Binary: binary, ExtraArgs: append(slices.Clone(fastRaft), "--quota-backend-bytes=17179869184")})
			defer func() {
				for _, m := range ms {
					m.Stop()
				}
			}()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
			defer cancel()
			c := newEndpointClient(b, ms[0])
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
			st, err := c.Status(ctx, ms[0].Endpoint())
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			j, _ := joinLearnerOf(ctx, b, binary, ms, c, server+"-learner", append(slices.Clone(fastRaft), extra...)...)
			jc := newEndpointClient(b, j)
			for {
				js, err := jc.Status(ctx, j.Endpoint())
				if err == nil && js.RaftAppliedIndex >= st.RaftIndex {
					break
				}
				if ctx.Err() != nil {
					b.Fatalf("the learner did not catch up: %v", err)
				}
				time.Sleep(10 * time.Millisecond) // polling a process's progress; not synchronisation
			}
			elapsed := time.Since(start)
			b.StopTimer()
			j.Stop()
			b.ReportMetric(elapsed.Seconds(), "seconds-to-caught-up")
			b.ReportMetric(float64(mb)/elapsed.Seconds(), "MiB/s")
		})
	}
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
// commits, and the leader's queue to it is bounded), then with it removed
// (the control for the dead phase: the state has grown by then, which
// costs by itself). b.N puts per phase.
// Then the same on etcd v3.7.3 with an etcd learner in the reader's place,
// on the same machine. Reports puts/s, the leader's CPU per put and its
// resident memory at the end of the phase.
//
// With STRATA_BENCH_PPROF=<dir>, a 5-second CPU profile of the leader is
// taken in each phase, as <dir>/<server>-<phase>.pprof.
//
//	go test -run=NONE -bench=LeaderCostPerReader -benchtime=10000x ./tests/e2e/
func BenchmarkLeaderCostPerReader(b *testing.B) {
	profDir := os.Getenv("STRATA_BENCH_PPROF")
	for _, lk := range learnerKinds(b) {
		server, binary, extra := lk.server, lk.binary, lk.flags
		args := slices.Clone(fastRaft)
		if profDir != "" {
			args = append(args, "--enable-pprof")
		}
		ms := StartCluster(b, "lc"+server[:1], 3, MemberConfig{Binary: binary, ExtraArgs: args})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		clients := make([]*clientv3.Client, 3)
		for i, m := range ms {
			clients[i] = newEndpointClient(b, m)
		}
		leader := leaderIndex(ctx, b, clients)
		rng := rand.New(rand.NewPCG(5, 6))
		var learner *Member
		var learnerID uint64
		for _, phase := range []string{"no-reader", "one-reader", "dead-reader", "reader-removed"} {
			switch phase {
			case "one-reader":
				var add *clientv3.MemberAddResponse
				learner, add = joinLearnerOf(ctx, b, binary, ms, clients[leader], server+"-learner", append(slices.Clone(fastRaft), extra...)...)
				learnerID = add.Member.ID
			case "dead-reader":
				learner.Kill()
			case "reader-removed":
				if _, err := clients[leader].MemberRemove(ctx, learnerID); err != nil {
					b.Fatal(err)
				}
			}
			b.Run(fmt.Sprintf("server=%s/%s", server, phase), func(b *testing.B) {
				pods := newPods(rng, b.N)
				cpu0 := processCPU(b, ms[leader])
				var prof sync.WaitGroup
				if profDir != "" {
					prof.Go(func() { saveProfile(b, ms[leader], filepath.Join(profDir, server+"-"+phase+".pprof")) })
				}
				b.ResetTimer()
				start := time.Now()
				putPods(ctx, b, clients[leader], pods)
				elapsed := time.Since(start)
				b.StopTimer()
				prof.Wait()
				cpu := processCPU(b, ms[leader]) - cpu0
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "puts/s")
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "leader-cpu-µs/put")
				b.ReportMetric(float64(processRSS(b, ms[leader]))/(1<<20), "leader-rss-MiB")
			})
		}
		for _, m := range ms {
			m.Stop()
		}
		cancel()
	}
}

// saveProfile saves a 5-second CPU profile of m (run with --enable-pprof)
// to path.
func saveProfile(b *testing.B, m *Member, path string) {
	resp, err := http.Get(m.ClientURL() + "/debug/pprof/profile?seconds=5")
	if err != nil {
		b.Error(err)
		return
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		b.Error(err)
		return
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		b.Error(err)
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
