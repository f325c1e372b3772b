package readernode

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

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
		Timeout:         opts.Timeout,
		NoSync:          true,
		NoFreelistSync:  true,
		FreelistType:    bolt.FreelistMapType,
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

// Check verifies the file's page structure (bbolt's consistency check),
// reporting the first problem found.
func (e *BoltEngine) Check() error {
	return e.db.View(func(tx *bolt.Tx) error {
		var first error
		for err := range tx.Check() { // drained: the checker sends them all
			if first == nil {
				first = err
			}
		}
		return first
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

// Path is the engine's file.
func (e *BoltEngine) Path() string { return e.db.Path() }

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
