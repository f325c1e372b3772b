package e2e

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// watchSide is one server of a side-by-side watch script: raw Watch streams
// (no client library between the test and the wire) and a KV client.
type watchSide struct {
	m       *Member
	conn    *grpc.ClientConn
	kv      *clientv3.Client
	streams []pb.Watch_WatchClient
	ctx     context.Context
}

// watchStep is one step of a watch script: it acts on a side and returns
// what it observed, rendered for comparison.
type watchStep struct {
	name string
	run  func(t *testing.T, s *watchSide) string
}

func (s *watchSide) stream(t *testing.T, i int) pb.Watch_WatchClient {
	t.Helper()
	for len(s.streams) <= i {
		ws, err := pb.NewWatchClient(s.conn).Watch(s.ctx)
		if err != nil {
			t.Fatalf("%s: open watch stream: %v", s.m.Binary, err)
		}
		s.streams = append(s.streams, ws)
	}
	return s.streams[i]
}

// wsend sends req on stream i.
func wsend(i int, req *pb.WatchRequest) func(*testing.T, *watchSide) {
	return func(t *testing.T, s *watchSide) {
		t.Helper()
		if err := s.stream(t, i).Send(req); err != nil {
			t.Fatalf("%s: send on stream %d: %v", s.m.Binary, i, err)
		}
	}
}

// wrecv receives n responses from stream i and renders them.
func wrecv(t *testing.T, s *watchSide, i, n int) string {
	t.Helper()
	return renderWatch(wrecvAll(t, s, i, n))
}

// wrecvAll receives n responses from stream i, headers normalised.
func wrecvAll(t *testing.T, s *watchSide, i, n int) []*pb.WatchResponse {
	t.Helper()
	var got []*pb.WatchResponse
	for range n {
		type res struct {
			r   *pb.WatchResponse
			err error
		}
		c := make(chan res, 1)
		go func() {
			r, err := s.stream(t, i).Recv()
			c <- res{r, err}
		}()
		select {
		case r := <-c:
			if r.err != nil {
				t.Fatalf("%s: receive on stream %d: %v", s.m.Binary, i, r.err)
			}
			NormaliseHeaders(r.r)
			got = append(got, r.r)
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no response on stream %d in 20s (after:\n%s)", s.m.Binary, i, renderWatch(got))
		}
	}
	return got
}

func renderWatch(rs []*pb.WatchResponse) string {
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(ProtoText(r))
	}
	return b.String()
}

// byWatch orders responses by watch ID, keeping each watcher's order: etcd
// fans a revision out to its watchers in map order, so only each watcher's
// own sequence is defined.
func byWatch(rs []*pb.WatchResponse) []*pb.WatchResponse {
	slices.SortStableFunc(rs, func(a, b *pb.WatchResponse) int { return cmp.Compare(a.WatchId, b.WatchId) })
	return rs
}

func create(cr *pb.WatchCreateRequest) *pb.WatchRequest {
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: cr}}
}

func cancelWatch(id int64) *pb.WatchRequest {
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: id}}}
}

var progressReq = &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}

// sendRecv sends reqs on stream i, then receives n responses.
func sendRecv(name string, i, n int, reqs ...*pb.WatchRequest) watchStep {
	return watchStep{name, func(t *testing.T, s *watchSide) string {
		for _, r := range reqs {
			wsend(i, r)(t, s)
		}
		return wrecv(t, s, i, n)
	}}
}

// kvThenRecv runs KV ops, then receives n responses from stream i.
func kvThenRecv(name string, i, n int, ops ...clientv3.Op) watchStep {
	return watchStep{name, func(t *testing.T, s *watchSide) string {
		var b strings.Builder
		for _, op := range ops {
			r, err := s.kv.Do(s.ctx, op)
			if err != nil {
				t.Fatalf("%s: %s: %v", s.m.Binary, name, err)
			}
			fmt.Fprintf(&b, "kv rev %d\n", opRev(r))
		}
		b.WriteString(renderWatch(byWatch(wrecvAll(t, s, i, n))))
		return b.String()
	}}
}

func opRev(r clientv3.OpResponse) int64 {
	switch {
	case r.Put() != nil:
		return r.Put().Header.Revision
	case r.Del() != nil:
		return r.Del().Header.Revision
	case r.Txn() != nil:
		return r.Txn().Header.Revision
	case r.Get() != nil:
		return r.Get().Header.Revision
	}
	return 0
}

// barrier proves that nothing was sent on stream i since the last receive:
// it creates a watch on a key nobody writes with a client-chosen ID, whose
// created response must be the next message, and cancels it again.
func barrier(name string, i int, id int64) watchStep {
	return sendRecv(name+" (then nothing else is sent)", i, 2,
		create(&pb.WatchCreateRequest{Key: []byte("barrier"), WatchId: id}), cancelWatch(id))
}

