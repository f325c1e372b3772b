package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stratakv/strata/perf"
)

// etcdBenchmarkTool builds etcd's tools/benchmark (v3.7.1, the newest on
// the module proxy: the tool lives in the root module go.etcd.io/etcd/v3,
// not in a module of its own) in a scratch module, once per test binary.
var etcdBenchmarkTool = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "strata-etcd-benchmark-")
	if err != nil {
		return "", err
	}
	gomod := "module scratch\n\ngo 1.26\n\nrequire go.etcd.io/etcd/v3 v3.7.1\n"
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "benchmark")
	cmd := exec.Command("go", "build", "-o", bin, "go.etcd.io/etcd/v3/tools/benchmark")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building etcd's benchmark tool: %v\n%s", err, out)
	}
	return bin, nil
})

var toolRate = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

// BenchmarkHarnessVsEtcdTool: on a three-member cluster (strata, then etcd
// v3.7.3, each on this machine), puts of 256 bytes to a key space of
// 100,000 from 256 clients on 16 connections to the leader, driven in
// rounds by etcd's own benchmark tool, by `strata perf run`, and by
// `strata perf run --grpc-go-kv` (its calls through grpc-go), each round
// starting with the next driver.
// Reports each driver's throughput and its own CPU per put (the tool's
// from its process's rusage, the harness's from its result): the two must
// agree on the cluster's throughput, and the harness should cost less.
// STRATA_BENCH_PUTS puts per round (default 50,000), STRATA_BENCH_KEYS
// keys (default 100,000); three rounds. With many keys the state grows
// from run to run and the LSM's flushes and compactions land on whichever
// driver runs then; with few (1,000) every run overwrites the same keys.
//
// On a machine the drivers share with the servers, the cheaper driver
// leaves the servers more CPU and so measures more throughput. With
// STRATA_BENCH_PIN=1 (and taskset) the servers are pinned to CPU 0 and the
// drivers to CPU 1, so that each driver has a core to itself and the
// servers the same one core whichever drives them.
//
//	go test -run=NONE -bench=HarnessVsEtcdTool -timeout=30m ./tests/e2e/
func BenchmarkHarnessVsEtcdTool(b *testing.B) {
	bins := needSubject(b)
	puts := benchEnv("STRATA_BENCH_PUTS", 50000)
	keys := benchEnv("STRATA_BENCH_KEYS", 100000)
	pin := os.Getenv("STRATA_BENCH_PIN") == "1"
	command := func(ctx context.Context, name string, args ...string) *exec.Cmd {
		if pin {
			return exec.CommandContext(ctx, "taskset", append([]string{"-c", "1", name}, args...)...)
		}
		return exec.CommandContext(ctx, name, args...)
	}
	tool, err := etcdBenchmarkTool()
	if err != nil {
		b.Fatal(err)
	}
	const rounds = 3
	for _, server := range []string{"strata", "etcd"} {
		bin := bins.Subject
		if server == "etcd" {
			bin = bins.Etcd
		}
		ms := StartCluster(b, "hv"+server[:1], 3, MemberConfig{Binary: bin})
		if pin {
			for _, m := range ms {
				pid := strconv.Itoa(m.current().cmd.Process.Pid)
				if out, err := exec.Command("taskset", "-a", "-cp", "0", pid).CombinedOutput(); err != nil {
					b.Fatalf("taskset: %v\n%s", err, out)
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
		clients := make([]*clientv3.Client, len(ms))
		for i, m := range ms {
			clients[i] = newEndpointClient(b, m)
		}
		leader := ms[leaderIndex(ctx, b, clients)]
		var toolRates, toolCPU []float64
		perfRates, perfCPU := map[string][]float64{}, map[string][]float64{}
		drivers := []string{"tool", "perf", "perf-grpc-go"}
		for r := range rounds {
			for i := range drivers {
				driver := drivers[(i+r)%len(drivers)] // each round starts with the next driver
				switch driver {
				case "tool":
					cmd := command(ctx, tool, "--endpoints="+leader.Endpoint(), "--clients=256", "--conns=16",
						"put", "--key-size=8", fmt.Sprintf("--key-space-size=%d", keys), "--val-size=256", fmt.Sprintf("--total=%d", puts))
					out, err := cmd.CombinedOutput()
					if err != nil {
						b.Fatalf("benchmark tool: %v\n%s", err, out)
					}
					m := toolRate.FindSubmatch(out)
					if m == nil {
						b.Fatalf("no Requests/sec in the tool's output:\n%s", out)
					}
					rate, _ := strconv.ParseFloat(string(m[1]), 64)
					toolRates = append(toolRates, rate)
					ps := cmd.ProcessState
					toolCPU = append(toolCPU, float64((ps.UserTime()+ps.SystemTime()).Microseconds())/float64(puts))
				default:
					out := filepath.Join(b.TempDir(), "r.json")
					cmd := command(ctx, bins.Subject, "perf", "run", "--endpoints="+leader.Endpoint(), "--clients=256", "--conns=16",
						"--workload=put", "--key-size=8", fmt.Sprintf("--key-space=%d", keys), "--val-size=256", fmt.Sprintf("--total=%d", puts), "--out="+out,
						fmt.Sprintf("--grpc-go-kv=%v", driver == "perf-grpc-go"))
					if o, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("strata perf run: %v\n%s", err, o)
					}
					rs, err := perf.ReadJSON(out)
					if err != nil {
						b.Fatal(err)
					}
					perfRates[driver] = append(perfRates[driver], rs[0].OpsPerSec)
					ps := cmd.ProcessState
					perfCPU[driver] = append(perfCPU[driver], float64((ps.UserTime()+ps.SystemTime()).Microseconds())/float64(puts))
				}
			}
		}
		b.Run("server="+server, func(b *testing.B) {
			b.ReportMetric(perf.Median(toolRates), "tool-puts/s")
			b.ReportMetric(perf.Median(toolCPU), "tool-cpu-µs/put")
			for _, d := range drivers[1:] {
				b.ReportMetric(perf.Median(perfRates[d]), d+"-puts/s")
				b.ReportMetric(perf.Median(perfRates[d])/perf.Median(toolRates), d+"/tool")
				b.ReportMetric(perf.Median(perfCPU[d]), d+"-cpu-µs/put")
			}
		})
		for _, m := range ms {
			m.Stop()
		}
		cancel()
	}
}

// BenchmarkPerfWorkloadsVsEtcd: a three-member strata and a three-member
// etcd v3.7.3 run side by side on this machine, and `strata perf compare`
// drives every workload against each (clients on all three members), in
// three alternating rounds. Reports, per workload and server, the median
// throughput, p99 and server CPU per 1,000 operations. The flags of each
// workload are in perfWorkloadFlags; STRATA_BENCH_OPS sets operations per
// round (default 20,000), STRATA_BENCH_WORKLOADS (comma-separated) picks
// workloads.
//
//	go test -run=NONE -bench=PerfWorkloadsVsEtcd -timeout=60m ./tests/e2e/
func BenchmarkPerfWorkloadsVsEtcd(b *testing.B) {
	bins := needSubject(b)
	ops := benchEnv("STRATA_BENCH_OPS", 20000)
	endpoints := map[string]string{}
	for _, server := range []string{"strata", "etcd"} {
		bin := bins.Subject
		if server == "etcd" {
			bin = bins.Etcd
		}
		ms := StartCluster(b, "pw"+server[:1], 3, MemberConfig{Binary: bin})
		var eps []string
		for _, m := range ms {
			eps = append(eps, m.Endpoint())
		}
		endpoints[server] = strings.Join(eps, ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()
	names := perf.WorkloadNames()
	if only := os.Getenv("STRATA_BENCH_WORKLOADS"); only != "" {
		names = strings.Split(only, ",")
	}
	for _, w := range names {
		out := filepath.Join(b.TempDir(), w+".json")
		args := append([]string{"perf", "compare", "--a-endpoints=" + endpoints["strata"], "--b-endpoints=" + endpoints["etcd"],
			"--a-label=strata", "--b-label=etcd", "--rounds=3", "--workload=" + w, fmt.Sprintf("--total=%d", ops), "--prefix=/" + w,
			"--out=" + out}, perfWorkloadFlags[w]...)
		if o, err := exec.CommandContext(ctx, bins.Subject, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", w, err, o)
		}
		rs, err := perf.ReadJSON(out)
		if err != nil {
			b.Fatal(err)
		}
		for side, server := range []string{"strata", "etcd"} {
			var rate, p99, cpu []float64
			for i := side; i < len(rs); i += 2 {
				rate = append(rate, rs[i].OpsPerSec)
				p99 = append(p99, rs[i].LatencyMs.P99)
				cpu = append(cpu, rs[i].ServerCPUMsPer1000)
			}
			b.Run(fmt.Sprintf("workload=%s/server=%s", w, server), func(b *testing.B) {
				b.ReportMetric(perf.Median(rate), "ops/s")
				b.ReportMetric(perf.Median(p99), "p99-ms")
				b.ReportMetric(perf.Median(cpu), "server-cpu-ms/1000ops")
			})
		}
	}
}

// perfWorkloadFlags are BenchmarkPerfWorkloadsVsEtcd's flags per workload
// (docs/performance.md quotes them).
var perfWorkloadFlags = map[string][]string{
	"put":             {"--clients=256", "--conns=16", "--key-space=100000", "--val-size=256"},
	"range":           {"--clients=256", "--conns=16", "--key-space=10000", "--val-size=256", "--consistency=l"},
	"txn-put":         {"--clients=64", "--conns=8", "--key-space=10000", "--val-size=256"},
	"delete":          {"--clients=64", "--conns=8", "--key-space=20000", "--key-dist=sequential", "--val-size=256"},
	"watch":           {"--clients=16", "--conns=4", "--key-space=1000", "--val-size=256", "--watchers=100", "--watch-streams=10"},
	"lease":           {"--clients=64", "--conns=8"},
	"kubernetes":      {"--clients=64", "--conns=8", "--key-space=5000", "--watchers=20", "--watch-streams=4", "--page-size=500", "--compact-every=5s"},
	"batch-scheduler": {"--clients=64", "--conns=8", "--key-space=1000", "--key-dist=zipf", "--val-size=256"},
	"fleet-config":    {"--clients=128", "--conns=16", "--key-space=5000", "--val-size=1024", "--watchers=200", "--watch-streams=20"},
}
