package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestWatchGuaranteesUnderFailover runs a concurrent write workload (puts,
// deletes, multi-key txns, lease revokes that delete keys) on a real
// three-member strata through every member, kills the leader with SIGKILL
// midway and brings it back, while client/v3 watchers on every member (keys,
// ranges, prefixes, with and without prev_kv, from the past and from now,
// one asking for progress all along) consume their streams. Every stream is
// then checked against the complete history, read back by a watch from
// revision 1 on each member (which must agree): order, no gaps, no
// duplicates, atomic revisions, progress never ahead of events.
func TestWatchGuaranteesUnderFailover(t *testing.T) {
	_, ms, clients := startStrataCluster(t, "w", "--watch-progress-notify-interval=200ms")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	var endpoints []string
	for _, m := range ms {
		endpoints = append(endpoints, m.Endpoint())
	}
	// A watcher's client: pinned to one member (it waits for that member
	// to come back) or free to fail over to any.
	watchClient := func(eps ...string) *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if _, err := clients[0].Put(ctx, "k/00", "seed"); err != nil {
		t.Fatal(err)
	}
	type spec struct {
		key, end string
		start    int64
		prevKV   bool
		progress bool
		client   *clientv3.Client
	}
	specs := []spec{
		{key: "k/", end: "k0", prevKV: true, client: watchClient(endpoints...)},
		{key: "k/", end: "k0", start: 1, client: watchClient(endpoints...)},
		{key: "k/03", client: watchClient(ms[0].Endpoint())},
		{key: "k/1", end: "k/3", prevKV: true, progress: true, client: watchClient(ms[1].Endpoint())},
		{key: "\x00", end: "\x00", start: 2, prevKV: true, client: watchClient(ms[2].Endpoint())},
		{key: "k/2", end: "k/4", progress: true, client: watchClient(endpoints...)},
	}
	logs := make([]*WatchLog, len(specs))
	var wg sync.WaitGroup
	var mu sync.Mutex // guards logs' records
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	for i, sp := range specs {
		end := sp.end
		opts := []clientv3.OpOption{}
		switch {
		case end == "\x00":
			opts = append(opts, clientv3.WithFromKey())
		case end != "":
			opts = append(opts, clientv3.WithRange(end))
		}
		if sp.start != 0 {
			opts = append(opts, clientv3.WithRev(sp.start))
		}
		if sp.prevKV {
			opts = append(opts, clientv3.WithPrevKV())
		}
		if sp.progress {
			opts = append(opts, clientv3.WithProgressNotify())
		}
		wch := sp.client.Watch(wctx, sp.key, opts...)
		// The start of a watch from now is the revision after the one its
		// created response carries; client/v3 hides that response, so
		// take the revision before the watch was opened: events between
		// the two would be reported, and the check would catch their
		// absence as a gap only if they were due.
		l := &WatchLog{Name: fmt.Sprintf("watcher %d (%q-%q from %d)", i, sp.key, end, sp.start), Key: sp.key, End: end, Start: sp.start, PrevKV: sp.prevKV}
		logs[i] = l
		wg.Go(func() {
			for r := range wch {
				mu.Lock()
				l.Record(r)
				mu.Unlock()
			}
		})
	}
	// Resolve the start of the watches from now: client/v3 reports the
	// created response's revision as the first response's header only
	// for the events; use the revision before the workload instead, which
	// is no earlier than their creation.
	r0, err := clients[0].Get(ctx, "k/00")
	if err != nil {
		t.Fatal(err)
	}
	for i, sp := range specs {
		if sp.start == 0 {
			logs[i].Start = r0.Header.Revision + 1
		}
	}

	// Progress requests on one watcher's stream all along.
	wg.Go(func() {
		for wctx.Err() == nil {
			_ = specs[3].client.RequestProgress(wctx)
			select {
			case <-wctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})

	// The workload: writers on every member; the leader is killed at a
	// third of the way and restarted at two thirds.
	const writers, opsPerWriter = 6, 150
	var done sync.WaitGroup
	var progress sync.Mutex
	finished := 0
	killAt, restartAt := writers*opsPerWriter/3, 2*writers*opsPerWriter/3
	leader := leaderIndex(ctx, t, clients)
	var killed bool
	step := func() {
		progress.Lock()
		defer progress.Unlock()
		finished++
		switch finished {
		case killAt:
			ms[leader].Kill()
			killed = true
		case restartAt:
			if err := ms[leader].Restart(); err != nil {
				t.Error(err)
			}
		}
	}
	for w := range writers {
		done.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			cli := clients[w%3]
			for range opsPerWriter {
				key := func() string { return fmt.Sprintf("k/%02d", rng.IntN(40)) }
				var err error
				octx, ocancel := context.WithTimeout(ctx, 3*time.Second)
				switch n := rng.IntN(10); {
				case n < 5:
					_, err = cli.Put(octx, key(), fmt.Sprint(rng.Int()))
				case n < 7:
					_, err = cli.Delete(octx, key())
				case n < 9:
					a, b := key(), key()
					ops := []clientv3.Op{clientv3.OpPut(a, "t")}
					if b != a {
						ops = append(ops, clientv3.OpPut(b, "t"))
					}
					_, err = cli.Txn(octx).Then(ops...).Commit()
				default:
					var l *clientv3.LeaseGrantResponse
					if l, err = cli.Grant(octx, 60); err == nil {
						for range 3 {
							if _, err = cli.Put(octx, key(), "leased", clientv3.WithLease(l.ID)); err != nil {
								break
							}
						}
						if err == nil {
							_, err = cli.Revoke(octx, l.ID)
						}
					}
				}
				ocancel()
				_ = err // failed writes during the failover are expected; history says what happened
				step()
			}
		})
	}
	done.Wait()
	if !killed {
		t.Fatal("the leader was never killed")
	}

	// The final revision, and the history from revision 1 on every member.
	var final int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := clients[(leader+1)%3].Put(ctx, "k/zz-final", "end")
		if err == nil {
			final = r.Header.Revision
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted after the workload: %v", err)
		}
	}
	clients[leader] = newEndpointClient(t, ms[leader])
	var history []*mvccpb.Event
	for i, c := range clients {
		h := readHistory(ctx, t, c, final)
		if i == 0 {
			history = h
			continue
		}
		if err := CheckWatch(&WatchLog{Name: fmt.Sprintf("history on member %d", i), Key: "\x00", End: "\x00", Start: 1, PrevKV: true,
			Resps: []WatchRecord{{Rev: final, Events: h}}}, history, final); err != nil {
			t.Fatalf("members disagree on the history: %v", err)
		}
	}
	if len(history) < writers*opsPerWriter/2 {
		t.Fatalf("only %d events in the history of %d revisions", len(history), final)
	}

	// Every watcher reaches the final revision (by an event or a progress
	// notification; progress is asked for on every watcher's stream).
	deadline = time.Now().Add(60 * time.Second)
	for _, sp := range specs {
		_ = sp.client.RequestProgress(ctx)
	}
	for i := 0; i < len(logs); {
		mu.Lock()
		reached := logs[i].Reached()
		mu.Unlock()
		if reached >= final {
			i++
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s reached only revision %d of %d", logs[i].Name, reached, final)
		}
		_ = specs[i].client.RequestProgress(ctx)
		time.Sleep(50 * time.Millisecond) // paces the polling of a condition
	}
	wcancel()
	wg.Wait()
	progressSeen := 0
	for _, l := range logs {
		if err := CheckWatch(l, history, final); err != nil {
			t.Error(err)
		}
		for _, r := range l.Resps {
			if r.Progress {
				progressSeen++
			}
		}
	}
	if progressSeen == 0 {
		t.Error("no progress notification was seen")
	}
}

