package writernode

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/internal/lessor"
)

func testConfig(dir string) Config {
	return Config{
		Name:                "m0",
		DataDir:             dir,
		ClientURLs:          []string{"http://127.0.0.1:2379"},
		InitialCluster:      map[string][]string{"m0": {"http://127.0.0.1:2380"}},
		InitialClusterToken: "t",
		TickInterval:        10 * time.Millisecond,
		ElectionTicks:       10,
		MaxRequestBytes:     1 << 20,
		MaxTxnOps:           128,
		Versions:            api.Versions{Server: "3.7.3", Storage: "3.7.0"},
	}
}

func startMember(t *testing.T, cfg Config) *Member {
	t.Helper()
	m, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-m.ReadyNotify():
	case <-time.After(30 * time.Second):
		m.Stop()
		t.Fatal("member never became ready")
	}
	return m
}

func mustPut(t *testing.T, m *Member, k, v string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := (*backend)(m).Propose(ctx, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}})
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	return res.Resp.(*pb.PutResponse).Header.Revision
}

func TestRestartKeepsStateAndIdentity(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	m := startMember(t, cfg)
	memberID, clusterID := m.ID()
	var rev int64
	for i := range 20 {
		rev = mustPut(t, m, fmt.Sprintf("k%02d", i), "v")
	}
	m.Stop()

	// On restart the data dir wins over the bootstrap flags.
	cfg.InitialCluster = map[string][]string{"m0": {"http://127.0.0.1:9999"}}
	cfg.InitialClusterToken = "other"
	m = startMember(t, cfg)
	defer m.Stop()
	if id, cid := m.ID(); id != memberID || cid != clusterID {
		t.Fatalf("identity changed on restart: %x/%x, was %x/%x", id, cid, memberID, clusterID)
	}
	resp, err := m.app.Range(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 20 || resp.Header.Revision != rev {
		t.Fatalf("after restart: count %d at revision %d, want 20 at %d", resp.Count, resp.Header.Revision, rev)
	}
	if st := (*backend)(m).Status(); st.DBSize <= 0 || st.DBSizeInUse <= 0 || st.DBSizeInUse > st.DBSize {
		t.Fatalf("status sizes: in use %d of %d", st.DBSizeInUse, st.DBSize)
	}
	if got := mustPut(t, m, "after", "restart"); got != rev+1 {
		t.Fatalf("first write after restart got revision %d, want %d", got, rev+1)
	}
}

func TestBootstrapRecordsEveryVoter(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.InitialCluster = map[string][]string{
		"m0": {"http://127.0.0.1:2380"},
		"m1": {"http://127.0.0.1:2381"},
		"m2": {"http://127.0.0.1:2382"},
	}
	m, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	// All bootstrap conf changes are applied in one batch; each must add
	// to the voters, not start over from the stale pre-batch state.
	cs := m.app.Applied().ConfState
	if got := len(cs.GetVoters()); got != 3 {
		t.Fatalf("bootstrap recorded %d voters (%v), want 3", got, cs.GetVoters())
	}
	if st := m.node.Status(); st.Applied != 3 {
		t.Fatalf("bootstrap applied through %d, want 3", st.Applied)
	}
}

// TestStopDuringReads stops the member while reads and writes are in
// flight: callers get etcd's "server stopped" (or succeed), never a panic
// from a closed engine, and Stop returns.
func TestStopDuringReads(t *testing.T) {
	m := startMember(t, testConfig(t.TempDir()))
	mustPut(t, m, "k", "v")
	b := (*backend)(m)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				var err error
				switch i % 3 {
				case 0:
					_, err = b.Range(&pb.RangeRequest{Key: []byte("k")})
				case 1:
					err = b.LinearizableBarrier(ctx)
				case 2:
					var res applier.Result
					res, err = b.Propose(ctx, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("w"), Value: []byte("v")}})
					if err == nil {
						err = res.Err
					}
				}
				cancel()
				if err != nil {
					if !errors.Is(err, rpctypes.ErrGRPCStopped) && !errors.Is(err, rpctypes.ErrGRPCNoLeader) {
						errs <- err
					}
					return
				}
			}
		}()
	}
	m.Stop()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error while stopping: %v", err)
	}
}

// TestLeaderExpiresLeases: a lease nobody keeps alive is revoked by the
// leader through a raft entry, taking its keys with it; a kept-alive one
// survives.
func TestLeaderExpiresLeases(t *testing.T) {
	m := startMember(t, testConfig(t.TempDir()))
	defer m.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	propose := func(r *pb.InternalRaftRequest) applier.Result {
		t.Helper()
		res, err := (*backend)(m).Propose(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, id := range []int64{42, 43} {
		if res := propose(&pb.InternalRaftRequest{LeaseGrant: &pb.LeaseGrantRequest{ID: id, TTL: 1}}); res.Err != nil {
			t.Fatalf("grant %d: %v", id, res.Err)
		}
		if res := propose(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: fmt.Appendf(nil, "k%d", id), Value: []byte("v"), Lease: id}}); res.Err != nil {
			t.Fatalf("put with lease %d: %v", id, res.Err)
		}
	}
	// Keep 43 alive while 42 runs out; the bound only turns a hang into
	// a failure.
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := m.lessor.Renew(43); err != nil && !errors.Is(err, lessor.ErrNotPrimary) {
			t.Fatalf("renew 43: %v", err)
		}
		if _, found, err := m.app.Lease(42, false); err != nil {
			t.Fatal(err)
		} else if !found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("lease 42 never expired")
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(50 * time.Millisecond): // pace the keep-alives
		}
	}
	r, err := m.app.Range(&pb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 1 || string(r.Kvs[0].Key) != "k43" {
		t.Fatalf("keys after lease 42 expired: %v", r.Kvs)
	}
	if _, found, _ := m.app.Lease(43, false); !found {
		t.Fatal("the kept-alive lease 43 was revoked")
	}
}
