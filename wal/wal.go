package wal

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/failpoint"
)

// DefaultSegmentSize is the segment size used when Options.SegmentSize is 0.
const DefaultSegmentSize = 64 << 20

// Options configures a WAL.
type Options struct {
	// SegmentSize is the size in bytes to which every segment file is
	// preallocated; a new segment is started when the next record does not
	// fit. A record larger than a whole segment gets a segment of its own,
	// sized to fit. 0 means DefaultSegmentSize.
	SegmentSize int64
	// NoSync skips every fsync (tests, --unsafe-no-fsync). The WAL then
	// survives a crash of the process but not of the machine.
	NoSync bool
	// Logger receives the WAL's logs; nil means zap.NewNop().
	Logger *zap.Logger
	// EventListener receives events for metrics; its fields may be nil.
	EventListener EventListener
	// Now is the clock that times fsyncs for EventListener.SyncEnd; nil
	// means time.Now. The WAL's behaviour never depends on it.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.SegmentSize <= 0 {
		o.SegmentSize = DefaultSegmentSize
	}
	o.SegmentSize = (o.SegmentSize + recordAlign - 1) &^ (recordAlign - 1)
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// EventListener is called on WAL events, for metrics. Callbacks run on the
// goroutine that caused the event and must not call back into the WAL.
type EventListener struct {
	// SyncEnd is called after every fsync of a segment's data (by a
	// group-commit leader, a segment rollover, or Close): etcd's
	// wal_fsync_duration_seconds.
	SyncEnd func(SyncInfo)
}

// SyncInfo describes one fsync.
type SyncInfo struct {
	Duration time.Duration
	Err      error
}

// SnapshotMarker records that the state machine holds everything up to
// Index: entries at or below it are no longer needed from the WAL.
type SnapshotMarker struct {
	Index, Term uint64
	ConfState   *raftpb.ConfState
}

// Position is a point in the stream of records appended since Open, as
// returned by Append. The zero Position is always durable.
type Position struct{ lsn uint64 }

// WAL is the durable raft log of one member. Its methods are safe for
// concurrent use; Append, Save and SaveSnapshot are applied in the order in
// which they take the WAL's mutex.
//
// Lock order: releaseMu, then mu, then syncer.
type WAL struct {
	dir  string
	opts Options
	lg   *zap.Logger
	// dirFile is dir, open for the WAL's lifetime: it holds the directory
	// lock and is what directory fsyncs go through.
	dirFile *os.File

	// releaseMu serializes ReleaseTo (and Close against it), so segments
	// are always deleted oldest first and a crash leaves a suffix.
	releaseMu sync.Mutex

	// mu serializes appends and rollovers. Writes happen under it; fsyncs
	// of the active segment do not.
	mu struct {
		sync.Mutex
		closed bool
		// err is the first write or fsync failure. After one the WAL's
		// on-disk state is unknown (a failed fsync may have dropped dirty
		// pages), so every later write fails with it; reopening repairs.
		err error
		// recovered is what Open read, handed to the first ReadAll.
		recovered *recovered
		// segs are the live segments, oldest first. Invariant: the last is
		// the active one and len(segs) >= 1 until Close.
		segs   []segmentInfo
		active *segmentFile
		// written is the offset at which the active segment's data ends.
		// Invariant: written <= active.size.
		written int64
		// lsn counts the record bytes appended since Open; it is what
		// Positions measure.
		lsn uint64
		// lastIndex is the index the log ends at (see replay.lastIndex).
		lastIndex uint64
		// hardState and marker are the encoded latest HardState and
		// SnapshotMarker (nil if none yet), re-recorded in every new
		// segment's header so a suffix of segments is self-contained.
		hardState, marker []byte
		snapIndex         uint64
	}

	// syncer is the group commit. At most one goroutine (the leader) runs
	// an fsync at a time; it covers every byte appended before it began,
	// and everyone waiting on a Position at or below that is released.
	syncer struct {
		sync.Mutex
		cond    sync.Cond
		syncing bool
		// durable is the lsn below which every record is durable.
		durable uint64
		err     error
	}
}

// recovered is the state ReadAll reports.
type recovered struct {
	hs   *raftpb.HardState
	snap SnapshotMarker
	ents []*raftpb.Entry
}

