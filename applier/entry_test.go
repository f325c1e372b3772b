package applier

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

func TestEntryRoundTrip(t *testing.T) {
	reqs := []*pb.InternalRaftRequest{
		{ID: 1, Put: &pb.PutRequest{Key: []byte("a"), Value: []byte("1")}},
		{ID: 2},
		{ID: 3, Txn: &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("a")}}}}}},
	}
	var raw [][]byte
	for _, r := range reqs {
		b, err := proto.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, b)
	}
	data := EncodeEntry([]byte("prefix"), raw)[len("prefix"):]
	got, err := DecodeEntry(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(reqs) {
		t.Fatalf("decoded %d requests, want %d", len(got), len(reqs))
	}
	for i := range reqs {
		if !proto.Equal(got[i], reqs[i]) {
			t.Fatalf("request %d: got %v, want %v", i, got[i], reqs[i])
		}
	}
	if got, err := DecodeEntry(nil); err != nil || got != nil {
		t.Fatalf("DecodeEntry(nil) = %v, %v", got, err)
	}
	for _, bad := range [][]byte{
		{0x02},                   // unknown kind
		{0x01},                   // no count
		{0x01, 0x02, 0x00},       // count exceeds data
		{0x01, 0x01, 0x05, 1},    // length exceeds data
		{0x01, 0x00, 0x00},       // trailing bytes
		{0x01, 0x01, 0x01, 0x07}, // not a protobuf
	} {
		if _, err := DecodeEntry(bad); !errors.Is(err, ErrCorruptEntry) {
			t.Errorf("DecodeEntry(%x) = %v, want ErrCorruptEntry", bad, err)
		}
	}
}

// FuzzDecodeEntry checks that decoding never panics, fails only with
// ErrCorruptEntry, and that what decodes re-encodes to an entry that
// decodes to the same requests.
func FuzzDecodeEntry(f *testing.F) {
	put, _ := proto.Marshal(&pb.InternalRaftRequest{ID: 7, Put: &pb.PutRequest{Key: []byte("k"), Value: []byte("v")}})
	f.Add([]byte{})
	f.Add(EncodeEntry(nil, [][]byte{put}))
	f.Add(EncodeEntry(nil, [][]byte{put, nil, put}))
	f.Add([]byte{0x01, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		reqs, err := DecodeEntry(data)
		if err != nil {
			if !errors.Is(err, ErrCorruptEntry) {
				t.Fatalf("error %v is not ErrCorruptEntry", err)
			}
			return
		}
		var raw [][]byte
		for _, r := range reqs {
			b, err := proto.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, b)
		}
		again, err := DecodeEntry(EncodeEntry(nil, raw))
		if err != nil {
			t.Fatalf("re-encoded entry does not decode: %v", err)
		}
		if len(again) != len(reqs) {
			t.Fatalf("re-decoded %d requests, want %d", len(again), len(reqs))
		}
		for i := range reqs {
			if !proto.Equal(again[i], reqs[i]) {
				t.Fatalf("request %d changed in a round trip", i)
			}
		}
		if len(data) == 0 && reqs != nil {
			t.Fatal("empty entry decoded to requests")
		}
	})
}
