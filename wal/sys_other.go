//go:build !linux

package wal

import "os"

// preallocate extends f to size. Without fallocate the space is not
// reserved; appends may still fail with ENOSPC, which the WAL reports.
func preallocate(f *os.File, size int64) error { return truncateUp(f, size) }

// fdatasync flushes f.
func fdatasync(f *os.File) error { return f.Sync() }

// lockDir is a no-op where flock(2) on a directory is not available: two
// processes sharing one WAL directory are not detected there.
func lockDir(*os.File) error { return nil }
