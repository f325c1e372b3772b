package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/serve"
)

const testCluster = 0xc1

// grpcNode is one member: a transport served on its own 127.0.0.1 listener,
// as a member serves it: gRPC (snapshots) and raw message links on one port.
type grpcNode struct {
	tr   *GRPCTransport
	srv  *grpc.Server
	lis  net.Listener
	addr string
}

func startGRPCNode(t testing.TB, cfg GRPCConfig) *grpcNode {
	t.Helper()
	if cfg.ClusterID == 0 {
		cfg.ClusterID = testCluster
	}
	tr, err := NewGRPC(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &grpcNode{tr: tr, addr: lis.Addr().String()}
	n.serve(t, lis)
	t.Cleanup(func() {
		tr.Close()
		n.down()
	})
	return n
}

func (n *grpcNode) serve(t testing.TB, lis net.Listener) {
	n.srv = grpc.NewServer(n.tr.ServerOptions()...)
	n.tr.Register(n.srv)
	n.lis = lis
	s := &serve.Server{GRPC: n.srv, Raw: &serve.Protocol{Preface: RawPreface, Serve: n.tr.ServeConn}}
	go s.Serve(lis) //nolint:errcheck // Serve returns when the test stops it.
}

// down takes the node off the network: its listener, gRPC server and the
// message links it accepted all close; the transport stays usable.
func (n *grpcNode) down() {
	n.lis.Close()
	n.srv.Stop()
	r := &n.tr.raw
	r.mu.Lock()
	for c, cancel := range r.conns {
		cancel()
		c.Close()
	}
	r.mu.Unlock()
}

func (n *grpcNode) url() string { return "http://" + n.addr }

var compressions = []Compression{CompressionNone, CompressionS2, CompressionZstd}

func TestGRPCDeliversBatchesInOrder(t *testing.T) {
	for _, comp := range compressions {
		t.Run(string(comp), func(t *testing.T) {
			recs := map[uint64]*recorder{1: newRecorder(), 2: newRecorder(), 3: newRecorder()}
			nodes := map[uint64]*grpcNode{}
			for id, rec := range recs {
				// A small frame size makes large batches span frames.
				nodes[id] = startGRPCNode(t, GRPCConfig{LocalID: id, Handler: rec, Compression: comp, MaxFrameBytes: 4 << 10})
			}
			for id, n := range nodes {
				for peer, pn := range nodes {
					if peer != id {
						n.tr.AddPeer(peer, []string{pn.url()})
					}
				}
			}
			const total = 2000
			rng := rand.New(rand.NewPCG(1, 2))
			var from1, from3 []*raftpb.Message
			var sizes [][]byte // payload sent to node 3, by index
			for i := uint64(0); i < total; i++ {
				data := bytes.Repeat([]byte{byte(i)}, rng.IntN(512))
				sizes = append(sizes, data)
				from1 = append(from1, msgApp(1, 2, i, data), msgApp(1, 3, i, data))
				from3 = append(from3, msgApp(3, 2, i, nil))
				if rng.IntN(8) == 0 || i == total-1 {
					nodes[1].tr.Send(from1)
					nodes[3].tr.Send(from3)
					from1, from3 = nil, nil
				}
			}
			// Node 2 hears from 1 and 3; each sender's messages arrive
			// in order, interleaved arbitrarily.
			next := map[uint64]uint64{1: 0, 3: 0}
			for range 2 * total {
				m := recs[2].next(t)
				if m.GetIndex() != next[m.GetFrom()] {
					t.Fatalf("from %d: index %d, want %d", m.GetFrom(), m.GetIndex(), next[m.GetFrom()])
				}
				next[m.GetFrom()]++
			}
			for i := uint64(0); i < total; i++ {
				m := recs[3].next(t)
				if m.GetFrom() != 1 || m.GetIndex() != i || !bytes.Equal(m.GetEntries()[0].GetData(), sizes[i]) {
					t.Fatalf("node 3 got %v, want index %d from 1", m, i)
				}
			}
			pm := nodes[1].tr.Metrics().Peers[3]
			if pm.MessagesSent != total || pm.MessagesDropped != 0 || pm.FramesSent < 2 {
				t.Errorf("link 1→3 metrics %+v: want %d messages in several frames, none dropped", pm, total)
			}
			// The payloads are runs of one byte: compression must show.
			if compressed := pm.WireBytesSent < pm.BodyBytesSent; compressed != (comp != CompressionNone) {
				t.Errorf("link 1→3 with %s sent %d wire bytes for %d body bytes", comp, pm.WireBytesSent, pm.BodyBytesSent)
			}
			if got := nodes[3].tr.Metrics().MessagesReceived; got != total {
				t.Errorf("node 3 received %d messages, want %d", got, total)
			}
			if got := nodes[3].tr.Metrics().BytesReceived[1]; got == 0 || got > pm.WireBytesSent {
				t.Errorf("node 3 received %d bytes from 1, which sent %d", got, pm.WireBytesSent)
			}
		})
	}
}

func TestGRPCDownPeerDoesNotBlockSend(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := lis.Addr().String()
	lis.Close() // nothing listens there now

	rec := newRecorder()
	clk := newSignalClock()
	n := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: rec, Clock: clk, QueueSize: 16})
	n.tr.AddPeer(2, []string{"http://" + down})
	// Far more than the queue holds; Send must return regardless (this
	// test would hang otherwise).
	for i := range uint64(10_000) {
		n.tr.Send([]*raftpb.Message{msgApp(1, 2, i, nil)})
	}
	rec.expectUnreachable(t, 2)
	if pm := n.tr.Metrics().Peers[2]; pm.MessagesDropped == 0 || pm.MessagesSent != 0 {
		t.Errorf("metrics %+v: want drops and nothing sent", pm)
	}
}

