package snapshot_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/snapshot"
	"github.com/stratakv/strata/writernode"
)

var compressions = []snapshot.Compression{snapshot.CompressionZstd, snapshot.CompressionS2, snapshot.CompressionNone}

// newEngine opens a Pebble engine in memory, closed at the end of the test.
func newEngine(tb testing.TB) *writernode.PebbleEngine {
	tb.Helper()
	eng, err := writernode.OpenPebble("db", writernode.PebbleOptions{FS: vfs.NewMem()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { eng.Close() })
	return eng
}

// source is an applier over a Pebble engine, with an entry builder.
type source struct {
	tb    testing.TB
	eng   *writernode.PebbleEngine
	a     *applier.Applier
	index uint64
	voter []uint64
}

func newSource(tb testing.TB) *source {
	s := &source{tb: tb, eng: newEngine(tb)}
	s.a = openApplier(tb, s.eng, func(cc raftpb.ConfChangeI) (*raftpb.ConfState, error) {
		s.voter = append(s.voter, cc.AsV2().GetChanges()[0].GetNodeId())
		return &raftpb.ConfState{Voters: slices.Clone(s.voter)}, nil
	})
	return s
}

func openApplier(tb testing.TB, eng applier.Engine, cc func(raftpb.ConfChangeI) (*raftpb.ConfState, error)) *applier.Applier {
	tb.Helper()
	a, err := applier.New(applier.Config{Engine: eng, ApplyConfChange: cc})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { a.Close() })
	return a
}

// apply applies one entry holding reqs, at the next index and term 3.
func (s *source) apply(reqs ...*pb.InternalRaftRequest) {
	s.tb.Helper()
	raw := make([][]byte, len(reqs))
	for i, r := range reqs {
		var err error
		if raw[i], err = proto.Marshal(r); err != nil {
			s.tb.Fatal(err)
		}
	}
	s.index++
	e := &raftpb.Entry{Type: raftpb.EntryNormal.Enum(), Index: proto.Uint64(s.index), Term: proto.Uint64(3), Data: applier.EncodeEntry(nil, raw)}
	if err := s.a.Apply([]*raftpb.Entry{e}); err != nil {
		s.tb.Fatal(err)
	}
}

func (s *source) addVoter(id uint64) {
	s.tb.Helper()
	data, err := proto.Marshal(&raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: proto.Uint64(id)})
	if err != nil {
		s.tb.Fatal(err)
	}
	s.index++
	e := &raftpb.Entry{Type: raftpb.EntryConfChange.Enum(), Index: proto.Uint64(s.index), Term: proto.Uint64(3), Data: data}
	if err := s.a.Apply([]*raftpb.Entry{e}); err != nil {
		s.tb.Fatal(err)
	}
}

func put(k, v string) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte(k), Value: []byte(v)}}
}

// load gives s a realistic state: members, keys with several versions
// (binary keys included), deletions, a physical compaction, and writes
// after it.
func (s *source) load() {
	s.tb.Helper()
	s.addVoter(1)
	s.addVoter(2)
	for round := range 3 {
		var reqs []*pb.InternalRaftRequest
		for i := range 200 {
			reqs = append(reqs, put(fmt.Sprintf("/registry/pods/p%04d", i), fmt.Sprintf("v%d-%d", round, i)))
		}
		reqs = append(reqs, put("bin\x00\xff\x00key", "x"), put("\xff\xff", "y"))
		s.apply(reqs...)
	}
	s.apply(&pb.InternalRaftRequest{DeleteRange: &pb.DeleteRangeRequest{Key: []byte("/registry/pods/p0100"), RangeEnd: []byte("/registry/pods/p0150")}})
	s.apply(&pb.InternalRaftRequest{Compaction: &pb.CompactionRequest{Revision: 3, Physical: true}})
	if err := s.a.WaitCompaction(context.Background(), 3); err != nil {
		s.tb.Fatal(err)
	}
	s.apply(put("/registry/pods/p0120", "back"), put("after", "compaction"))
	s.addVoter(3)
}

// write streams a snapshot of eng.
func write(tb testing.TB, eng applier.Engine, opts snapshot.WriteOptions) ([]byte, snapshot.Info) {
	tb.Helper()
	snap := eng.NewSnapshot()
	defer snap.Close()
	var buf bytes.Buffer
	info, err := snapshot.Write(&buf, snap, opts)
	if err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes(), info
}

type kv struct{ k, v string }

