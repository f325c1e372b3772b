package pipeline

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/clock"
)

// memLog is a LogStore that keeps what was saved, like a WAL that never
// loses anything.
type memLog struct {
	mu   sync.Mutex
	hs   *raftpb.HardState
	ents []*raftpb.Entry
}

func (l *memLog) Save(hs *raftpb.HardState, ents []*raftpb.Entry, _ bool) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if hs != nil && hs.GetTerm() != 0 {
		l.hs = proto.Clone(hs).(*raftpb.HardState)
	}
	for _, e := range ents {
		e = proto.Clone(e).(*raftpb.Entry)
		// raft's overwrite rule: a new entry at i replaces i and after.
		for len(l.ents) > 0 && l.ents[len(l.ents)-1].GetIndex() >= e.GetIndex() {
			l.ents = l.ents[:len(l.ents)-1]
		}
		l.ents = append(l.ents, e)
	}
	return nil
}

func (l *memLog) SaveSnapshot(*raftpb.Snapshot) error { return nil }

// applied records what the apply stage saw: it is the harness's state
// machine. A snapshot replaces it wholesale (install).
type applied struct {
	mu    sync.Mutex
	cond  *sync.Cond
	ents  []*raftpb.Entry
	index uint64
	term  uint64 // of the entry at index, when known
	// snapIndex is the index of the last snapshot installed, 0 if none;
	// installs counts them. viaApply lists the indexes the apply stage
	// applied (not those a snapshot brought).
	snapIndex uint64
	installs  int
	viaApply  []uint64
}

func newApplied(start uint64) *applied {
	a := &applied{index: start}
	a.cond = sync.NewCond(&a.mu)
	return a
}

func (a *applied) apply(ents []*raftpb.Entry) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, e := range ents {
		if a.snapIndex > 0 && e.GetIndex() <= a.index {
			// Once a snapshot is installed, entries it already holds
			// are skipped, as applier.Apply does: a snapshot installed
			// by the transport can overtake entries already on their
			// way to the apply stage.
			continue
		}
		if e.GetIndex() != a.index+1 {
			return fmt.Errorf("apply out of order: have %d, got %d", a.index, e.GetIndex())
		}
		a.index, a.term = e.GetIndex(), e.GetTerm()
		a.ents = append(a.ents, e)
		a.viaApply = append(a.viaApply, e.GetIndex())
	}
	a.cond.Broadcast()
	return nil
}

// install replaces the state with a snapshot's: ents, applied through
// index (at term). A snapshot no newer than the state is ignored, as raft
// ignores one at or below its commit index; it reports whether it
// installed.
func (a *applied) install(index, term uint64, ents []*raftpb.Entry) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if index <= a.index {
		return false
	}
	a.ents = ents
	a.index, a.term, a.snapIndex = index, term, index
	a.installs++
	a.cond.Broadcast()
	return true
}

