package wal

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
)

// writeEntries saves entries 1..n, one Save each, with a HardState on the
// last, and returns the open WAL: a crashCopy of dir is then what a crash
// right after the last Save returned leaves behind.
func writeEntries(t *testing.T, dir string, opts Options, n uint64) *WAL {
	t.Helper()
	w := mustOpen(t, dir, opts)
	for i := uint64(1); i <= n; i++ {
		var hs *raftpb.HardState
		if i == n {
			hs = hardState(1, 1, n)
		}
		mustSave(t, w, hs, ents(i, i, 1))
	}
	return w
}

// TestTornTail cuts the last record at every byte offset, the way a crash
// during its write leaves it: the file truncated there, or (the usual case,
// since segments are preallocated) zeroes from there on. Open must drop
// exactly that record, keep everything before it, and accept appends.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	w := writeEntries(t, src, noSync, 5)
	mustSave(t, w, nil, ents(6, 6, 1))
	image := crashCopy(t, src)
	mustClose(t, w)
	last := lastRecordOfType(t, lastSegment(t, image), recordTypeEntry)

	for _, how := range []string{"truncate", "zero"} {
		for off := last.off; off < last.next; off++ {
			t.Run(fmt.Sprintf("%s/offset=%d", how, off), func(t *testing.T) {
				dir := crashCopy(t, image)
				path := lastSegment(t, dir)
				switch how {
				case "truncate":
					if err := os.Truncate(path, int64(off)); err != nil {
						t.Fatal(err)
					}
				case "zero":
					mutate(t, path, func(b []byte) []byte { clear(b[off:]); return b })
				}
				// Zeroing only the padding leaves the record intact.
				survives := how == "zero" && off >= last.payloadEnd
				want := ents(1, 5, 1)
				if survives {
					want = ents(1, 6, 1)
				}
				w := mustOpen(t, dir, noSync)
				st := mustReadAll(t, w)
				checkEntries(t, st.ents, want)
				checkHardState(t, st.hs, hardState(1, 1, 5))
				next := uint64(len(want)) + 1
				mustSave(t, w, hardState(2, 1, next), ents(next, next, 2))
				mustClose(t, w)
				st = reopen(t, dir, noSync)
				checkEntries(t, st.ents, append(want, ents(next, next, 2)...))
				checkHardState(t, st.hs, hardState(2, 1, next))
			})
		}
	}
}

// TestTailGarbage puts junk after the last record. Open must keep every
// record, clear the junk (so it cannot be mistaken for data later) and
// accept appends.
func TestTailGarbage(t *testing.T) {
	// A record that is intact but whose durable offset is 0: what a torn
	// group-commit write can leave after a lost page.
	stale := appendRecord(nil, recordTypeEntry, []byte{0x10, 0x01, 0x18, 0x07}, 0)
	junk := []byte("\xde\xad\xbe\xef not a record \x01\x02\x03")
	for _, tc := range []struct {
		name string
		f    func(b []byte, end int) []byte
	}{
		{"zeroes beyond the preallocation", func(b []byte, end int) []byte { return append(b, make([]byte, 4096)...) }},
		{"junk in the preallocated space", func(b []byte, end int) []byte { copy(b[end:], junk); return b }},
		{"junk far from the last record", func(b []byte, end int) []byte { copy(b[len(b)-100:], junk); return b }},
		{"junk beyond the preallocation", func(b []byte, end int) []byte { return append(b, junk...) }},
		{"random bytes to the end", func(b []byte, end int) []byte {
			r := rand.New(rand.NewPCG(1, 2))
			for i := end; i < len(b); i++ {
				b[i] = byte(r.Uint32())
			}
			return b
		}},
		{"stale record after junk", func(b []byte, end int) []byte {
			copy(b[end:], junk)
			copy(b[end+64:], stale)
			return b
		}},
		{"stale record after a zeroed gap", func(b []byte, end int) []byte { copy(b[end+512:], stale); return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			w := writeEntries(t, src, noSync, 4)
			dir := crashCopy(t, src)
			mustClose(t, w)
			path := lastSegment(t, dir)
			recs := records(t, path)
			end := recs[len(recs)-1].next
			mutate(t, path, func(b []byte) []byte { return tc.f(b, end) })

			w = mustOpen(t, dir, noSync)
			checkEntries(t, mustReadAll(t, w).ents, ents(1, 4, 1))
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !allZero(b[end:]) {
				t.Fatalf("bytes after offset %d not cleared", end)
			}
			mustSave(t, w, nil, ents(5, 5, 1))
			mustClose(t, w)
			checkEntries(t, reopen(t, dir, noSync).ents, ents(1, 5, 1))
		})
	}
}

