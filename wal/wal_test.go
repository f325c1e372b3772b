package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// smallSegments keeps test files small; noSync keeps the many-open tests
// fast. Record stamping and recovery do not depend on NoSync (a NoSync
// flush counts as a sync point), so the on-disk format under test is the
// same.
var (
	smallSegments = Options{SegmentSize: 4 << 10}
	noSync        = Options{SegmentSize: 4 << 10, NoSync: true}
)

func TestOpenEmpty(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "member", "wal")
	w := mustOpen(t, dir, smallSegments)
	st := mustReadAll(t, w)
	if st.hs != nil || st.snap.Index != 0 || st.snap.ConfState != nil || st.ents != nil {
		t.Fatalf("new WAL: got %+v, want zero state", st)
	}
	if _, _, _, err := w.ReadAll(); !errors.Is(err, ErrReadAllDone) {
		t.Fatalf("second ReadAll: got %v, want ErrReadAllDone", err)
	}
	mustClose(t, w)
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	paths := segmentPaths(t, dir)
	if len(paths) != 1 || filepath.Base(paths[0]) != "0000000000000000-0000000000000001.wal" {
		t.Fatalf("segments: %v", paths)
	}
	fi, err := os.Stat(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != smallSegments.SegmentSize {
		t.Fatalf("segment size %d, want preallocated %d", fi.Size(), smallSegments.SegmentSize)
	}
	st = reopen(t, dir, smallSegments)
	if st.hs != nil || st.ents != nil {
		t.Fatalf("reopened empty WAL: got %+v", st)
	}
}

func TestRoundtrip(t *testing.T) {
	big := strings.Repeat("x", 100<<10) // spans many segments' worth
	confChange := ent(3, 1, "conf")
	confChange.Type = raftpb.EntryConfChange.Enum()
	type save struct {
		hs   *raftpb.HardState
		ents []*raftpb.Entry
	}
	for _, tc := range []struct {
		name   string
		saves  []save
		wantHS *raftpb.HardState
		want   []*raftpb.Entry
	}{
		{name: "one entry", saves: []save{{nil, ents(1, 1, 1)}}, want: ents(1, 1, 1)},
		{name: "hardstate only", saves: []save{{hardState(1, 2, 0), nil}}, wantHS: hardState(1, 2, 0)},
		{name: "empty save", saves: []save{{&raftpb.HardState{}, nil}}},
		{
			name:   "entries and hardstate",
			saves:  []save{{hardState(1, 1, 0), ents(1, 10, 1)}, {hardState(1, 1, 10), ents(11, 12, 1)}},
			wantHS: hardState(1, 1, 10),
			want:   ents(1, 12, 1),
		},
		{
			name: "payload sizes around alignment",
			saves: []save{{nil, []*raftpb.Entry{
				ent(1, 1, ""), ent(2, 1, "a"), ent(3, 1, "1234567"), ent(4, 1, "12345678"), ent(5, 1, "123456789"),
			}}},
			want: []*raftpb.Entry{ent(1, 1, ""), ent(2, 1, "a"), ent(3, 1, "1234567"), ent(4, 1, "12345678"), ent(5, 1, "123456789")},
		},
		{
			name:  "entry types",
			saves: []save{{nil, []*raftpb.Entry{ent(1, 1, ""), ent(2, 1, "x"), confChange}}},
			want:  []*raftpb.Entry{ent(1, 1, ""), ent(2, 1, "x"), confChange},
		},
		{
			name:  "entry larger than a segment",
			saves: []save{{nil, ents(1, 2, 1)}, {nil, []*raftpb.Entry{ent(3, 1, big)}}, {nil, ents(4, 5, 1)}},
			want:  append(append(ents(1, 2, 1), ent(3, 1, big)), ents(4, 5, 1)...),
		},
	} {
		for _, opts := range []Options{smallSegments, noSync} {
			t.Run(fmt.Sprintf("%s/nosync=%v", tc.name, opts.NoSync), func(t *testing.T) {
				dir := t.TempDir()
				w := mustOpen(t, dir, opts)
				for _, s := range tc.saves {
					mustSave(t, w, s.hs, s.ents)
				}
				mustClose(t, w)
				st := reopen(t, dir, opts)
				checkHardState(t, st.hs, tc.wantHS)
				checkEntries(t, st.ents, tc.want)
			})
		}
	}
}

