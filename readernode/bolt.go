package readernode

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/stratakv/strata/applier"
)

// BoltOptions configures OpenBolt. The zero value is a reader's production
// configuration.
type BoltOptions struct {
	// InitialMmapSize is the initial size of the memory map, so that a
	// growing file rarely remaps (a remap waits for every read
	// transaction); 0: 1 GiB.
	InitialMmapSize int
	// Timeout bounds the wait for the file lock another process holds; 0:
	// 10 s.
	Timeout time.Duration
}

// BoltEngine is applier.Engine on bbolt: a reader's state machine. All keys
// live in one bucket, in the applier's order. A batch is a writable bbolt
// transaction (so it reads its own writes); a snapshot is a read-only one.
//
// Commits do not fsync (bbolt's NoSync): as on writers, durability comes
// from the replication stream, and the engine need only hold some applied
// prefix of the log. A process crash loses nothing the OS holds; after a
// power loss the file may be unusable, which Check detects on open and the
// reader answers by installing a fresh snapshot. Sync fsyncs the file.
type BoltEngine struct {
	db *bolt.DB
}

var _ applier.Engine = (*BoltEngine)(nil)

// bucketName is the one bucket the applier's keys live in.
var bucketName = []byte("strata")

// OpenBolt opens (creating if needed) a bbolt engine in the file path.
func OpenBolt(path string, opts BoltOptions) (*BoltEngine, error) {
	if opts.InitialMmapSize == 0 {
		opts.InitialMmapSize = 1 << 30
	}
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:      opts.Timeout,
		NoSync:       true,
		FreelistType: bolt.FreelistMapType,
		// The freelist is written with each commit rather than rebuilt
		// by scanning every page on open: bbolt's scan panics in its own
		// goroutines on a corrupt page, which no caller could survive.
		InitialMmapSize: opts.InitialMmapSize,
	})
	if err != nil {
		return nil, fmt.Errorf("open bbolt %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketName)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open bbolt %s: %w", path, err)
	}
	return &BoltEngine{db: db}, nil
}

// Check walks every key of the file in order, which visits every page
// of the bucket's tree, and reports corruption (a page bbolt's assertions
// reject, a fault in the memory map, keys out of order, or a missing
// bucket) as ErrCorruptEngine. bbolt's own Tx.Check is not used: it
// panics in goroutines of its own on some corruptions, which would kill
// the process.
func (e *BoltEngine) Check() (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorruptEngine, r)
		}
	}()
	return e.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketName)
		if b == nil {
			return fmt.Errorf("%w: the strata bucket is missing", ErrCorruptEngine)
		}
		var prev []byte
		c := b.Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return fmt.Errorf("%w: key %q after %q", ErrCorruptEngine, k, prev)
			}
			prev = append(prev[:0], k...)
		}
		return nil
	})
}

// NewBatch implements applier.Engine. Only one batch may be open at a
// time (bbolt has one writer; the applier writes one batch at a time).
func (e *BoltEngine) NewBatch() applier.Batch {
	tx, err := e.db.Begin(true)
	return &boltBatch{boltReader: boltReader{tx: tx, err: err}}
}

// NewSnapshot implements applier.Engine.
func (e *BoltEngine) NewSnapshot() applier.Snapshot {
	tx, err := e.db.Begin(false)
	return &boltSnapshot{boltReader{tx: tx, err: err}}
}

// Sync implements applier.Engine.
func (e *BoltEngine) Sync() error { return e.db.Sync() }

// Stats implements applier.Engine: the file's size, and the bytes its
// pages in use hold.
func (e *BoltEngine) Stats() applier.EngineStats {
	var st applier.EngineStats
	_ = e.db.View(func(tx *bolt.Tx) error {
		st.SizeBytes = tx.Size()
		free := int64(e.db.Stats().FreePageN) * int64(tx.DB().Info().PageSize)
		st.LiveBytes = max(st.SizeBytes-free, 0)
		return nil
	})
	return st
}

// Close implements applier.Engine.
func (e *BoltEngine) Close() error { return e.db.Close() }

// boltReader reads one transaction's view of the bucket.
type boltReader struct {
	tx  *bolt.Tx
	err error // from Begin
}

func (r *boltReader) bucket() (*bolt.Bucket, error) {
	if r.err != nil {
		return nil, r.err
	}
	b := r.tx.Bucket(bucketName)
	if b == nil {
		return nil, errors.New("bbolt: the strata bucket is missing")
	}
	return b, nil
}

// Get implements applier.Reader. bbolt's values live in the memory map
// and are valid only during the transaction: the caller gets a copy.
func (r *boltReader) Get(key []byte) ([]byte, error) {
	b, err := r.bucket()
	if err != nil {
		return nil, err
	}
	v := b.Get(key)
	if v == nil {
		return nil, applier.ErrNotFound
	}
	return bytes.Clone(v), nil
}

