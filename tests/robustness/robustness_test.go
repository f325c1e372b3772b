//go:build linux

package robustness

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/stratakv/strata/tests/robustness/model"
)

var strataBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "strata-robustness-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	strataBin = filepath.Join(dir, "strata")
	build := exec.Command("go", "build", "-o", strataBin, "./cmd/strata")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building strata: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// seeds are the gate's seeds (one per fault type), or STRATA_ROBUSTNESS_SEED
// alone, or STRATA_ROBUSTNESS_SEEDS of them from 1.
func seeds() []uint64 {
	if s, err := strconv.ParseUint(os.Getenv("STRATA_ROBUSTNESS_SEED"), 10, 64); err == nil {
		return []uint64{s}
	}
	n := len(Faults)
	if v, err := strconv.Atoi(os.Getenv("STRATA_ROBUSTNESS_SEEDS")); err == nil && v > 0 {
		n = v
	}
	var out []uint64
	for i := range n {
		out = append(out, uint64(i+1))
	}
	return out
}

// TestRobustness: for each seed, three writers behind proxies, the
// etcd-style traffic from six clients spread over them, one fault (the
// seed's) from the first third of the traffic to the second; then the
// history must be linearizable and the members' HashKV equal.
func TestRobustness(t *testing.T) {
	for _, seed := range seeds() {
		f := Faults[seed%uint64(len(Faults))]
		t.Run(fmt.Sprintf("seed=%d/%s", seed, f.Name), func(t *testing.T) { runSeed(t, seed, f) })
	}
}

func runSeed(t *testing.T, seed uint64, f Fault) {
	dir, err := os.MkdirTemp("", fmt.Sprintf("strata-robustness-%d-", seed))
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartCluster(strataBin, dir, 3, seed)
	if err != nil {
		t.Fatal(err)
	}
	failed := true
	defer func() {
		c.Stop()
		if failed {
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
	var kvs []pb.KVClient
	for _, m := range c.Members {
		kvs = append(kvs, m.KV())
	}
	const run = 6 * time.Second
	h := newHistory()
	tctx, stopTraffic := context.WithTimeout(ctx, run)
	defer stopTraffic()
	traffic := make(chan struct{})
	go func() {
		defer close(traffic)
		Traffic{Clients: 6, Keys: 4, Rate: 40, Timeout: 2 * time.Second}.Run(tctx, seed, kvs, h)
	}()
	at := func(d time.Duration) {
		select {
		case <-time.After(time.Until(h.start.Add(d))): // the fault's schedule
		case <-ctx.Done():
		}
	}
	at(run / 3)
	undo, err := f.Inject(ctx, c)
	if err != nil {
		t.Fatalf("injecting %s: %v", f.Name, err)
	}
	at(2 * run / 3)
	if err := undo(); err != nil {
		t.Fatalf("undoing %s: %v", f.Name, err)
	}
	<-traffic

	l, err := c.Leader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.Maintenance().Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	writes, err := collectWrites(ctx, l, st.Header.GetRevision())
	if err != nil {
		t.Fatal(err)
	}
	ops := patch(h.Operations(), writes)
	res, info := porcupine.CheckOperationsVerbose(model.Model, ops, time.Minute)
	t.Logf("%d operations, %d writes applied (%d unknown writes resolved by the watch, %d failed reads left out): %s",
		len(ops), len(writes), h.Unknown, h.FailedReads, res)
	if res != porcupine.Ok {
		path := filepath.Join(dir, "history.html")
		if err := porcupine.VisualizePath(model.Model, info, path); err != nil {
			t.Logf("visualizing: %v", err)
		}
		t.Fatalf("seed %d (%s): history is %s; see %s", seed, f.Name, res, path)
	}
	if err := checkHashKV(ctx, c); err != nil {
		t.Fatalf("seed %d (%s): %v", seed, f.Name, err)
	}
	failed = false
}

// checkHashKV waits until every member answers HashKV at the leader's
// revision, and requires the same hash from all.
func checkHashKV(ctx context.Context, c *Cluster) error {
	l, err := c.Leader(ctx)
	if err != nil {
		return err
	}
	st, err := l.Maintenance().Status(ctx, &pb.StatusRequest{})
	if err != nil {
		return err
	}
	rev := st.Header.GetRevision()
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