// contents lists every key/value of eng.
func contents(tb testing.TB, eng applier.Engine) []kv {
	tb.Helper()
	snap := eng.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	var out []kv
	for ok := it.First(); ok; ok = it.Next() {
		out = append(out, kv{string(it.Key()), string(it.Value())})
	}
	if err := it.Close(); err != nil {
		tb.Fatal(err)
	}
	return out
}

func rangeAll(tb testing.TB, a *applier.Applier) *pb.RangeResponse {
	tb.Helper()
	resp, err := a.Range(&pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		tb.Fatal(err)
	}
	return resp
}

// TestRoundTrip writes a snapshot of a realistic state with every
// compression and a few block sizes, installs it into a fresh engine, and
// checks that an applier opened on it is the source's twin.
func TestRoundTrip(t *testing.T) {
	src := newSource(t)
	src.load()
	want := contents(t, src.eng)
	wantApplied := src.a.Applied()
	wantRev, wantCompacted := src.a.Rev()
	wantHash, err := src.a.HashKV(0)
	if err != nil {
		t.Fatal(err)
	}
	wantRange := rangeAll(t, src.a)
	if wantApplied.Index != src.index || len(wantRange.Kvs) == 0 || wantCompacted != 3 {
		t.Fatalf("source not loaded as expected: applied %+v, %d keys, compacted %d", wantApplied, len(wantRange.Kvs), wantCompacted)
	}

	var checksum [32]byte
	for _, c := range compressions {
		for _, bs := range []int{0, 64, 4096} {
			t.Run(fmt.Sprintf("compression=%s/block=%d", c, bs), func(t *testing.T) {
				stream, winfo := write(t, src.eng, snapshot.WriteOptions{Compression: c, BlockSize: bs})
				if winfo.Keys != int64(len(want)) || winfo.AppliedIndex != wantApplied.Index || winfo.AppliedTerm != wantApplied.Term {
					t.Fatalf("Write info %+v; source has %d keys, applied %+v", winfo, len(want), wantApplied)
				}
				if checksum == ([32]byte{}) {
					checksum = winfo.Checksum
				} else if winfo.Checksum != checksum {
					t.Fatalf("checksum depends on compression or block size")
				}

				dst := newEngine(t)
				info, err := snapshot.Install(bytes.NewReader(stream), dst)
				if err != nil {
					t.Fatal(err)
				}
				if info != winfo {
					t.Fatalf("Install info %+v, Write info %+v", info, winfo)
				}
				dsnap := dst.NewSnapshot()
				inc, err := snapshot.Incomplete(dsnap)
				dsnap.Close()
				if inc || err != nil {
					t.Fatalf("Incomplete after a successful Install: %v, %v", inc, err)
				}
				if got := contents(t, dst); !slices.Equal(got, want) {
					t.Fatalf("installed engine differs from the source: %d keys, want %d", len(got), len(want))
				}

				a := openApplier(t, dst, nil)
				if got := a.Applied(); got.Index != wantApplied.Index || got.Term != wantApplied.Term || !proto.Equal(got.ConfState, wantApplied.ConfState) {
					t.Fatalf("Applied = %+v, want %+v", got, wantApplied)
				}
				if rev, compacted := a.Rev(); rev != wantRev || compacted != wantCompacted {
					t.Fatalf("Rev = %d, %d; want %d, %d", rev, compacted, wantRev, wantCompacted)
				}
				if h, err := a.HashKV(0); err != nil || h != wantHash {
					t.Fatalf("HashKV = %+v, %v; want %+v", h, err, wantHash)
				}
				if got := rangeAll(t, a); !proto.Equal(got, wantRange) {
					t.Fatalf("Range differs:\n got %v\nwant %v", got, wantRange)
				}
			})
		}
	}
}

