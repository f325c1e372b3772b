package applier

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/failpoint"
)

// Physical compaction.
//
// A Compact request only records the logical compacted revision C (in the
// apply batch, with the applied index): from then on reads below C fail,
// and that is all any client can observe. Removing the versions nobody can
// read any more is the physical compactor's job, a background goroutine
// that works in bounded steps. A version of key k at revision v <= C is
// removable when no read at a revision >= C can return it, that is when k
// has a newer version at or below C, or the version is a tombstone. The
// compactor therefore never changes what an allowed read returns, however
// far it has got.
//
// A run compacts through a target T (the logical compacted revision when
// the run started). It walks the revision index over [D, T], where D is the
// target of the previous run, and for each key found there removes the
// key's versions older than its newest version at or below T (and that one
// too if it is a tombstone). Older versions of the key can only be there if
// the key changed since D: a version that survived the previous run is the
// newest at or below D, so a key that did not change in [D, T] has nothing
// to remove. Revision-index entries below T are removed as the run passes
// them; those at T stay, so that a watch may still start at the compacted
// revision, and are revisited (harmlessly) by the next run.
//
// Each step is one engine batch holding at most CompactionChunk removals
// and index entries, taken under the write lock (so Apply waits for one
// step at most), and records the run's progress (compactorState) in the
// same batch. A step that runs out of budget inside one key removes that
// key's older versions before its tombstone, so that the tombstone still
// hides them if the run resumes later. After a crash the run resumes from
// the progress the engine holds, which always matches the removals it
// holds. Sync is not needed: a lost step is redone.

// compactorState is the physical compactor's progress.
type compactorState struct {
	// done: every version unreadable at revisions >= done is removed, and
	// so is every revision-index entry below done.
	done int64
	// target is the revision the run in progress compacts through; equal
	// to done when no run is in progress.
	target int64
	// nextMain, nextSub is where the run in progress resumes in the
	// revision index.
	nextMain, nextSub int64
}

func loadCompactorState(r Reader) (compactorState, error) {
	v, err := r.Get(keyMetaCompactor)
	if errors.Is(err, ErrNotFound) {
		return compactorState{}, nil
	}
	if err != nil {
		return compactorState{}, err
	}
	if len(v) != 32 {
		return compactorState{}, fmt.Errorf("%w: %s", errCorruptValue, keyMetaCompactor)
	}
	return compactorState{
		done:     int64(binary.BigEndian.Uint64(v)),
		target:   int64(binary.BigEndian.Uint64(v[8:])),
		nextMain: int64(binary.BigEndian.Uint64(v[16:])),
		nextSub:  int64(binary.BigEndian.Uint64(v[24:])),
	}, nil
}

func writeCompactorState(b Batch, s compactorState) error {
	var v [32]byte
	binary.BigEndian.PutUint64(v[:], uint64(s.done))
	binary.BigEndian.PutUint64(v[8:], uint64(s.target))
	binary.BigEndian.PutUint64(v[16:], uint64(s.nextMain))
	binary.BigEndian.PutUint64(v[24:], uint64(s.nextSub))
	return b.Set(keyMetaCompactor, v[:])
}

// compactor runs physical compaction steps in the background.
type compactor struct {
	kickC chan struct{}
	stopC chan struct{}
	doneC chan struct{}
}

func (c *compactor) start(a *Applier) {
	c.kickC = make(chan struct{}, 1)
	c.stopC = make(chan struct{})
	c.doneC = make(chan struct{})
	go c.run(a)
	if a.st.compacted > a.st.phys.done || a.st.phys.target != a.st.phys.done {
		c.kick() // resume a run interrupted by a restart
	}
}

func (c *compactor) kick() {
	select {
	case c.kickC <- struct{}{}:
	default:
	}
}

func (c *compactor) stop() {
	close(c.stopC)
	<-c.doneC
}

func (c *compactor) run(a *Applier) {
	defer close(c.doneC)
	for {
		select {
		case <-c.stopC:
			return
		case <-c.kickC:
		}
		for {
			more, err := a.compactStep()
			if err != nil {
				a.lg.Error("physical compaction step failed; retrying at the next compaction", zap.Error(err))
				break
			}
			if !more {
				break
			}
			select {
			case <-c.stopC:
				return
			default:
			}
		}
	}
}

// WaitCompaction returns once versions unreadable at revisions >= rev have
// been physically removed (for Compact with physical=true), or with ctx's
// error, or ErrClosed. rev must be a compacted revision.
func (a *Applier) WaitCompaction(ctx context.Context, rev int64) error {
	return a.waitFor(ctx, func() bool { return a.mu.physical >= rev })
}

