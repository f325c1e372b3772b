package perf

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Config{Endpoints: []string{"127.0.0.1:2379"}, Workload: "put", Total: 10, Clients: 1, Conns: 1}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	for _, c := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.Endpoints = nil }, "--endpoints"},
		{func(c *Config) { c.Workload = "nope" }, "--workload"},
		{func(c *Config) { c.Target = "voters" }, "--target"},
		{func(c *Config) { c.Total = 0 }, "--total or --duration"},
		{func(c *Config) { c.Clients = 0 }, "--clients"},
		{func(c *Config) { c.Conns = 0 }, "--conns"},
		{func(c *Config) { c.KeyDist = "gauss" }, "--key-dist"},
		{func(c *Config) { c.KeyDist, c.ZipfS = "zipf", 0.5 }, "--zipf-s"},
		{func(c *Config) { c.Consistency = "x" }, "--consistency"},
		{func(c *Config) { c.Rate = -1 }, "--rate"},
	} {
		cfg := ok
		c.mod(&cfg)
		err := cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", cfg, err, c.want)
		}
	}
}

func TestKeys(t *testing.T) {
	cfg := Config{KeySize: 6, KeySpace: 1000, KeyDist: "sequential", Clients: 4, Prefix: "p/"}.withDefaults()
	g := newKeyGen(cfg, 1, rand.New(rand.NewPCG(1, 1)))
	if n := g.Next(); n != 250 {
		t.Fatalf("worker 1 of 4 starts at %d, want 250", n)
	}
	if k := string(g.Key(7)); k != "p/000007" {
		t.Fatalf("key 7 = %q", k)
	}
	if k := string(appendKey(nil, "", 2, 12345)); k != "12345" {
		t.Fatalf("a number longer than the key size: %q", k)
	}
	// zipf draws favour the low keys; uniform ones do not.
	for _, dist := range []string{"uniform", "zipf"} {
		cfg.KeyDist = dist
		g := newKeyGen(cfg.withDefaults(), 0, rand.New(rand.NewPCG(2, 2)))
		low := 0
		for range 10000 {
			n := g.Next()
			if n < 0 || n >= 1000 {
				t.Fatalf("%s: key %d outside the space", dist, n)
			}
			if n < 10 {
				low++
			}
		}
		if dist == "uniform" && (low < 50 || low > 200) || dist == "zipf" && low < 3000 {
			t.Errorf("%s: %d of 10000 draws in the lowest 1%% of keys", dist, low)
		}
	}
}

func TestRecorderAndResult(t *testing.T) {
	start := time.Unix(1000, 0)
	a, b := newRecorder(start), newRecorder(start)
	for i := range 1000 {
		a.op(start, start.Add(time.Duration(i+1)*time.Millisecond), nil) // 1..1000 ms
		a.rpc("put", time.Duration(i+1)*time.Millisecond, nil)
	}
	b.op(start.Add(1500*time.Millisecond), start.Add(2*time.Second), errTest{})
	b.add("txn_conflicts", 3)
	a.merge(b)
	r := newResult(Config{Workload: "put", Target: "all"}, lookupWorkload("put"), nil, a, start, start.Add(2*time.Second), 1001*time.Millisecond, nil)
	if r.Ops != 1001 || r.Errors != 1 || r.ErrorsByCode["Unknown"] != 1 {
		t.Fatalf("ops %d errors %d %v", r.Ops, r.Errors, r.ErrorsByCode)
	}
	if p := r.LatencyMs.P50; p < 495 || p > 505 {
		t.Fatalf("p50 %.1f ms, want about 500", p)
	}
	if r.LatencyMs.Max < 999 || r.LatencyMs.P99 > r.LatencyMs.Max || r.LatencyMs.P50 > r.LatencyMs.P99 {
		t.Fatalf("latency %+v", r.LatencyMs)
	}
	if len(r.Throughput) != 3 || r.Throughput[0] != 999 || r.Throughput[1] != 1 || r.Throughput[2] != 1 {
		t.Fatalf("throughput per second %v", r.Throughput)
	}
	if r.HarnessCPUUsPerOp != 1000 || r.Extra["txn_conflicts"] != 3 {
		t.Fatalf("harness CPU %.1f µs/op, extra %v", r.HarnessCPUUsPerOp, r.Extra)
	}
	path := filepath.Join(t.TempDir(), "r.json")
	if err := WriteJSON(path, []*Result{r}); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(path)
	if err != nil || len(back) != 1 || back[0].Ops != r.Ops || back[0].LatencyMs != r.LatencyMs {
		t.Fatalf("read back %v %v", back, err)
	}
	var out bytes.Buffer
	PrintSummary(&out, r)
	for _, want := range []string{"1001 ops", "p99.9", "put", "txn_conflicts: 3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if err := os.WriteFile(path, []byte(`[{"schema": 99}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadJSON(path); err == nil || !strings.Contains(err.Error(), "schema 99") {
		t.Fatalf("a result of another schema: %v", err)
	}
}

type errTest struct{}

func (errTest) Error() string { return "test" }

