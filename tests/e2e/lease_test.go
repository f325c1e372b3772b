package e2e

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestLeasesExpireAndSurviveLeaderKill runs leases on a real three-member
// strata through followers: a grant below the minimum TTL is raised to it;
// a lease nobody keeps alive expires (its key is deleted by the leader's
// revoke), also when it was granted under a leader that is then killed; a
// lease kept alive through a follower survives a kill -9 of the leader;
// TimeToLive and Leases answer from any member.
func TestLeasesExpireAndSurviveLeaderKill(t *testing.T) {
	// Election timeout 500 ms (fastRaft): etcd's minimum TTL is then 1 s.
	_, ms, clients := startStrataCluster(t, "l")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	leader := leaderIndex(ctx, t, clients)
	f1, f2 := (leader+1)%3, (leader+2)%3

	short, err := clients[f1].Grant(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if short.TTL != 1 {
		t.Fatalf("grant of TTL 0 got TTL %d, want the minimum 1", short.TTL)
	}
	kept, err := clients[f1].Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients[f1].Put(ctx, "expires", "v", clientv3.WithLease(short.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[f2].Put(ctx, "kept", "v", clientv3.WithLease(kept.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := clients[f2].KeepAlive(ctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	// The TTL of each renewal the client saw; closed when the client gives
	// the lease up (client/v3 closes its channel when a renewal answers
	// that the lease is gone).
	renewed := make(chan int64, 1024)
	go func() {
		defer close(renewed)
		for resp := range ka {
			renewed <- resp.TTL
		}
	}()

	// The unrenewed lease expires and takes its key; the bound only turns
	// a hang into a failure.
	waitGone := func(key string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			r, err := clients[f1].Get(ctx, key)
			if err == nil && r.Count == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still there after %v (err %v)", key, within, err)
			}
			time.Sleep(100 * time.Millisecond) // polling a condition on a real cluster
		}
	}
	waitGone("expires", 15*time.Second)

	ttl, err := clients[f1].TimeToLive(ctx, kept.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL <= 0 || ttl.TTL > 3 || ttl.GrantedTTL != 3 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "kept" {
		t.Fatalf("TimeToLive of the kept lease: %+v", ttl)
	}
	if gone, err := clients[f2].TimeToLive(ctx, short.ID); err != nil || gone.TTL != -1 {
		t.Fatalf("TimeToLive of the expired lease: %+v %v, want TTL -1", gone, err)
	}
	ls, err := clients[leader].Leases(ctx)
	if err != nil || len(ls.Leases) != 1 || ls.Leases[0].ID != kept.ID {
		t.Fatalf("Leases: %+v %v", ls, err)
	}

	// A lease granted under the old leader and never renewed must still
	// expire under the new one.
	orphan, err := clients[f1].Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients[f1].Put(ctx, "orphan", "v", clientv3.WithLease(orphan.ID)); err != nil {
		t.Fatal(err)
	}

	// Kill the leader: the kept lease stays alive through the new one.
	ms[leader].Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := clients[f1].Put(wctx, "after-kill", "ok")
		wcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write accepted after the leader was killed: %v", err)
		}
	}
	// The client goes on renewing through the new leader (a renewal of
	// an expired lease would answer TTL 0) for longer than the TTL.
	for len(renewed) > 0 {
		if _, ok := <-renewed; !ok {
			t.Fatal("the client gave the kept lease up before the leader kill")
		}
	}
	for i := 0; i < 4; i++ {
		select {
		case ttl, ok := <-renewed:
			if !ok {
				t.Fatalf("the client gave the kept lease up after %d renewals through the new leader", i)
			}
			if ttl != 3 {
				t.Fatalf("renewal %d after the leader kill answered TTL %d, want 3", i, ttl)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("no renewal %d after the leader kill", i)
		}
	}
	waitGone("orphan", 20*time.Second)
	r, err := clients[f1].Get(ctx, "kept")
	if err != nil || r.Count != 1 {
		t.Fatalf("kept key after the leader kill: %v %v", r, err)
	}
}
