package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// TestRangeStreamMatchesEtcd compares KV.RangeStream (new in etcd v3.7)
// chunk by chunk: the same chunk boundaries, contents, final header, more
// and count, and the same refusals. Both servers run with the same
// --max-request-bytes, so etcd's adaptive chunk sizing must be matched
// exactly, not just the merged result.
func TestRangeStreamMatchesEtcd(t *testing.T) {
	b := needSubject(t)
	etcd, sub := pair(t, "--max-request-bytes=65536")
	ce, cs := newTestClient(t, etcd), newTestClient(t, sub)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Values of varying size so that the chunk limit both grows and shrinks.
	for _, c := range []*testClient{ce, cs} {
		for i := range 400 {
			v := strings.Repeat("v", (i*37)%3000)
			if _, err := c.Put(ctx, fmt.Sprintf("k%04d", i), v); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 50 {
			if _, err := c.Put(ctx, fmt.Sprintf("k%04d", i*3), "rewritten"); err != nil {
				t.Fatal(err)
			}
		}
	}

	reqs := []*pb.RangeRequest{
		{Key: []byte("k"), RangeEnd: []byte("l")},
		{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 25},
		{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 10},
		{Key: []byte("k0100"), RangeEnd: []byte{0}},
		{Key: []byte{0}, RangeEnd: []byte{0}, KeysOnly: true},
		{Key: []byte("k"), RangeEnd: []byte("l"), CountOnly: true},
		{Key: []byte("k"), RangeEnd: []byte("l"), Revision: 200},
		{Key: []byte("k"), RangeEnd: []byte("l"), Serializable: true, Limit: 333},
		{Key: []byte("k0001")},
		{Key: []byte("nothing"), RangeEnd: []byte("nothinh")},
		{Key: []byte("k"), RangeEnd: []byte("l"), SortOrder: pb.RangeRequest_DESCEND},
		{Key: []byte("k"), RangeEnd: []byte("l"), SortOrder: pb.RangeRequest_ASCEND, SortTarget: pb.RangeRequest_KEY},
		{Key: []byte("k"), RangeEnd: []byte("l"), MinModRevision: 3},
		{Key: []byte("k"), RangeEnd: []byte("l"), Revision: 100000},
		{Key: nil},
	}
	for i, r := range reqs {
		we := streamChunks(ctx, ce, r)
		ws := streamChunks(ctx, cs, r)
		if d := Diff("etcd", we, b.SubjectName, ws); d != "" {
			t.Errorf("request %d (%v):\n%s", i, r, d)
		}
	}
}

// streamChunks renders every chunk of a RangeStream, headers normalised,
// and the error that ended it.
func streamChunks(ctx context.Context, c *testClient, r *pb.RangeRequest) string {
	stream, err := pb.NewKVClient(c.ActiveConnection()).RangeStream(ctx, proto.Clone(r).(*pb.RangeRequest))
	if err != nil {
		return describeErr(err, nil)
	}
	var b strings.Builder
	for n := 0; ; n++ {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			fmt.Fprintf(&b, "end after %d chunks\n", n)
			return b.String()
		}
		if err != nil {
			b.WriteString(describeErr(err, nil))
			return b.String()
		}
		NormaliseHeaders(resp)
		fmt.Fprintf(&b, "chunk %d: %d kvs\n%s", n, len(resp.GetRangeResponse().GetKvs()), ProtoText(resp))
	}
}
