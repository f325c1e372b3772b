package applier

import (
	"errors"
	"fmt"

	"go.uber.org/zap"
)

// ErrStaleSnapshot is Restore's refusal of a snapshot at or below the
// applied index.
var ErrStaleSnapshot = errors.New("applier: snapshot not newer than the applied state")

// Restore replaces the whole state machine with what install writes into
// the (emptied) engine — a raft snapshot received from the leader — and
// reloads the applied position, revisions and membership from it.
//
// It excludes everything else: no Apply, compaction step or read runs
// while the engine is emptied and refilled, so no reader sees a half
// installed state; reads wait for Restore. If install fails the engine may
// be left partially filled: Restore then returns the error and the member
// must stop (on restart it is detected by the install marker and must be
// rebuilt from a new snapshot).
//
// index is the snapshot's raft index. A snapshot that is not newer than
// what is already applied is refused with ErrStaleSnapshot before the
// engine is touched: a snapshot delayed in flight (a deposed leader's, or
// one overtaken by the log) would otherwise roll the state machine back
// under entries raft believes applied. The check is made under the write
// lock, so the apply stage cannot move past index between check and
// install.
func (a *Applier) Restore(index uint64, install func(Engine) error) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	a.readers.Lock()
	defer a.readers.Unlock()
	if a.closed() {
		return ErrClosed
	}
	if index <= a.st.index {
		return fmt.Errorf("%w: snapshot at %d, applied %d", ErrStaleSnapshot, index, a.st.index)
	}
	if err := clearEngine(a.eng); err != nil {
		return fmt.Errorf("applier: restore: clear: %w", err)
	}
	if err := install(a.eng); err != nil {
		return fmt.Errorf("applier: restore: %w", err)
	}
	snap := a.eng.NewSnapshot()
	st, found, err := loadState(snap)
	snap.Close()
	if err != nil {
		return fmt.Errorf("applier: restore: %w", err)
	}
	if !found {
		return fmt.Errorf("applier: restore: the installed state has no applied index")
	}
	removed, err := loadRemoved(a.eng)
	if err != nil {
		return fmt.Errorf("applier: restore: %w", err)
	}
	a.st = st
	if a.cfg.OnRestore != nil {
		ls := a.eng.NewSnapshot()
		leases, err := leasesIn(ls)
		ls.Close()
		if err != nil {
			return fmt.Errorf("applier: restore: leases: %w", err)
		}
		a.cfg.OnRestore(leases)
	}
	if a.cfg.OnCommit != nil {
		a.cfg.OnCommit(Commit{Rev: st.rev, Compacted: st.compacted, Restored: true})
	}
	a.mu.Lock()
	a.mu.removed = removed
	a.publishLocked(&st)
	a.mu.Unlock()

	a.lg.Info("restored state machine from a snapshot",
		zap.Uint64("applied-index", st.index), zap.Uint64("applied-term", st.term),
		zap.Int64("revision", st.rev), zap.Int64("compacted-revision", st.compacted))
	if st.compacted > st.phys.done {
		a.compactor.kick()
	}
	return nil
}

// clearEngine deletes every key, in bounded batches.
func clearEngine(e Engine) error {
	const perBatch = 4096
	for {
		snap := e.NewSnapshot()
		it, err := snap.NewIter(nil, nil)
		if err != nil {
			snap.Close()
			return err
		}
		b := e.NewBatch()
		n := 0
		for ok := it.First(); ok && n < perBatch; ok = it.Next() {
			if err := b.Delete(it.Key()); err != nil {
				it.Close()
				b.Close()
				snap.Close()
				return err
			}
			n++
		}
		err = it.Close()
		snap.Close()
		if err == nil && n > 0 {
			err = b.Commit()
		}
		b.Close()
		if err != nil || n == 0 {
			return err
		}
	}
}

// Snapshot opens a consistent snapshot of the committed state for
// streaming to another member. It holds the applier open (Close waits) until
// the snapshot is closed.
func (a *Applier) Snapshot() (Snapshot, error) { return a.openSnapshot() }

// LoadApplied reads the applied position recorded in r (an engine snapshot
// or batch): what a raft snapshot taken from r covers.
func LoadApplied(r Reader) (AppliedState, error) {
	st, found, err := loadState(r)
	if err != nil {
		return AppliedState{}, err
	}
	if !found {
		return AppliedState{}, fmt.Errorf("applier: no applied index recorded")
	}
	return AppliedState{Index: st.index, Term: st.term, ConfState: st.confState}, nil
}