func TestReopenAndAppend(t *testing.T) {
	dir := t.TempDir()
	var want []*raftpb.Entry
	for round := uint64(0); round < 5; round++ {
		w := mustOpen(t, dir, smallSegments)
		st := mustReadAll(t, w)
		checkEntries(t, st.ents, want)
		if round > 0 {
			checkHardState(t, st.hs, hardState(round, 1, round*10))
		}
		batch := ents(round*10+1, round*10+10, round+1)
		mustSave(t, w, hardState(round+1, 1, round*10+10), batch)
		want = append(want, batch...)
		mustClose(t, w)
	}
	st := reopen(t, dir, smallSegments)
	checkEntries(t, st.ents, want)
	checkHardState(t, st.hs, hardState(5, 1, 50))
}

// model is the reference for raft's log: an append at index i truncates the
// log to i-1 and appends.
type model []*raftpb.Entry

func (m model) append(es []*raftpb.Entry) model {
	if len(es) == 0 {
		return m
	}
	if len(m) > 0 {
		if first := m[0].GetIndex(); es[0].GetIndex() >= first {
			m = m[:min(int(es[0].GetIndex()-first), len(m))]
		} else {
			m = nil
		}
	}
	return append(slices.Clone(m), es...)
}

func TestOverwrite(t *testing.T) {
	// Each step appends entries lo..hi of a term, all in one Save.
	type step struct{ lo, hi, term uint64 }
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"append only", []step{{1, 5, 1}, {6, 8, 1}}},
		{"overwrite last", []step{{1, 5, 1}, {5, 5, 2}}},
		{"overwrite suffix", []step{{1, 10, 1}, {4, 6, 2}}},
		{"overwrite everything", []step{{1, 10, 1}, {1, 3, 2}}},
		{"overwrite then extend", []step{{1, 10, 1}, {4, 6, 2}, {7, 12, 2}}},
		{"repeated overwrites", []step{{1, 10, 1}, {8, 9, 2}, {5, 5, 3}, {6, 20, 3}, {2, 2, 4}}},
		{"log starting above 1", []step{{5, 9, 1}, {7, 8, 2}}},
		{"overwrite below first", []step{{5, 9, 1}, {3, 4, 2}}},
	} {
		for _, opts := range []Options{noSync, {SegmentSize: 256, NoSync: true}} {
			t.Run(fmt.Sprintf("%s/segment=%d", tc.name, opts.SegmentSize), func(t *testing.T) {
				dir := t.TempDir()
				var want model
				for i, s := range tc.steps {
					// Reopen between steps too: the rule must hold
					// across segments and across restarts.
					w := mustOpen(t, dir, opts)
					st := mustReadAll(t, w)
					checkEntries(t, st.ents, want)
					mustSave(t, w, nil, ents(s.lo, s.hi, s.term))
					want = want.append(ents(s.lo, s.hi, s.term))
					if i%2 == 0 {
						mustSave(t, w, nil, ents(s.hi+1, s.hi+1, s.term))
						want = want.append(ents(s.hi+1, s.hi+1, s.term))
					}
					mustClose(t, w)
				}
				checkEntries(t, reopen(t, dir, opts).ents, want)
			})
		}
	}
}

func TestSaveValidation(t *testing.T) {
	w := mustOpen(t, t.TempDir(), noSync)
	mustSave(t, w, nil, ents(1, 5, 1))
	for _, tc := range []struct {
		name string
		ents []*raftpb.Entry
	}{
		{"gap after last index", ents(7, 8, 1)},
		{"not consecutive", []*raftpb.Entry{ent(6, 1, ""), ent(8, 1, "")}},
		{"index zero", []*raftpb.Entry{ent(0, 1, "")}},
		{"nil index", []*raftpb.Entry{{Term: new(uint64(1))}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := w.Save(nil, tc.ents); !errors.Is(err, ErrOutOfOrder) {
				t.Fatalf("Save(%s): got %v, want ErrOutOfOrder", indexes(tc.ents), err)
			}
		})
	}
	if err := w.SaveSnapshot(SnapshotMarker{Index: 4, Term: 1}); err != nil {
		t.Fatal(err)
	}
	if err := w.SaveSnapshot(SnapshotMarker{Index: 3, Term: 1}); !errors.Is(err, ErrSnapshotBehind) {
		t.Fatalf("SaveSnapshot behind: got %v, want ErrSnapshotBehind", err)
	}
	// Nothing rejected reached the log.
	mustSave(t, w, nil, ents(6, 6, 1))
	mustClose(t, w)
	if err := w.Save(nil, ents(7, 7, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Save after Close: got %v, want ErrClosed", err)
	}
	if _, _, _, err := w.ReadAll(); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAll after Close: got %v, want ErrClosed", err)
	}
	if err := w.ReleaseTo(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReleaseTo after Close: got %v, want ErrClosed", err)
	}
}

