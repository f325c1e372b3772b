package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
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
	b := append([]byte(nil), RawPreface...)
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
