package transport

import (
	"errors"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func newTestTransport(t testing.TB) *GRPCTransport {
	t.Helper()
	tr, err := NewGRPC(GRPCConfig{LocalID: 2, ClusterID: testCluster, Handler: newRecorder(), MaxFrameBytes: 1 << 10, MaxMessageBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tr.Close() })
	return tr
}

func TestFrameRoundTrip(t *testing.T) {
	tr := newTestTransport(t)
	msgs := []*raftpb.Message{
		msgApp(1, 2, 1, nil),
		msgApp(1, 2, 2, make([]byte, 700)),
		msgApp(1, 2, 3, make([]byte, 5000)), // larger than a frame: goes alone
		{Type: new(raftpb.MsgHeartbeat), From: new(uint64(1)), To: new(uint64(2))},
	}
	for _, comp := range compressions {
		t.Run(string(comp), func(t *testing.T) {
			wire, _ := comp.wire()
			h := frameHeader{compression: wire, kind: frameKindMessages, clusterID: testCluster, from: 1, to: 2}
			var got []*raftpb.Message
			var frames int
			for rest := msgs; len(rest) > 0; frames++ {
				f, _, n, _ := tr.encodeMessages(h, rest, nil)
				rest = rest[n:]
				gh, err := parseHeader(f)
				if err != nil {
					t.Fatal(err)
				}
				if gh != h {
					t.Fatalf("header %+v, want %+v", gh, h)
				}
				if err := tr.checkHeader(gh, frameKindMessages); err != nil {
					t.Fatal(err)
				}
				body, err := tr.codecs.open(gh, f, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := forEachMessage(body, func(m *raftpb.Message) error { got = append(got, m); return nil }); err != nil {
					t.Fatal(err)
				}
			}
			if frames != 3 {
				t.Errorf("%d frames, want 3 ({1,2}, {3}, {heartbeat})", frames)
			}
			if len(got) != len(msgs) {
				t.Fatalf("got %d messages, want %d", len(got), len(msgs))
			}
			for i := range msgs {
				if !proto.Equal(got[i], msgs[i]) {
					t.Fatalf("message %d: got %v, want %v", i, got[i], msgs[i])
				}
			}
		})
	}
}

func TestCheckHeader(t *testing.T) {
	tr := newTestTransport(t)
	ok := frameHeader{kind: frameKindMessages, clusterID: testCluster, from: 1, to: 2}
	for _, tc := range []struct {
		name string
		edit func(*frameHeader)
		want error
	}{
		{"ok", func(*frameHeader) {}, nil},
		{"other cluster", func(h *frameHeader) { h.clusterID++ }, ErrClusterIDMismatch},
		{"other member", func(h *frameHeader) { h.to = 3 }, ErrWrongRecipient},
		{"wrong kind", func(h *frameHeader) { h.kind = frameKindSnapshotData }, ErrBadFrame},
	} {
		h := ok
		tc.edit(&h)
		if err := tr.checkHeader(h, frameKindMessages); !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := parseHeader(make([]byte, frameHeaderSize-1)); !errors.Is(err, ErrBadFrame) {
		t.Errorf("short header: got %v, want ErrBadFrame", err)
	}
}

// FuzzDecodeFrame checks that no input makes the receiver panic or allocate
// past its bound.
func FuzzDecodeFrame(f *testing.F) {
	tr := newTestTransport(f)
	for _, comp := range compressions {
		wire, _ := comp.wire()
		h := frameHeader{compression: wire, kind: frameKindMessages, clusterID: testCluster, from: 1, to: 2}
		fr, _, _, _ := tr.encodeMessages(h, []*raftpb.Message{msgApp(1, 2, 1, []byte("x")), msgApp(1, 2, 2, nil)}, nil)
		f.Add(fr)
	}
	f.Fuzz(func(t *testing.T, fr []byte) {
		h, err := parseHeader(fr)
		if err != nil {
			return
		}
		body, err := tr.codecs.open(h, fr, nil)
		if err != nil {
			return
		}
		if len(body) > tr.codecs.maxBody {
			t.Fatalf("body of %d bytes passed the %d-byte bound", len(body), tr.codecs.maxBody)
		}
		_ = forEachMessage(body, func(*raftpb.Message) error { return nil })
	})
}
