package transport

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/perf/workload"
)

// BenchmarkCompressK8sJSON measures what the peer link's compression does
// to the replication stream of a Kubernetes-like workload: MsgApp frames
// whose entries each carry one Put of a pod object as JSON (about 2.5 KiB,
// with random UIDs, names, IPs and timestamps, so only the structure
// repeats), with 1, 16 and 128 entries per frame (an idle cluster sends
// one; a loaded one batches). Reported: wire bytes as a fraction of the
// uncompressed frame, and the sender's and receiver's CPU per uncompressed
// MB (b.SetBytes makes ns/op and MB/s the sealing side's).
//
//	go test -run=NONE -bench=CompressK8sJSON ./internal/transport/
func BenchmarkCompressK8sJSON(b *testing.B) {
	c, err := newCodecs(64 << 20)
	if err != nil {
		b.Fatal(err)
	}
	defer c.close()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, perFrame := range []int{1, 16, 128} {
		var ents []raftpb.Entry
		for i := range perFrame {
			r := &pb.InternalRaftRequest{ID: uint64(i + 1), Put: &pb.PutRequest{
				Key:   fmt.Appendf(nil, "/registry/pods/default/%s", workload.PodName(rng)),
				Value: workload.PodJSON(rng),
			}}
			data, err := proto.Marshal(r)
			if err != nil {
				b.Fatal(err)
			}
			ents = append(ents, raftpb.Entry{Term: new(uint64(3)), Index: new(uint64(1000 + i)), Data: applier.EncodeEntry(nil, [][]byte{data})})
		}
		msg := &raftpb.Message{Type: new(raftpb.MsgApp), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(3)), Index: new(uint64(999)), LogTerm: new(uint64(3)), Commit: new(uint64(999))}
		for i := range ents {
			msg.Entries = append(msg.Entries, &ents[i])
		}
		body, _ := appendBatch(nil, []*raftpb.Message{msg}, 1<<30)
		for _, comp := range []Compression{CompressionNone, CompressionS2, CompressionZstd} {
			wire, _ := comp.wire()
			h := frameHeader{compression: wire, kind: frameKindMessages, clusterID: 1, from: 1, to: 2}
			b.Run(fmt.Sprintf("entries=%d/%s", perFrame, comp), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				var f []byte
				for range b.N {
					f = c.seal(h, body)
				}
				b.StopTimer()
				// The receiving side, timed separately.
				scratch := make([]byte, 0, len(body))
				opens := 1 + (32<<20)/len(body) // 32 MB through the decoder
				c.open(h, f, scratch)           // warm up
				start := time.Now()
				for range opens {
					out, err := c.open(h, f, scratch)
					if err != nil || len(out) != len(body) {
						b.Fatalf("open: %d bytes, %v", len(out), err)
					}
				}
				openNs := float64(time.Since(start).Nanoseconds()) / float64(opens)
				b.ReportMetric(float64(len(f))/float64(frameHeaderSize+len(body)), "wire/raw")
				b.ReportMetric(openNs*(1<<20)/float64(len(body))/1e3, "open-µs/MB")
			})
		}
	}
}

// BenchmarkCompressK8sJSONStream is BenchmarkCompressK8sJSON's single-entry
// frames through one zstd stream per link (the encoder's window carries
// over, each frame flushed on its own): what a reader link could send if
// its compression context outlived a frame. b.N frames; reports wire bytes
// as a fraction of the raw frames.
//
//	go test -run=NONE -bench=CompressK8sJSONStream ./internal/transport/
func BenchmarkCompressK8sJSONStream(b *testing.B) {
	for _, level := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault} {
		b.Run(level.String(), func(b *testing.B) {
			// Every frame a different pod: nothing repeats but structure.
			rng := rand.New(rand.NewPCG(1, 2))
			bodies := make([][]byte, b.N)
			raw := 0
			for i := range bodies {
				r := &pb.InternalRaftRequest{ID: uint64(i + 1), Put: &pb.PutRequest{
					Key: fmt.Appendf(nil, "/registry/pods/default/%s", workload.PodName(rng)), Value: workload.PodJSON(rng),
				}}
				data, err := proto.Marshal(r)
				if err != nil {
					b.Fatal(err)
				}
				msg := &raftpb.Message{Type: new(raftpb.MsgApp), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(3)),
					Index: new(uint64(999 + i)), LogTerm: new(uint64(3)), Commit: new(uint64(999 + i)),
					Entries: []*raftpb.Entry{{Term: new(uint64(3)), Index: new(uint64(1000 + i)), Data: applier.EncodeEntry(nil, [][]byte{data})}}}
				bodies[i], _ = appendBatch(nil, []*raftpb.Message{msg}, 1<<30)
				raw += frameHeaderSize + len(bodies[i])
			}
			var out countWriter
			enc, err := zstd.NewWriter(&out, zstd.WithEncoderLevel(level), zstd.WithWindowSize(1<<20), zstd.WithEncoderConcurrency(1))
			if err != nil {
				b.Fatal(err)
			}
			defer enc.Close()
			b.SetBytes(int64(raw / b.N))
			b.ResetTimer()
			for _, body := range bodies {
				if _, err := enc.Write(body); err != nil {
					b.Fatal(err)
				}
				if err := enc.Flush(); err != nil {
					b.Fatal(err)
				}
				out.n += frameHeaderSize // each frame keeps its header
			}
			b.StopTimer()
			b.ReportMetric(float64(out.n)/float64(raw), "wire/raw")
		})
	}
}

type countWriter struct{ n int }

func (w *countWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
