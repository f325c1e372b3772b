package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
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
// v3.7.3, each on this machine), puts of 256 bytes from 256 clients on 16
// connections to the leader, driven in rounds by etcd's own benchmark
// tool, by `strata perf run`, and by `strata perf run --grpc-go-kv` (its
// calls through grpc-go), each round starting with the next driver.
// Reports each driver's median throughput, its own CPU per put (the tool's
// from its process's rusage, the harness's likewise), the median over
// rounds of its throughput over the tool's in the same round (drift
// between rounds cancels), and puts per raft entry (the leader's committed
// index over the run: strata's batch size, etcd's 1).
// STRATA_BENCH_PUTS puts per run (default 30,000), STRATA_BENCH_KEYS keys
// (default 1,000: every run overwrites the same keys; with many, the state
// grows from run to run and the LSM's flushes and compactions land on
// whichever driver runs then), STRATA_BENCH_ROUNDS rounds (default 5).
//
// On a machine the drivers share with the servers, the cheaper driver
// leaves the servers more CPU and so measures more throughput. With
// STRATA_BENCH_PIN=1 (and taskset) the servers are pinned to CPU 0 and the
// drivers to CPU 1, so that each driver has a core to itself and the
// servers the same one core whichever drives them.
//
//	STRATA_BENCH_PIN=1 go test -run=NONE -bench=HarnessVsEtcdTool -timeout=30m ./tests/e2e/
func BenchmarkHarnessVsEtcdTool(b *testing.B) {
	bins := needSubject(b)
	puts := benchEnv("STRATA_BENCH_PUTS", 30000)
	keys := benchEnv("STRATA_BENCH_KEYS", 1000)
	rounds := benchEnv("STRATA_BENCH_ROUNDS", 5)
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
		drivers := []string{"tool", "perf", "perf-grpc-go"}
		rates, cpus, perEntry, ratios := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
		leaderClient := newEndpointClient(b, leader)
		raftIndex := func() int64 {
			st, err := leaderClient.Status(ctx, leader.Endpoint())
			if err != nil {
				b.Fatal(err)
			}
			return int64(st.RaftIndex)
		}
		for r := range rounds {
			round := map[string]float64{}
			for i := range drivers {
				driver := drivers[(i+r)%len(drivers)] // each round starts with the next driver
				index0 := raftIndex()
				var cmd *exec.Cmd
				var rate float64
				switch driver {
				case "tool":
					cmd = command(ctx, tool, "--endpoints="+leader.Endpoint(), "--clients=256", "--conns=16",
						"put", "--key-size=8", fmt.Sprintf("--key-space-size=%d", keys), "--val-size=256", fmt.Sprintf("--total=%d", puts))
					out, err := cmd.CombinedOutput()
					if err != nil {
						b.Fatalf("benchmark tool: %v\n%s", err, out)
					}
					m := toolRate.FindSubmatch(out)
					if m == nil {
						b.Fatalf("no Requests/sec in the tool's output:\n%s", out)
					}
					rate, _ = strconv.ParseFloat(string(m[1]), 64)
				default:
					out := filepath.Join(b.TempDir(), "r.json")
					cmd = command(ctx, bins.Subject, "perf", "run", "--endpoints="+leader.Endpoint(), "--clients=256", "--conns=16",
						"--workload=put", "--key-size=8", fmt.Sprintf("--key-space=%d", keys), "--val-size=256", fmt.Sprintf("--total=%d", puts), "--out="+out,
						fmt.Sprintf("--grpc-go-kv=%v", driver == "perf-grpc-go"))
					if o, err := cmd.CombinedOutput(); err != nil {
						b.Fatalf("strata perf run: %v\n%s", err, o)
					}
					rs, err := perf.ReadJSON(out)
					if err != nil {
						b.Fatal(err)
					}
					rate = rs[0].OpsPerSec
				}
				entries := raftIndex() - index0
				ps := cmd.ProcessState
				rates[driver] = append(rates[driver], rate)
				cpus[driver] = append(cpus[driver], float64((ps.UserTime()+ps.SystemTime()).Microseconds())/float64(puts))
				perEntry[driver] = append(perEntry[driver], float64(puts)/float64(max(entries, 1)))
				round[driver] = rate
			}
			for _, d := range drivers[1:] {
				ratios[d] = append(ratios[d], round[d]/round["tool"])
			}
		}
		for _, d := range drivers[1:] {
			b.Logf("%s: %s/tool by round: %.2f", server, d, ratios[d])
		}
		b.Run("server="+server, func(b *testing.B) {
			for _, d := range drivers {
				b.ReportMetric(perf.Median(rates[d]), d+"-puts/s")
				b.ReportMetric(perf.Median(cpus[d]), d+"-cpu-µs/put")
				b.ReportMetric(perf.Median(perEntry[d]), d+"-puts/entry")
				if d != "tool" {
					b.ReportMetric(perf.Median(ratios[d]), d+"/tool")
				}
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
// drives each case of perfCases (every workload, clients on all three
// members, then puts from 1 and from 1,000 clients on the leader and on
// all members) against each, in three alternating rounds. Reports, per
// case and server, the median throughput, p50, p99, server CPU per 1,000
// operations and operations per raft entry. STRATA_BENCH_OPS sets
// operations per round (default 20,000; a case may set its own --total),
// STRATA_BENCH_WORKLOADS (comma-separated case names) picks cases.
//
//	go test -run=NONE -bench=PerfWorkloadsVsEtcd -timeout=90m ./tests/e2e/
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
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Minute)
	defer cancel()
	cases := perfCases
	if only := os.Getenv("STRATA_BENCH_WORKLOADS"); only != "" {
		cases = nil
		for _, name := range strings.Split(only, ",") {
			i := slices.IndexFunc(perfCases, func(c perfCase) bool { return c.name == name })
			if i < 0 {
				b.Fatalf("STRATA_BENCH_WORKLOADS: no case %q", name)
			}
			cases = append(cases, perfCases[i])
		}
	}
	for _, c := range cases {
		out := filepath.Join(b.TempDir(), c.name+".json")
		args := append([]string{"perf", "compare", "--a-endpoints=" + endpoints["strata"], "--b-endpoints=" + endpoints["etcd"],
			"--a-label=strata", "--b-label=etcd", "--rounds=3", "--workload=" + c.workload(), fmt.Sprintf("--total=%d", ops), "--prefix=/" + c.name,
			"--out=" + out}, c.flags...)
		if o, err := exec.CommandContext(ctx, bins.Subject, args...).CombinedOutput(); err != nil {
			b.Fatalf("%s: %v\n%s", c.name, err, o)
		}
		rs, err := perf.ReadJSON(out)
		if err != nil {
			b.Fatal(err)
		}
		for side, server := range []string{"strata", "etcd"} {
			var rate, p50, p99, cpu, perEntry []float64
			for i := side; i < len(rs); i += 2 {
				rate = append(rate, rs[i].OpsPerSec)
				p50 = append(p50, rs[i].LatencyMs.P50)
				p99 = append(p99, rs[i].LatencyMs.P99)
				cpu = append(cpu, rs[i].ServerCPUMsPer1000)
				perEntry = append(perEntry, float64(rs[i].Ops)/float64(max(rs[i].RaftEntries, 1)))
			}
			b.Run(fmt.Sprintf("case=%s/server=%s", c.name, server), func(b *testing.B) {
				b.ReportMetric(perf.Median(rate), "ops/s")
				b.ReportMetric(perf.Median(p50), "p50-ms")
				b.ReportMetric(perf.Median(p99), "p99-ms")
				b.ReportMetric(perf.Median(cpu), "server-cpu-ms/1000ops")
				b.ReportMetric(perf.Median(perEntry), "ops/entry")
			})
		}
	}
}

// perfCase is one row of BenchmarkPerfWorkloadsVsEtcd: a workload (the
// case's name unless set) with its flags.
type perfCase struct {
	name, wl string
	flags    []string
}

func (c perfCase) workload() string {
	if c.wl != "" {
		return c.wl
	}
	return c.name
}

// perfCases are BenchmarkPerfWorkloadsVsEtcd's cases (docs/performance.md
// quotes their flags): every workload in the documented order, then the
// put matrix of etcd's performance guide.
var perfCases = []perfCase{
	{name: "put", flags: []string{"--clients=256", "--conns=16", "--key-space=100000", "--val-size=256"}},
	{name: "range", flags: []string{"--clients=256", "--conns=16", "--key-space=10000", "--val-size=256", "--consistency=l"}},
	{name: "txn-put", flags: []string{"--clients=64", "--conns=8", "--key-space=10000", "--val-size=256"}},
	{name: "delete", flags: []string{"--clients=64", "--conns=8", "--key-space=20000", "--key-dist=sequential", "--val-size=256"}},
	{name: "watch", flags: []string{"--clients=16", "--conns=4", "--key-space=1000", "--val-size=256", "--watchers=100", "--watch-streams=10"}},
	{name: "lease", flags: []string{"--clients=64", "--conns=8"}},
	{name: "kubernetes", flags: []string{"--clients=64", "--conns=8", "--key-space=5000", "--watchers=20", "--watch-streams=4", "--page-size=500", "--compact-every=5s"}},
	{name: "batch-scheduler", flags: []string{"--clients=64", "--conns=8", "--key-space=1000", "--key-dist=zipf", "--val-size=256"}},
	{name: "fleet-config", flags: []string{"--clients=128", "--conns=16", "--key-space=5000", "--val-size=1024", "--watchers=200", "--watch-streams=20"}},
	{name: "put-1-leader", wl: "put", flags: []string{"--target=leader", "--clients=1", "--conns=1", "--key-space=1", "--val-size=256", "--total=2000"}},
	{name: "put-1000-leader", wl: "put", flags: []string{"--target=leader", "--clients=1000", "--conns=100", "--key-space=100000", "--val-size=256", "--total=50000"}},
	{name: "put-1-all", wl: "put", flags: []string{"--clients=1", "--conns=1", "--key-space=1", "--val-size=256", "--total=2000"}},
	{name: "put-1000-all", wl: "put", flags: []string{"--clients=1000", "--conns=100", "--key-space=100000", "--val-size=256", "--total=50000"}},
}