// TestCorruptMiddleRecord flips every byte of a record that later records
// were written after: Open must refuse, naming the file.
func TestCorruptMiddleRecord(t *testing.T) {
	src := t.TempDir()
	w := writeEntries(t, src, smallSegments, 10)
	image := crashCopy(t, src) // no checkpoint: a crash, not a Close
	mustClose(t, w)
	path := lastSegment(t, image)
	var entries []recordSpan
	for _, r := range records(t, path) {
		if r.typ == recordTypeEntry {
			entries = append(entries, r)
		}
	}
	for _, victim := range []int{0, 4, 8} { // entries 1, 5 and 9 of 10
		rec := entries[victim]
		for off := rec.off; off < rec.payloadEnd; off++ {
			t.Run(fmt.Sprintf("entry=%d/offset=%d", victim+1, off), func(t *testing.T) {
				dir := crashCopy(t, image)
				p := lastSegment(t, dir)
				mutate(t, p, flipByte(off))
				_, err := Open(dir, smallSegments)
				wantCorrupt(t, err, p)
			})
		}
	}
}

// TestCorruptLastRecord: damage to the last record of the last segment is
// a torn tail after a crash (nothing was written after it, so nothing shows
// it was ever durable), but corruption after a clean Close, whose
// checkpoint record vouches for everything before it.
func TestCorruptLastRecord(t *testing.T) {
	src := t.TempDir()
	w := writeEntries(t, src, smallSegments, 5)
	crashed := crashCopy(t, src)
	mustClose(t, w)
	closed := crashCopy(t, src)

	rec := lastRecordOfType(t, lastSegment(t, crashed), recordTypeHardState)
	for off := rec.off; off < rec.payloadEnd; off++ {
		t.Run(fmt.Sprintf("crashed/offset=%d", off), func(t *testing.T) {
			dir := crashCopy(t, crashed)
			mutate(t, lastSegment(t, dir), flipByte(off))
			w := mustOpen(t, dir, smallSegments)
			st := mustReadAll(t, w)
			// The HardState record is the last; entry 5 precedes it.
			checkEntries(t, st.ents, ents(1, 5, 1))
			checkHardState(t, st.hs, nil)
			mustSave(t, w, hardState(1, 1, 5), nil)
			mustClose(t, w)
			checkHardState(t, reopen(t, dir, smallSegments).hs, hardState(1, 1, 5))
		})
	}
	t.Run("closed", func(t *testing.T) {
		for off := rec.off; off < rec.payloadEnd; off++ {
			dir := crashCopy(t, closed)
			p := lastSegment(t, dir)
			mutate(t, p, flipByte(off))
			_, err := Open(dir, smallSegments)
			wantCorrupt(t, err, p)
		}
	})
	t.Run("closed/checkpoint", func(t *testing.T) {
		// The checkpoint itself is the last record: damage to it loses
		// nothing.
		dir := crashCopy(t, closed)
		cp := lastRecordOfType(t, lastSegment(t, dir), recordTypeCheckpoint)
		mutate(t, lastSegment(t, dir), flipByte(cp.off+3))
		st := reopen(t, dir, smallSegments)
		checkEntries(t, st.ents, ents(1, 5, 1))
		checkHardState(t, st.hs, hardState(1, 1, 5))
	})
}