// Open opens the WAL in dir, creating dir and an empty WAL if there is none.
//
// Open reads every segment. A torn tail of the last segment (a partially
// written record, or damaged bytes after the last intact record that no
// later record vouches for) is truncated, with a warning; damage anywhere
// else fails with an error that wraps ErrCorrupt and names the file and
// offset. Only one WAL may have dir open at a time (ErrLocked).
func Open(dir string, opts Options) (_ *WAL, err error) {
	opts = opts.withDefaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	if err := lockDir(d); err != nil {
		d.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("wal: lock %s: %w", dir, err)
	}
	w := &WAL{dir: dir, opts: opts, lg: opts.Logger, dirFile: d}
	w.syncer.cond.L = &w.syncer.Mutex
	defer func() {
		if err != nil {
			if w.mu.active != nil {
				w.mu.active.unref()
			}
			d.Close()
		}
	}()
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		err = w.initEmpty()
	} else {
		err = w.recover(segs)
	}
	if err != nil {
		return nil, err
	}
	return w, nil
}

// initEmpty creates the first segment of a new WAL.
func (w *WAL) initEmpty() error {
	h := segmentHeader{seq: 0, firstIndex: 1}
	seg, end, err := createSegment(w.dir, &h, w.opts.SegmentSize, w.opts.NoSync)
	if err != nil {
		return fmt.Errorf("wal: create first segment: %w", err)
	}
	w.mu.active, w.mu.written = seg, end
	if !w.opts.NoSync {
		if err := syncDir(w.dirFile); err != nil {
			return err
		}
	}
	w.mu.segs = []segmentInfo{{seq: 0, firstIndex: 1}}
	w.mu.recovered = &recovered{}
	w.lg.Info("created WAL", zap.String("dir", w.dir), zap.Int64("segment-size", w.opts.SegmentSize))
	return nil
}

// Inspect reads the WAL in dir without changing anything (no lock, no
// repair of a torn tail): the hard state, the latest marker, and every
// entry the segments still hold, those at or below the marker included,
// with raft's overwrite rule applied. Indexes increase but may skip the
// range a snapshot received from the leader covered. It is for tools
// (strata dump-logs) reading a member's log.
func Inspect(dir string) (hs *raftpb.HardState, snap SnapshotMarker, ents []*raftpb.Entry, err error) {
	segs, err := listSegments(dir)
	if err != nil {
		return nil, SnapshotMarker{}, nil, err
	}
	if len(segs) == 0 {
		return nil, SnapshotMarker{}, nil, fmt.Errorf("wal: no segments in %s", dir)
	}
	r := &replay{keepReleased: true}
	if _, err := scanSegments(dir, segs, r, zap.NewNop()); err != nil {
		return nil, SnapshotMarker{}, nil, err
	}
	return r.result()
}

// scannedTail is what scanSegments reports of the last segment.
type scannedTail struct {
	path string
	size int64
	scan segmentScan
}

// scanSegments reads segs into r, checking that they form one undamaged
// history but for a torn tail of the last one.
func scanSegments(dir string, segs []segmentInfo, r *replay, lg *zap.Logger) (scannedTail, error) {
	var (
		buf      []byte
		prevPath string
		prevEnd  int64
		lastScan segmentScan
		lastSize int64
	)
	for i := range segs {
		si := &segs[i]
		path := filepath.Join(dir, si.name())
		if i > 0 && si.seq != segs[i-1].seq+1 {
			return scannedTail{}, corruptf(path, 0, "segment %d is missing", segs[i-1].seq+1)
		}
		last := i == len(segs)-1
		var err error
		if buf, err = readFileInto(buf, path); err != nil {
			return scannedTail{}, err
		}
		checkHeader := func(h *segmentHeader) error {
			if h.seq != si.seq || h.firstIndex != si.firstIndex {
				return corruptf(path, 0, "header names segment %d with first index %d", h.seq, h.firstIndex)
			}
			if i > 0 && h.prevEnd != prevEnd {
				return corruptf(prevPath, min(prevEnd, h.prevEnd),
					"data ends at offset %d but %s records that it ends at %d", prevEnd, filepath.Base(path), h.prevEnd)
			}
			return nil
		}
		scan, err := readSegment(buf, r, checkHeader)
		if c := (*corruption)(nil); errors.As(err, &c) {
			return scannedTail{}, corruptf(path, c.off, "%s", c.msg)
		} else if err != nil {
			return scannedTail{}, err
		}
		switch scan.tail {
		case tailCorrupt:
			return scannedTail{}, corruptf(path, scan.end, "damaged record followed by a record (at offset %d) written after it was durable", scan.witness)
		case tailTorn:
			if !last {
				// Junk after the recorded end of a segment that was
				// fsynced whole before its successor existed: the data
				// itself is intact (the next header vouches for its end).
				lg.Warn("ignoring damaged bytes after the end of a WAL segment",
					zap.String("file", path), zap.Int64("offset", scan.end))
			}
		}
		si.maxIndex = scan.maxIndex
		prevPath, prevEnd = path, scan.end
		lastScan, lastSize = scan, int64(len(buf))
	}
	return scannedTail{path: prevPath, size: lastSize, scan: lastScan}, nil
}

