package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func ent(index, term uint64, data string) *raftpb.Entry {
	e := &raftpb.Entry{Index: new(index), Term: new(term), Type: raftpb.EntryNormal.Enum()}
	if data != "" {
		e.Data = []byte(data)
	}
	return e
}

// ents returns entries lo..hi of term, with data naming index and term.
func ents(lo, hi, term uint64) []*raftpb.Entry {
	var es []*raftpb.Entry
	for i := lo; i <= hi; i++ {
		es = append(es, ent(i, term, fmt.Sprintf("entry %d term %d", i, term)))
	}
	return es
}

func hardState(term, vote, commit uint64) *raftpb.HardState {
	return &raftpb.HardState{Term: new(term), Vote: new(vote), Commit: new(commit)}
}

func mustOpen(t testing.TB, dir string, opts Options) *WAL {
	t.Helper()
	w, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	return w
}

func mustClose(t testing.TB, w *WAL) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

func mustSave(t testing.TB, w *WAL, hs *raftpb.HardState, es []*raftpb.Entry) {
	t.Helper()
	if err := w.Save(hs, es); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

// state is what ReadAll returned.
type state struct {
	hs   *raftpb.HardState
	snap SnapshotMarker
	ents []*raftpb.Entry
}

func mustReadAll(t testing.TB, w *WAL) state {
	t.Helper()
	hs, snap, es, err := w.ReadAll()
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	return state{hs, snap, es}
}

// reopen opens dir, reads it and closes it again.
func reopen(t testing.TB, dir string, opts Options) state {
	t.Helper()
	w := mustOpen(t, dir, opts)
	defer mustClose(t, w)
	return mustReadAll(t, w)
}

func checkEntries(t testing.TB, got, want []*raftpb.Entry) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries %s, want %d %s", len(got), indexes(got), len(want), indexes(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("entry %d: got %v, want %v", i, got[i], want[i])
		}
	}
}

func checkHardState(t testing.TB, got, want *raftpb.HardState) {
	t.Helper()
	if isEmptyHardState(want) != (got == nil) || !isEmptyHardState(want) && !proto.Equal(got, want) {
		t.Fatalf("HardState: got %v, want %v", got, want)
	}
}

func indexes(es []*raftpb.Entry) string {
	if len(es) == 0 {
		return "[]"
	}
	return fmt.Sprintf("[%d..%d]", es[0].GetIndex(), es[len(es)-1].GetIndex())
}

// segmentPaths returns the segment files of dir in order.
func segmentPaths(t testing.TB, dir string) []string {
	t.Helper()
	segs, err := listSegments(dir)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, s := range segs {
		paths = append(paths, filepath.Join(dir, s.name()))
	}
	return paths
}

func lastSegment(t testing.TB, dir string) string {
	t.Helper()
	paths := segmentPaths(t, dir)
	return paths[len(paths)-1]
}

// recordSpan is where an intact record lies in a segment file.
type recordSpan struct {
	off, payloadEnd, next int
	typ                   recordType
}

// records lists the intact records at the start of the segment at path.
func records(t testing.TB, path string) []recordSpan {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var spans []recordSpan
	for off := 0; ; {
		r, ok := decodeRecord(b, off)
		if !ok {
			return spans
		}
		spans = append(spans, recordSpan{off, off + recordHeaderSize + len(r.payload), r.next, r.typ})
		off = r.next
	}
}

// lastRecordOfType returns the last intact record of typ in path.
func lastRecordOfType(t testing.TB, path string, typ recordType) recordSpan {
	t.Helper()
	spans := records(t, path)
	for i := len(spans) - 1; i >= 0; i-- {
		if spans[i].typ == typ {
			return spans[i]
		}
	}
	t.Fatalf("no %v record in %s", typ, path)
	return recordSpan{}
}

// crashCopy copies the WAL files in dir to a new directory, as a crash of
// the process would leave them (everything written is in the page cache).
func crashCopy(t testing.TB, dir string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		copyFile(t, filepath.Join(dir, de.Name()), filepath.Join(dst, de.Name()))
	}
	return dst
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// mutate rewrites the file at path with f applied to its contents.
func mutate(t testing.TB, path string, f func([]byte) []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, f(slices.Clone(b)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func flipByte(off int) func([]byte) []byte {
	return func(b []byte) []byte { b[off] ^= 0x40; return b }
}

// wantCorrupt checks that err is ErrCorrupt and names file.
func wantCorrupt(t testing.TB, err error, file string) {
	t.Helper()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("got error %v, want ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), filepath.Base(file)) {
		t.Fatalf("error %q does not name %s", err, filepath.Base(file))
	}
}
