package wal

import (
	"os"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// FuzzReadSegment feeds arbitrary bytes to the segment reader as the
// contents of one segment file. It must never panic, never read out of
// bounds, and never allocate beyond what the input can describe (every
// length is bounded by the bytes that remain).
func FuzzReadSegment(f *testing.F) {
	dir := f.TempDir()
	w, err := Open(dir, Options{SegmentSize: 1 << 10, NoSync: true})
	if err != nil {
		f.Fatal(err)
	}
	if err := w.Save(hardState(1, 1, 0), ents(1, 3, 1)); err != nil {
		f.Fatal(err)
	}
	if err := w.SaveSnapshot(SnapshotMarker{Index: 2, Term: 1, ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}}}); err != nil {
		f.Fatal(err)
	}
	if err := w.Save(hardState(1, 1, 3), ents(3, 5, 2)); err != nil {
		f.Fatal(err)
	}
	if err := w.Close(); err != nil {
		f.Fatal(err)
	}
	for _, p := range segmentPaths(f, dir) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
		f.Add(b[:recordHeaderSize+5])
	}
	f.Add([]byte{})
	f.Add(make([]byte, 64))

	f.Fuzz(func(t *testing.T, b []byte) {
		r := &replay{}
		s, err := readSegment(b, r, nil)
		if err != nil {
			if _, ok := err.(*corruption); !ok {
				t.Fatalf("readSegment returned %T %v, want *corruption", err, err)
			}
			return
		}
		if s.end < 0 || s.end > int64(len(b)) || s.end%recordAlign != 0 {
			t.Fatalf("end %d outside [0, %d] or unaligned", s.end, len(b))
		}
		if s.tail == tailCorrupt && (s.witness <= s.end || s.witness >= int64(len(b))) {
			t.Fatalf("witness %d not after end %d", s.witness, s.end)
		}
		_, snap, es, err := r.result()
		if err != nil {
			return
		}
		for i, e := range es {
			if e.GetIndex() <= snap.Index || i > 0 && e.GetIndex() != es[i-1].GetIndex()+1 {
				t.Fatalf("replayed log not contiguous above marker %d: %s", snap.Index, indexes(es))
			}
		}
	})
}

// FuzzReadRecords frames fuzzer-chosen payloads as CRC-valid records, so
// that the payload decoders and the replay, which FuzzReadSegment rarely
// reaches past the CRCs, see arbitrary contents. The input is a sequence
// of (type byte, length byte, payload); a leading record of another type
// than segment header is preceded by a valid header.
func FuzzReadRecords(f *testing.F) {
	hdr := (&segmentHeader{seq: 0, firstIndex: 1}).encode(nil)
	f.Add(append([]byte{byte(recordTypeSegmentHeader), byte(len(hdr))}, hdr...))
	f.Add([]byte{byte(recordTypeEntry), 4, 0x10, 0x01, 0x18, 0x01})
	f.Add([]byte{byte(recordTypeSnapshot), 16, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{byte(recordTypeHardState), 2, 0x18, 0x05, byte(recordTypeCheckpoint), 0})

	f.Fuzz(func(t *testing.T, in []byte) {
		var seg []byte
		if len(in) == 0 || recordType(in[0]) != recordTypeSegmentHeader {
			seg = appendRecord(seg, recordTypeSegmentHeader, hdr, 0)
		}
		for len(in) >= 2 {
			typ, n := recordType(in[0]), min(int(in[1]), len(in)-2)
			seg = appendRecord(seg, typ, in[2:2+n], int64(len(seg)))
			in = in[2+n:]
		}
		seg = append(seg, make([]byte, 64)...)
		r := &replay{}
		if _, err := readSegment(seg, r, nil); err != nil {
			if _, ok := err.(*corruption); !ok {
				t.Fatalf("readSegment returned %T %v, want *corruption", err, err)
			}
			return
		}
		r.result()
	})
}
