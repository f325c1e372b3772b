package applier

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// BackupStats is what `strata snapshot status` reports of a backup's
// content, accumulated pair by pair as the snapshot stream is read.
type BackupStats struct {
	// Revision is the current revision (m/rev); Keys counts the live
	// keys (k/).
	Revision int64
	Keys     int64
}

// Add accounts for one key/value pair of a state machine's content.
func (s *BackupStats) Add(key, value []byte) error {
	switch {
	case bytes.HasPrefix(key, prefixLatest):
		s.Keys++
	case bytes.Equal(key, keyMetaRev):
		if len(value) != 16 {
			return fmt.Errorf("%w: %s", errCorruptValue, keyMetaRev)
		}
		s.Revision = int64(binary.BigEndian.Uint64(value))
	}
	return nil
}

// PrepareRestore turns an engine holding a backup (installed by the
// snapshot package) into the state machine of a member that has applied
// nothing: the keys, their history, the leases and the revisions stay;
// the old cluster's membership (members, removed members, ConfState) and
// its alarms go, and the applied index is 0. A member started on it applies
// its new cluster's bootstrap entries (indexes 1..n) on top, as every
// member of a new cluster does, so every member restored from the same
// backup with the same --initial-cluster starts from the same state.
func PrepareRestore(e Engine) error {
	b := e.NewBatch()
	defer b.Close()
	for _, p := range [][]byte{prefixMembers, prefixRemoved} {
		keys, err := keysIn(e, p)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
	}
	for _, k := range [][]byte{keyMetaConfState, keyMetaAlarms} {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	if err := b.Set(keyMetaApplied, make([]byte, 16)); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	return e.Sync()
}

// keysIn lists the keys with prefix p (a handful: members).
func keysIn(e Engine, p []byte) ([][]byte, error) {
	snap := e.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(p, prefixEnd(p))
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var keys [][]byte
	for ok := it.First(); ok; ok = it.Next() {
		keys = append(keys, bytes.Clone(it.Key()))
	}
	return keys, it.Error()
}
