package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestKill9KeepsAcknowledgedWrites: concurrent writers put unique keys into
// one subject member; the member is killed with SIGKILL while they write and
// restarted with the same arguments (including --initial-cluster-state=new:
// the data dir must win). Every acknowledged put must then be there with its
// value and with mod_revision equal to the revision the put was acknowledged
// at, the store revision must be at least the highest acknowledged one, and
// revisions handed out after the restart must be above it. Repeated for a few
// rounds, so later rounds also check the writes of earlier ones.
func TestKill9KeepsAcknowledgedWrites(t *testing.T) {
	b := needSubject(t)
	const (
		rounds        = 3
		writers       = 8
		perWriter     = 300 // puts per writer and round at most
		killAfterAcks = 150 // acknowledged puts before the kill in round 0; +200 per round
		killDeadline  = 60 * time.Second
	)
	m := StartCluster(t, "m", 1, MemberConfig{Binary: b.Subject})[0]

	type ack struct {
		value string
		rev   int64
	}
	acked := map[string]ack{}
	var prevMaxRev int64 // highest revision acknowledged or observed so far
	for round := range rounds {
		var (
			mu       sync.Mutex
			roundMin int64 = -1
			roundMax int64
			acks     atomic.Int64
			killed   atomic.Bool
			errsPre  []error
			wg       sync.WaitGroup
		)
		cli := newPlainClient(t, m)
		ctx, cancel := context.WithCancel(context.Background())
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perWriter {
					key := fmt.Sprintf("kill9/r%d/w%d/%04d", round, w, i)
					val := fmt.Sprintf("v-%d-%d-%d", round, w, i)
					pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
					resp, err := cli.Put(pctx, key, val)
					pcancel()
					if err != nil {
						if !killed.Load() {
							mu.Lock()
							errsPre = append(errsPre, fmt.Errorf("put %s before the kill: %w", key, err))
							mu.Unlock()
						}
						return
					}
					rev := resp.Header.Revision
					mu.Lock()
					acked[key] = ack{val, rev}
					if roundMin < 0 || rev < roundMin {
						roundMin = rev
					}
					roundMax = max(roundMax, rev)
					mu.Unlock()
					acks.Add(1)
				}
			}()
		}
		// Wait (bounded) for enough acknowledged writes, then kill -9 while
		// the writers are still going.
		deadline := time.Now().Add(killDeadline)
		want := int64(killAfterAcks + 200*round)
		for acks.Load() < want && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond) // polling a condition, not synchronising
		}
		killed.Store(true)
		m.Kill()
		nAcked := acks.Load()
		cancel()
		wg.Wait()
		cli.Close()
		if len(errsPre) > 0 {
			t.Errorf("round %d: %d puts failed before the kill, first: %v", round, len(errsPre), errsPre[0])
		}
		if nAcked < want {
			t.Fatalf("round %d: only %d puts acknowledged within %v", round, nAcked, killDeadline)
		}
		if nAcked == writers*perWriter {
			t.Logf("round %d: all writes finished before the kill landed", round)
		}
		if round > 0 && roundMin <= prevMaxRev {
			t.Errorf("round %d: a put was acknowledged at revision %d, not above the %d observed before it", round, roundMin, prevMaxRev)
		}

		if err := m.Restart(); err != nil {
			t.Fatalf("round %d: restart after kill -9: %v", round, err)
		}
		cli = newPlainClient(t, m)
		rctx, rcancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := cli.Get(rctx, "kill9/", clientv3.WithPrefix())
		rcancel()
		cli.Close()
		if err != nil {
			t.Fatalf("round %d: reading back after restart: %v", round, err)
		}
		got := make(map[string]ack, len(resp.Kvs))
		for _, kv := range resp.Kvs {
			got[string(kv.Key)] = ack{string(kv.Value), kv.ModRevision}
		}
		lost := 0
		for k, a := range acked {
			g, ok := got[k]
			switch {
			case !ok:
				lost++
				if lost <= 10 {
					t.Errorf("round %d: acknowledged put %s (revision %d) is missing after kill -9 and restart", round, k, a.rev)
				}
			case g != a:
				t.Errorf("round %d: %s = %q at mod_revision %d after restart, acknowledged %q at revision %d", round, k, g.value, g.rev, a.value, a.rev)
			}
		}
		if lost > 0 {
			t.Errorf("round %d: %d of %d acknowledged puts lost", round, lost, len(acked))
		}
		hdr := resp.Header.Revision
		if hdr < roundMax || hdr < prevMaxRev {
			t.Errorf("round %d: store revision %d after restart is below the highest acknowledged revision %d (previous rounds: %d)", round, hdr, roundMax, prevMaxRev)
		}
		t.Logf("round %d: %d puts acknowledged before the kill (revisions %d..%d), store at revision %d after restart, %d keys checked",
			round, nAcked, roundMin, roundMax, hdr, len(acked))
		prevMaxRev = max(prevMaxRev, roundMax, hdr)
		if t.Failed() {
			return
		}
	}
	if err := m.Stop(); err != nil {
		t.Error(err)
	}
}

// newPlainClient is a client/v3 client without logging.
func newPlainClient(t *testing.T, m *Member) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{m.Endpoint()},
		DialTimeout: 10 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cli
}
