package writernode

import (
	"crypto/sha1"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// InitialMember is a member named in --initial-cluster.
type InitialMember struct {
	Name     string   `json:"name"`
	ID       uint64   `json:"id"`
	PeerURLs []string `json:"peerURLs"`
}

// identity is who this member is and which cluster it was born into. It is
// written once, atomically, when the data dir is initialised; afterwards the
// data dir wins over bootstrap flags (as in etcd), so a restart with the same
// or different --initial-cluster* flags finds the same identity.
type identity struct {
	Name      string          `json:"name"`
	MemberID  uint64          `json:"memberID"`
	ClusterID uint64          `json:"clusterID"`
	Members   []InitialMember `json:"members"`
	// Joined is set for a member that joined an existing cluster: it has
	// no bootstrap entries of its own and gets its state from the leader
	// (a snapshot, then the log).
	Joined bool `json:"joined,omitempty"`
}

const identityFile = "identity.json"

// MemberID derives a member's ID from its peer URLs and the cluster token,
// the way etcd does for members of a new cluster: the first 8 bytes, big
// endian, of SHA-1 over the sorted URLs concatenated, then the token.
func MemberID(peerURLs []string, token string) uint64 {
	urls := slices.Clone(peerURLs)
	slices.Sort(urls)
	h := sha1.Sum([]byte(strings.Join(urls, "") + token))
	return binary.BigEndian.Uint64(h[:8])
}

// ClusterID derives the cluster ID from its members' IDs as etcd does: the
// first 8 bytes of SHA-1 over the sorted IDs, each 8 bytes big endian.
func ClusterID(memberIDs []uint64) uint64 {
	ids := slices.Clone(memberIDs)
	slices.Sort(ids)
	b := make([]byte, 8*len(ids))
	for i, id := range ids {
		binary.BigEndian.PutUint64(b[8*i:], id)
	}
	h := sha1.Sum(b)
	return binary.BigEndian.Uint64(h[:8])
}

// newIdentity computes the identity of member name in a new cluster.
func newIdentity(name string, initial map[string][]string, token string) (*identity, error) {
	if _, ok := initial[name]; !ok {
		return nil, fmt.Errorf("couldn't find local name %q in the initial cluster configuration", name)
	}
	id := &identity{Name: name}
	var ids []uint64
	names := make([]string, 0, len(initial))
	for n := range initial {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		m := InitialMember{Name: n, ID: MemberID(initial[n], token), PeerURLs: initial[n]}
		if n == name {
			id.MemberID = m.ID
		}
		ids = append(ids, m.ID)
		id.Members = append(id.Members, m)
	}
	id.ClusterID = ClusterID(ids)
	return id, nil
}

// loadIdentity reads the identity in dir; ok is false if there is none.
func loadIdentity(dir string) (_ *identity, ok bool, _ error) {
	b, err := os.ReadFile(filepath.Join(dir, identityFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, false, fmt.Errorf("corrupt %s: %w", identityFile, err)
	}
	if id.MemberID == 0 || len(id.Members) == 0 {
		return nil, false, fmt.Errorf("corrupt %s: no member ID", identityFile)
	}
	return &id, true, nil
}

// save writes the identity atomically: temp file, fsync, rename, dir fsync.
func (id *identity) save(dir string) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, identityFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, identityFile)); err != nil {
		return err
	}
	return syncDir(dir)
}