// recover reads segs, checks that they form one undamaged history, repairs
// a torn tail of the last one and makes it the active segment.
func (w *WAL) recover(segs []segmentInfo) error {
	r := &replay{}
	ls, err := scanSegments(w.dir, segs, r, w.lg)
	if err != nil {
		return err
	}
	hs, snap, ents, err := r.result()
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, w.dir, err)
	}
	// Only now, with everything checked, may the last segment be repaired.
	if err := w.openActive(ls.path, ls.size, ls.scan); err != nil {
		return err
	}
	w.mu.recovered = &recovered{hs: hs, snap: snap, ents: ents}
	w.mu.segs = segs
	w.mu.lastIndex = r.lastIndex()
	w.mu.snapIndex = snap.Index
	if hs != nil {
		if w.mu.hardState, err = proto.Marshal(hs); err != nil {
			return err
		}
	}
	if snap.Index > 0 || snap.ConfState != nil {
		if w.mu.marker, err = encodeMarker(nil, snap); err != nil {
			return err
		}
	}
	w.lg.Info("opened WAL",
		zap.String("dir", w.dir),
		zap.Int("segments", len(segs)),
		zap.Uint64("snapshot-index", snap.Index),
		zap.Int("entries", len(ents)),
		zap.Uint64("last-index", w.mu.lastIndex))
	return nil
}

// openActive makes the last segment, at path, the active one: it truncates a torn
// tail, restores the preallocation and fsyncs, so that the records it holds
// (perhaps written but never fsynced by the previous process) are durable
// before anything is stamped as written after them.
func (w *WAL) openActive(path string, size int64, scan segmentScan) (err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	capacity := max(size, w.opts.SegmentSize)
	if scan.tail == tailTorn {
		w.lg.Warn("truncating torn WAL tail",
			zap.String("file", path),
			zap.Int64("offset", scan.end),
			zap.Int64("discarded-bytes", size-scan.end))
		if err := f.Truncate(scan.end); err != nil {
			return fmt.Errorf("wal: repair %s: %w", path, err)
		}
	}
	if scan.tail == tailTorn || size < capacity {
		if err := preallocate(f, capacity); err != nil {
			return fmt.Errorf("wal: preallocate %s: %w", path, err)
		}
	}
	if !w.opts.NoSync {
		failpoint.WillSync(path, scan.end, failpoint.Zero)
		if err := fdatasync(f); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", path, err)
		}
	}
	seg := newSegmentFile(f, capacity)
	seg.path = path
	seg.synced.Store(scan.end)
	w.mu.active, w.mu.written = seg, scan.end
	return nil
}

// ReadAll returns the state recorded in the WAL as of Open: the last
// HardState (nil if none was ever saved), the latest SnapshotMarker (zero if
// none), and the entries after the marker's index in index order, with
// raft's overwrite rule applied. The entries are contiguous and, when there
// is a marker, start at its Index+1.
//
// The recovered log is handed to the caller, not kept: a second call
// returns ErrReadAllDone. ReadAll need not be called before appending.
func (w *WAL) ReadAll() (hs *raftpb.HardState, snap SnapshotMarker, ents []*raftpb.Entry, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.closed {
		return nil, SnapshotMarker{}, nil, ErrClosed
	}
	r := w.mu.recovered
	if r == nil {
		return nil, SnapshotMarker{}, nil, ErrReadAllDone
	}
	w.mu.recovered = nil
	return r.hs, r.snap, r.ents, nil
}

