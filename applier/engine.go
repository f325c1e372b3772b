package applier

import "errors"

// ErrNotFound is returned by Reader.Get when the key does not exist.
var ErrNotFound = errors.New("applier: key not found")

// Engine is the ordered key-value storage the state machine writes through.
// writernode implements it on Pebble, readernode on bbolt; the MVCC key
// layout on top of it (doc.go) is the same for both, so apply is
// engine-independent.
//
// Durability contract: Batch.Commit need not be durable. The raft WAL is the
// source of durability; the applied index is written in the same batch as
// the state it covers, so after a crash the engine holds some prefix of the
// applied entries and the member replays from its stored applied index + 1.
// Sync makes every committed batch durable; the WAL may only be truncated
// below an index whose batch has been synced.
type Engine interface {
	// NewBatch returns a write batch. Reads through the batch see the
	// batch's own uncommitted writes layered over the committed state.
	// The applier writes one batch at a time.
	NewBatch() Batch
	// NewSnapshot returns a consistent, read-only, point-in-time view of
	// the committed state. Snapshots may be used concurrently with writes.
	NewSnapshot() Snapshot
	// Sync makes every batch committed so far durable.
	Sync() error
	// Stats reports the engine's size.
	Stats() EngineStats
	// Close releases the engine. Batches committed before Close are
	// still there when the engine is opened again (a clean shutdown is
	// not a crash).
	Close() error
}

// EngineStats describes an engine's on-disk footprint.
type EngineStats struct {
	// SizeBytes is the space the engine occupies on disk.
	SizeBytes int64
	// LiveBytes estimates the bytes of live (not yet reclaimable) data.
	LiveBytes int64
}

// Reader reads keys in byte order.
type Reader interface {
	// Get returns the value of key, or ErrNotFound. The returned slice is
	// owned by the caller.
	Get(key []byte) ([]byte, error)
	// NewIter returns an iterator over keys in [lower, upper). A nil upper
	// bound means no upper bound.
	NewIter(lower, upper []byte) (Iterator, error)
}

// Iterator walks keys of a Reader in byte order. Key and Value are valid
// only until the next positioning call. If a value cannot be read, Value
// returns nil and Error reports why.
type Iterator interface {
	First() bool
	Last() bool
	SeekGE(key []byte) bool
	SeekLT(key []byte) bool
	Next() bool
	Prev() bool
	Valid() bool
	Key() []byte
	Value() []byte
	Error() error
	Close() error
}

// Batch is a set of writes applied atomically by Commit. Set and Delete
// copy their arguments; the caller may reuse them once the call returns.
type Batch interface {
	Reader
	Set(key, value []byte) error
	Delete(key []byte) error
	// Commit applies the batch atomically. It need not be durable; see
	// Engine. After Commit the batch may not be used, except for Close.
	Commit() error
	// Close releases the batch; closing an uncommitted batch discards it.
	Close() error
}

// Snapshot is a consistent read-only view. It must be closed.
type Snapshot interface {
	Reader
	Close() error
}