// readHistory watches every key from revision 1 with prev_kv until it has
// the events through final, and returns them.
func readHistory(ctx context.Context, t *testing.T, c *clientv3.Client, final int64) []*mvccpb.Event {
	t.Helper()
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var evs []*mvccpb.Event
	for r := range c.Watch(hctx, "\x00", clientv3.WithFromKey(), clientv3.WithRev(1), clientv3.WithPrevKV()) {
		if err := r.Err(); err != nil {
			t.Fatalf("history watch on %v: %v", c.Endpoints(), err)
		}
		for _, ev := range r.Events {
			if ev.Kv.ModRevision > final {
				return evs
			}
			evs = append(evs, (*mvccpb.Event)(ev))
		}
		if n := len(evs); n > 0 && evs[n-1].Kv.ModRevision == final {
			return evs
		}
	}
	t.Fatalf("history watch on %v ended before revision %d", c.Endpoints(), final)
	return nil
}

// TestWatchRequireLeader: a watch stream opened with hasleader=true (client
// v3's WithRequireLeader) on a member that loses its quorum ends with "no
// leader" after three election timeouts, as in etcd; opening one on a
// leaderless member fails at once.
func TestWatchRequireLeader(t *testing.T) {
	_, ms, clients := startStrataCluster(t, "h")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leader := leaderIndex(ctx, t, clients)
	lone := (leader + 1) % 3
	wch := clients[lone].Watch(clientv3.WithRequireLeader(ctx), "x")
	plain := clients[lone].Watch(ctx, "x")
	if _, err := clients[lone].Put(ctx, "x", "1"); err != nil {
		t.Fatal(err)
	}
	for _, ch := range []clientv3.WatchChan{wch, plain} {
		if r := <-ch; r.Err() != nil || len(r.Events) != 1 {
			t.Fatalf("first event: %+v %v", r, r.Err())
		}
	}
	for i, m := range ms {
		if i != lone {
			m.Kill()
		}
	}
	start := time.Now()
	select {
	case r, ok := <-wch:
		if !ok {
			t.Fatal("the watch channel closed without an error")
		}
		if !errors.Is(r.Err(), rpctypes.ErrNoLeader) {
			t.Fatalf("watch ended with %v, want %v", r.Err(), rpctypes.ErrNoLeader)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hasleader watch outlived the quorum by 30s")
	}
	t.Logf("hasleader watch ended %v after the quorum was lost", time.Since(start).Round(time.Millisecond))
	// The watch without hasleader is still open: a new hasleader stream
	// is refused, a plain one is served.
	select {
	case r := <-plain:
		t.Fatalf("the plain watch ended too: %+v %v", r, r.Err())
	default:
	}
	r := <-clients[lone].Watch(clientv3.WithRequireLeader(ctx), "y")
	if !errors.Is(r.Err(), rpctypes.ErrNoLeader) {
		t.Fatalf("a new hasleader watch on a leaderless member: %v, want %v", r.Err(), rpctypes.ErrNoLeader)
	}
}

// TestSlowWatcherBlocksNothing: on a real strata, one watch stream is not
// read at all while 2000 puts of 4 KiB values go through (far beyond what
// gRPC flow control buffers), and a second stream is read as usual. The
// writes all succeed, the second watcher gets every event while the first
// is stuck, and once the first is read it gets every event too, in order
// and without gaps (it fell back to catching up from storage).
func TestSlowWatcherBlocksNothing(t *testing.T) {
	b := needSubject(t)
	if b.SubjectName != "strata" {
		t.Skip("exercises strata's watch hub")
	}
	ms := StartCluster(t, "slow", 1, MemberConfig{Binary: b.Subject})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cli := newEndpointClient(t, ms[0])
	conn, err := grpc.NewClient(ms[0].Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	open := func() pb.Watch_WatchClient {
		ws, err := pb.NewWatchClient(conn).Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{
			CreateRequest: &pb.WatchCreateRequest{Key: []byte("s/"), RangeEnd: []byte("s0"), PrevKv: true}}}); err != nil {
			t.Fatal(err)
		}
		r, err := ws.Recv()
		if err != nil || !r.Created {
			t.Fatalf("create: %v %v", r, err)
		}
		return ws
	}
	slow, fast := open(), open()
	start := int64(0)
	if r, err := cli.Get(ctx, "s/"); err == nil {
		start = r.Header.Revision + 1
	}
	collect := func(ws pb.Watch_WatchClient, name string, until int64) *WatchLog {
		l := &WatchLog{Name: name, Key: "s/", End: "s0", Start: start, PrevKV: true}
		for l.Reached() < until {
			r, err := ws.Recv()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			l.Resps = append(l.Resps, WatchRecord{Rev: r.Header.Revision, Events: r.Events})
		}
		return l
	}
	const puts = 2000
	val := strings.Repeat("v", 4096)
	var last int64
	fastDone := make(chan *WatchLog, 1)
	for i := range puts {
		r, err := cli.Put(ctx, fmt.Sprintf("s/%03d", i%300), val+fmt.Sprint(i))
		if err != nil {
			t.Fatalf("put %d with a stuck watcher: %v", i, err)
		}
		last = r.Header.Revision
		if i == 0 {
			go func() { fastDone <- collect(fast, "fast watcher", start+puts-1) }()
		}
	}
	fastLog := <-fastDone
	slowLog := collect(slow, "slow watcher", last)
	history := readHistory(ctx, t, cli, last)
	for _, l := range []*WatchLog{fastLog, slowLog} {
		if err := CheckWatch(l, history, last); err != nil {
			t.Error(err)
		}
	}
}
