package writernode

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestStopWithStalledSnapshotClient: a backup client that stops reading
// leaves the server's send blocked on flow control. Stop must still
// return: the backup's hold on the state machine is released when the
// member stops, not when the send ends (which only the gRPC server's own
// stop, later, brings about).
func TestStopWithStalledSnapshotClient(t *testing.T) {
	m := startMember(t, testConfig(t.TempDir()))
	for i := range 24 { // 21 MiB that does not compress: far beyond the stream's windows
		v := make([]byte, 900<<10)
		rand.Read(v)
		mustPut(t, m, fmt.Sprintf("k%02d", i), string(v))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go m.GRPCServer().Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := pb.NewMaintenanceClient(cc).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil { // the backup is under way; no more is read
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	go func() { m.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(30 * time.Second):
		t.Errorf("Stop still waits behind a Snapshot client that stopped reading")
		cancel()
		<-stopped
	}
}