// TestRead checks that Read hands over every pair in order with an Info
// equal to Write's, and consumes exactly the stream: data after it stays
// in the reader.
func TestRead(t *testing.T) {
	src := newSource(t)
	src.load()
	want := contents(t, src.eng)
	stream, winfo := write(t, src.eng, snapshot.WriteOptions{BlockSize: 100})
	r := bytes.NewReader(append(slices.Clip(stream), "and then the log"...))
	var got []kv
	info, err := snapshot.Read(r, func(k, v []byte) error {
		got = append(got, kv{string(k), string(v)})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if info != winfo || !slices.Equal(got, want) {
		t.Fatalf("Read info %+v (Write's %+v), %d pairs (want %d)", info, winfo, len(got), len(want))
	}
	if rest, _ := io.ReadAll(r); string(rest) != "and then the log" {
		t.Fatalf("Read left %q in the reader", rest)
	}

	stop := errors.New("stop")
	if _, err := snapshot.Read(bytes.NewReader(stream), func(k, v []byte) error { return stop }); err != stop {
		t.Fatalf("fn's error: Read returned %v", err)
	}
}

// TestEmptyEngine snapshots an engine without a single key, and one the
// applier has only initialised.
func TestEmptyEngine(t *testing.T) {
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			stream, info := write(t, newEngine(t), snapshot.WriteOptions{Compression: c})
			if info.Keys != 0 || info.Bytes != 0 || info.AppliedIndex != 0 {
				t.Fatalf("Write info %+v", info)
			}
			dst := newEngine(t)
			got, err := snapshot.Install(bytes.NewReader(stream), dst)
			if err != nil || got != info {
				t.Fatalf("Install = %+v, %v; want %+v", got, err, info)
			}
			if kvs := contents(t, dst); len(kvs) != 0 {
				t.Fatalf("installed an empty snapshot, got %v", kvs)
			}

			src := newEngine(t)
			openApplier(t, src, nil)
			stream, info = write(t, src, snapshot.WriteOptions{Compression: c})
			dst = newEngine(t)
			if got, err := snapshot.Install(bytes.NewReader(stream), dst); err != nil || got != info || got.Keys == 0 {
				t.Fatalf("Install = %+v, %v; want %+v", got, err, info)
			}
			if rev, _ := openApplier(t, dst, nil).Rev(); rev != 1 {
				t.Fatalf("revision %d, want 1", rev)
			}
		})
	}
}

// smallStream is a few blocks of realistic content.
func smallStream(t *testing.T, c snapshot.Compression) []byte {
	t.Helper()
	src := newSource(t)
	src.apply(put("a", "1"), put("b", "2"))
	src.apply(put("a", "3"), put("c", "4"))
	stream, _ := write(t, src.eng, snapshot.WriteOptions{Compression: c, BlockSize: 64})
	return stream
}

func readErr(stream []byte) error {
	_, err := snapshot.Read(bytes.NewReader(stream), func(k, v []byte) error { return nil })
	return err
}

// TestTruncated cuts streams at every offset: Read must refuse each one
// as corrupt, and Install must leave nothing that claims an applied index.
func TestTruncated(t *testing.T) {
	defer snapshot.SetInstallBatchBytes(1)()
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			stream := smallStream(t, c)
			if err := readErr(stream); err != nil {
				t.Fatal(err)
			}
			for n := range len(stream) {
				err := readErr(stream[:n])
				var ce *snapshot.CorruptError
				if !errors.Is(err, snapshot.ErrCorrupt) || !errors.As(err, &ce) || ce.Offset > int64(n) {
					t.Fatalf("stream cut at %d of %d: %v", n, len(stream), err)
				}
			}
			for n := snapshot.HeaderLen; n < len(stream); n += 37 {
				dst := newEngine(t)
				if _, err := snapshot.Install(bytes.NewReader(stream[:n]), dst); !errors.Is(err, snapshot.ErrCorrupt) {
					t.Fatalf("Install of a stream cut at %d: %v", n, err)
				}
				checkIncomplete(t, dst)
			}
			// Cut in the trailer: every pair has been written, one per
			// batch, so the marker must be there.
			dst := newEngine(t)
			if _, err := snapshot.Install(bytes.NewReader(stream[:len(stream)-1]), dst); !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("Install of a stream without its last byte: %v", err)
			}
			dsnap := dst.NewSnapshot()
			inc, err := snapshot.Incomplete(dsnap)
			dsnap.Close()
			if !inc || err != nil {
				t.Fatalf("Incomplete = %v, %v after a failed Install", inc, err)
			}
		})
	}
}

// checkIncomplete checks what a failed Install leaves: no applied index,
// and either nothing or the marker.
func checkIncomplete(t *testing.T, dst applier.Engine) {
	t.Helper()
	snap := dst.NewSnapshot()
	defer snap.Close()
	if _, err := snap.Get([]byte("m/applied")); !errors.Is(err, applier.ErrNotFound) {
		t.Fatalf("a failed Install left m/applied (%v)", err)
	}
	inc, err := snapshot.Incomplete(snap)
	if err != nil {
		t.Fatal(err)
	}
	if kvs := contents(t, dst); len(kvs) > 0 && !inc {
		t.Fatalf("a failed Install left %d keys and no marker", len(kvs))
	}
}

