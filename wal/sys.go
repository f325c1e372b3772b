package wal

import "os"

// truncateUp extends f to size with zeroes if it is shorter.
func truncateUp(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() >= size {
		return nil
	}
	return f.Truncate(size)
}

// syncDir makes the directory entries of d (creations, renames, removals)
// durable.
func syncDir(d *os.File) error { return d.Sync() }
