package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/stratakv/strata/perf/workload"
)

// gateHandler holds every message below index 1000 until its context ends,
// and records what it stepped.
type gateHandler struct {
	mu       sync.Mutex
	stepped  []uint64
	holding  chan uint64 // index of each message it starts holding
	steppedC chan uint64 // index of each message it stepped
}

func (h *gateHandler) Process(ctx context.Context, m *raftpb.Message) error {
	if m.GetIndex() < 1000 {
		h.holding <- m.GetIndex()
		<-ctx.Done()
		return ctx.Err()
	}
	h.mu.Lock()
	h.stepped = append(h.stepped, m.GetIndex())
	h.mu.Unlock()
	h.steppedC <- m.GetIndex()
	return nil
}
func (h *gateHandler) ReportUnreachable(uint64)                   {}
func (h *gateHandler) ReportSnapshot(uint64, raft.SnapshotStatus) {}

func (h *gateHandler) steppedNow() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint64(nil), h.stepped...)
}

// openLink dials n as member from would and sends one frame of msgs.
func openLink(t *testing.T, n *grpcNode, from uint64, msgs ...*raftpb.Message) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := frameHeader{kind: frameKindMessages, clusterID: testCluster, from: from, to: n.tr.cfg.LocalID}
	f, _, _, _ := n.tr.encodeMessages(h, msgs, nil)
	b := append(append([]byte(nil), RawPreface...), linkFrames)
	b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
	if _, err := c.Write(append(b, f...)); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRawLinkSupersededBySendersNewLink: a sender that reconnects while the
// receiver is still stepping its old link's messages must not have an old
// message stepped after a new one. The receiver ends the old link, which
// steps nothing more, before the new link steps anything.
func TestRawLinkSupersededBySendersNewLink(t *testing.T) {
	h := &gateHandler{holding: make(chan uint64, 16), steppedC: make(chan uint64, 16)}
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: h})

	old := openLink(t, n2, 1, msgApp(1, 2, 0, nil), msgApp(1, 2, 1, nil))
	select {
	case i := <-h.holding:
		if i != 0 {
			t.Fatalf("holding index %d first, want 0", i)
		}
	case <-time.After(testTimeout):
		t.Fatal("the old link never stepped its first message")
	}

	openLink(t, n2, 1, msgApp(1, 2, 1000, nil))
	select {
	case i := <-h.holding:
		t.Fatalf("old message %d stepped after the sender reconnected", i)
	case <-h.steppedC:
	case <-time.After(testTimeout):
		t.Fatal("the new link's message was never stepped")
	}
	if got := h.steppedNow(); len(got) != 1 || got[0] != 1000 {
		t.Fatalf("stepped %v, want [1000]", got)
	}
	// The old link was closed by the receiver.
	old.SetReadDeadline(time.Now().Add(testTimeout))
	if _, err := io.Copy(io.Discard, old); err != nil {
		t.Fatalf("old link: %v, want EOF", err)
	}
	select {
	case i := <-h.holding:
		t.Fatalf("old message %d stepped after the sender reconnected", i)
	default:
	}
}