// TestGRPCBlackholedPeerCostsBoundedMemory: a peer that accepts the
// connection and never reads (a reader hung, or partitioned without a
// reset) fills the TCP buffers and then the send queue; after that every
// message is dropped, so what the sender holds for it stays bounded by the
// queue whatever the leader goes on sending. (raft bounds the rest: a
// follower it hears nothing from gets at most MaxInflightMsgs appends, and
// one per heartbeat response once probing.)
func TestGRPCBlackholedPeerCostsBoundedMemory(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			held <- c // accepted, never read
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		for len(held) > 0 {
			(<-held).Close()
		}
	})

	const queue, msgs, size = 64, 4000, 128 << 10 // 500 MiB offered
	rec := newRecorder()
	n := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: rec, Clock: newSignalClock(), QueueSize: queue})
	n.tr.AddPeer(2, []string{"http://" + lis.Addr().String()})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range uint64(msgs) {
		data := make([]byte, size)
		data[0] = byte(i) // a distinct payload each time
		n.tr.Send([]*raftpb.Message{msgApp(1, 2, i, data)})
	}
	// Measured at once, while the link is stuck on its full TCP buffers
	// (its write deadline is seconds away): what is held now is what a
	// blackholed peer costs.
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The queue (64 × 128 KiB = 8 MiB) plus what the link holds in its
	// buffers; far below the 500 MiB sent.
	if grown := int64(after.HeapInuse) - int64(before.HeapInuse); grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB for a blackholed peer that was offered %d MiB", grown>>20, msgs*size>>20)
	}
	rec.expectUnreachable(t, 2)
	if pm := n.tr.Metrics().Peers[2]; pm.MessagesDropped < msgs/2 {
		t.Fatalf("metrics %+v: want most of the %d messages dropped", pm, msgs)
	}
}

func TestGRPCReconnectsAfterPeerReturns(t *testing.T) {
	rec1, rec2 := newRecorder(), newRecorder()
	clk := newSignalClock()
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: rec1, Clock: clk})
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec2})
	n1.tr.AddPeer(2, []string{n2.url()})

	n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 1, nil)})
	if m := rec2.next(t); m.GetIndex() != 1 {
		t.Fatalf("got index %d, want 1", m.GetIndex())
	}

	// Take node 2 down: the stream breaks, node 1 reports it and backs off.
	n2.down()
	rec1.expectUnreachable(t, 2)
	clk.nextAfter(t)

	// Bring node 2 back on the same address.
	lis, err := net.Listen("tcp", n2.addr)
	if err != nil {
		t.Fatal(err)
	}
	n2.serve(t, lis)

	// Each round: queue a message, let the backoff expire, and see whether
	// it arrives or node 1 backs off again (the listener may not be
	// accepting yet).
	for round := 0; ; round++ {
		if round > 50 {
			t.Fatal("no reconnection after 50 backoff rounds")
		}
		n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 2, nil)})
		clk.Advance(n1.tr.cfg.MaxBackoff)
		select {
		case m := <-rec2.msgs:
			if m.GetIndex() != 2 {
				t.Fatalf("got index %d, want 2", m.GetIndex())
			}
			return
		case <-clk.Afters:
		}
	}
}

func TestGRPCRejectsOtherCluster(t *testing.T) {
	errc := make(chan error, 16)
	rec1, rec2 := newRecorder(), newRecorder()
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, ClusterID: 0xaaa, Handler: rec1, Clock: newSignalClock(),
		OnPeerError: func(_ uint64, err error) { errc <- err }})
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, ClusterID: 0xbbb, Handler: rec2})
	n1.tr.AddPeer(2, []string{n2.url()})
	n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 1, nil)})

	var err error
	select {
	case err = <-errc:
	case <-rec2.msgs:
		t.Fatal("message crossed clusters")
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for the link error")
	}
	if !errors.Is(err, ErrClusterIDMismatch) {
		t.Fatalf("sender saw %v, want ErrClusterIDMismatch", err)
	}
	rec1.expectUnreachable(t, 2)
	rec2.expectNoMessage(t)
	if got := n2.tr.Metrics().FramesRejected; got == 0 {
		t.Error("receiver counted no rejected frame")
	}
}