// Save appends ents and, unless it is empty, hs, and makes them, and
// everything appended before them, durable before returning. Save(nil, nil)
// is a barrier: everything appended so far is durable when it returns.
// Concurrent callers share fsyncs.
//
// ents must be consecutive, and the first must be at most one past the
// log's last index (ErrOutOfOrder); an entry at or below the last index
// replaces it and everything after it, as in raft. After an error the WAL
// may hold any prefix of what Save was given.
func (w *WAL) Save(hs *raftpb.HardState, ents []*raftpb.Entry) error {
	p, err := w.Append(hs, ents)
	if err != nil {
		return err
	}
	return w.WaitDurable(p)
}

// Append is Save without the wait: it writes ents and hs (if not empty) to
// the file and returns the Position that WaitDurable must reach before they
// can be reported durable. Appends are ordered; the durability waits of
// successive Appends may overlap, which lets a caller pipeline its writes
// (raft's AsyncStorageWrites) while one fsync covers many of them.
func (w *WAL) Append(hs *raftpb.HardState, ents []*raftpb.Entry) (Position, error) {
	for i, e := range ents {
		if e.GetIndex() == 0 {
			return Position{}, fmt.Errorf("%w: entry %d of %d has index 0", ErrOutOfOrder, i, len(ents))
		}
		if i > 0 && e.GetIndex() != ents[i-1].GetIndex()+1 {
			return Position{}, fmt.Errorf("%w: entry %d follows entry %d", ErrOutOfOrder, e.GetIndex(), ents[i-1].GetIndex())
		}
	}
	b := getBatch()
	defer b.release()
	for _, e := range ents {
		if err := b.addMessage(recordTypeEntry, e, e.GetIndex()); err != nil {
			return Position{}, err
		}
	}
	if !isEmptyHardState(hs) {
		if err := b.addMessage(recordTypeHardState, hs, 0); err != nil {
			return Position{}, err
		}
	}
	if len(b.recs) == 0 {
		// Nothing to write: the position is the end of what earlier
		// Appends wrote, so that Save(nil, nil) makes all of it durable.
		// (The pipeline relies on this: the last of a batch of raft's
		// appends may carry only responses, which must not be released
		// before the entries appended before them are on disk.)
		w.mu.Lock()
		defer w.mu.Unlock()
		if err := w.writableLocked(); err != nil {
			return Position{}, err
		}
		return Position{w.mu.lsn}, nil
	}
	return w.write(b)
}

// WaitDurable blocks until every record up to p is durable. If no fsync is
// in progress the caller runs one, covering everything appended so far;
// otherwise it waits for the running one and, if that did not reach p,
// the next.
func (w *WAL) WaitDurable(p Position) error {
	if w.opts.NoSync {
		return nil
	}
	s := &w.syncer
	s.Lock()
	defer s.Unlock()
	for s.durable < p.lsn {
		if s.err != nil {
			return s.err
		}
		if s.syncing {
			s.cond.Wait()
			continue
		}
		s.syncing = true
		s.Unlock()
		target, err := w.syncActive()
		s.Lock()
		s.syncing = false
		if err == nil {
			s.durable = max(s.durable, target)
		} else if s.err == nil {
			s.err = err
		}
		s.cond.Broadcast()
	}
	return nil
}

// syncActive fsyncs the active segment and returns the lsn it made durable.
// Segments before the active one were fsynced whole at rollover.
func (w *WAL) syncActive() (uint64, error) {
	w.mu.Lock()
	if w.mu.closed {
		w.mu.Unlock()
		return 0, ErrClosed
	}
	if err := w.mu.err; err != nil {
		w.mu.Unlock()
		return 0, err
	}
	seg, off, target := w.mu.active, w.mu.written, w.mu.lsn
	seg.ref()
	w.mu.Unlock()

	err := w.fsync(seg, off)
	if err == nil {
		seg.advanceSynced(off)
	}
	seg.unref()
	if err != nil {
		w.mu.Lock()
		err = w.failLocked(fmt.Errorf("wal: fsync %s: %w", seg.path, err))
		w.mu.Unlock()
		return 0, err
	}
	return target, nil
}

// SaveSnapshot durably records m. m.Index must not be below the latest
// marker's (ErrSnapshotBehind). Recording a marker deletes nothing; see
// ReleaseTo.
func (w *WAL) SaveSnapshot(m SnapshotMarker) error {
	b := getBatch()
	defer b.release()
	if err := b.addMarker(m); err != nil {
		return err
	}
	p, err := w.write(b)
	if err != nil {
		return err
	}
	return w.WaitDurable(p)
}

