package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// lockSide is one server of the side-by-side Lock/Election script.
type lockSide struct {
	kv       pb.KVClient
	lock     lpb.LockClient
	election epb.ElectionClient
	lease    pb.LeaseClient
	observe  epb.Election_ObserveClient
}

// renderRPC renders a response or the error's gRPC code and message.
func renderRPC(m proto.Message, err error) string {
	if err != nil {
		st, _ := status.FromError(err)
		if st.Code() == codes.DeadlineExceeded {
			// The message depends on whether the client's or the
			// server's timer fired first.
			return "error DeadlineExceeded\n"
		}
		return fmt.Sprintf("error %s: %s\n", st.Code(), st.Message())
	}
	NormaliseHeaders(m)
	return ProtoText(m)
}

// TestLockElectionMatchEtcd calls the v3lock and v3election services on raw
// gRPC against etcd and strata with the same leases (chosen IDs, so keys
// match) and compares every answer and error.
func TestLockElectionMatchEtcd(t *testing.T) {
	etcd, sub := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var sides [2]*lockSide
	for i, m := range []*Member{etcd, sub} {
		conn, err := grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		sides[i] = &lockSide{kv: pb.NewKVClient(conn), lock: lpb.NewLockClient(conn), election: epb.NewElectionClient(conn), lease: pb.NewLeaseClient(conn)}
	}
	leader := func(lease int64, key string, rev int64) *epb.LeaderKey {
		return &epb.LeaderKey{Name: []byte("e"), Key: []byte(key), Rev: rev, Lease: lease}
	}
	steps := []struct {
		name string
		run  func(s *lockSide) (proto.Message, error)
	}{
		{"grant lease 0x100", func(s *lockSide) (proto.Message, error) {
			return s.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 0x100, TTL: 60})
		}},
		{"grant lease 0x200", func(s *lockSide) (proto.Message, error) {
			return s.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: 0x200, TTL: 60})
		}},
		{"lock l with 0x100", func(s *lockSide) (proto.Message, error) {
			return s.lock.Lock(ctx, &lpb.LockRequest{Name: []byte("l"), Lease: 0x100})
		}},
		{"lock with a lease that does not exist", func(s *lockSide) (proto.Message, error) {
			return s.lock.Lock(ctx, &lpb.LockRequest{Name: []byte("l2"), Lease: 0x999})
		}},
		{"lock l with 0x200 while 0x100 holds it: times out", func(s *lockSide) (proto.Message, error) {
			c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			resp, err := s.lock.Lock(c, &lpb.LockRequest{Name: []byte("l"), Lease: 0x200})
			// The server withdraws the waiter's key after the call has
			// failed: wait for that, so the revisions that follow agree.
			waitKeys(ctx, t, s.kv, "l/", 1)
			return resp, err
		}},
		{"unlock l", func(s *lockSide) (proto.Message, error) {
			return s.lock.Unlock(ctx, &lpb.UnlockRequest{Key: []byte("l/100")})
		}},
		{"unlock again", func(s *lockSide) (proto.Message, error) {
			return s.lock.Unlock(ctx, &lpb.UnlockRequest{Key: []byte("l/100")})
		}},
		{"lock l with 0x200 once free", func(s *lockSide) (proto.Message, error) {
			return s.lock.Lock(ctx, &lpb.LockRequest{Name: []byte("l"), Lease: 0x200})
		}},
		{"leader of an election nobody runs", func(s *lockSide) (proto.Message, error) {
			return s.election.Leader(ctx, &epb.LeaderRequest{Name: []byte("e")})
		}},
		{"observe e", func(s *lockSide) (proto.Message, error) {
			var err error
			s.observe, err = s.election.Observe(ctx, &epb.LeaderRequest{Name: []byte("e")})
			return &epb.LeaderResponse{}, err
		}},
		{"campaign in e with 0x100", func(s *lockSide) (proto.Message, error) {
			return s.election.Campaign(ctx, &epb.CampaignRequest{Name: []byte("e"), Lease: 0x100, Value: []byte("v1")})
		}},
		{"the observer sees the leader", func(s *lockSide) (proto.Message, error) { return s.observe.Recv() }},
		{"leader", func(s *lockSide) (proto.Message, error) {
			return s.election.Leader(ctx, &epb.LeaderRequest{Name: []byte("e")})
		}},
		{"proclaim v2", func(s *lockSide) (proto.Message, error) {
			l, err := s.election.Leader(ctx, &epb.LeaderRequest{Name: []byte("e")})
			if err != nil {
				return nil, err
			}
			return s.election.Proclaim(ctx, &epb.ProclaimRequest{Leader: leader(0x100, "e/100", l.Kv.CreateRevision), Value: []byte("v2")})
		}},
		{"the observer sees the new value", func(s *lockSide) (proto.Message, error) { return s.observe.Recv() }},
		{"proclaim with a wrong revision", func(s *lockSide) (proto.Message, error) {
			return s.election.Proclaim(ctx, &epb.ProclaimRequest{Leader: leader(0x100, "e/100", 1), Value: []byte("v3")})
		}},
		{"proclaim without a leader key", func(s *lockSide) (proto.Message, error) {
			return s.election.Proclaim(ctx, &epb.ProclaimRequest{Value: []byte("v3")})
		}},
		{"resign without a leader key", func(s *lockSide) (proto.Message, error) {
			return s.election.Resign(ctx, &epb.ResignRequest{})
		}},
		{"campaign with 0x200 while 0x100 leads: times out", func(s *lockSide) (proto.Message, error) {
			c, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
			defer cancel()
			resp, err := s.election.Campaign(c, &epb.CampaignRequest{Name: []byte("e"), Lease: 0x200, Value: []byte("w")})
			waitKeys(ctx, t, s.kv, "e/", 1)
			return resp, err
		}},
		{"resign", func(s *lockSide) (proto.Message, error) {
			l, err := s.election.Leader(ctx, &epb.LeaderRequest{Name: []byte("e")})
			if err != nil {
				return nil, err
			}
			return s.election.Resign(ctx, &epb.ResignRequest{Leader: leader(0x100, "e/100", l.Kv.CreateRevision)})
		}},
		{"leader after the resignation", func(s *lockSide) (proto.Message, error) {
			return s.election.Leader(ctx, &epb.LeaderRequest{Name: []byte("e")})
		}},
		{"revoke 0x200: its lock goes", func(s *lockSide) (proto.Message, error) {
			return s.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 0x200})
		}},
		{"lock l with 0x100 once 0x200 is gone", func(s *lockSide) (proto.Message, error) {
			return s.lock.Lock(ctx, &lpb.LockRequest{Name: []byte("l"), Lease: 0x100})
		}},
	}
	tr := newTranscript(t)
	for i, st := range steps {
		var out [2]string
		for j, s := range sides {
			m, err := st.run(s)
			out[j] = renderRPC(m, err)
		}
		tr.add(st.name, out[0])
		if d := Diff("etcd", out[0], "strata", out[1]); d != "" {
			t.Errorf("step %d (%s):\n%s", i, st.name, d)
		}
	}
}