func TestSnapshotMarker(t *testing.T) {
	cs := &raftpb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{4}}
	t.Run("entries after the marker", func(t *testing.T) {
		dir := t.TempDir()
		w := mustOpen(t, dir, noSync)
		mustSave(t, w, hardState(1, 1, 8), ents(1, 10, 1))
		if err := w.SaveSnapshot(SnapshotMarker{Index: 6, Term: 1, ConfState: cs}); err != nil {
			t.Fatal(err)
		}
		mustClose(t, w)
		st := reopen(t, dir, noSync)
		if st.snap.Index != 6 || st.snap.Term != 1 || !proto.Equal(st.snap.ConfState, cs) {
			t.Fatalf("marker: got %+v", st.snap)
		}
		checkEntries(t, st.ents, ents(7, 10, 1))
		checkHardState(t, st.hs, hardState(1, 1, 8))
	})
	t.Run("marker ahead of the log", func(t *testing.T) {
		// A follower that installs a leader's snapshot: its log restarts
		// after the marker.
		dir := t.TempDir()
		w := mustOpen(t, dir, noSync)
		mustSave(t, w, nil, ents(1, 3, 1))
		if err := w.SaveSnapshot(SnapshotMarker{Index: 100, Term: 5, ConfState: cs}); err != nil {
			t.Fatal(err)
		}
		mustClose(t, w)
		st := reopen(t, dir, noSync)
		if st.snap.Index != 100 || len(st.ents) != 0 {
			t.Fatalf("got marker %d and entries %s, want 100 and none", st.snap.Index, indexes(st.ents))
		}
		w = mustOpen(t, dir, noSync)
		if err := w.Save(nil, ents(102, 102, 5)); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("Save after marker with a gap: got %v, want ErrOutOfOrder", err)
		}
		mustSave(t, w, nil, ents(101, 105, 5))
		mustClose(t, w)
		checkEntries(t, reopen(t, dir, noSync).ents, ents(101, 105, 5))
	})
}

func TestSegmentRollover(t *testing.T) {
	for _, opts := range []Options{{SegmentSize: 1 << 10}, {SegmentSize: 1 << 10, NoSync: true}} {
		t.Run(fmt.Sprintf("nosync=%v", opts.NoSync), func(t *testing.T) {
			dir := t.TempDir()
			w := mustOpen(t, dir, opts)
			var want []*raftpb.Entry
			for i := uint64(1); i <= 60; i++ {
				e := ent(i, 1, strings.Repeat("d", 100))
				mustSave(t, w, hardState(1, 1, i), []*raftpb.Entry{e})
				want = append(want, e)
			}
			batch := ents(61, 100, 2) // one Save spanning several segments
			mustSave(t, w, hardState(2, 1, 100), batch)
			want = append(want, batch...)
			mustClose(t, w)

			paths := segmentPaths(t, dir)
			if len(paths) < 5 {
				t.Fatalf("only %d segments of %d bytes for %d entries", len(paths), opts.SegmentSize, len(want))
			}
			var lastFirst uint64
			for i, p := range paths {
				seq, first, _ := parseSegmentName(filepath.Base(p))
				if seq != uint64(i) || first <= lastFirst {
					t.Fatalf("segment %d is %s: want seq %d and first index above %d", i, filepath.Base(p), i, lastFirst)
				}
				lastFirst = first
				if fi, err := os.Stat(p); err != nil || fi.Size() != opts.SegmentSize {
					t.Fatalf("%s: size %v (%v), want %d", p, fi.Size(), err, opts.SegmentSize)
				}
			}
			st := reopen(t, dir, opts)
			checkEntries(t, st.ents, want)
			checkHardState(t, st.hs, hardState(2, 1, 100))
		})
	}
}

