package writernode

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	lpb "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
)

// TestStopWithALockWaiting: a member stops promptly while a Lock call waits
// for another holder. client/v3's Mutex cleans up through the client's own
// context when the call is canceled; the member's client of itself must be
// closed before the gRPC server waits for its handlers.
func TestStopWithALockWaiting(t *testing.T) {
	m := startMember(t, testConfig(t.TempDir()))
	stopped := false
	defer func() {
		if !stopped {
			m.Stop()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := m.self.ActiveConnection()
	leases := pb.NewLeaseClient(conn)
	for _, id := range []int64{1, 2} {
		if _, err := leases.LeaseGrant(ctx, &pb.LeaseGrantRequest{ID: id, TTL: 60}); err != nil {
			t.Fatal(err)
		}
	}
	locks := lpb.NewLockClient(conn)
	if _, err := locks.Lock(ctx, &lpb.LockRequest{Name: []byte("l"), Lease: 1}); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		_, err := locks.Lock(ctx, &lpb.LockRequest{Name: []byte("l"), Lease: 2})
		waiting <- err
	}()
	// The second Lock is waiting once its key is there (it puts it, then
	// waits for the older one to go).
	for {
		r, err := m.app.Range(&pb.RangeRequest{Key: []byte("l/"), RangeEnd: []byte("l0"), CountOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if r.Count == 2 {
			break
		}
		select {
		case err := <-waiting:
			t.Fatalf("the second Lock returned while the first holds the lock: %v", err)
		case <-ctx.Done():
			t.Fatal("the second Lock never put its key")
		case <-time.After(10 * time.Millisecond): // polls the key count
		}
	}
	done := make(chan struct{})
	stopped = true // by this goroutine, however long it takes
	go func() {
		m.Stop()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("Stop hangs while a Lock call waits")
	}
	if err := <-waiting; err == nil {
		t.Fatal("the waiting Lock succeeded although the member stopped")
	}
}