// snapSource serves one fixed payload for every MsgSnap.
type snapSource struct{ data []byte }

func (s snapSource) Open(*raftpb.Message) (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.data)), nil
}

func msgSnap(from, to, index uint64) *raftpb.Message {
	return &raftpb.Message{
		Type: new(raftpb.MsgSnap), From: new(from), To: new(to), Term: new(uint64(1)),
		Snapshot: &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{Index: new(index), Term: new(uint64(1))}},
	}
}

func TestGRPCStreamsSnapshots(t *testing.T) {
	data := make([]byte, 5<<20+17) // not a multiple of the chunk size
	rand.NewChaCha8([32]byte{3, 4}).Read(data)
	want := sha256.Sum256(data)
	for _, comp := range compressions {
		t.Run(string(comp), func(t *testing.T) {
			rec1 := newRecorder()
			rec2 := &snapRecorder{recorder: newRecorder()}
			n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: rec1, Compression: comp, Snapshots: snapSource{data}})
			n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec2})
			n1.tr.AddPeer(2, []string{n2.url()})
			n1.tr.Send([]*raftpb.Message{msgSnap(1, 2, 42), msgApp(1, 2, 43, nil)})

			if s := rec1.nextSnapshotStatus(t); s != raft.SnapshotFinish {
				t.Fatalf("sender got %v, want SnapshotFinish", s)
			}
			// The MsgApp and the MsgSnap travel on different streams.
			var gotSnap bool
			for range 2 {
				if m := rec2.next(t); m.GetType() == raftpb.MsgSnap {
					gotSnap = m.GetSnapshot().GetMetadata().GetIndex() == 42
				}
			}
			if !gotSnap {
				t.Fatal("MsgSnap at index 42 not stepped")
			}
			rec2.mu.Lock()
			defer rec2.mu.Unlock()
			if len(rec2.sums) != 1 || rec2.sums[0] != want || rec2.installed[0] != int64(len(data)) {
				t.Fatalf("installed %d snapshots (%v bytes), want one of %d bytes with the sent checksum", len(rec2.sums), rec2.installed, len(data))
			}
		})
	}
}

func TestGRPCSnapshotFailureIsReported(t *testing.T) {
	rec1 := newRecorder()
	rec2 := &snapRecorder{recorder: newRecorder(), fail: errors.New("disk full")}
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: rec1, Snapshots: snapSource{make([]byte, 3<<20)}})
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec2})
	n1.tr.AddPeer(2, []string{n2.url()})
	n1.tr.Send([]*raftpb.Message{msgSnap(1, 2, 7)})
	if s := rec1.nextSnapshotStatus(t); s != raft.SnapshotFailure {
		t.Fatalf("sender got %v, want SnapshotFailure", s)
	}
	rec2.expectNoMessage(t)
}

func TestGRPCSnapshotWithoutHookIsAMessage(t *testing.T) {
	rec2 := newRecorder()
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: newRecorder()})
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec2})
	n1.tr.AddPeer(2, []string{n2.url()})
	m := msgSnap(1, 2, 9)
	m.Snapshot.Data = []byte("inline")
	n1.tr.Send([]*raftpb.Message{m, msgApp(1, 2, 10, nil)})
	if got := rec2.next(t); got.GetType() != raftpb.MsgSnap || string(got.GetSnapshot().GetData()) != "inline" {
		t.Fatalf("got %v, want the inline MsgSnap first", got)
	}
	if got := rec2.next(t); got.GetIndex() != 10 {
		t.Fatalf("got %v, want MsgApp 10", got)
	}
}

func TestGRPCRemovePeerStopsGoroutines(t *testing.T) {
	rec1, rec2 := newRecorder(), newRecorder()
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: rec1, Clock: newSignalClock()})
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec2})
	n1.tr.AddPeer(2, []string{n2.url()})
	n1.tr.AddPeer(3, []string{"127.0.0.1:1"}) // never up: parked in backoff
	n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 1, nil), msgApp(1, 3, 1, nil)})
	rec2.next(t)
	rec1.expectUnreachable(t, 3)

	n1.tr.RemovePeer(2)
	n1.tr.RemovePeer(3)
	// RemovePeer waits for the peer's goroutines, so none may be left.
	if gs := goroutinesIn("transport.(*grpcPeer)"); len(gs) != 0 {
		t.Fatalf("%d peer goroutines left after RemovePeer:\n%s", len(gs), gs[0])
	}
	n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 2, nil)}) // dropped: unknown peer
	n1.tr.AddPeer(2, []string{n2.url()})
	n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 3, nil)})
	if m := rec2.next(t); m.GetIndex() != 3 {
		t.Fatalf("got index %d after re-adding the peer, want 3", m.GetIndex())
	}
}