func TestReleaseTo(t *testing.T) {
	opts := Options{SegmentSize: 1 << 10, NoSync: true}
	cs := &raftpb.ConfState{Voters: []uint64{1}}
	fill := func(t *testing.T) (string, *WAL) {
		dir := t.TempDir()
		w := mustOpen(t, dir, opts)
		for i := uint64(1); i <= 100; i += 5 {
			mustSave(t, w, hardState(1, 1, i+4), ents(i, i+4, 1))
		}
		return dir, w
	}
	t.Run("without a marker nothing is released", func(t *testing.T) {
		dir, w := fill(t)
		before := segmentPaths(t, dir)
		if err := w.ReleaseTo(100); err != nil {
			t.Fatal(err)
		}
		if after := segmentPaths(t, dir); !slices.Equal(before, after) {
			t.Fatalf("segments changed from %d to %d", len(before), len(after))
		}
		mustClose(t, w)
	})
	t.Run("released up to the marker", func(t *testing.T) {
		dir, w := fill(t)
		before := segmentPaths(t, dir)
		if err := w.SaveSnapshot(SnapshotMarker{Index: 50, Term: 1, ConfState: cs}); err != nil {
			t.Fatal(err)
		}
		// Asking for more than the marker covers releases only to it.
		if err := w.ReleaseTo(90); err != nil {
			t.Fatal(err)
		}
		after := segmentPaths(t, dir)
		if len(after) >= len(before) {
			t.Fatalf("ReleaseTo deleted nothing: %d segments", len(after))
		}
		if !slices.Equal(after, before[len(before)-len(after):]) {
			t.Fatalf("ReleaseTo did not delete a prefix: %v -> %v", before, after)
		}
		// The first remaining segment must still hold entry 51.
		_, first, _ := parseSegmentName(filepath.Base(after[0]))
		if first > 51 {
			t.Fatalf("first remaining segment %s starts above entry 51", filepath.Base(after[0]))
		}
		mustSave(t, w, hardState(2, 1, 101), ents(101, 103, 2))
		mustClose(t, w)

		st := reopen(t, dir, opts)
		if st.snap.Index != 50 || !proto.Equal(st.snap.ConfState, cs) {
			t.Fatalf("marker: %+v", st.snap)
		}
		checkEntries(t, st.ents, append(ents(51, 100, 1), ents(101, 103, 2)...))
		checkHardState(t, st.hs, hardState(2, 1, 101))
	})
	t.Run("everything but the active segment", func(t *testing.T) {
		dir, w := fill(t)
		if err := w.SaveSnapshot(SnapshotMarker{Index: 100, Term: 1, ConfState: cs}); err != nil {
			t.Fatal(err)
		}
		if err := w.ReleaseTo(100); err != nil {
			t.Fatal(err)
		}
		if n := len(segmentPaths(t, dir)); n != 1 {
			t.Fatalf("%d segments left, want the active one", n)
		}
		mustClose(t, w)
		st := reopen(t, dir, opts)
		if st.snap.Index != 100 || len(st.ents) != 0 {
			t.Fatalf("got marker %d entries %s", st.snap.Index, indexes(st.ents))
		}
		checkHardState(t, st.hs, hardState(1, 1, 100))
		w = mustOpen(t, dir, opts)
		mustSave(t, w, nil, ents(101, 101, 2))
		mustClose(t, w)
		checkEntries(t, reopen(t, dir, opts).ents, ents(101, 101, 2))
	})
	t.Run("segment with an overwritten high index is kept", func(t *testing.T) {
		dir := t.TempDir()
		w := mustOpen(t, dir, opts)
		mustSave(t, w, nil, ents(1, 30, 1))
		mustSave(t, w, nil, ents(20, 40, 2)) // overwrites 20..30
		if err := w.SaveSnapshot(SnapshotMarker{Index: 25, Term: 2, ConfState: cs}); err != nil {
			t.Fatal(err)
		}
		if err := w.ReleaseTo(25); err != nil {
			t.Fatal(err)
		}
		mustClose(t, w)
		checkEntries(t, reopen(t, dir, opts).ents, ents(26, 40, 2))
	})
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	w := mustOpen(t, dir, noSync)
	if _, err := Open(dir, noSync); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: got %v, want ErrLocked", err)
	}
	mustClose(t, w)
	mustClose(t, mustOpen(t, dir, noSync))
}