// TestReadFrameGrowsWithData: a length prefix alone does not make the
// receiver allocate the frame it announces.
func TestReadFrameGrowsWithData(t *testing.T) {
	buf, err := readFrame(bytes.NewReader(make([]byte, 10)), nil, 64<<20)
	if err == nil {
		t.Fatal("readFrame of a short stream succeeded")
	}
	if cap(buf) > 64<<10 {
		t.Fatalf("10 bytes of a 64 MiB frame allocated %d bytes", cap(buf))
	}
	data := bytes.Repeat([]byte("x"), 300<<10)
	got, err := readFrame(bytes.NewReader(data), nil, len(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("readFrame of a whole frame: %v, equal %v", err, bytes.Equal(got, data))
	}
}

// removedHandler refuses every message after the first three as coming
// from a removed member.
type removedHandler struct {
	mu sync.Mutex
	n  int
}

func (h *removedHandler) Process(context.Context, *raftpb.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n++; h.n > 3 {
		return ErrSenderRemoved
	}
	return nil
}
func (h *removedHandler) ReportUnreachable(uint64)                   {}
func (h *removedHandler) ReportSnapshot(uint64, raft.SnapshotStatus) {}

// TestRawLinkTellsRemovedSenderUnderLoad: the receiver's reason for ending
// a link reaches the sender even while the sender keeps writing (the
// receiver half-closes and drains rather than resetting the connection).
func TestRawLinkTellsRemovedSenderUnderLoad(t *testing.T) {
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: &removedHandler{}})
	errc := make(chan error, 64)
	n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: newRecorder(), Clock: newSignalClock(),
		OnPeerError: func(_ uint64, err error) { errc <- err }})
	n1.tr.AddPeer(2, []string{n2.url()})
	big := bytes.Repeat([]byte{1}, 64<<10)
	for i := range uint64(256) { // 16 MiB queued: more than socket buffers hold
		n1.tr.Send([]*raftpb.Message{msgApp(1, 2, i, big)})
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrSenderRemoved) {
			t.Fatalf("sender saw %v, want ErrSenderRemoved", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("the sender never learned why the link ended")
	}
}

// TestZstdLinkCompressesAcrossFrames: on a zstd link the compression window
// outlives a frame, so frames of one message each, every one a different
// pod object, compress about as well as batches: the structure they share
// is in the window. Compressing each frame on its own (s2 here, and zstd
// before links became streams) gets nowhere near.
func TestZstdLinkCompressesAcrossFrames(t *testing.T) {
	ratio := map[Compression]float64{}
	for _, comp := range []Compression{CompressionS2, CompressionZstd} {
		rec := newRecorder()
		n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec})
		n1 := startGRPCNode(t, GRPCConfig{LocalID: 1, Handler: newRecorder(), Compression: comp})
		n1.tr.AddPeer(2, []string{n2.url()})
		rng := rand.New(rand.NewPCG(7, 8))
		for i := range uint64(300) {
			pod := workload.PodJSON(rng)
			n1.tr.Send([]*raftpb.Message{msgApp(1, 2, i, pod)})
			// One message per frame: the next is sent once this one
			// arrived.
			if m := rec.next(t); m.GetIndex() != i || !bytes.Equal(m.GetEntries()[0].GetData(), pod) {
				t.Fatalf("%s: got index %d, want %d with its pod", comp, m.GetIndex(), i)
			}
		}
		pm := n1.tr.Metrics().Peers[2]
		if pm.FramesSent != 300 {
			t.Fatalf("%s: %d frames for 300 messages sent one by one", comp, pm.FramesSent)
		}
		ratio[comp] = float64(pm.WireBytesSent) / float64(pm.BodyBytesSent)
	}
	t.Logf("wire/raw for single-message frames: %v", ratio)
	if ratio[CompressionZstd] > 0.3 || ratio[CompressionZstd] > ratio[CompressionS2]/2 {
		t.Fatalf("zstd link wire/raw %.2f (s2 per frame %.2f): the window does not carry over", ratio[CompressionZstd], ratio[CompressionS2])
	}
}

// TestRawLinkRefusesBadStreams: an unknown link mode ends the link with the
// reason; a zstd link whose stream is garbage ends without stepping
// anything.
func TestRawLinkRefusesBadStreams(t *testing.T) {
	rec := newRecorder()
	n2 := startGRPCNode(t, GRPCConfig{LocalID: 2, Handler: rec})
	for _, tc := range []struct {
		mode    byte
		rest    []byte
		wantErr bool
	}{
		{mode: 7, wantErr: true},
		{mode: linkZstdStream, rest: bytes.Repeat([]byte("not zstd"), 100)},
	} {
		c, err := net.Dial("tcp", n2.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(append(append(append([]byte(nil), RawPreface...), tc.mode), tc.rest...)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(testTimeout))
		err = readLinkError(c)
		if got := errors.Is(err, ErrBadFrame); got != tc.wantErr {
			t.Fatalf("mode %d: the link ended with %v", tc.mode, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("mode %d: the receiver kept the link open", tc.mode)
		}
	}
	rec.expectNoMessage(t)
}
