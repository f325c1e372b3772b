package readernode

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// nextSuffix names the file a replacement engine is filled in, beside the
// file it replaces.
const nextSuffix = ".next"

// Replacement is a new bbolt engine being filled beside a reader's current
// one (a snapshot install): path+".next" until Promote renames it over
// path. The current file is never touched before that rename, and the
// rename is atomic, so a crash at any point leaves path holding either the
// old state or the complete new one; a leftover path+".next" is an install
// that did not finish, removed by the next OpenBoltReplacement or
// RemoveIncompleteReplacement.
type Replacement struct {
	*BoltEngine
	path, target string
}

// OpenBoltReplacement creates an empty engine that is to replace the one at
// path, first removing any replacement a crash left behind.
func OpenBoltReplacement(path string, opts BoltOptions) (*Replacement, error) {
	if err := RemoveIncompleteReplacement(path); err != nil {
		return nil, err
	}
	next := path + nextSuffix
	e, err := OpenBolt(next, opts)
	if err != nil {
		return nil, err
	}
	return &Replacement{BoltEngine: e, path: next, target: path}, nil
}

// Promote makes the replacement the engine at its target path: it syncs the
// file, renames it over the target and syncs the directory, so the member
// opens it on restart. The engine stays open and in use; the replaced
// file's space is freed once its engine is closed.
func (r *Replacement) Promote() error {
	if err := r.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", r.path, err)
	}
	if err := os.Rename(r.path, r.target); err != nil {
		return err
	}
	return syncDir(filepath.Dir(r.target))
}

// Discard closes the replacement and removes its file.
func (r *Replacement) Discard() error {
	return errors.Join(r.Close(), os.Remove(r.path))
}

// RemoveIncompleteReplacement removes the replacement of the engine at
// path that a crash left unfinished, if there is one.
func RemoveIncompleteReplacement(path string) error {
	if err := os.Remove(path + nextSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove an unfinished replacement: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