// NewIter implements applier.Reader.
func (r *boltReader) NewIter(lower, upper []byte) (applier.Iterator, error) {
	b, err := r.bucket()
	if err != nil {
		return nil, err
	}
	return &boltIter{c: b.Cursor(), lower: lower, upper: upper}, nil
}

type boltBatch struct {
	boltReader
	done bool
}

func (b *boltBatch) Set(key, value []byte) error {
	bk, err := b.bucket()
	if err != nil {
		return err
	}
	// bbolt keeps references to what it is given until commit.
	return bk.Put(bytes.Clone(key), bytes.Clone(value))
}

func (b *boltBatch) Delete(key []byte) error {
	bk, err := b.bucket()
	if err != nil {
		return err
	}
	return bk.Delete(key)
}

func (b *boltBatch) Commit() error {
	if b.err != nil {
		return b.err
	}
	b.done = true
	return b.tx.Commit()
}

func (b *boltBatch) Close() error {
	if b.err != nil || b.done {
		return nil
	}
	b.done = true
	return b.tx.Rollback()
}

type boltSnapshot struct{ boltReader }

func (s *boltSnapshot) Close() error {
	if s.err != nil {
		return nil
	}
	return s.tx.Rollback()
}

// boltIter is applier.Iterator over a bbolt cursor, within [lower, upper).
// A cursor is positioned by seeks; Next and Prev past the bounds leave it
// invalid, as Pebble's iterators do.
type boltIter struct {
	c            *bolt.Cursor
	lower, upper []byte
	k, v         []byte
}

func (it *boltIter) set(k, v []byte) bool {
	if k == nil || (it.lower != nil && bytes.Compare(k, it.lower) < 0) || (it.upper != nil && bytes.Compare(k, it.upper) >= 0) {
		it.k, it.v = nil, nil
		return false
	}
	it.k, it.v = k, v
	return true
}

func (it *boltIter) First() bool {
	if it.lower != nil {
		return it.set(it.c.Seek(it.lower))
	}
	return it.set(it.c.First())
}

func (it *boltIter) Last() bool {
	if it.upper == nil {
		return it.set(it.c.Last())
	}
	k, _ := it.c.Seek(it.upper)
	if k == nil {
		return it.set(it.c.Last())
	}
	return it.set(it.c.Prev())
}

func (it *boltIter) SeekGE(key []byte) bool {
	if it.lower != nil && bytes.Compare(key, it.lower) < 0 {
		key = it.lower
	}
	return it.set(it.c.Seek(key))
}

func (it *boltIter) SeekLT(key []byte) bool {
	if it.upper != nil && bytes.Compare(key, it.upper) > 0 {
		key = it.upper
	}
	k, _ := it.c.Seek(key)
	if k == nil {
		return it.set(it.c.Last())
	}
	return it.set(it.c.Prev())
}

func (it *boltIter) Next() bool {
	if it.k == nil {
		return false
	}
	return it.set(it.c.Next())
}

func (it *boltIter) Prev() bool {
	if it.k == nil {
		return false
	}
	return it.set(it.c.Prev())
}

func (it *boltIter) Valid() bool   { return it.k != nil }
func (it *boltIter) Key() []byte   { return it.k }
func (it *boltIter) Value() []byte { return it.v }
func (it *boltIter) Error() error  { return nil }
func (it *boltIter) Close() error  { return nil }

// ErrCorruptEngine reports a bbolt file that cannot be trusted: it fails to
// open as a database, or bbolt's consistency check.
var ErrCorruptEngine = errors.New("bbolt state machine is corrupt")

// OpenBoltRepairing opens the engine at path like OpenBolt and checks its
// consistency, after removing an unfinished replacement of it (see
// Replacement). A corrupt file (after a power loss: commits skip fsync) is
// moved aside to path+".corrupt" and an empty engine opened in its place,
// which the member then seeds from the leader's snapshot; onCorrupt hears
// why. Other failures (the file is locked by another process, say) are
// returned.
func OpenBoltRepairing(path string, opts BoltOptions, onCorrupt func(error)) (*BoltEngine, error) {
	if err := RemoveIncompleteReplacement(path); err != nil {
		return nil, err
	}
	e, err := openBoltGuarded(path, opts)
	switch {
	case err == nil:
		if err = e.Check(); err == nil {
			return e, nil
		}
		e.Close()
	case errors.Is(err, ErrCorruptEngine):
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		err = fmt.Errorf("%w: %v", ErrCorruptEngine, err)
	default:
		return nil, err
	}
	if onCorrupt != nil {
		onCorrupt(err)
	}
	if rerr := os.Rename(path, path+".corrupt"); rerr != nil {
		return nil, fmt.Errorf("%v; moving it aside: %w", err, rerr)
	}
	return OpenBolt(path, opts)
}

// openBoltGuarded is OpenBolt that turns a panic or memory fault on a
// corrupt file (in bbolt's reading of its meta and root pages) into
// ErrCorruptEngine.
func openBoltGuarded(path string, opts BoltOptions) (e *BoltEngine, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorruptEngine, r)
		}
	}()
	return OpenBolt(path, opts)
}