func txnOp(ops ...clientv3.Op) clientv3.Op { return clientv3.OpTxn(nil, ops, nil) }

// watchScript exercises the Watch protocol: create options, IDs, refusals,
// cancel, catch-up from the past, compaction, progress and fragments.
func watchScript() []watchStep {
	big := strings.Repeat("x", 300<<10) // three make a request below 1 MiB
	return []watchStep{
		sendRecv("watch key a", 0, 1, create(&pb.WatchCreateRequest{Key: []byte("a")})),
		kvThenRecv("put a", 0, 1, clientv3.OpPut("a", "1")),
		kvThenRecv("put a again, delete a", 0, 2, clientv3.OpPut("a", "2"), clientv3.OpDelete("a")),
		sendRecv("watch prefix b with prev_kv, no deletes", 0, 1, create(&pb.WatchCreateRequest{
			Key: []byte("b"), RangeEnd: []byte("c"), PrevKv: true, Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}})),
		kvThenRecv("put b1, b1, delete b1, put b2", 0, 3,
			clientv3.OpPut("b1", "x"), clientv3.OpPut("b1", "y"), clientv3.OpDelete("b1"), clientv3.OpPut("b2", "z")),
		barrier("the filtered delete", 0, 900),
		kvThenRecv("a txn touching both watches", 0, 2, txnOp(clientv3.OpPut("a", "3"), clientv3.OpPut("b3", "w"), clientv3.OpPut("bb", "v"))),
		sendRecv("watch a from revision 1 (catch-up)", 0, 2, create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: 1, PrevKv: true})),
		sendRecv("watch everything from 2, no puts", 0, 2, create(&pb.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: 2,
			Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}})),
		sendRecv("empty key watches \\x00", 0, 1, create(&pb.WatchCreateRequest{})),
		sendRecv("client-chosen ID", 0, 1, create(&pb.WatchCreateRequest{Key: []byte("c"), WatchId: 100})),
		sendRecv("duplicate ID", 0, 1, create(&pb.WatchCreateRequest{Key: []byte("d"), WatchId: 100})),
		sendRecv("auto ID after a chosen one", 0, 1, create(&pb.WatchCreateRequest{Key: []byte("e")})),
		sendRecv("empty range", 0, 1, create(&pb.WatchCreateRequest{Key: []byte("z"), RangeEnd: []byte("a")})),
		sendRecv("negative start revision", 0, 1, create(&pb.WatchCreateRequest{Key: []byte("a"), StartRevision: -1})),
		sendRecv("cancel 100", 0, 1, cancelWatch(100)),
		kvThenRecv("put c after its watch was canceled, then e", 0, 1, clientv3.OpPut("c", "1"), clientv3.OpPut("e", "1")),
		sendRecv("cancel an unknown ID", 0, 0, cancelWatch(12345)),
		barrier("the unknown cancel", 0, 901),
		sendRecv("progress request, all synced", 0, 1, progressReq),
		sendRecv("progress on a fresh stream with no watchers", 1, 0, progressReq),
		barrier("the unanswered progress", 1, 902),
		kvThenRecv("compact", 0, 0, clientv3.OpGet("a"), clientv3.OpPut("f", "1"), clientv3.OpPut("f", "2")),
		{"compact at the current revision", func(t *testing.T, s *watchSide) string {
			r, err := s.kv.Get(s.ctx, "f")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.kv.Compact(s.ctx, r.Header.Revision-1, clientv3.WithCompactPhysical()); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("compacted at %d\n", r.Header.Revision-1)
		}},
		sendRecv("watch from before the compaction", 1, 2, create(&pb.WatchCreateRequest{Key: []byte("f"), StartRevision: 2})),
		sendRecv("progress with a compacted watcher still registered", 1, 0, progressReq),
		barrier("the progress refused for the compacted watcher", 1, 903),
		sendRecv("cancel the compacted watcher", 1, 1, cancelWatch(0)),
		sendRecv("watch from now with a chosen ID, and cancel it", 1, 2, create(&pb.WatchCreateRequest{Key: []byte("f"), WatchId: 5}),
			cancelWatch(5)),
		{"watch from the compacted revision itself", func(t *testing.T, s *watchSide) string {
			r, err := s.kv.Get(s.ctx, "f")
			if err != nil {
				t.Fatal(err)
			}
			wsend(1, create(&pb.WatchCreateRequest{Key: []byte("f"), StartRevision: r.Header.Revision - 1, WatchId: 6}))(t, s)
			out := wrecv(t, s, 1, 2)
			wsend(1, cancelWatch(6))(t, s)
			return out + wrecv(t, s, 1, 1)
		}},
		{"watch from two revisions ahead", func(t *testing.T, s *watchSide) string {
			r, err := s.kv.Get(s.ctx, "f")
			if err != nil {
				t.Fatal(err)
			}
			wsend(2, create(&pb.WatchCreateRequest{Key: []byte("g"), StartRevision: r.Header.Revision + 2, ProgressNotify: true}))(t, s)
			return wrecv(t, s, 2, 1)
		}},
		sendRecv("progress before the future start is reached", 2, 0, progressReq),
		barrier("the progress held back", 2, 904),
		kvThenRecv("two puts of g: the first is before the start", 2, 1, clientv3.OpPut("g", "1"), clientv3.OpPut("g", "2")),
		sendRecv("progress after the start", 2, 1, progressReq),
		sendRecv("fragmenting watch with prev_kv", 3, 1, create(&pb.WatchCreateRequest{Key: []byte("h"), RangeEnd: []byte("i"), PrevKv: true, Fragment: true})),
		sendRecv("plain watch of the same range", 3, 1, create(&pb.WatchCreateRequest{Key: []byte("h"), RangeEnd: []byte("i"), PrevKv: true})),
		kvThenRecv("big values", 3, 0, txnOp(clientv3.OpPut("h1", big), clientv3.OpPut("h2", big), clientv3.OpPut("h3", big))),
		{"overwrite them in one txn", func(t *testing.T, s *watchSide) string {
			if _, err := s.kv.Do(s.ctx, txnOp(clientv3.OpPut("h1", big+"1"), clientv3.OpPut("h2", big+"2"), clientv3.OpPut("h3", big+"3"))); err != nil {
				t.Fatal(err)
			}
			// Two responses of the first revision, then the fragments and
			// the whole response of the second.
			return summarise(renderWatch(byWatch(wrecvAll(t, s, 3, 2)))) + summarise(renderWatch(byWatch(wrecvAll(t, s, 3, 3))))
		}},
	}
}

