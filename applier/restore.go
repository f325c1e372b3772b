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
	if err := a.checkNewer(index); err != nil {
		return err
	}
	if err := clearEngine(a.eng.Engine); err != nil {
		return fmt.Errorf("applier: restore: clear: %w", err)
	}
	if err := install(a.eng.Engine); err != nil {
		return fmt.Errorf("applier: restore: %w", err)
	}
	st, removed, leases, err := a.loadInstalled(a.eng.Engine)
	if err != nil {
		return err
	}
	a.adopt(st, removed, leases)
	return nil
}

// Swap is Restore into a second engine: install fills fresh, which must be
// empty, while the current engine goes on serving reads (serializable
// reads, watches catching up, snapshots being streamed); once the install
// succeeded, fresh becomes the state machine, and new reads and writes go
// to it. Swap does not wait for the reads still open on the engine it
// replaced: retire is called with that engine once the last of them ends
// (at once if there is none; possibly from the goroutine that ends it),
// and the caller closes it there. If install fails, Swap returns the
// error, the applier is left exactly as it was, and the caller discards
// fresh.
//
// Applies wait for the whole of Swap, as for Restore: the snapshot is
// checked against the applied index under the write lock.
func (a *Applier) Swap(index uint64, fresh Engine, install func(Engine) error, retire func(Engine)) error {
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	if err := a.checkNewer(index); err != nil {
		return err
	}
	if err := install(fresh); err != nil {
		return fmt.Errorf("applier: restore: %w", err)
	}
	st, removed, leases, err := a.loadInstalled(fresh)
	if err != nil {
		return err
	}
	// The engine first, then the state: a read that sees the new applied
	// index opens its snapshot on the new engine. (A read that began
	// before sees the old state, consistently: its snapshot carries its
	// revisions.)
	a.engMu.Lock()
	old := a.eng
	a.eng = &engineRef{Engine: fresh}
	retireNow := old.reads == 0
	if !retireNow {
		old.retire = func() { retire(old.Engine) }
	}
	a.engMu.Unlock()
	if retireNow {
		retire(old.Engine)
	}
	a.adopt(st, removed, leases)
	return nil
}

// checkNewer refuses a snapshot at index unless it is newer than the
// applied state (and the applier open). REQUIRES: writeMu.
func (a *Applier) checkNewer(index uint64) error {
	if a.closed() {
		return ErrClosed
	}
	if index <= a.st.index {
		return fmt.Errorf("%w: snapshot at %d, applied %d", ErrStaleSnapshot, index, a.st.index)
	}
	return nil
}

// loadInstalled reads what an install left in e: the applied state, the
// removed members and the leases.
func (a *Applier) loadInstalled(e Engine) (st applyState, removed map[uint64]bool, leases []LeaseInfo, err error) {
	snap := e.NewSnapshot()
	defer snap.Close()
	st, found, err := loadState(snap)
	if err != nil {
		return st, nil, nil, fmt.Errorf("applier: restore: %w", err)
	}
	if !found {
		return st, nil, nil, fmt.Errorf("applier: restore: the installed state has no applied index")
	}
	if removed, err = loadRemoved(e); err != nil {
		return st, nil, nil, fmt.Errorf("applier: restore: %w", err)
	}
	// The auth store is replaced here, before adopt publishes the rest:
	// a failed install stops the member anyway.
	if err = a.loadAuth(snap); err != nil {
		return st, nil, nil, fmt.Errorf("applier: restore: %w", err)
	}
	if a.cfg.OnRestore != nil {
		if leases, err = leasesIn(snap); err != nil {
			return st, nil, nil, fmt.Errorf("applier: restore: leases: %w", err)
		}
	}
	return st, removed, leases, nil
}

// adopt makes an installed state the applier's, under the write lock: the
// lessor and the watch hub hear of it, then readers see it.
func (a *Applier) adopt(st applyState, removed map[uint64]bool, leases []LeaseInfo) {
	a.st = st
	if a.cfg.OnRestore != nil {
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