// TestCorruptNonLastSegment damages segments that were complete before the
// next one was created: every such damage is refused.
func TestCorruptNonLastSegment(t *testing.T) {
	opts := Options{SegmentSize: 512, NoSync: true}
	src := t.TempDir()
	w := writeEntries(t, src, opts, 40)
	mustClose(t, w)
	if n := len(segmentPaths(t, src)); n < 4 {
		t.Fatalf("want at least 4 segments, have %d", n)
	}
	for _, tc := range []struct {
		name string
		// damage breaks dir and returns the file the error must name.
		damage func(t *testing.T, paths []string) string
	}{
		{"flipped byte in a middle record", func(t *testing.T, paths []string) string {
			recs := records(t, paths[1])
			mutate(t, paths[1], flipByte(recs[1].off+recordHeaderSize))
			return paths[1]
		}},
		{"flipped byte in the last record", func(t *testing.T, paths []string) string {
			recs := records(t, paths[1])
			mutate(t, paths[1], flipByte(recs[len(recs)-1].off+recordHeaderSize))
			return paths[1]
		}},
		{"last record zeroed", func(t *testing.T, paths []string) string {
			recs := records(t, paths[0])
			r := recs[len(recs)-1]
			mutate(t, paths[0], func(b []byte) []byte { clear(b[r.off:r.next]); return b })
			return paths[0]
		}},
		{"segment truncated", func(t *testing.T, paths []string) string {
			recs := records(t, paths[2])
			if err := os.Truncate(paths[2], int64(recs[len(recs)-1].off+5)); err != nil {
				t.Fatal(err)
			}
			return paths[2]
		}},
		{"damaged segment header", func(t *testing.T, paths []string) string {
			mutate(t, paths[2], flipByte(recordHeaderSize+9))
			return paths[2]
		}},
		{"damaged header of the last segment", func(t *testing.T, paths []string) string {
			p := paths[len(paths)-1]
			mutate(t, p, flipByte(2))
			return p
		}},
		{"missing segment", func(t *testing.T, paths []string) string {
			if err := os.Remove(paths[2]); err != nil {
				t.Fatal(err)
			}
			return paths[3]
		}},
		{"renamed segment", func(t *testing.T, paths []string) string {
			seq, first, _ := parseSegmentName(filepath.Base(paths[1]))
			p := filepath.Join(filepath.Dir(paths[1]), segmentName(seq, first+1))
			if err := os.Rename(paths[1], p); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := crashCopy(t, src)
			file := tc.damage(t, segmentPaths(t, dir))
			_, err := Open(dir, opts)
			wantCorrupt(t, err, file)
		})
	}
}

// TestCrashImages simulates power loss: the bytes written after the last
// completed fsync reach the disk sector by sector in any order, or not at
// all. Open must accept every such image and return every entry whose Save
// returned, and a contiguous log.
func TestCrashImages(t *testing.T) {
	src := t.TempDir()
	opts := Options{SegmentSize: 64 << 10}
	w := writeEntries(t, src, opts, 20)
	// Unacknowledged appends: written, never fsynced.
	for i := uint64(21); i <= 60; i += 8 {
		if _, err := w.Append(hardState(1, 1, i+7), ents(i, i+7, 1)); err != nil {
			t.Fatal(err)
		}
	}
	w.mu.Lock()
	synced, written := w.mu.active.synced.Load(), w.mu.written
	w.mu.Unlock()
	image := crashCopy(t, src)
	mustClose(t, w)
	if synced >= written {
		t.Fatalf("nothing unsynced: synced %d, written %d", synced, written)
	}

	const sector = 512
	rng := rand.New(rand.NewPCG(7, 11))
	for i := 0; i < 100; i++ {
		dir := crashCopy(t, image)
		path := lastSegment(t, dir)
		mutate(t, path, func(b []byte) []byte {
			for s := synced; s < written; s += sector - s%sector {
				e := min(s+sector-s%sector, written)
				switch rng.IntN(3) {
				case 0: // the sector never reached the disk
					clear(b[s:e])
				case 1: // it reached it only in part
					clear(b[s+rng.Int64N(e-s) : e])
				}
			}
			return b
		})
		w, err := Open(dir, opts)
		if err != nil {
			t.Fatalf("image %d: %v", i, err)
		}
		st := mustReadAll(t, w)
		if len(st.ents) < 20 {
			t.Fatalf("image %d: lost acknowledged entries: have %s", i, indexes(st.ents))
		}
		checkEntries(t, st.ents, ents(1, uint64(len(st.ents)), 1))
		mustClose(t, w)
	}
}