// TestConcurrentAppend has many goroutines append in an order they agree
// on and wait for durability concurrently, as a pipelined raft append stage
// does. Every acknowledged entry must be read back, in order.
func TestConcurrentAppend(t *testing.T) {
	const goroutines, perGoroutine = 16, 40
	dir := t.TempDir()
	var syncs countingListener
	w := mustOpen(t, dir, Options{SegmentSize: 16 << 10, EventListener: syncs.listener()})
	var (
		order sync.Mutex // serializes index assignment with Append
		next  = uint64(1)
		wg    sync.WaitGroup
		errs  = make(chan error, goroutines)
	)
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perGoroutine; i++ {
				order.Lock()
				idx := next
				next++
				p, err := w.Append(hardState(1, 1, idx), []*raftpb.Entry{ent(idx, 1, fmt.Sprintf("g%d-%d", g, i))})
				order.Unlock()
				if err == nil {
					err = w.WaitDurable(p)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n := syncs.count()
	mustClose(t, w)
	t.Logf("%d appends shared %d fsyncs", goroutines*perGoroutine, n)
	st := reopen(t, dir, smallSegments)
	if len(st.ents) != goroutines*perGoroutine {
		t.Fatalf("read back %d entries, want %d", len(st.ents), goroutines*perGoroutine)
	}
	for i, e := range st.ents {
		if e.GetIndex() != uint64(i+1) {
			t.Fatalf("entry %d has index %d", i, e.GetIndex())
		}
	}
	checkHardState(t, st.hs, hardState(1, 1, goroutines*perGoroutine))
}

// TestConcurrentSave runs Save, SaveSnapshot and ReleaseTo from many
// goroutines at once (under the race detector this checks the locking).
// Entries are saved by one goroutine, as raft requires; HardStates by all.
func TestConcurrentSave(t *testing.T) {
	dir := t.TempDir()
	opts := Options{SegmentSize: 2 << 10}
	w := mustOpen(t, dir, opts)
	var wg sync.WaitGroup
	const n = 200
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); i <= n; i++ {
			if err := w.Save(nil, ents(i, i, 1)); err != nil {
				t.Error(err)
				return
			}
			if i%50 == 0 {
				if err := w.SaveSnapshot(SnapshotMarker{Index: i - 10, Term: 1}); err != nil {
					t.Error(err)
					return
				}
				if err := w.ReleaseTo(i - 10); err != nil {
					t.Error(err)
					return
				}
			}
		}
	}()
	for g := uint64(1); g <= 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= 25; i++ {
				if err := w.Save(hardState(g, g, i), nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	mustClose(t, w)
	st := reopen(t, dir, opts)
	if st.snap.Index != n-10 {
		t.Fatalf("marker %d, want %d", st.snap.Index, n-10)
	}
	checkEntries(t, st.ents, ents(n-9, n, 1))
	if hs := st.hs; hs.GetCommit() != 25 || hs.GetTerm() != hs.GetVote() {
		t.Fatalf("HardState %v is not the last save of any goroutine", hs)
	}
}

// TestGroupCommit checks, without timing, that one fsync covers every
// append made while another fsync was running.
func TestGroupCommit(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var syncs countingListener
	syncs.hook = func(k int) {
		if k == 1 {
			close(entered)
			<-release
		}
	}
	w := mustOpen(t, t.TempDir(), Options{SegmentSize: 1 << 20, EventListener: syncs.listener()})
	defer mustClose(t, w)

	first := make(chan error)
	go func() { first <- w.Save(nil, ents(1, 1, 1)) }()
	<-entered // the first Save leads an fsync and is held inside it

	const waiters = 20
	var positions []Position
	for i := uint64(2); i < 2+waiters; i++ {
		p, err := w.Append(nil, ents(i, i, 1))
		if err != nil {
			t.Fatal(err)
		}
		positions = append(positions, p)
	}
	var wg sync.WaitGroup
	for _, p := range positions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.WaitDurable(p); err != nil {
				t.Error(err)
			}
		}()
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if n := syncs.count(); n != 2 {
		t.Fatalf("%d fsyncs, want 2: the held one and one for all %d waiters", n, waiters)
	}
}

// countingListener counts fsyncs; hook, if set, runs inside the k-th.
type countingListener struct {
	mu   sync.Mutex
	n    int
	hook func(k int)
}

func (c *countingListener) listener() EventListener {
	return EventListener{SyncEnd: func(SyncInfo) {
		c.mu.Lock()
		c.n++
		k := c.n
		c.mu.Unlock()
		if c.hook != nil {
			c.hook(k)
		}
	}}
}

func (c *countingListener) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}
