//go:build linux

package robustness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/stratakv/strata/internal/plantedbug"
	"github.com/stratakv/strata/tests/robustness/model"
)

var strataBin, binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-robustness-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	strataBin = filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-tags", "strata_failpoints", "-o", strataBin, "./cmd/strata")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building strata: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seeds are the gate's seeds (one per fault type), or those
// STRATA_ROBUSTNESS_SEED lists (comma-separated), or STRATA_ROBUSTNESS_SEEDS
// of them from 1; with
// STRATA_ROBUSTNESS_FAULT=name, only (that many of) the seeds of that
// fault.
func seeds() []uint64 {
	if list := os.Getenv("STRATA_ROBUSTNESS_SEED"); list != "" {
		var out []uint64
		for _, f := range strings.Split(list, ",") {
			if s, err := strconv.ParseUint(strings.TrimSpace(f), 10, 64); err == nil && s > 0 {
				out = append(out, s)
			}
		}
		return out
	}
	n := len(Faults)
	if v, err := strconv.Atoi(os.Getenv("STRATA_ROBUSTNESS_SEEDS")); err == nil && v > 0 {
		n = v
	}
	only := os.Getenv("STRATA_ROBUSTNESS_FAULT")
	if per, err := strconv.Atoi(os.Getenv("STRATA_ROBUSTNESS_PER")); err == nil && per > 0 {
		return seedsPer(per, only)
	}
	var out []uint64
	for s := uint64(1); len(out) < n; s++ {
		if only == "" || faultOf(s).Name == only {
			out = append(out, s)
		}
		if s > uint64(n*len(Faults)) {
			break // no fault has that name
		}
	}
	return out
}

// seedsPer are the first seeds that give every fault (or only the one
// named) per runs in each of its topologies: both for a writer's fault,
// the one with readers for a reader's.
func seedsPer(per int, only string) []uint64 {
	count := map[[2]int]int{} // (fault, readers) -> seeds
	want := 0
	for _, f := range Faults {
		if only != "" && f.Name != only {
			continue
		}
		want += per
		if !f.Readers {
			want += per
		}
	}
	var out []uint64
	for s := uint64(1); len(out) < want; s++ {
		f, readers, _ := plan(s)
		if only != "" && f.Name != only {
			continue
		}
		k := [2]int{int(s % uint64(len(Faults))), readers}
		if count[k] < per {
			count[k]++
			out = append(out, s)
		}
	}
	return out
}

// faultOf is the seed's fault.
func faultOf(seed uint64) Fault { return Faults[seed%uint64(len(Faults))] }

// TestRobustness: for each seed, three writers (and, on half the seeds or
// for a reader's fault, two readers) behind proxies, the etcd-style traffic
// from clients spread over every member, one fault (the seed's) from the
// first third of the traffic to the second; then the history must be
// linearizable and the members' HashKV equal.
func TestRobustness(t *testing.T) {
	if f := os.Getenv("STRATA_ROBUSTNESS_FAULT"); f != "" && !slices.ContainsFunc(Faults, func(x Fault) bool { return x.Name == f }) {
		t.Fatalf("STRATA_ROBUSTNESS_FAULT=%s names no fault", f)
	}
	var tl tally
	t.Cleanup(func() { t.Log(tl.String()) }) // after every subtest, parallel ones included
	parallel := os.Getenv("STRATA_ROBUSTNESS_PARALLEL") != ""
	for _, seed := range seeds() {
		f, readers, profile := plan(seed)
		t.Run(fmt.Sprintf("seed=%d/%s/readers=%d/%s", seed, f.Name, readers, profile), func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			var ops int
			var violation error
			defer func() { tl.add(f.Name, readers, ops, violation, t.Failed()) }()
			if violation = runSeed(t, strataBin, nil, seed, f, readers, profile, true, &ops); violation != nil {
				t.Fatal(violation)
			}
		})
	}
}

// tally sums up a run of seeds: runs by fault and topology, operations,
// violations, and runs that failed otherwise (inconclusive checks, a
// cluster that would not start or heal).
type tally struct {
	mu         sync.Mutex
	runs       map[string][2]int // fault -> runs without, with readers
	ops        int
	violations []string
	other      int
}

func (tl *tally) add(fault string, readers, ops int, violation error, failed bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.runs == nil {
		tl.runs = map[string][2]int{}
	}
	r := tl.runs[fault]
	r[min(readers, 1)]++
	tl.runs[fault] = r
	tl.ops += ops
	switch {
	case violation != nil:
		tl.violations = append(tl.violations, violation.Error())
	case failed:
		tl.other++
	}
}

func (tl *tally) String() string {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	var b strings.Builder
	total := 0
	for _, f := range Faults {
		r := tl.runs[f.Name]
		total += r[0] + r[1]
		fmt.Fprintf(&b, "\n  %-24s %4d without readers, %4d with", f.Name, r[0], r[1])
	}
	return fmt.Sprintf("%d runs, %d operations, %d violations, %d runs failed otherwise; by fault:%s%s",
		total, tl.ops, len(tl.violations), tl.other, b.String(), strings.Join(append([]string{""}, tl.violations...), "\n  violation: "))
}