func TestClassifyTail(t *testing.T) {
	rec := func(synced int64) []byte { return appendRecord(nil, recordTypeHardState, []byte{8, 1}, synced) }
	seg := func(parts ...[]byte) []byte {
		b := make([]byte, 1024)
		off := 0
		for _, p := range parts {
			copy(b[off:], p)
			off += len(p)
		}
		return b
	}
	zeros := make([]byte, 16)
	junk := []byte("0123456789abcdef")
	for _, tc := range []struct {
		name string
		b    []byte
		end  int
		want tailState
	}{
		{"all zero", seg(), 0, tailClean},
		{"end at the file end", seg(), 1024, tailClean},
		{"junk", seg(junk), 0, tailTorn},
		{"junk then a stale record", seg(junk, rec(0)), 0, tailTorn},
		{"zeroes then a stale record", seg(zeros, rec(0)), 0, tailTorn},
		{"junk then a record vouching for the junk", seg(junk, rec(8)), 0, tailCorrupt},
		{"record vouching for less than the end", seg(rec(0), junk, rec(16)), 32, tailTorn},
		{"record vouching beyond the end", seg(rec(0), junk, rec(33)), 32, tailCorrupt},
		{"unaligned record is not found", seg(junk[:3], rec(1)), 0, tailTorn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, _ := classifyTail(tc.b, tc.end); got != tc.want {
				t.Fatalf("classifyTail: got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestDecodeRecordRejects(t *testing.T) {
	good := appendRecord(nil, recordTypeEntry, []byte("payload"), 0)
	if _, ok := decodeRecord(good, 0); !ok {
		t.Fatal("good record rejected")
	}
	for _, tc := range []struct {
		name string
		f    func(b []byte) []byte
	}{
		{"empty", func(b []byte) []byte { return nil }},
		{"short header", func(b []byte) []byte { return b[:recordHeaderSize-1] }},
		{"short payload", func(b []byte) []byte { return b[:recordHeaderSize+3] }},
		{"short padding", func(b []byte) []byte { return b[:len(b)-1] }},
		{"zero type", func(b []byte) []byte { b[12] = 0; stampRecord(b, 0); return b }},
		{"unknown type", func(b []byte) []byte { b[12] = byte(recordTypeMax + 1); stampRecord(b, 0); return b }},
		{"reserved byte set", func(b []byte) []byte { b[14] = 1; stampRecord(b, 0); return b }},
		{"huge length", func(b []byte) []byte { b[7] = 0xff; stampRecord(b, 0); return b }},
		{"header CRC", func(b []byte) []byte { b[1] ^= 1; return b }},
		{"payload CRC", func(b []byte) []byte { b[recordHeaderSize] ^= 1; return b }},
		{"durable offset", func(b []byte) []byte { b[17] ^= 1; return b }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.f(append([]byte(nil), good...))
			if _, ok := decodeRecord(b, 0); ok {
				t.Fatal("damaged record accepted")
			}
		})
	}
	if !errors.Is(corruptf("f", 1, "x"), ErrCorrupt) {
		t.Fatal("corruptf does not wrap ErrCorrupt")
	}
}
