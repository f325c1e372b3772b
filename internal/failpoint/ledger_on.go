//go:build strata_failpoints

package failpoint

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cockroachdb/pebble/v2/vfs"
)

var ledger = struct {
	once sync.Once
	mu   sync.Mutex
	f    *os.File
}{}

// record appends one line to the ledger named by STRATA_SYNC_LEDGER, if
// any. A ledger that cannot be written stops the process: the suite would
// otherwise simulate a crash from a wrong account.
func record(format string, args ...any) {
	ledger.once.Do(func() {
		path := os.Getenv("STRATA_SYNC_LEDGER")
		if path == "" {
			return
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			panic(fmt.Sprintf("failpoint: open the sync ledger: %v", err))
		}
		ledger.f = f
	})
	if ledger.f == nil {
		return
	}
	line := fmt.Sprintf(format+"\n", args...)
	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	if _, err := ledger.f.WriteString(line); err != nil {
		panic(fmt.Sprintf("failpoint: write the sync ledger: %v", err))
	}
}

// WillSync records that an fsync of path is about to make it durable up
// to offset.
func WillSync(path string, offset int64, loss Loss) {
	record("sync %c %d %s", loss, offset, abs(path))
}

// Created records that path was created.
func Created(path string) { record("create %s", abs(path)) }

// Renamed records that from is about to be renamed to.
func Renamed(from, to string) { record("rename %s\t%s", abs(from), abs(to)) }

// abs makes the ledger independent of the process's working directory.
func abs(path string) string {
	if p, err := filepath.Abs(path); err == nil {
		return p
	}
	return path
}

// WrapFS returns fs recording its files' creations, renames and fsyncs in
// the ledger (if STRATA_SYNC_LEDGER is set; fs otherwise).
func WrapFS(fs vfs.FS) vfs.FS {
	if os.Getenv("STRATA_SYNC_LEDGER") == "" {
		return fs
	}
	return ledgerFS{fs}
}

type ledgerFS struct{ vfs.FS }

func (fs ledgerFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	Created(name)
	f, err := fs.FS.Create(name, cat)
	if err != nil {
		return nil, err
	}
	return ledgerFile{f, name}, nil
}

func (fs ledgerFS) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.FS.OpenReadWrite(name, cat, opts...)
	if err != nil {
		return nil, err
	}
	return ledgerFile{f, name}, nil
}

func (fs ledgerFS) ReuseForWrite(old, new string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	Renamed(old, new)
	f, err := fs.FS.ReuseForWrite(old, new, cat)
	if err != nil {
		return nil, err
	}
	return ledgerFile{f, new}, nil
}

func (fs ledgerFS) Rename(old, new string) error {
	Renamed(old, new)
	return fs.FS.Rename(old, new)
}

type ledgerFile struct {
	vfs.File
	name string
}

func (f ledgerFile) willSyncAll() {
	if st, err := f.File.Stat(); err == nil && st.Mode().IsRegular() {
		WillSync(f.name, st.Size(), Truncate)
	}
}

func (f ledgerFile) Sync() error     { f.willSyncAll(); return f.File.Sync() }
func (f ledgerFile) SyncData() error { f.willSyncAll(); return f.File.SyncData() }
func (f ledgerFile) SyncTo(length int64) (bool, error) {
	WillSync(f.name, length, Truncate)
	return f.File.SyncTo(length)
}