// ReleaseTo deletes the oldest segments all of whose entries are at or
// below index, and at or below the latest SnapshotMarker's index: the WAL
// never gives up an entry that the latest durable marker does not cover, so
// ReadAll after a reopen still returns a contiguous log from marker.Index+1.
// The active segment is never deleted. Segments are deleted oldest first,
// each deletion made durable before the next, so a crash leaves a suffix of
// the segments, which is self-contained: every segment's header re-records
// the HardState and marker current when it was created.
//
// The caller must have made the state machine durable through index.
func (w *WAL) ReleaseTo(index uint64) error {
	w.releaseMu.Lock()
	defer w.releaseMu.Unlock()
	w.mu.Lock()
	if err := w.writableLocked(); err != nil {
		w.mu.Unlock()
		return err
	}
	index = min(index, w.mu.snapIndex)
	n := 0
	for n < len(w.mu.segs)-1 && w.mu.segs[n].maxIndex <= index {
		n++
	}
	doomed := slices.Clone(w.mu.segs[:n])
	w.mu.segs = slices.Clone(w.mu.segs[n:])
	w.mu.Unlock()

	for i, s := range doomed {
		path := filepath.Join(w.dir, s.name())
		err := os.Remove(path)
		if err == nil && !w.opts.NoSync {
			err = syncDir(w.dirFile)
		}
		if err != nil {
			// Keep tracking what is left, oldest first, so a later
			// ReleaseTo retries it.
			w.mu.Lock()
			w.mu.segs = append(slices.Clone(doomed[i:]), w.mu.segs...)
			w.mu.Unlock()
			return fmt.Errorf("wal: release %s: %w", path, err)
		}
		w.lg.Info("released WAL segment", zap.String("file", path), zap.Uint64("max-index", s.maxIndex))
	}
	return nil
}

// Close makes everything appended durable, records a checkpoint vouching
// for it, and closes the WAL. Calls after the first return nil. If the WAL
// failed earlier, Close returns that failure.
func (w *WAL) Close() error {
	w.releaseMu.Lock()
	defer w.releaseMu.Unlock()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.closed {
		return nil
	}
	w.mu.closed = true
	w.mu.recovered = nil
	err := w.mu.err
	if err == nil {
		err = w.checkpointLocked()
	}
	s := &w.syncer
	s.Lock()
	if err == nil {
		s.durable = w.mu.lsn
	} else if s.err == nil {
		s.err = err
	}
	s.cond.Broadcast()
	s.Unlock()
	if cerr := w.mu.active.unref(); err == nil {
		err = cerr
	}
	if cerr := w.dirFile.Close(); err == nil {
		err = cerr
	}
	return err
}

// checkpointLocked fsyncs the active segment, then appends a checkpoint
// record stamped with the now-durable end and fsyncs again. The order
// matters: a checkpoint that reached the disk before the data it vouches
// for would make a torn tail look like corruption.
//
// REQUIRES: w.mu held.
func (w *WAL) checkpointLocked() error {
	seg := w.mu.active
	if !w.opts.NoSync {
		if err := w.fsync(seg, w.mu.written); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", seg.path, err)
		}
	}
	seg.advanceSynced(w.mu.written)
	rec := appendRecord(nil, recordTypeCheckpoint, nil, w.mu.written)
	if w.mu.written+int64(len(rec)) > seg.size {
		return nil
	}
	if _, err := seg.f.WriteAt(rec, w.mu.written); err != nil {
		return fmt.Errorf("wal: write %s: %w", seg.path, err)
	}
	w.mu.written += int64(len(rec))
	if !w.opts.NoSync {
		if err := w.fsync(seg, w.mu.written); err != nil {
			return fmt.Errorf("wal: fsync %s: %w", seg.path, err)
		}
	}
	return nil
}

// write appends b's records in order, starting new segments as needed, and
// returns the Position after the last.
func (w *WAL) write(b *batch) (Position, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.writableLocked(); err != nil {
		return Position{}, err
	}
	if err := w.validateLocked(b); err != nil {
		return Position{}, err
	}
	seg := w.mu.active
	pending := 0 // b.buf[pending:] is not yet written
	for _, r := range b.recs {
		if w.mu.written+int64(r.end()-pending) > seg.size {
			if err := w.flushLocked(b.buf[pending:r.start]); err != nil {
				return Position{}, err
			}
			pending = r.start
			if err := w.rolloverLocked(int64(r.size)); err != nil {
				return Position{}, err
			}
			seg = w.mu.active
		}
		stampRecord(b.buf[r.start:], seg.synced.Load())
		w.noteLocked(r, b.payload(r))
	}
	if err := w.flushLocked(b.buf[pending:]); err != nil {
		return Position{}, err
	}
	return Position{w.mu.lsn}, nil
}