// TestFlippedByte flips every byte of streams, one at a time, in two ways:
// each must be refused as corrupt.
func TestFlippedByte(t *testing.T) {
	defer snapshot.SetInstallBatchBytes(1)()
	for _, c := range compressions {
		t.Run(c.String(), func(t *testing.T) {
			stream := smallStream(t, c)
			for i := range stream {
				for _, mask := range []byte{0x01, 0xff} {
					bad := slices.Clone(stream)
					bad[i] ^= mask
					if err := readErr(bad); !errors.Is(err, snapshot.ErrCorrupt) {
						t.Fatalf("byte %d ^ %#x: %v", i, mask, err)
					}
				}
			}
			for i := 0; i < len(stream); i += 29 {
				bad := slices.Clone(stream)
				bad[i] ^= 0x10
				dst := newEngine(t)
				if _, err := snapshot.Install(bytes.NewReader(bad), dst); !errors.Is(err, snapshot.ErrCorrupt) {
					t.Fatalf("Install with byte %d flipped: %v", i, err)
				}
				checkIncomplete(t, dst)
			}
		})
	}
}

// TestOutOfOrder checks that well-formed streams with keys out of order or
// repeated, within a block or across blocks, are refused, and that Write
// refuses such a source.
func TestOutOfOrder(t *testing.T) {
	p := func(ks ...string) []snapshot.Pair {
		var out []snapshot.Pair
		for _, k := range ks {
			out = append(out, snapshot.Pair{Key: []byte(k), Value: []byte("v")})
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		pairs []snapshot.Pair
		block int
	}{
		{"descending/same-block", p("a", "c", "b"), 0},
		{"descending/across-blocks", p("a", "c", "b"), 1},
		{"repeated/same-block", p("a", "b", "b"), 0},
		{"repeated/across-blocks", p("a", "b", "b"), 1},
		{"prefix-after-longer", p("ab", "a"), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if _, err := snapshot.WriteUnchecked(&buf, snapshot.WriteOptions{BlockSize: tc.block}, tc.pairs); err != nil {
				t.Fatal(err)
			}
			if err := readErr(buf.Bytes()); !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("Read: %v", err)
			}
			if _, err := snapshot.Install(bytes.NewReader(buf.Bytes()), newEngine(t)); !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("Install: %v", err)
			}
			if _, err := snapshot.Write(io.Discard, &listReader{tc.pairs}, snapshot.WriteOptions{}); err == nil {
				t.Fatal("Write accepted a source out of order")
			}
		})
	}
}

// listReader is an applier.Reader over a list, in the list's order.
type listReader struct{ pairs []snapshot.Pair }

func (r *listReader) Get([]byte) ([]byte, error) { return nil, applier.ErrNotFound }
func (r *listReader) NewIter(_, _ []byte) (applier.Iterator, error) {
	return &listIter{pairs: r.pairs, i: -1}, nil
}

type listIter struct {
	pairs []snapshot.Pair
	i     int
}

func (it *listIter) First() bool          { it.i = 0; return it.Valid() }
func (it *listIter) Next() bool           { it.i++; return it.Valid() }
func (it *listIter) Valid() bool          { return it.i >= 0 && it.i < len(it.pairs) }
func (it *listIter) Key() []byte          { return it.pairs[it.i].Key }
func (it *listIter) Value() []byte        { return it.pairs[it.i].Value }
func (it *listIter) Error() error         { return nil }
func (it *listIter) Close() error         { return nil }
func (it *listIter) Last() bool           { panic("unused") }
func (it *listIter) Prev() bool           { panic("unused") }
func (it *listIter) SeekGE(_ []byte) bool { panic("unused") }
func (it *listIter) SeekLT(_ []byte) bool { panic("unused") }

// TestLargePair sends values larger than the block size: each travels
// alone in its block.
func TestLargePair(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 30_000)
	pairs := []snapshot.Pair{{Key: []byte("a"), Value: []byte("small")}, {Key: []byte("b"), Value: big}, {Key: []byte("c"), Value: big[:1000]}}
	for _, c := range compressions {
		var buf bytes.Buffer
		if _, err := snapshot.Write(&buf, &listReader{pairs}, snapshot.WriteOptions{Compression: c, BlockSize: 1024}); err != nil {
			t.Fatal(err)
		}
		var got []snapshot.Pair
		if _, err := snapshot.Read(&buf, func(k, v []byte) error {
			got = append(got, snapshot.Pair{Key: slices.Clone(k), Value: slices.Clone(v)})
			return nil
		}); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if len(got) != 3 || !bytes.Equal(got[1].Value, big) || !bytes.Equal(got[2].Value, big[:1000]) {
			t.Fatalf("%s: read back %d pairs", c, len(got))
		}
	}
}

