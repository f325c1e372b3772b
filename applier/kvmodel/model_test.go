package kvmodel

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"
)

func TestGeneratorIsReproducible(t *testing.T) {
	a, b := NewGenerator(5, GenOptions{}), NewGenerator(5, GenOptions{})
	for i := 0; i < 1000; i++ {
		x, y := a.Next(int64(i+1), int64(i/2)), b.Next(int64(i+1), int64(i/2))
		if !proto.Equal(x, y) {
			t.Fatalf("request %d differs for one seed: %v, %v", i, x, y)
		}
	}
	if proto.Equal(NewGenerator(5, GenOptions{}).Next(1, -1), NewGenerator(6, GenOptions{}).Next(1, -1)) &&
		proto.Equal(NewGenerator(5, GenOptions{}).Next(1, -1), NewGenerator(7, GenOptions{}).Next(1, -1)) {
		t.Fatal("different seeds give the same requests")
	}
}

func TestEtcdSafe(t *testing.T) {
	m := New()
	g := NewGenerator(3, GenOptions{EtcdSafe: true})
	for i := 0; i < 5000; i++ {
		r := g.Next(m.Rev())
		if r.Txn != nil && MayCrashEtcd(r.Txn) {
			t.Fatalf("EtcdSafe generated %v", r.Txn)
		}
		m.Apply(r)
	}
}

func TestModelBasics(t *testing.T) {
	m := New()
	put := func(k, v string) {
		if _, err := m.Apply(&pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}); err != nil {
			t.Fatal(err)
		}
	}
	put("a", "1")
	put("a", "2")
	put("b", "1")
	resp, err := m.Apply(&pb.InternalRaftRequest{Range: &pb.RangeRequest{Key: []byte("a"), RangeEnd: []byte{0}, Revision: 3}})
	if err != nil {
		t.Fatal(err)
	}
	rr := resp.(*pb.RangeResponse)
	if rr.Header.Revision != 4 || rr.Count != 1 || string(rr.Kvs[0].Value) != "2" || rr.Kvs[0].Version != 2 {
		t.Fatalf("range at 3 = %v", rr)
	}
	if _, err := m.Apply(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 3}}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(&pb.InternalRaftRequest{Range: &pb.RangeRequest{Key: []byte("a"), Revision: 2}}); err != rpctypes.ErrGRPCCompacted {
		t.Fatalf("range below the compacted revision: %v", err)
	}
	if cur, compacted := m.Rev(); cur != 4 || compacted != 3 {
		t.Fatalf("Rev = %d, %d", cur, compacted)
	}
}