// plan is what a seed runs: its fault, its readers, its traffic. Seeds
// pass over the faults in order; over four passes each fault meets both
// topologies (a reader's fault: only the one with readers) under both
// traffic profiles, and one pass mixes them all.
func plan(seed uint64) (f Fault, readers int, profile Profile) {
	i, pass := seed%uint64(len(Faults)), (seed-1)/uint64(len(Faults))
	f = Faults[i]
	if (pass+i)%2 == 1 || f.Readers {
		readers = 2
	}
	if (pass/2+i/2)%2 == 1 {
		profile = Kubernetes
	}
	return f, readers, profile
}

// runSeed runs one seed of bin (env added to its members' environment)
// and returns the violation its checks found, if any; it fails t on
// anything else (the cluster did not start, a fault could not be
// injected).
func runSeed(t *testing.T, bin string, env []string, seed uint64, f Fault, readers int, profile Profile, keep bool, nops *int) (violation error) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("strata-robustness-%d-", seed))
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCluster(bin, env, dir, 3, seed)
	if err != nil {
		t.Fatal(err)
	}
	failed := true
	defer func() {
		c.Stop()
		if failed && keep {
			t.Logf("seed %d (%s): data dirs, logs and history kept in %s; run again with STRATA_ROBUSTNESS_SEED=%d", seed, f.Name, dir, seed)
		} else {
			os.RemoveAll(dir)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.Leader(ctx); err != nil {
		t.Fatal(err)
	}
	for range readers {
		if _, err := c.AddReader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	var conns []grpc.ClientConnInterface
	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	var watchers []*Watcher
	for _, m := range c.Members {
		conns = append(conns, m.conn)
		watchers = append(watchers, Watch(wctx, m))
	}
	const run = 6 * time.Second
	h := newHistory()
	tctx, stopTraffic := context.WithTimeout(ctx, run)
	defer stopTraffic()
	traffic := make(chan struct{})
	go func() {
		defer close(traffic)
		Traffic{Profile: profile, Clients: 2 * len(conns), Keys: 4, Rate: 40, Timeout: 2 * time.Second}.Run(tctx, seed, conns, h)
	}()
	defer func() { stopTraffic(); <-traffic }()
	at := func(d time.Duration) {
		select {
		case <-time.After(time.Until(h.start.Add(d))): // the fault's schedule
		case <-ctx.Done():
		}
	}
	at(run / 3)
	fe := &Env{Cluster: c, Watchers: watchers, Rand: rand.New(rand.NewPCG(seed, 0x5eed)), Logf: t.Logf}
	undo, err := f.Inject(ctx, fe)
	if err != nil {
		t.Fatalf("injecting %s: %v", f.Name, err)
	}
	at(2 * run / 3)
	if err := undo(); err != nil {
		t.Fatalf("undoing %s: %v", f.Name, err)
	}
	<-traffic

	// The checks have their own time: the run may have used its own.
	cctx, ccancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer ccancel()
	recorded := h.Operations()
	src, rev, err := lastRevision(cctx, c, recorded)
	if errors.Is(err, errToldAhead) {
		return fmt.Errorf("seed %d (%s): %w", seed, f.Name, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	writes, err := appliedWrites(cctx, slices.Clone(watchers), src, rev)
	if errors.Is(err, errWatchBehind) {
		return fmt.Errorf("seed %d (%s): %w", seed, f.Name, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := checkWrites(recorded, writes); err != nil {
		return fmt.Errorf("seed %d (%s): %w", seed, f.Name, err)
	}
	for _, w := range watchers {
		w.waitFor(rev, 30*time.Second)
	}
	stopWatchers()
	for _, w := range watchers {
		<-w.done
		if err := w.check(writes, rev); err != nil {
			return fmt.Errorf("seed %d (%s): %w", seed, f.Name, err)
		}
	}
	ops, resolved, dropped := patch(recorded, writes)
	res, info := porcupine.CheckOperationsVerbose(model.Model, ops, 2*time.Minute)
	var resumes, progress int
	for _, w := range watchers {
		resumes += w.resumes
		progress += len(w.progress)
	}
	var lost int64
	for _, m := range c.Members {
		lost += m.Lost
	}
	*nops = len(ops)
	t.Logf("answered: %s", answeredByKind(ops))
	t.Logf("%d operations, %d writes applied; of %d unknown writes, %d resolved by the watch, %d never applied or changed nothing; %d failed reads left out; %d watchers (%d resumed streams, %d progress notifications) agree; %d unsynced bytes lost in crashes: %s",
		len(ops), len(writes), h.Unknown, resolved, dropped, h.FailedReads, len(watchers), resumes, progress, lost, res)
	if res != porcupine.Ok {
		path := filepath.Join(dir, "history.html")
		if err := porcupine.VisualizePath(model.Model, info, path); err != nil {
			t.Logf("visualizing: %v", err)
		}
		if res == porcupine.Unknown {
			t.Fatalf("seed %d (%s): the checker ran out of time (inconclusive, not a violation); see %s", seed, f.Name, path)
		}
		return fmt.Errorf("seed %d (%s): the history is not linearizable; see %s", seed, f.Name, path)
	}
	if err := checkHashKV(cctx, c, rev); err != nil {
		return fmt.Errorf("seed %d (%s): %w", seed, f.Name, err)
	}
	failed = false
	return nil
}

// errToldAhead: a client was told of a revision no member reaches (an
// acknowledged write was lost, or never happened).
var errToldAhead = errors.New("a client was told of a revision no member reaches within 30 s")

// lastRevision is the cluster's last revision once the traffic stopped:
// the highest any member reports or any client was told, and a member
// that has reached it (through its watch, every write up to it).
func lastRevision(ctx context.Context, c *Cluster, ops []porcupine.Operation) (*Member, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var told int64
	for _, op := range ops {
		if r := op.Output.(model.Response); !r.Unknown {
			told = max(told, r.Revision)
		}
	}
	for {
		var best *Member
		var rev int64
		for _, m := range c.Members {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := m.Maintenance().Status(sctx, &pb.StatusRequest{})
			cancel()
			if err == nil && st.Header.GetRevision() > rev {
				best, rev = m, st.Header.GetRevision()
			}
		}
		if best != nil && rev >= told {
			return best, rev, nil
		}
		select {
		case <-ctx.Done():
			return nil, 0, fmt.Errorf("%w: told %d, the best member is at %d", errToldAhead, told, rev)
		case <-time.After(100 * time.Millisecond): // the members catch up
		}
	}
}

// checkHashKV waits until every member answers HashKV at rev, and
// requires the same hash from all.
func checkHashKV(ctx context.Context, c *Cluster, rev int64) error {
	var hashes []uint32
	for _, m := range c.Members {
		for {
			hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			r, err := m.Maintenance().HashKV(hctx, &pb.HashKVRequest{Revision: rev})
			cancel()
			if err == nil {
				hashes = append(hashes, r.Hash)
				break
			}
			if !m.Running() {
				return fmt.Errorf("%s is not running (see %s.log)", m.Name, m.Dir)
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: HashKV at revision %d: %v", m.Name, rev, err)
			case <-time.After(100 * time.Millisecond): // the member catches up
			}
		}
	}
	for i, h := range hashes {
		if h != hashes[0] {
			return fmt.Errorf("HashKV at revision %d differs: %s %d, %s %d", rev, c.Members[0].Name, hashes[0], c.Members[i].Name, h)
		}
	}
	return nil
}

// plantedBin is strata built with its planted bugs (-tags
// strata_planted_bugs), once per test binary.
var plantedBin = sync.OnceValues(func() (string, error) {
	bin := filepath.Join(binDir, "strata-planted-bugs")
	build := exec.Command("go", "build", "-tags", "strata_planted_bugs,strata_failpoints", "-o", bin, "./cmd/strata")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building strata with planted bugs: %v\n%s", err, out)
	}
	return bin, nil
})

func faultNamed(t *testing.T, name string) Fault {
	for _, f := range Faults {
		if f.Name == name {
			return f
		}
	}
	t.Fatalf("no fault %q", name)
	return Fault{}
}

// TestPlantedBugsAreCaught: the checks have teeth. Each bug planted in a
// strata built for it (internal/plantedbug) must fail a run within three
// seeds: a reader that answers linearizable reads without ReadIndex
// (under a slow log, its reads go stale), a write applied twice, and a
// watch event dropped.
func TestPlantedBugsAreCaught(t *testing.T) {
	bin, err := plantedBin()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		bug, fault string
		readers    int
	}{
		{plantedbug.StaleReaderRead, "slow-reader", 2},
		{plantedbug.ApplyTwice, "slow-links", 0},
		{plantedbug.DropWatchEvent, "slow-links", 0},
		{plantedbug.AckBeforeCommit, "slow-links", 0},
	} {
		t.Run(c.bug, func(t *testing.T) {
			f := faultNamed(t, c.fault)
			for seed := uint64(1); seed <= 3; seed++ {
				var ops int
				if err := runSeed(t, bin, []string{"STRATA_PLANTED_BUG=" + c.bug}, seed, f, c.readers, Etcd, false, &ops); err != nil {
					t.Logf("caught: %v", err)
					return
				}
			}
			t.Fatalf("%s went unnoticed in three seeds", c.bug)
		})
	}
}

// answeredByKind counts the operations with a definite answer, by kind.
func answeredByKind(ops []porcupine.Operation) string {
	n := map[model.Kind]int{}
	for _, op := range ops {
		if !op.Output.(model.Response).Unknown {
			n[op.Input.(model.Request).Kind]++
		}
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(n)) {
		parts = append(parts, fmt.Sprintf("%v %d", k, n[k]))
	}
	return strings.Join(parts, ", ")
}
