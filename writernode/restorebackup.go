package writernode

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/snapshot"
)

// A backup file is what Maintenance.Snapshot streams (etcdctl snapshot
// save writes it as received): strata's snapshot stream, zero padding to a
// multiple of 512 bytes, then the SHA-256 of everything before it.

// openBackup verifies the backup's SHA-256 trailer and returns the file,
// positioned at its start, and the length of what the checksum covers.
func openBackup(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	n := fi.Size() - sha256.Size
	if n <= 0 {
		f.Close()
		return nil, 0, fmt.Errorf("snapshot file %s is too short (%d bytes) to hold a snapshot and its checksum", path, fi.Size())
	}
	h := sha256.New()
	if _, err := io.CopyN(h, f, n); err != nil {
		f.Close()
		return nil, 0, err
	}
	want := make([]byte, sha256.Size)
	if _, err := io.ReadFull(f, want); err != nil {
		f.Close()
		return nil, 0, err
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		f.Close()
		// etcdutl's words.
		return nil, 0, fmt.Errorf("expected sha256 %v, got %v", want, got)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}

// BackupStatus is `strata snapshot status`: etcdutl's fields.
type BackupStatus struct {
	// Hash is the first four bytes of the SHA-256 of the logical content
	// (etcdutl's is a CRC of the bbolt file; the two are not comparable).
	Hash      uint32 `json:"hash"`
	Revision  int64  `json:"revision"`
	TotalKey  int    `json:"totalKey"`
	TotalSize int64  `json:"totalSize"`
	Version   string `json:"version"`
}

// StatBackup verifies a backup file and reads its content's revision and
// key count.
func StatBackup(path, storageVersion string) (BackupStatus, error) {
	f, n, err := openBackup(path)
	if err != nil {
		return BackupStatus{}, err
	}
	defer f.Close()
	var st applier.BackupStats
	info, err := snapshot.Read(bufio.NewReader(io.LimitReader(f, n)), st.Add)
	if err != nil {
		return BackupStatus{}, fmt.Errorf("snapshot file %s: %w", path, err)
	}
	return BackupStatus{
		Hash:      binary.BigEndian.Uint32(info.Checksum[:4]),
		Revision:  st.Revision,
		TotalKey:  int(st.Keys),
		TotalSize: n + sha256.Size,
		Version:   storageVersion,
	}, nil
}

// RestoreConfig is `strata snapshot restore`'s flags, etcdutl's.
type RestoreConfig struct {
	DataDir             string
	Name                string
	InitialCluster      map[string][]string
	InitialClusterToken string
}

// RestoreBackup creates a member's data dir from a backup file, as
// etcdutl snapshot restore does: the checksum is verified; the keys, their
// history and the leases are installed; the old cluster's membership and
// alarms are dropped; the identity is that of member Name of a new cluster
// of InitialCluster with InitialClusterToken. Started on it (its flags'
// cluster settings are then read from the data dir), the member bootstraps
// the new cluster on top of the restored state. Restore every member of
// the new cluster from the same file with the same flags but --name.
func RestoreBackup(path string, cfg RestoreConfig) (snapshot.Info, error) {
	memberDir := filepath.Join(cfg.DataDir, "member")
	if _, err := os.Stat(memberDir); err == nil {
		return snapshot.Info{}, fmt.Errorf("member directory %s already exists", memberDir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return snapshot.Info{}, err
	}
	id, err := newIdentity(cfg.Name, cfg.InitialCluster, cfg.InitialClusterToken)
	if err != nil {
		return snapshot.Info{}, err
	}
	f, n, err := openBackup(path)
	if err != nil {
		return snapshot.Info{}, err
	}
	defer f.Close()
	// Build beside the final place and rename when done: a failed
	// restore leaves no member directory a server could start on.
	tmp := memberDir + ".restoring"
	if err := os.RemoveAll(tmp); err != nil {
		return snapshot.Info{}, err
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return snapshot.Info{}, err
	}
	info, err := restoreInto(tmp, id, bufio.NewReader(io.LimitReader(f, n)))
	if err != nil {
		os.RemoveAll(tmp)
		return snapshot.Info{}, err
	}
	if err := os.Rename(tmp, memberDir); err != nil {
		return snapshot.Info{}, err
	}
	return info, syncDir(cfg.DataDir)
}

func restoreInto(dir string, id *identity, r io.Reader) (snapshot.Info, error) {
	eng, err := OpenPebble(filepath.Join(dir, "pebble"), PebbleOptions{})
	if err != nil {
		return snapshot.Info{}, err
	}
	info, err := snapshot.Install(r, eng)
	if err == nil {
		err = applier.PrepareRestore(eng)
	}
	if cerr := eng.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return snapshot.Info{}, err
	}
	return info, id.save(dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
