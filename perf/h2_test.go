package perf

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// fakeKV answers Put with the value's length as the revision, Range with
// the key as its value, and fails a Put of key "fail" with a message that
// needs grpc-message's percent-encoding.
type fakeKV struct {
	pb.UnimplementedKVServer
	puts atomic.Int64
}

func (f *fakeKV) Put(_ context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	f.puts.Add(1)
	if string(r.Key) == "fail" {
		return nil, status.Error(codes.FailedPrecondition, "etcdserver: 100% refused, ünïcode")
	}
	return &pb.PutResponse{Header: &pb.ResponseHeader{Revision: int64(len(r.Value))}}, nil
}

func (f *fakeKV) Range(_ context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return &pb.RangeResponse{Kvs: []*mvccpb.KeyValue{{Key: r.Key, Value: r.Key}}, Count: 1}, nil
}

// countingKV counts the calls that went to grpc-go.
type countingKV struct {
	pb.KVClient
	n atomic.Int64
}

func (c *countingKV) Put(ctx context.Context, r *pb.PutRequest, o ...grpc.CallOption) (*pb.PutResponse, error) {
	c.n.Add(1)
	return c.KVClient.Put(ctx, r, o...)
}

func TestH2KV(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	fake := &fakeKV{}
	pb.RegisterKVServer(srv, fake)
	go srv.Serve(lis)
	defer srv.Stop()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	fallback := &countingKV{KVClient: pb.NewKVClient(cc)}
	ctx := context.Background()
	k, err := dialH2(ctx, lis.Addr().String(), nil, fallback, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer k.close()

	// Many calls at once, answered each to its caller.
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := range 500 {
		wg.Go(func() {
			v := strings.Repeat("v", i)
			r, err := k.Put(ctx, &pb.PutRequest{Key: []byte(fmt.Sprint(i)), Value: []byte(v)})
			if err == nil && r.Header.Revision != int64(i) {
				err = fmt.Errorf("put %d answered with revision %d", i, r.Header.Revision)
			}
			if err == nil {
				var rr *pb.RangeResponse
				rr, err = k.Range(ctx, &pb.RangeRequest{Key: []byte(fmt.Sprint(i))})
				if err == nil && (len(rr.Kvs) != 1 || string(rr.Kvs[0].Value) != fmt.Sprint(i)) {
					err = fmt.Errorf("range %d answered %v", i, rr.Kvs)
				}
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := fallback.n.Load(); n != 0 {
		t.Fatalf("%d small calls went through grpc-go", n)
	}

	// An error keeps its code and message.
	_, err = k.Put(ctx, &pb.PutRequest{Key: []byte("fail")})
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || st.Message() != "etcdserver: 100% refused, ünïcode" {
		t.Fatalf("error %v", err)
	}
	// A request larger than a frame goes through grpc-go.
	r, err := k.Put(ctx, &pb.PutRequest{Key: []byte("big"), Value: make([]byte, 100_000)})
	if err != nil || r.Header.Revision != 100_000 || fallback.n.Load() != 1 {
		t.Fatalf("large put: %v %v, %d through grpc-go", r, err, fallback.n.Load())
	}
	// Out of stream IDs, calls go through grpc-go.
	k.mu.Lock()
	saved := k.mu.nextID
	k.mu.nextID = h2MaxStreamID // the last ID: one call may take it, but not two
	k.mu.Unlock()
	before := fallback.n.Load()
	if _, err := k.Put(ctx, &pb.PutRequest{Key: []byte("last")}); err != nil || fallback.n.Load() != before {
		t.Fatalf("a put on the last stream ID: %v, %d through grpc-go", err, fallback.n.Load()-before)
	}
	if _, err := k.Put(ctx, &pb.PutRequest{Key: []byte("late")}); err != nil || fallback.n.Load() != before+1 {
		t.Fatalf("a put with no stream ID left: %v, %d through grpc-go", err, fallback.n.Load()-before)
	}
	k.mu.Lock()
	k.mu.nextID = saved
	k.mu.Unlock()
	// The connection gone, calls fail as unavailable, then fall back.
	k.close()
	for range 2 {
		_, err = k.Put(ctx, &pb.PutRequest{Key: []byte("after")})
		if err != nil && status.Code(err) != codes.Unavailable {
			t.Fatalf("a put on a closed connection: %v", err)
		}
	}
	if fallback.n.Load() < 2 {
		t.Fatalf("calls after the connection closed did not fall back to grpc-go")
	}
}