// validateLocked checks b against the log's state, before anything of it is
// written.
//
// REQUIRES: w.mu held.
func (w *WAL) validateLocked(b *batch) error {
	for _, r := range b.recs {
		switch r.typ {
		case recordTypeEntry:
			if w.mu.lastIndex > 0 && r.index > w.mu.lastIndex+1 {
				return fmt.Errorf("%w: entry %d leaves a gap after last index %d", ErrOutOfOrder, r.index, w.mu.lastIndex)
			}
			return nil // the rest are consecutive (checked by Append)
		case recordTypeSnapshot:
			if r.index < w.mu.snapIndex {
				return fmt.Errorf("%w: marker at %d, latest at %d", ErrSnapshotBehind, r.index, w.mu.snapIndex)
			}
		}
	}
	return nil
}

// noteLocked updates what the WAL knows of the log for a record about to be
// written to the active segment.
//
// REQUIRES: w.mu held.
func (w *WAL) noteLocked(r batchRecord, payload []byte) {
	switch r.typ {
	case recordTypeEntry:
		w.mu.lastIndex = r.index
		s := &w.mu.segs[len(w.mu.segs)-1]
		s.maxIndex = max(s.maxIndex, r.index)
	case recordTypeHardState:
		w.mu.hardState = append(w.mu.hardState[:0], payload...)
	case recordTypeSnapshot:
		w.mu.marker = append(w.mu.marker[:0], payload...)
		w.mu.snapIndex = r.index
		w.mu.lastIndex = max(w.mu.lastIndex, r.index)
	}
}

// flushLocked writes p at the end of the active segment's data.
//
// REQUIRES: w.mu held.
func (w *WAL) flushLocked(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	seg := w.mu.active
	if _, err := seg.f.WriteAt(p, w.mu.written); err != nil {
		return w.failLocked(fmt.Errorf("wal: write %s: %w", seg.path, err))
	}
	w.mu.written += int64(len(p))
	w.mu.lsn += uint64(len(p))
	if w.opts.NoSync {
		seg.advanceSynced(w.mu.written)
	}
	return nil
}

// rolloverLocked fsyncs the active segment and replaces it with a new one
// with room for at least need bytes of records. Fsyncing the old segment
// first is what lets Open treat any damage in a segment that is not the
// last as corruption.
//
// REQUIRES: w.mu held.
func (w *WAL) rolloverLocked(need int64) error {
	old := w.mu.active
	if !w.opts.NoSync {
		if err := w.fsync(old, w.mu.written); err != nil {
			return w.failLocked(fmt.Errorf("wal: fsync %s: %w", old.path, err))
		}
	}
	old.advanceSynced(w.mu.written)
	w.markDurable(w.mu.lsn)

	prev := w.mu.segs[len(w.mu.segs)-1]
	h := segmentHeader{
		seq:        prev.seq + 1,
		firstIndex: w.mu.lastIndex + 1,
		prevEnd:    w.mu.written,
		hardState:  w.mu.hardState,
		marker:     w.mu.marker,
	}
	hdrSize := int64(paddedSize(segmentHeaderFixed + 8 + len(h.hardState) + len(h.marker)))
	seg, end, err := createSegment(w.dir, &h, max(w.opts.SegmentSize, hdrSize+need), w.opts.NoSync)
	if err != nil {
		return w.failLocked(fmt.Errorf("wal: create segment %s: %w", segmentName(h.seq, h.firstIndex), err))
	}
	if !w.opts.NoSync {
		if err := syncDir(w.dirFile); err != nil {
			seg.unref()
			return w.failLocked(fmt.Errorf("wal: fsync %s: %w", w.dir, err))
		}
	}
	old.unref()
	w.mu.active, w.mu.written = seg, end
	w.mu.segs = append(w.mu.segs, segmentInfo{seq: h.seq, firstIndex: h.firstIndex})
	w.lg.Info("created WAL segment", zap.String("file", seg.path), zap.Int64("size", seg.size))
	return nil
}

