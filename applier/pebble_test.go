package applier

import (
	"errors"
	"io"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// The applier's tests run on Pebble through this minimal adapter rather
// than writernode's PebbleEngine, so that they do not depend on the
// packages a writer member composes. writernode runs the applytest suites
// on its PebbleEngine.

type testPebble struct{ db *pebble.DB }

// OpenTestPebble opens a Pebble engine in dir on fs (for this package's
// external tests).
func OpenTestPebble(fs vfs.FS, dir string) (Engine, error) {
	// The options that matter for performance are writernode's defaults.
	cache := pebble.NewCache(64 << 20)
	defer cache.Unref()
	opts := &pebble.Options{
		FS: fs, Cache: cache, MemTableSize: 64 << 20, FormatMajorVersion: pebble.FormatNewest, Logger: quietLogger{},
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return &testPebble{db}, nil
}

func (e *testPebble) NewBatch() Batch       { return &testBatch{e.db.NewIndexedBatch()} }
func (e *testPebble) NewSnapshot() Snapshot { return &testSnapshot{e.db.NewSnapshot()} }
func (e *testPebble) Sync() error           { return e.db.LogData(nil, pebble.Sync) }
func (e *testPebble) Stats() EngineStats {
	return EngineStats{SizeBytes: int64(e.db.Metrics().DiskSpaceUsage())}
}
func (e *testPebble) Close() error { return e.db.Close() }

type pebbleReader interface {
	Get([]byte) ([]byte, io.Closer, error)
	NewIter(*pebble.IterOptions) (*pebble.Iterator, error)
}

func testGet(r pebbleReader, k []byte) ([]byte, error) {
	v, c, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return append([]byte(nil), v...), nil
}

func testIter(r pebbleReader, lower, upper []byte) (Iterator, error) {
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, err
	}
	return it, nil
}

type testBatch struct{ b *pebble.Batch }

func (b *testBatch) Get(k []byte) ([]byte, error)          { return testGet(b.b, k) }
func (b *testBatch) NewIter(l, u []byte) (Iterator, error) { return testIter(b.b, l, u) }
func (b *testBatch) Set(k, v []byte) error                 { return b.b.Set(k, v, nil) }
func (b *testBatch) Delete(k []byte) error                 { return b.b.Delete(k, nil) }
func (b *testBatch) Commit() error                         { return b.b.Commit(pebble.NoSync) }
func (b *testBatch) Close() error {
	if b.b == nil {
		return nil
	}
	err := b.b.Close()
	b.b = nil
	return err
}

type testSnapshot struct{ s *pebble.Snapshot }

func (s *testSnapshot) Get(k []byte) ([]byte, error)          { return testGet(s.s, k) }
func (s *testSnapshot) NewIter(l, u []byte) (Iterator, error) { return testIter(s.s, l, u) }
func (s *testSnapshot) Close() error                          { return s.s.Close() }

type quietLogger struct{}

func (quietLogger) Infof(string, ...any)         {}
func (quietLogger) Errorf(string, ...any)        {}
func (quietLogger) Fatalf(f string, args ...any) { panic(f) }