// summarise shortens long values in rendered responses.
func summarise(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(s, "\n") {
		if len(l) > 200 {
			l = fmt.Sprintf("%s... (%d bytes)", l[:40], len(l))
		}
		b.WriteString(l + "\n")
	}
	return b.String()
}

// TestWatchProtocolMatchesEtcd runs the watch script on raw gRPC streams
// against a fresh etcd and a fresh strata, and compares every response,
// headers' revisions included.
func TestWatchProtocolMatchesEtcd(t *testing.T) {
	etcd, sub := pair(t, "--max-request-bytes=1048576")
	tr := newTranscript(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var sides [2]*watchSide
	for i, m := range []*Member{etcd, sub} {
		conn, err := grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		sides[i] = &watchSide{m: m, conn: conn, kv: newEndpointClient(t, m), ctx: ctx}
	}
	for i, st := range watchScript() {
		var out [2]string
		for j, s := range sides {
			out[j] = st.run(t, s)
		}
		tr.add(st.name, out[0])
		if d := Diff("etcd", out[0], sides[1].m.Binary, out[1]); d != "" {
			t.Fatalf("step %d (%s):\n%s", i, st.name, d)
		}
	}
}

// TestWatchProgressNotifyMatchesEtcd: with --watch-progress-notify-interval
// at etcd's minimum (100ms), a progress_notify watcher on an idle key hears
// the revision periodically, hears its event when the key is written, and
// then the new revision; a watcher without progress_notify on the same
// stream hears only its event. Compared with etcd response by response.
func TestWatchProgressNotifyMatchesEtcd(t *testing.T) {
	etcd, sub := pair(t, "--watch-progress-notify-interval=100ms")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out [2]string
	for i, m := range []*Member{etcd, sub} {
		conn, err := grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		s := &watchSide{m: m, conn: conn, kv: newEndpointClient(t, m), ctx: ctx}
		wsend(0, create(&pb.WatchCreateRequest{Key: []byte("p"), ProgressNotify: true}))(t, s)
		wsend(0, create(&pb.WatchCreateRequest{Key: []byte("q")}))(t, s)
		got := wrecv(t, s, 0, 2) + "-- idle\n" + wrecv(t, s, 0, 2)
		if _, err := s.kv.Put(ctx, "p", "1"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.kv.Put(ctx, "q", "1"); err != nil {
			t.Fatal(err)
		}
		// The two events, then progress at the new revision. A tick may
		// fall between the puts: progress notifications until both events
		// are in are left out, and so are those below the last revision.
		var evs []*pb.WatchResponse
		for len(evs) < 2 {
			if r := wrecvAll(t, s, 0, 1)[0]; len(r.Events) > 0 {
				evs = append(evs, r)
			}
		}
		got += "-- after two puts\n" + renderWatch(byWatch(evs))
		for {
			r := wrecvAll(t, s, 0, 1)[0]
			if r.Header.Revision == evs[1].Header.Revision {
				got += renderWatch([]*pb.WatchResponse{r})
				break
			}
		}
		out[i] = got
	}
	if d := Diff("etcd", out[0], "strata", out[1]); d != "" {
		t.Fatal(d)
	}
}