// TestLocalPID finds this process by a socket it listens on, and reads its
// CPU time and RSS from /proc.
func TestLocalPID(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	pid, ok := localPID("http://" + l.Addr().String())
	if !ok || pid != os.Getpid() {
		t.Fatalf("localPID = %d, %v; want this process, %d", pid, ok, os.Getpid())
	}
	if _, ok := localPID("http://192.0.2.1:2379"); ok {
		t.Fatal("a remote endpoint was found locally")
	}
	cpu, err := ProcCPU(pid)
	if err != nil || cpu <= 0 {
		t.Fatalf("ProcCPU: %v %v", cpu, err)
	}
	rss, err := ProcRSS(pid)
	if err != nil || rss < 1<<20 {
		t.Fatalf("ProcRSS: %d %v", rss, err)
	}
}

func TestBar(t *testing.T) {
	if b := bar(0.5); !strings.HasPrefix(b, "[===============               ]") || !strings.HasSuffix(b, " 50%") {
		t.Fatalf("bar(0.5) = %q", b)
	}
	if b := bar(2); !strings.HasSuffix(b, "100%") {
		t.Fatalf("bar(2) = %q", b)
	}
}

func TestMedianAndSweepParams(t *testing.T) {
	if m := Median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median of 3 = %v", m)
	}
	if m := Median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("median of 4 = %v", m)
	}
	var c Config
	for _, p := range SweepParams {
		if err := setParam(&c, p, "7"); err != nil {
			t.Fatalf("%s=7: %v", p, err)
		}
	}
	if c.Clients != 7 || c.Conns != 7 || c.Rate != 7 || c.ValSize != 7 || c.KeySpace != 7 || c.Watchers != 7 {
		t.Fatalf("after setting every parameter to 7: %+v", c)
	}
	for _, bad := range [][2]string{{"clients", "x"}, {"clients", "-1"}, {"rate", "-2"}, {"nope", "1"}} {
		if err := setParam(&c, bad[0], bad[1]); err == nil {
			t.Errorf("%s=%s accepted", bad[0], bad[1])
		}
	}
}

func TestWorkloadOrder(t *testing.T) {
	want := []string{"put", "range", "txn-put", "delete", "watch", "lease", "kubernetes", "batch-scheduler", "fleet-config"}
	if got := WorkloadNames(); !slices.Equal(got, want) {
		t.Fatalf("workloads %v, want %v (the documented order)", got, want)
	}
}

// TestSweepServerFlagChecks: a server flag needs a launcher; a launcher
// excludes --endpoints; a value the server would refuse stops the sweep
// before any cluster starts; a launcher's failure names the point.
func TestSweepServerFlagChecks(t *testing.T) {
	cfg := Config{Workload: "put", Total: 10, Clients: 1, Conns: 1}
	launches := 0
	failing := func(ctx context.Context, flags []string) ([]string, func(), error) {
		launches++
		if !slices.Equal(flags, []string{"--unsafe-no-fsync", "--max-batch-requests=8"}) {
			t.Errorf("launched with %v", flags)
		}
		return nil, nil, errors.New("no room")
	}
	withEps := cfg
	withEps.Endpoints = []string{"127.0.0.1:2379"}
	for _, c := range []struct {
		name string
		cfg  Config
		o    SweepOptions
		want string
	}{
		{"no launcher", withEps, SweepOptions{}, "with --launch"},
		{"launcher and endpoints", withEps, SweepOptions{Launch: failing}, "leave --endpoints out"},
		{"refused value", cfg, SweepOptions{Launch: failing, CheckServerFlag: func(f string) error {
			if f == "--max-batch-requests=0" {
				return errors.New(f + " must be >0")
			}
			return nil
		}}, "--max-batch-requests=0 must be >0"},
		{"launch fails", cfg, SweepOptions{Launch: failing, ServerFlags: []string{"--unsafe-no-fsync"}}, "max-batch-requests=8: starting the cluster: no room"},
	} {
		values := []string{"8", "0"}
		_, _, err := Sweep(context.Background(), c.cfg, "max-batch-requests", values, c.o)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	if launches != 1 {
		t.Fatalf("%d launches, want 1 (the last case's first point)", launches)
	}
}

// TestSweepStopsEveryCluster: a launched point's cluster is stopped when
// its run fails, and a cancelled sweep launches nothing more.
func TestSweepStopsEveryCluster(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there: the run's dial fails
	launched, stopped := 0, 0
	o := SweepOptions{Launch: func(ctx context.Context, flags []string) ([]string, func(), error) {
		launched++
		return []string{dead}, func() { stopped++ }, nil
	}}
	cfg := Config{Workload: "put", Total: 10, Clients: 1, Conns: 1, DialTimeout: time.Second}
	if _, _, err := Sweep(context.Background(), cfg, "max-batch-requests", []string{"1", "2"}, o); err == nil {
		t.Fatal("a sweep over a dead endpoint succeeded")
	}
	if launched != 1 || stopped != 1 {
		t.Fatalf("after a failed run: %d launched, %d stopped; want 1 and 1", launched, stopped)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := Sweep(ctx, cfg, "max-batch-requests", []string{"1"}, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled sweep: %v", err)
	}
	if launched != 1 {
		t.Fatalf("a cancelled sweep launched a cluster")
	}
}