// readFileInto reads the file at path into buf, reusing its capacity.
func readFileInto(buf []byte, path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return buf, err
	}
	size := int(fi.Size())
	buf = slices.Grow(buf[:0], size)[:size]
	if n, err := f.ReadAt(buf, 0); n < size {
		return buf, fmt.Errorf("wal: read %s: %w", path, err)
	}
	return buf, nil
}

// markDurable records that every record up to lsn is durable.
func (w *WAL) markDurable(lsn uint64) {
	s := &w.syncer
	s.Lock()
	if lsn > s.durable {
		s.durable = lsn
		s.cond.Broadcast()
	}
	s.Unlock()
}

// failLocked makes err the WAL's sticky failure (unless it already has one)
// and fails everyone waiting for durability. It returns the sticky failure.
//
// REQUIRES: w.mu held.
func (w *WAL) failLocked(err error) error {
	if w.mu.err == nil {
		w.mu.err = err
		w.lg.Error("WAL failed; refusing further writes", zap.Error(err))
		s := &w.syncer
		s.Lock()
		if s.err == nil {
			s.err = err
		}
		s.cond.Broadcast()
		s.Unlock()
	}
	return w.mu.err
}

// writableLocked returns why the WAL cannot be written, if it cannot.
//
// REQUIRES: w.mu held.
func (w *WAL) writableLocked() error {
	if w.mu.closed {
		return ErrClosed
	}
	return w.mu.err
}

// fsync flushes seg and reports it to the EventListener.
func (w *WAL) fsync(seg *segmentFile, off int64) error {
	failpoint.WillSync(seg.path, off, failpoint.Zero)
	if w.opts.EventListener.SyncEnd == nil {
		return fdatasync(seg.f)
	}
	start := w.opts.Now()
	err := fdatasync(seg.f)
	w.opts.EventListener.SyncEnd(SyncInfo{Duration: w.opts.Now().Sub(start), Err: err})
	return err
}

func isEmptyHardState(hs *raftpb.HardState) bool {
	return hs.GetTerm() == 0 && hs.GetVote() == 0 && hs.GetCommit() == 0
}

// batch is the records of one Append or SaveSnapshot, encoded outside the
// WAL's mutex; only stamping and writing happen under it.
type batch struct {
	buf  []byte
	recs []batchRecord
}

type batchRecord struct {
	start, size int // in batch.buf, padding included
	payloadLen  int
	typ         recordType
	index       uint64 // entry index or marker index
}

func (r batchRecord) end() int { return r.start + r.size }

func (b *batch) payload(r batchRecord) []byte {
	p := r.start + recordHeaderSize
	return b.buf[p : p+r.payloadLen]
}

var batchPool = sync.Pool{New: func() any { return new(batch) }}

// maxPooledBatch bounds the buffer a pooled batch keeps, so one huge Save
// does not pin its buffer forever.
const maxPooledBatch = 1 << 20

func getBatch() *batch { return batchPool.Get().(*batch) }

func (b *batch) release() {
	if cap(b.buf) > maxPooledBatch {
		b.buf = nil
	}
	b.buf, b.recs = b.buf[:0], b.recs[:0]
	batchPool.Put(b)
}

func (b *batch) addMessage(typ recordType, m proto.Message, index uint64) error {
	buf, start := beginRecord(b.buf)
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return fmt.Errorf("wal: encode %v: %w", typ, err)
	}
	return b.finish(buf, start, typ, index)
}

func (b *batch) addMarker(m SnapshotMarker) error {
	buf, start := beginRecord(b.buf)
	buf, err := encodeMarker(buf, m)
	if err != nil {
		return fmt.Errorf("wal: encode snapshot marker: %w", err)
	}
	return b.finish(buf, start, recordTypeSnapshot, m.Index)
}

func (b *batch) finish(buf []byte, start int, typ recordType, index uint64) error {
	n := len(buf) - start - recordHeaderSize
	if n > maxPayload {
		b.buf = buf[:start]
		return fmt.Errorf("wal: %v of %d bytes exceeds the record limit of %d", typ, n, maxPayload)
	}
	buf = endRecord(buf, start, typ)
	b.buf = buf
	b.recs = append(b.recs, batchRecord{start: start, size: len(buf) - start, payloadLen: n, typ: typ, index: index})
	return nil
}

var _ io.Closer = (*WAL)(nil)