// TestInstallNotEmpty checks that Install refuses an engine with content
// and writes nothing to it.
func TestInstallNotEmpty(t *testing.T) {
	src := newSource(t)
	src.apply(put("a", "1"))
	stream, _ := write(t, src.eng, snapshot.WriteOptions{})
	dst := newEngine(t)
	openApplier(t, dst, nil)
	before := contents(t, dst)
	if _, err := snapshot.Install(bytes.NewReader(stream), dst); !errors.Is(err, snapshot.ErrNotEmpty) {
		t.Fatalf("Install into a used engine: %v", err)
	}
	if after := contents(t, dst); !slices.Equal(before, after) {
		t.Fatal("a refused Install changed the engine")
	}
}

// TestHostileLengths checks the bounds on lengths from the stream, with
// valid checksums where they would otherwise stop the check early.
func TestHostileLengths(t *testing.T) {
	var empty bytes.Buffer
	if _, err := snapshot.WriteUnchecked(&empty, snapshot.WriteOptions{Compression: snapshot.CompressionS2}, nil); err != nil {
		t.Fatal(err)
	}
	header := empty.Bytes()[:snapshot.HeaderLen]
	frame := func(rawLen, compLen uint32, payload []byte) []byte {
		b := []byte{'B'}
		b = binary.LittleEndian.AppendUint32(b, rawLen)
		b = binary.LittleEndian.AppendUint32(b, compLen)
		b = binary.LittleEndian.AppendUint32(b, 0) // checksum not reached
		return append(append(slices.Clone(header), b...), payload...)
	}
	for _, tc := range []struct {
		name   string
		stream []byte
	}{
		{"raw-too-large", frame(snapshot.MaxBlockSize+1, 10, make([]byte, 10))},
		{"raw-zero", frame(0, 0, nil)},
		{"comp-too-large", frame(100, 1<<30, make([]byte, 10))},
		{"huge-claim-little-data", frame(snapshot.MaxBlockSize, snapshot.MaxBlockSize, make([]byte, 10))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			err := readErr(tc.stream)
			runtime.ReadMemStats(&after)
			if !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("Read: %v", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 1<<20 {
				t.Fatalf("Read allocated %d bytes for a %d-byte stream", alloc, len(tc.stream))
			}
		})
	}
}

// readerErr fails after n bytes with a non-EOF error.
type readerErr struct {
	r *bytes.Reader
	n int
}

var errNetwork = errors.New("connection reset")

func (r *readerErr) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errNetwork
	}
	p = p[:min(len(p), r.n)]
	n, err := r.r.Read(p)
	r.n -= n
	return n, err
}

// TestReadError checks that an I/O error is returned as it is, not as
// corruption.
func TestReadError(t *testing.T) {
	stream := smallStream(t, snapshot.CompressionZstd)
	_, err := snapshot.Read(&readerErr{bytes.NewReader(stream), 30}, func(k, v []byte) error { return nil })
	if !errors.Is(err, errNetwork) || errors.Is(err, snapshot.ErrCorrupt) {
		t.Fatalf("Read: %v", err)
	}
}

// FuzzRead feeds arbitrary streams to Read: it must never panic, and a
// stream it accepts must have handed over exactly the pairs its Info
// counts, in strictly increasing order.
func FuzzRead(f *testing.F) {
	src := newSource(f)
	src.apply(put("a", "1"), put("b\x00", "2"))
	src.apply(put("a", "3"))
	for _, c := range compressions {
		for _, bs := range []int{48, 0} {
			stream, _ := write(f, src.eng, snapshot.WriteOptions{Compression: c, BlockSize: bs})
			f.Add(stream)
		}
		stream, _ := write(f, newEngine(f), snapshot.WriteOptions{Compression: c})
		f.Add(stream)
	}
	f.Add([]byte{})
	f.Add([]byte("STRATASN"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			keys, nbytes int64
			prev         []byte
		)
		info, err := snapshot.Read(bytes.NewReader(data), func(k, v []byte) error {
			if keys > 0 && bytes.Compare(prev, k) >= 0 {
				t.Fatalf("key %q after %q", k, prev)
			}
			prev = append(prev[:0], k...)
			keys++
			nbytes += int64(len(k) + len(v))
			return nil
		})
		if err != nil {
			if !errors.Is(err, snapshot.ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if info.Keys != keys || info.Bytes != nbytes {
			t.Fatalf("Info %+v, read %d keys, %d bytes", info, keys, nbytes)
		}
	})
}