// waitKeys waits until n keys have prefix p.
func waitKeys(ctx context.Context, t *testing.T, kv pb.KVClient, p string, n int64) {
	t.Helper()
	for {
		r, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte(p), RangeEnd: []byte(clientv3.GetPrefixRangeEnd(p)), CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Count == n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d keys under %q, waited for %d", r.Count, p, n)
		case <-time.After(10 * time.Millisecond): // polls the key count
		}
	}
}

// TestConcurrencyRecipesUnderFailover runs client/v3's concurrency package
// on a real three-member strata while the leader is killed and restarted:
// Mutex holders on every member increment a counter with plain Get/Put (a
// lost update would show mutual exclusion broken), STM transactions move
// amounts between accounts (the total must stay), and Election candidates
// campaign and resign (two leaders at once would show on the observer).
func TestConcurrencyRecipesUnderFailover(t *testing.T) {
	_, ms, clients := startStrataCluster(t, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var endpoints []string
	for _, m := range ms {
		endpoints = append(endpoints, m.Endpoint())
	}
	newClient := func() *clientv3.Client {
		c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	const accounts, initial = 5, 100
	for i := range accounts {
		if _, err := clients[0].Put(ctx, fmt.Sprintf("acct/%d", i), fmt.Sprint(initial)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := clients[0].Put(ctx, "counter", "0"); err != nil {
		t.Fatal(err)
	}

	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		increments int // acknowledged increments (done under the lock)
		errs       []string
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		errs = append(errs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	// retry runs op until it succeeds or the test's time runs out: calls
	// fail while the cluster elects a new leader.
	retry := func(what string, op func(context.Context) error) bool {
		for ctx.Err() == nil {
			octx, ocancel := context.WithTimeout(ctx, 5*time.Second)
			err := op(octx)
			ocancel()
			if err == nil {
				return true
			}
		}
		fail("%s: no success before the deadline", what)
		return false
	}

	const lockers, rounds = 4, 15
	for w := range lockers {
		cli := newClient()
		wg.Go(func() {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
			if err != nil {
				fail("locker %d: session: %v", w, err)
				return
			}
			defer s.Close()
			m := concurrency.NewMutex(s, "locks/counter")
			for range rounds {
				if !retry("lock", func(c context.Context) error { return m.Lock(c) }) {
					return
				}
				// Read-modify-write under the lock, without a compare: only
				// mutual exclusion keeps it from losing updates. Failed
				// calls are retried; a put is repeated only if it was not
				// applied (checked by reading back).
				var n int
				ok := retry("read counter", func(c context.Context) error {
					r, err := cli.Get(c, "counter")
					if err == nil {
						_, err = fmt.Sscan(string(r.Kvs[0].Value), &n)
					}
					return err
				})
				ok = ok && retry("write counter", func(c context.Context) error {
					_, err := cli.Put(c, "counter", fmt.Sprint(n+1))
					return err
				})
				if ok {
					mu.Lock()
					increments++
					mu.Unlock()
				}
				retry("unlock", func(c context.Context) error { return m.Unlock(c) })
			}
		})
	}

	const movers, moves = 3, 20
	for w := range movers {
		cli := newClient()
		wg.Go(func() {
			for i := range moves {
				from, to := (w+i)%accounts, (w+2*i+1)%accounts
				if from == to {
					continue
				}
				retry("stm", func(c context.Context) error {
					_, err := concurrency.NewSTM(cli, func(stm concurrency.STM) error {
						var a, b int
						fmt.Sscan(stm.Get(fmt.Sprintf("acct/%d", from)), &a)
						fmt.Sscan(stm.Get(fmt.Sprintf("acct/%d", to)), &b)
						stm.Put(fmt.Sprintf("acct/%d", from), fmt.Sprint(a-7))
						stm.Put(fmt.Sprintf("acct/%d", to), fmt.Sprint(b+7))
						return nil
					}, concurrency.WithAbortContext(c))
					return err
				})
			}
		})
	}

	// Election: candidates take turns; an observer records every leader.
	obsCli := newClient()
	obsSession, err := concurrency.NewSession(obsCli)
	if err != nil {
		t.Fatal(err)
	}
	octx, ocancel := context.WithCancel(ctx)
	var leaders []string
	var obsDone sync.WaitGroup
	obsDone.Go(func() {
		for r := range concurrency.NewElection(obsSession, "elect/x").Observe(octx) {
			leaders = append(leaders, string(r.Kvs[0].Value))
		}
	})
	const candidates, terms = 3, 4
	var leading sync.Mutex // held by whoever believes it leads
	for c := range candidates {
		cli := newClient()
		wg.Go(func() {
			s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
			if err != nil {
				fail("candidate %d: session: %v", c, err)
				return
			}
			defer s.Close()
			e := concurrency.NewElection(s, "elect/x")
			for term := range terms {
				if !retry("campaign", func(cc context.Context) error { return e.Campaign(cc, fmt.Sprintf("c%d-t%d", c, term)) }) {
					return
				}
				if !leading.TryLock() {
					fail("candidate %d won a campaign while another leads", c)
					return
				}
				r, err := cli.Get(ctx, e.Key())
				if err != nil || r.Count != 1 {
					fail("candidate %d: own leader key: %v %v", c, r, err)
				}
				leading.Unlock()
				retry("resign", func(cc context.Context) error { return e.Resign(cc) })
			}
		})
	}

	// The failover, while all of it runs.
	leader := leaderIndex(ctx, t, clients)
	ms[leader].Kill()
	if err := ms[leader].Restart(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	ocancel()
	obsDone.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d failures, first: %s", len(errs), strings.Join(errs[:min(5, len(errs))], "\n"))
	}
	r, err := clients[(leader+1)%3].Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(r.Kvs[0].Value); got != fmt.Sprint(increments) {
		t.Errorf("counter %s after %d increments under the lock: mutual exclusion broken", got, increments)
	}
	total := 0
	rs, err := clients[(leader+1)%3].Get(ctx, "acct/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range rs.Kvs {
		var n int
		fmt.Sscan(string(kv.Value), &n)
		total += n
	}
	if total != accounts*initial {
		t.Errorf("accounts total %d after STM transfers, want %d", total, accounts*initial)
	}
	if len(leaders) < candidates {
		t.Errorf("the observer saw only %d leaders: %v", len(leaders), leaders)
	}
}

// TestEtcdctlLockElectMatchEtcd runs etcdctl lock and elect against etcd and
// strata: a lock around a command (twice, the second with a TTL), then a
// background etcdctl elect -l observing an election while a background
// etcdctl elect campaigns in it: both print the leader key and value; once
// they are interrupted the campaign has resigned and nothing is left.
func TestEtcdctlLockElectMatchEtcd(t *testing.T) {
	etcd, sub := pair(t)
	b := needSubject(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	lease := regexp.MustCompile(`/[0-9a-f]{6,16}\b`) // lease IDs print in hex without leading zeros
	run := func(m *Member, args ...string) string {
		r, err := Etcdctl(ctx, b.Etcdctl, []string{m.Endpoint()}, "", args...)
		if err != nil {
			t.Fatal(err)
		}
		return lease.ReplaceAllString(fmt.Sprintf("exit %d\n%s%s", r.ExitCode, r.Stdout, r.Stderr), "/<lease>")
	}
	// background starts etcdctl and returns a function that reads n lines
	// of its output, and one that interrupts it and waits for it.
	background := func(m *Member, args ...string) (func(n int) string, func()) {
		cmd := exec.CommandContext(ctx, b.Etcdctl, append([]string{"--endpoints=" + m.Endpoint()}, args...)...)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		read := func(n int) string {
			var lines []string
			for len(lines) < n && sc.Scan() {
				lines = append(lines, sc.Text())
			}
			return lease.ReplaceAllString(strings.Join(lines, "\n"), "/<lease>") + "\n"
		}
		stop := func() {
			cmd.Process.Signal(os.Interrupt)
			for sc.Scan() {
			}
			cmd.Wait()
		}
		return read, stop
	}
	steps := []func(m *Member) string{
		func(m *Member) string { return run(m, "lock", "l1", "--", "echo", "in the lock") },
		func(m *Member) string { return run(m, "lock", "--ttl=3", "l1", "--", "echo", "again") },
		func(m *Member) string {
			observe, stopObserver := background(m, "elect", "-l", "e1")
			campaign, stopCampaign := background(m, "elect", "e1", "v1")
			out := "campaign:\n" + campaign(2) + "observer:\n" + observe(2)
			stopCampaign()
			stopObserver()
			return out
		},
		func(m *Member) string { return run(m, "get", "--prefix", "e1") },
		func(m *Member) string { return run(m, "get", "--prefix", "l1") },
	}
	for i, st := range steps {
		want, got := st(etcd), st(sub)
		if d := Diff("etcd", want, "strata", got); d != "" {
			t.Errorf("step %d:\n%s", i, d)
		}
	}
}
