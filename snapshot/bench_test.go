package snapshot_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/stratakv/strata/snapshot"
	"github.com/stratakv/strata/writernode"
)

// BenchmarkWriteRead writes and reads a snapshot of 100k keys (256-byte
// values, one version each, so about 300k engine keys with the history and
// revision index) with each compression. MB/s is of logical content
// (keys and values); stream/logical is the compression ratio.
func BenchmarkWriteRead(b *testing.B) {
	src := newSource(b)
	// Values half random, half text: about as compressible as typical
	// serialized objects.
	rng := rand.New(rand.NewPCG(1, 2))
	text := bytes.Repeat([]byte(`{"kind":"Pod","apiVersion":"v1"}`), 8)[:128]
	const keys = 100_000
	for i := 0; i < keys; i += 256 {
		var reqs []*pb.InternalRaftRequest
		for j := i; j < min(i+256, keys); j++ {
			value := append(make([]byte, 0, 256), text...)
			for len(value) < 256 {
				value = binary.LittleEndian.AppendUint64(value, rng.Uint64())
			}
			reqs = append(reqs, &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: fmt.Appendf(nil, "/registry/pods/ns%02d/pod-%06d", j%16, j), Value: value}})
		}
		src.apply(reqs...)
	}
	snap := src.eng.NewSnapshot()
	defer snap.Close()
	for _, c := range compressions {
		opts := snapshot.WriteOptions{Compression: c}
		var stream bytes.Buffer
		info, err := snapshot.Write(&stream, snap, opts)
		if err != nil {
			b.Fatal(err)
		}
		ratio := float64(stream.Len()) / float64(info.Bytes)
		b.Run(fmt.Sprintf("compression=%s/op=write", c), func(b *testing.B) {
			b.SetBytes(info.Bytes)
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if _, err := snapshot.Write(&buf, snap, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ratio, "stream/logical")
		})
		b.Run(fmt.Sprintf("compression=%s/op=read", c), func(b *testing.B) {
			b.SetBytes(info.Bytes)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := snapshot.Read(bytes.NewReader(stream.Bytes()), func(k, v []byte) error { return nil }); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(ratio, "stream/logical")
		})
		b.Run(fmt.Sprintf("compression=%s/op=install", c), func(b *testing.B) {
			b.SetBytes(info.Bytes)
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				dst, err := writernode.OpenPebble("db", writernode.PebbleOptions{FS: vfs.NewMem()})
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if _, err := snapshot.Install(bytes.NewReader(stream.Bytes()), dst); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if err := dst.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
