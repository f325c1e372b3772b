package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
)

type recordingSnapshotServer struct {
	grpc.ServerStream
	msgs []*pb.SnapshotResponse
}

func (s *recordingSnapshotServer) Send(r *pb.SnapshotResponse) error {
	s.msgs = append(s.msgs, &pb.SnapshotResponse{RemainingBytes: r.RemainingBytes, Blob: bytes.Clone(r.Blob), Version: r.Version})
	return nil
}

func (s *recordingSnapshotServer) Context() context.Context { return context.Background() }

type bytesSnapshotter []byte

func (b bytesSnapshotter) WriteSnapshot(_ context.Context, w io.Writer) error {
	// In odd pieces, as a compressor writes.
	for p := []byte(b); len(p) > 0; {
		n := min(len(p), 7000)
		if _, err := w.Write(p[:n]); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// TestSnapshotStream checks the cut of Snapshot's stream at the edges: an
// empty state, sizes at and around the chunk and padding units.
func TestSnapshotStream(t *testing.T) {
	for _, size := range []int{0, 1, 511, 512, 513, snapshotChunkBytes - 1, snapshotChunkBytes, snapshotChunkBytes + 1, 3*snapshotChunkBytes + 100} {
		content := make([]byte, size)
		for i := range content {
			content[i] = byte(i%251 + 1)
		}
		srv := &recordingSnapshotServer{}
		m := NewMaintenance(nil, nil, nil, bytesSnapshotter(content), Versions{Storage: "3.7.0"})
		if err := m.Snapshot(&pb.SnapshotRequest{}, srv); err != nil {
			t.Fatal(err)
		}
		last := srv.msgs[len(srv.msgs)-1]
		var data []byte
		for i, r := range srv.msgs[:len(srv.msgs)-1] {
			if i < len(srv.msgs)-2 && (len(r.Blob) != snapshotChunkBytes || r.RemainingBytes == 0) {
				t.Fatalf("size %d: message %d: %d bytes, remaining %d", size, i, len(r.Blob), r.RemainingBytes)
			}
			if i == len(srv.msgs)-2 && r.RemainingBytes != 0 {
				t.Fatalf("size %d: last data message says %d bytes remain", size, r.RemainingBytes)
			}
			if r.Version != "3.7.0" {
				t.Fatalf("size %d: message %d: version %q", size, i, r.Version)
			}
			data = append(data, r.Blob...)
		}
		if len(data)%snapshotPadding != 0 || len(data) < size || len(data) >= size+snapshotPadding {
			t.Fatalf("size %d: %d bytes sent", size, len(data))
		}
		if !bytes.Equal(data[:size], content) || bytes.ContainsFunc(data[size:], func(r rune) bool { return r != 0 }) {
			t.Fatalf("size %d: content or padding differs", size)
		}
		if sum := sha256.Sum256(data); !bytes.Equal(last.Blob, sum[:]) || last.RemainingBytes != 0 {
			t.Fatalf("size %d: last message %d bytes, remaining %d, not the stream's SHA-256", size, len(last.Blob), last.RemainingBytes)
		}
	}
}