func TestGRPCCloseStopsGoroutines(t *testing.T) {
	rec2 := newRecorder()
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: newRecorder()})
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec2})
	n1.tr.AddPeer(2, []string{n2.url()})
	n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 1, nil)})
	rec2.next(t)
	if err := n1.tr.Close(); err != nil {
		t.Fatal(err)
	}
	if gs := goroutinesIn("transport.(*grpcPeer)"); len(gs) != 0 {
		t.Fatalf("%d peer goroutines left after Close:\n%s", len(gs), gs[0])
	}
	n1.tr.Send([]*raftpb.Message{msgApp(1, 2, 2, nil)}) // no-op, no panic
}

func BenchmarkSend(b *testing.B) {
	for _, comp := range compressions {
		for _, batchSize := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("batch=%d/compression=%s", batchSize, comp), func(b *testing.B) {
				benchmarkSend(b, batchSize, comp)
			})
		}
	}
}

// countingHandler signals each time another batch worth of messages arrived.
type countingHandler struct {
	recorder
	batch int
	n     int
	done  chan struct{}
}

func (h *countingHandler) Process(_ context.Context, _ *raftpb.Message) error {
	h.n++ // Process is called from one stream goroutine per sender.
	if h.n%h.batch == 0 {
		h.done <- struct{}{}
	}
	return nil
}

func benchmarkSend(b *testing.B, batchSize int, comp Compression) {
	const window = 8 // batches in flight
	h2 := &countingHandler{recorder: *newRecorder(), batch: batchSize, done: make(chan struct{}, window)}
	n1 := startGRPCNode(b, GRPCConfig{LocalID: 1, Handler: newRecorder(), Compression: comp, QueueSize: window * batchSize})
	n2 := startGRPCNode(b, GRPCConfig{LocalID: 2, Handler: h2})
	n1.tr.AddPeer(2, []string{n2.url()})

	// Entries of 128 bytes of mildly compressible data, like small KV puts.
	payload := []byte("key/0000000000000000/value/" + string(bytes.Repeat([]byte("x"), 101)))
	batch := make([]*raftpb.Message, batchSize)
	for i := range batch {
		batch[i] = msgApp(1, 2, uint64(i), payload)
	}
	b.SetBytes(int64(batchSize * len(payload)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i >= window {
			<-h2.done
		}
		n1.tr.Send(batch)
	}
	for range min(b.N, window) {
		<-h2.done
	}
}

// TestGRPCHeartbeatRoundTrip checks that a MsgHeartbeatResp reports the round
// trip of the oldest unanswered heartbeat to its sender, once.
func TestGRPCHeartbeatRoundTrip(t *testing.T) {
	type rtt struct {
		id uint64
		d  time.Duration
	}
	rtts := make(chan rtt, 4)
	rec1, rec2 := newRecorder(), newRecorder()
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: rec1, OnRoundTrip: func(id uint64, d time.Duration) { rtts <- rtt{id, d} }})
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec2})
	n1.tr.AddPeer(2, []string{n2.url()})
	n2.tr.AddPeer(1, []string{n1.url()})
	hb := func(typ raftpb.MessageType, from, to uint64) *raftpb.Message {
		return &raftpb.Message{Type: typ.Enum(), From: proto.Uint64(from), To: proto.Uint64(to), Term: proto.Uint64(1)}
	}
	start := time.Now()
	n1.tr.Send([]*raftpb.Message{hb(raftpb.MsgHeartbeat, 1, 2)})
	n1.tr.Send([]*raftpb.Message{hb(raftpb.MsgHeartbeat, 1, 2)})
	rec2.next(t)
	rec2.next(t)
	n2.tr.Send([]*raftpb.Message{hb(raftpb.MsgHeartbeatResp, 2, 1)})
	rec1.next(t)
	select {
	case r := <-rtts:
		if r.id != 2 || r.d <= 0 || r.d > time.Since(start) {
			t.Fatalf("round trip %+v, want peer 2 and at most %v", r, time.Since(start))
		}
	default:
		t.Fatal("no round trip reported for the answered heartbeat")
	}
	// A second answer has no heartbeat outstanding: no report.
	n2.tr.Send([]*raftpb.Message{hb(raftpb.MsgHeartbeatResp, 2, 1)})
	rec1.next(t)
	select {
	case r := <-rtts:
		t.Fatalf("round trip %+v reported with no heartbeat outstanding", r)
	default:
	}
}
