package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stratakv/strata/readernode"
)

// TestReadersServeLinearizably: three writers and two readers (learners on
// bbolt, joined the etcd way: member add --learner, then --role=reader with
// --initial-cluster-state=existing; the second added after the first
// started, which etcd's one-learner default allows in strata since started
// learners do not count). On the readers:
//   - a linearizable read issued right after a write acknowledged by the
//     leader always sees it;
//   - a watch sees every event, in order, with nothing missing;
//   - writes sent to a reader succeed;
//   - Status says learner;
//   - after kill -9, writes elsewhere, and a restart, a reader catches up;
//   - a reader whose data dir is wiped, or whose bbolt file is corrupted,
//     seeds itself from the leader;
//
// and HashKV agrees on all five.
func TestReadersServeLinearizably(t *testing.T) {
	b, ms, clients := startStrataCluster(t, "r")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var readers []*Member
	var rclients []*clientv3.Client
	for i := range 2 {
		r, _ := joinLearner(ctx, t, b, ms, clients[0], fmt.Sprintf("reader%d", i), append(fastRaft, "--role=reader")...)
		readers = append(readers, r)
		rclients = append(rclients, newEndpointClient(t, r))
		// The state machine is bbolt.
		if _, err := os.Stat(filepath.Join(r.DataDir, "member", "bolt.db")); err != nil {
			t.Fatalf("reader %d has no bbolt state machine: %v", i, err)
		}
	}
	for i, c := range rclients {
		st, err := c.Status(ctx, c.Endpoints()[0])
		if err != nil {
			t.Fatal(err)
		}
		if !st.IsLearner {
			t.Fatalf("reader %d: Status says it is not a learner", i)
		}
	}

	// A reader's watch, opened before the writes.
	start, err := clients[0].Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wl := &WatchLog{Name: "reader watch", Key: "x/", End: "x0", Start: start.Header.Revision + 1, PrevKV: true}
	var wmu sync.Mutex
	var wdone sync.WaitGroup
	wch := rclients[1].Watch(wctx, "x/", clientv3.WithPrefix(), clientv3.WithRev(start.Header.Revision+1), clientv3.WithPrevKV())
	wdone.Go(func() {
		for r := range wch {
			wmu.Lock()
			wl.Record(r)
			wmu.Unlock()
		}
	})

	leader := leaderIndex(ctx, t, clients)
	var last int64
	for i := range 200 {
		key := fmt.Sprintf("x/%03d", i%50)
		val := fmt.Sprint(i)
		var resp *clientv3.PutResponse
		if i%10 == 9 {
			resp, err = rclients[i%2].Put(ctx, key, val) // a write sent to a reader
		} else {
			resp, err = clients[leader].Put(ctx, key, val)
		}
		if err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		last = resp.Header.Revision
		g, err := rclients[i%2].Get(ctx, key)
		if err != nil {
			t.Fatalf("linearizable read %d on reader %d: %v", i, i%2, err)
		}
		if len(g.Kvs) != 1 || string(g.Kvs[0].Value) != val || g.Header.Revision < resp.Header.Revision {
			t.Fatalf("read %d on reader %d after an acknowledged write at %d: %v (revision %d)", i, i%2, resp.Header.Revision, g.Kvs, g.Header.Revision)
		}
	}

	// Kill -9 a reader, write, restart it: it catches up.
	readers[0].Kill()
	for i := range 100 {
		r, err := clients[leader].Put(ctx, fmt.Sprintf("x/%03d", i%50), fmt.Sprintf("after-kill-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	if err := readers[0].Restart(); err != nil {
		t.Fatal(err)
	}
	rclients[0] = newEndpointClient(t, readers[0])
	g, err := rclients[0].Get(ctx, "x/049")
	if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "after-kill-99" {
		t.Fatalf("restarted reader: %v %v", g, err)
	}

	// Its data dir wiped, it seeds itself from the leader and serves again
	// (raft alone could not catch it up: see writernode/seed.go).
	if err := readers[0].Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(readers[0].DataDir); err != nil {
		t.Fatal(err)
	}
	if r, err := clients[leader].Put(ctx, "x/049", "after-wipe"); err != nil {
		t.Fatal(err)
	} else {
		last = r.Header.Revision
	}
	if err := readers[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if !readers[0].WaitOutput("seeded the state machine from the leader", 30*time.Second) {
		t.Fatalf("the wiped reader did not seed itself; log:\n%s", lastLines(readers[0].Output(), 20))
	}
	rclients[0] = newEndpointClient(t, readers[0])
	if g, err := rclients[0].Get(ctx, "x/049"); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "after-wipe" {
		t.Fatalf("wiped and restarted reader: %v %v", g, err)
	}
	if r, err := rclients[0].Put(ctx, "x/048", "through-the-reseeded-reader"); err != nil {
		t.Fatalf("write through the reseeded reader: %v", err)
	} else {
		last = r.Header.Revision
	}

	// Its bbolt file corrupted (pages overwritten while it was down), it
	// moves the file aside and seeds a new one.
	if err := readers[0].Stop(); err != nil {
		t.Fatal(err)
	}
	corruptFile(t, filepath.Join(readers[0].DataDir, "member", "bolt.db"), 16384)
	if err := readers[0].Restart(); err != nil {
		t.Fatal(err)
	}
	if out := string(readers[0].Output()); !strings.Contains(out, "the state machine is corrupt") ||
		!strings.Contains(out, "seeded the state machine from the leader") {
		t.Fatalf("the corrupted reader did not reseed itself; log:\n%s", lastLines(readers[0].Output(), 20))
	}
	rclients[0] = newEndpointClient(t, readers[0])
	if g, err := rclients[0].Get(ctx, "x/048"); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "through-the-reseeded-reader" {
		t.Fatalf("reader after its file was corrupted: %v %v", g, err)
	}

	// The watch has every event through the last write.
	deadline := time.Now().Add(30 * time.Second)
	for {
		wmu.Lock()
		reached := wl.Reached()
		wmu.Unlock()
		if reached >= last {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reader's watch reached only %d of %d", reached, last)
		}
		time.Sleep(20 * time.Millisecond) // polls the watch log
	}
	wcancel()
	wdone.Wait()
	history := readHistory(ctx, t, clients[leader], last)
	if err := CheckWatch(wl, history, last); err != nil {
		t.Error(err)
	}
	requireEqualHashKV(ctx, t, append(slices.Clone(clients), rclients...), last)

	// The whole cluster stops and starts again: the members added after
	// it began (both readers) are linked to again, with no conf change to
	// remind anyone of them.
	all := append(slices.Clone(ms), readers...)
	for _, m := range all {
		if err := m.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	var restart sync.WaitGroup
	errs := make(chan error, len(all))
	for _, m := range all {
		restart.Go(func() { errs <- m.Restart() })
	}
	restart.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("restart of the whole cluster: %v", err)
		}
	}
	for i, r := range readers {
		c := newEndpointClient(t, r)
		if g, err := c.Get(ctx, "x/049"); err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != "after-wipe" {
			t.Fatalf("reader %d after the whole cluster restarted: %v %v", i, g, err)
		}
	}
}

// corruptFile overwrites everything in path from offset on with garbage.
func corruptFile(t *testing.T, path string, offset int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() <= offset {
		t.Fatalf("%s has only %d bytes", path, st.Size())
	}
	if _, err := f.WriteAt([]byte(strings.Repeat("\xab", int(st.Size()-offset))), offset); err != nil {
		t.Fatal(err)
	}
}

// TestFiveReaders: five readers join three writers one after another
// (etcd's one-learner default counts only learners not yet started), each
// serves a linearizable read of a write acknowledged by the leader, and
// HashKV agrees on all eight members.
func TestFiveReaders(t *testing.T) {
	b, ms, clients := startStrataCluster(t, "f")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var rclients []*clientv3.Client
	for i := range 5 {
		r, _ := joinLearner(ctx, t, b, ms, clients[0], fmt.Sprintf("reader%d", i), append(fastRaft, "--role=reader")...)
		rclients = append(rclients, newEndpointClient(t, r))
	}
	leader := leaderIndex(ctx, t, clients)
	var last int64
	for i, c := range rclients {
		p, err := clients[leader].Put(ctx, "five", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = p.Header.Revision
		g, err := c.Get(ctx, "five")
		if err != nil || len(g.Kvs) != 1 || string(g.Kvs[0].Value) != fmt.Sprint(i) {
			t.Fatalf("reader %d: %v %v", i, g, err)
		}
	}
	list, err := clients[0].MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	learners := 0
	for _, m := range list.Members {
		if m.IsLearner {
			learners++
		}
	}
	if len(list.Members) != 8 || learners != 5 {
		t.Fatalf("member list: %d members, %d learners", len(list.Members), learners)
	}
	requireEqualHashKV(ctx, t, append(slices.Clone(clients), rclients...), last)
}

// TestReaderHashMismatchReseeds: a reader whose bbolt file was altered
// while it was down, in a way its integrity walk cannot see (one history
// value rewritten, well formed), finds that its HashKV differs from the
// others' (the start-up check, or the periodic one: --corrupt-check-time=1s),
// moves the file aside, seeds a new one and serves again, with HashKV equal
// to the writers'.
func TestReaderHashMismatchReseeds(t *testing.T) {
	b, ms, clients := startStrataCluster(t, "hm")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, _ := joinLearner(ctx, t, b, ms, clients[0], "reader0", append(fastRaft, "--role=reader", "--corrupt-check-time=1s")...)
	rc := newEndpointClient(t, r)
	var last int64
	for i := range 20 {
		p, err := clients[0].Put(ctx, fmt.Sprintf("h/%02d", i), "value")
		if err != nil {
			t.Fatal(err)
		}
		last = p.Header.Revision
	}
	if g, err := rc.Get(ctx, "h/19"); err != nil || len(g.Kvs) != 1 {
		t.Fatalf("reader: %v %v", g, err)
	}
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	alterHistoryValue(t, filepath.Join(r.DataDir, "member", "bolt.db"))
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	// Wait for the reseed (bounded).
	if !r.WaitOutput("seeded the state machine from the leader", 30*time.Second) {
		t.Fatalf("no reseed after the hash mismatch; log:\n%s", lastLines(r.Output(), 20))
	}
	if !strings.Contains(string(r.Output()), "hashes differently from the leader") {
		t.Fatalf("reseeded without a hash mismatch; log:\n%s", lastLines(r.Output(), 20))
	}
	rc = newEndpointClient(t, r)
	requireEqualHashKV(ctx, t, append(slices.Clone(clients), rc), last)
}

// alterHistoryValue rewrites the last byte of the first history value in
// a reader's bbolt file (keys under "h/" in the applier's layout), keeping
// it well formed.
func alterHistoryValue(t *testing.T, path string) {
	t.Helper()
	e, err := readernode.OpenBolt(path, readernode.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	flipHistoryByte(t, e)
}

// TestReaderBehindTheLogSwapsInSnapshot: a reader killed while the leader
// compacts its log past the reader's position (--snapshot-count=100) can
// only catch up through a raft snapshot. It installs it into a new bbolt
// file beside its current one and renames that over bolt.db (a new inode,
// no bolt.db.next left), then follows the log; after a clean restart it
// opens the new file. HashKV agrees with every writer, and a backup taken
// from the reader (etcdctl snapshot save) holds the leader's state.
func TestReaderBehindTheLogSwapsInSnapshot(t *testing.T) {
	b, ms, clients := startStrataCluster(t, "q", "--snapshot-count=100")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, _ := joinLearner(ctx, t, b, ms, clients[0], "reader", append(fastRaft, "--role=reader", "--snapshot-count=100")...)
	boltPath := filepath.Join(r.DataDir, "member", "bolt.db")
	before := inode(t, boltPath)

	leader := leaderIndex(ctx, t, clients)
	r.Kill()
	for i := range 400 {
		if _, err := clients[leader].Put(ctx, fmt.Sprintf("q/%03d", i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	if !r.WaitOutput("swapped in a new engine for the snapshot", 30*time.Second) {
		t.Fatalf("the restarted reader caught up without swapping in a snapshot; log:\n%s", lastLines(r.Output(), 30))
	}
	if after := inode(t, boltPath); after == before {
		t.Fatalf("bolt.db is the same file (inode %d) after the snapshot install", after)
	}
	if _, err := os.Stat(boltPath + ".next"); !os.IsNotExist(err) {
		t.Fatalf("bolt.db.next left behind: %v", err)
	}
	rc := newEndpointClient(t, r)
	if _, err := clients[leader].Put(ctx, "q/after", "x"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		resp, err := rc.Get(ctx, "q/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil || resp.Count != 401 {
			t.Fatalf("%s: reader holds %v keys (%v), want 401", when, resp, err)
		}
		requireEqualHashKV(ctx, t, append(slices.Clone(clients), rc), resp.Header.Revision)
	}
	check("after the swap")
	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	rc = newEndpointClient(t, r)
	check("after a restart on the new file")

	// A backup taken from the reader restores to the cluster's state.
	file := filepath.Join(t.TempDir(), "reader-backup.db")
	if res, err := Etcdctl(ctx, b.Etcdctl, []string{r.Endpoint()}, "", "snapshot", "save", file); err != nil || res.ExitCode != 0 {
		t.Fatalf("etcdctl snapshot save from the reader: %v %v", err, res)
	}
	g, err := clients[leader].Get(ctx, "q/after")
	if err != nil {
		t.Fatal(err)
	}
	want, err := clients[leader].HashKV(ctx, clients[leader].Endpoints()[0], g.Header.Revision)
	if err != nil {
		t.Fatal(err)
	}
	if got := backupHashKV(t, file, g.Header.Revision); got != want.Hash {
		t.Fatalf("the reader's backup hashes %d at revision %d, the leader %d", got, g.Header.Revision, want.Hash)
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}
