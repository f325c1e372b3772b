package writernode

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.uber.org/zap"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/failpoint"
)

// PebbleOptions configures OpenPebble. The zero value is a production
// configuration on the OS file system.
type PebbleOptions struct {
	// FS is the file system; nil means the OS's. Tests pass vfs.NewMem()
	// (or vfs.NewCrashableMem() to simulate crashes).
	FS vfs.FS
	// CacheSize is the block cache size in bytes; 0 means 64 MiB.
	CacheSize int64
	// MemTableSize is the size of one memtable in bytes; 0 means 64 MiB.
	MemTableSize uint64
	// DisableWAL turns Pebble's own write-ahead log off. The raft WAL is
	// the source of durability, so the engine's WAL only shortens the
	// replay after a crash; without it Sync flushes the memtables instead.
	DisableWAL bool
	// Logger receives Pebble's log lines; nil discards them.
	Logger *zap.Logger
}

// PebbleEngine is applier.Engine on Pebble. Batches are indexed (reads see
// the batch's own writes) and commit without fsync; Sync makes everything
// committed durable.
type PebbleEngine struct {
	db         *pebble.DB
	disableWAL bool
}

var _ applier.Engine = (*PebbleEngine)(nil)

// OpenPebble opens (creating if needed) a Pebble engine in dir.
func OpenPebble(dir string, opts PebbleOptions) (*PebbleEngine, error) {
	cacheSize := opts.CacheSize
	if cacheSize == 0 {
		cacheSize = 64 << 20
	}
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		FS:                 opts.FS,
		Cache:              cache,
		FormatMajorVersion: pebble.FormatNewest,
		DisableWAL:         opts.DisableWAL,
		MemTableSize:       opts.MemTableSize,
		Logger:             pebbleLogger{opts.Logger},
	}
	if po.MemTableSize == 0 {
		po.MemTableSize = 64 << 20
	}
	// Apply looks up every key it writes (for its create revision and
	// version), and most puts of new keys miss: bloom filters answer
	// those without reading data blocks.
	for i := range po.Levels {
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	if opts.Logger == nil {
		po.Logger = pebbleLogger{zap.NewNop()}
	}
	if po.FS == nil {
		po.FS = vfs.Default
	}
	po.FS = failpoint.WrapFS(po.FS)
	db, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("writernode: open pebble %s: %w", dir, err)
	}
	return &PebbleEngine{db: db, disableWAL: opts.DisableWAL}, nil
}

// NewBatch implements applier.Engine.
func (e *PebbleEngine) NewBatch() applier.Batch {
	return &pebbleBatch{b: e.db.NewIndexedBatch()}
}

// NewSnapshot implements applier.Engine.
func (e *PebbleEngine) NewSnapshot() applier.Snapshot {
	return &pebbleSnapshot{s: e.db.NewSnapshot()}
}

// Sync implements applier.Engine: with Pebble's WAL, a synced empty log
// record makes every earlier commit durable (the WAL is written in commit
// order); without it, the memtables are flushed.
func (e *PebbleEngine) Sync() error {
	if e.disableWAL {
		return e.db.Flush()
	}
	return e.db.LogData(nil, pebble.Sync)
}

// Stats implements applier.Engine.
func (e *PebbleEngine) Stats() applier.EngineStats {
	m := e.db.Metrics()
	// What is in use on disk: live tables and blob files, and the WAL that
	// holds the memtables' contents. (The memtable's arena size would
	// overstate it: an arena is allocated whole.) Every term is also
	// counted in DiskSpaceUsage, so in-use never exceeds the size, as
	// clients computing "percentage not in use" expect.
	live := m.Table.Local.LiveSize + m.BlobFiles.Local.LiveSize + max(m.WAL.Size, m.WAL.PhysicalSize)
	size := m.DiskSpaceUsage()
	return applier.EngineStats{SizeBytes: int64(size), LiveBytes: int64(min(live, size))}
}

// CompactAll implements applier.Compacter: a manual compaction of the
// whole key space (every key the applier writes is below 0xFF), which
// rewrites the tables without the versions and tombstones a compaction of
// the history made obsolete. Pebble stays readable and writable meanwhile.
func (e *PebbleEngine) CompactAll(ctx context.Context) error {
	if err := e.db.Flush(); err != nil {
		return err
	}
	return e.db.Compact(ctx, []byte{0}, []byte{0xff}, true)
}

// Close implements applier.Engine. Without Pebble's WAL the memtables are
// flushed first, so that a clean restart replays nothing.
func (e *PebbleEngine) Close() error {
	var err error
	if e.disableWAL {
		err = e.db.Flush()
	}
	if cerr := e.db.Close(); err == nil {
		err = cerr
	}
	return err
}

// DB returns the underlying Pebble database (for snapshots and tooling).
func (e *PebbleEngine) DB() *pebble.DB { return e.db }

// pebbleReader is what a Pebble batch and snapshot share.
type pebbleReader interface {
	Get(key []byte) ([]byte, io.Closer, error)
	NewIter(o *pebble.IterOptions) (*pebble.Iterator, error)
}

func get(r pebbleReader, key []byte) ([]byte, error) {
	v, closer, err := r.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, applier.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), v...)
	return out, closer.Close()
}

func newIter(r pebbleReader, lower, upper []byte) (applier.Iterator, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	return pebbleIter{it}, nil
}

type pebbleBatch struct{ b *pebble.Batch }

func (b *pebbleBatch) Get(key []byte) ([]byte, error) { return get(b.b, key) }
func (b *pebbleBatch) NewIter(lower, upper []byte) (applier.Iterator, error) {
	return newIter(b.b, lower, upper)
}
func (b *pebbleBatch) Set(key, value []byte) error { return b.b.Set(key, value, nil) }
func (b *pebbleBatch) Delete(key []byte) error     { return b.b.Delete(key, nil) }
func (b *pebbleBatch) Commit() error               { return b.b.Commit(pebble.NoSync) }

// Close implements applier.Batch. Pebble forbids closing a batch twice.
func (b *pebbleBatch) Close() error {
	if b.b == nil {
		return nil
	}
	err := b.b.Close()
	b.b = nil
	return err
}

type pebbleSnapshot struct{ s *pebble.Snapshot }

func (s *pebbleSnapshot) Get(key []byte) ([]byte, error) { return get(s.s, key) }
func (s *pebbleSnapshot) NewIter(lower, upper []byte) (applier.Iterator, error) {
	return newIter(s.s, lower, upper)
}
func (s *pebbleSnapshot) Close() error { return s.s.Close() }

// pebbleIter adapts *pebble.Iterator; its methods already match except
// for Value, which Pebble may have to fetch (and fail to).
type pebbleIter struct{ *pebble.Iterator }

var _ applier.Iterator = pebbleIter{}

// Value implements applier.Iterator. A value that cannot be read surfaces
// through Error.
func (it pebbleIter) Value() []byte {
	v, err := it.ValueAndErr()
	if err != nil {
		return nil
	}
	return v
}

// pebbleLogger sends Pebble's log lines to zap.
type pebbleLogger struct{ lg *zap.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.lg.Sugar().Infof(format, args...)
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.lg.Sugar().Errorf(format, args...)
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	l.lg.Sugar().Fatalf(format, args...)
}