// waitData waits (bounded) until an entry with data d has been applied and
// returns its index.
func (a *applied) waitData(t *testing.T, d string) uint64 {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	timer := time.AfterFunc(10*time.Second, func() { a.mu.Lock(); a.cond.Broadcast(); a.mu.Unlock() })
	defer timer.Stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	for {
		for _, e := range a.ents {
			if string(e.Data) == d {
				return e.GetIndex()
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("entry %q never applied", d)
		}
		a.cond.Wait()
	}
}

func startOne(t *testing.T, log *memLog, st StartState, app *applied) *Node {
	t.Helper()
	n, err := Start(Config{
		ID:            1,
		TickInterval:  100 * time.Millisecond,
		ElectionTicks: 10,
		Clock:         clock.NewManual(time.Unix(0, 0)),
		Log:           log,
		Start:         st,
		Apply:         app.apply,
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func bootstrapState() StartState {
	return StartState{AppliedIndex: 1, AppliedTerm: 1, ConfState: &raftpb.ConfState{Voters: []uint64{1}}}
}

func TestSingleMemberProposeAndRead(t *testing.T) {
	log := &memLog{}
	app := newApplied(1)
	n := startOne(t, log, bootstrapState(), app)
	defer n.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A read round completes only under a leader that has committed in
	// its term: the barrier every client request waits behind.
	if _, err := n.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := n.Propose(ctx, fmt.Appendf(nil, "p%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	last := app.waitData(t, "p9")
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx < last {
		t.Fatalf("read index %d is behind applied write at %d", idx, last)
	}
	if st := n.Status(); !st.IsLeader || st.Lead != 1 || st.Commit < last {
		t.Fatalf("unexpected status %+v", st)
	}
	// Every applied entry was durable in the log first.
	log.mu.Lock()
	logged := len(log.ents)
	log.mu.Unlock()
	if logged < int(last-1) {
		t.Fatalf("log holds %d entries, applied through %d", logged, last)
	}
}

func TestRestartReplaysFromApplied(t *testing.T) {
	log := &memLog{}
	app := newApplied(1)
	n := startOne(t, log, bootstrapState(), app)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"a", "b", "c"} {
		if err := n.Propose(ctx, []byte(d)); err != nil {
			t.Fatal(err)
		}
	}
	ib := app.waitData(t, "b")
	app.waitData(t, "c")
	n.Stop()

	// Pretend the state machine durably holds everything through "b":
	// restart must replay exactly the entries after it.
	log.mu.Lock()
	var after []*raftpb.Entry
	var termB uint64
	for _, e := range log.ents {
		if e.GetIndex() > ib {
			after = append(after, e)
		}
		if e.GetIndex() == ib {
			termB = e.GetTerm()
		}
	}
	hs := log.hs
	log.mu.Unlock()
	if hs.GetCommit() < ib {
		// A commit-index-only HardState is saved without sync, after the
		// apply stage may already have applied: what was applied was
		// committed all the same (as writernode/member.go restarts).
		hs = &raftpb.HardState{Term: hs.Term, Vote: hs.Vote, Commit: new(ib)}
	}
	app2 := newApplied(ib)
	n2 := startOne(t, log, StartState{
		AppliedIndex: ib, AppliedTerm: termB,
		ConfState: &raftpb.ConfState{Voters: []uint64{1}},
		HardState: hs, Entries: after,
	}, app2)
	defer n2.Stop()
	app2.waitData(t, "c")
	if _, err := n2.ReadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	app2.mu.Lock()
	first := app2.ents[0].GetIndex()
	app2.mu.Unlock()
	if first != ib+1 {
		t.Fatalf("replay started at %d, want %d", first, ib+1)
	}
	if err := n2.Propose(ctx, []byte("d")); err != nil {
		t.Fatal(err)
	}
	app2.waitData(t, "d")
}

func TestStartRejectsInconsistentState(t *testing.T) {
	cases := []struct {
		name string
		st   StartState
	}{
		{"no voters", StartState{AppliedIndex: 1, AppliedTerm: 1, ConfState: &raftpb.ConfState{}}},
		{"gap after applied", StartState{AppliedIndex: 1, AppliedTerm: 1, ConfState: &raftpb.ConfState{Voters: []uint64{1}},
			Entries: []*raftpb.Entry{{Index: new(uint64(3)), Term: new(uint64(1))}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Start(Config{ID: 1, TickInterval: time.Millisecond, ElectionTicks: 10,
				Log: &memLog{}, Start: c.st, Apply: func([]*raftpb.Entry) error { return nil }})
			if err == nil {
				t.Fatal("expected an error")
			}
		})
	}
}

func TestApplyFailureStopsNode(t *testing.T) {
	log := &memLog{}
	n, err := Start(Config{
		ID: 1, TickInterval: time.Millisecond, ElectionTicks: 10,
		Clock: clock.NewManual(time.Unix(0, 0)), Log: log, Start: bootstrapState(),
		Apply: func(ents []*raftpb.Entry) error { return fmt.Errorf("disk on fire") },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The new leader's empty entry is the first thing to apply.
	select {
	case <-n.Done():
	case <-ctx.Done():
		t.Fatal("node did not stop after apply failure")
	}
	if n.Err() == nil {
		t.Fatal("Err() is nil after a failure")
	}
}

// TestCompactLogPastLastIndexIsRefused: a state machine ahead of the log
// (a snapshot installed that raft then refused) asks to compact past the
// log's end; raft's storage would panic, the node declines and goes on.
func TestCompactLogPastLastIndexIsRefused(t *testing.T) {
	log := &memLog{}
	app := newApplied(1)
	n := startOne(t, log, bootstrapState(), app)
	defer n.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.ReadIndex(ctx); err != nil { // leader, with its term committed
		t.Fatal(err)
	}
	if err := n.Propose(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	at := app.waitData(t, "a")
	n.CompactLog(at+100, &raftpb.ConfState{Voters: []uint64{1}})
	n.CompactLog(at, &raftpb.ConfState{Voters: []uint64{1}})
	if err := n.Propose(ctx, []byte("b")); err != nil {
		t.Fatal(err)
	}
	app.waitData(t, "b")
}