// compactStep runs one bounded step of physical compaction and reports
// whether there is more to do.
func (a *Applier) compactStep() (more bool, err error) {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if a.closed() {
		return false, nil
	}
	ph := a.st.phys
	started := false
	if ph.target == ph.done {
		if a.st.compacted <= ph.done {
			return false, nil
		}
		ph.target = a.st.compacted
		ph.nextMain, ph.nextSub = ph.done, 0
		a.lg.Info("physical compaction started", zap.Int64("from-revision", ph.done), zap.Int64("revision", ph.target))
		started = true
	}

	b := a.eng.NewBatch()
	defer b.Close()
	dels, finished, next, err := a.collectRemovable(b, ph)
	if err != nil {
		return false, err
	}
	for _, k := range dels {
		if err := b.Delete(k); err != nil {
			return false, err
		}
	}
	if finished {
		ph.done, ph.nextMain, ph.nextSub = ph.target, 0, 0
	} else {
		ph.nextMain, ph.nextSub = next[0], next[1]
	}
	if err := writeCompactorState(b, ph); err != nil {
		return false, err
	}
	compactFailpoints(started, finished, failpoint.CompactBeforeCommitScheduledCompact, failpoint.CompactBeforeCommitBatch, failpoint.CompactBeforeSetFinishedCompact)
	if err := b.Commit(); err != nil {
		return false, err
	}
	compactFailpoints(started, finished, failpoint.CompactAfterCommitScheduledCompact, failpoint.CompactAfterCommitBatch, failpoint.CompactAfterSetFinishedCompact)
	a.st.phys = ph
	a.publish(&a.st)
	if finished {
		a.lg.Info("physical compaction finished", zap.Int64("revision", ph.done))
	}
	return !finished || a.st.compacted > ph.done, nil
}

// compactFailpoints hits the failpoints of a step's commit: the first of a
// run is the scheduled compaction's, the last sets it finished (one step
// can be both), and the others are batches.
func compactFailpoints(started, finished bool, scheduled, batch, setFinished failpoint.Point) {
	if started {
		scheduled.Hit()
	}
	if finished {
		setFinished.Hit()
	} else if !started {
		batch.Hit()
	}
}

// collectRemovable walks the revision index from the run's position and
// returns the engine keys to remove in this step, whether the run is
// finished, and otherwise where it resumes.
func (a *Applier) collectRemovable(r Reader, ph compactorState) (dels [][]byte, finished bool, next [2]int64, err error) {
	it, err := r.NewIter(revisionKey(nil, ph.nextMain, ph.nextSub), revisionKey(nil, ph.target+1, 0))
	if err != nil {
		return nil, false, next, err
	}
	budget := a.chunk
	seen := make(map[string]bool)
	for ok := it.First(); ok; ok = it.Next() {
		main, sub, err := splitRevisionKey(it.Key())
		if err != nil {
			it.Close()
			return nil, false, next, err
		}
		if budget <= 0 {
			it.Close()
			return dels, false, [2]int64{main, sub}, nil
		}
		v := it.Value()
		if len(v) < 1 {
			return nil, false, next, iterCorrupt(it, errCorruptValue)
		}
		key := v[1:]
		if !seen[string(key)] {
			complete, err := collectKeyRemovable(r, key, ph.target, &dels, &budget)
			if err != nil {
				it.Close()
				return nil, false, next, err
			}
			if !complete {
				it.Close()
				return dels, false, [2]int64{main, sub}, nil
			}
			seen[string(key)] = true
		}
		if main < ph.target {
			dels = append(dels, append([]byte(nil), it.Key()...))
		}
		budget--
	}
	if err := closeIter(it); err != nil {
		return nil, false, next, err
	}
	return dels, true, next, nil
}

// collectKeyRemovable appends to dels the history keys of key that no read
// at a revision >= target can return, spending budget, and reports whether
// it collected all of them. Older versions come before the newest one at or
// below target when that is a tombstone, so a partial collection never
// removes the tombstone that hides the rest.
func collectKeyRemovable(r Reader, key []byte, target int64, dels *[][]byte, budget *int) (complete bool, err error) {
	prefix := historyKeyPrefix(nil, key)
	upper := append(prefix[:len(prefix)-1:len(prefix)-1], escPastTerm)
	it, err := r.NewIter(prefix, upper)
	if err != nil {
		return false, err
	}
	seek := append(prefix[:len(prefix):len(prefix)], make([]byte, revLen)...)
	putRevDesc(seek[len(prefix):], target)
	if !it.SeekGE(seek) {
		return true, closeIter(it)
	}
	v := it.Value()
	if len(v) < 1 {
		return false, iterCorrupt(it, errCorruptValue)
	}
	var tombstone []byte
	if v[0] == kindTombstone {
		tombstone = append([]byte(nil), it.Key()...)
	}
	for it.Next() {
		if *budget <= 0 {
			it.Close()
			return false, nil
		}
		*dels = append(*dels, append([]byte(nil), it.Key()...))
		*budget--
	}
	if err := closeIter(it); err != nil {
		return false, err
	}
	if tombstone != nil {
		*dels = append(*dels, tombstone)
		*budget--
	}
	return true, nil
}
