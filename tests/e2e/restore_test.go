package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestBackupRestoreRoundTrip: `etcdctl snapshot save` from a running
// three-member strata cluster, `strata snapshot status` on the file, and
// `strata snapshot restore` (etcdutl's flags) of the same file into the
// three members of a new cluster, which then serves the same keys at the
// same revision, with its own membership, agrees on HashKV, and takes
// writes. A damaged file is refused.
func TestBackupRestoreRoundTrip(t *testing.T) {
	b, ms, clients := startStrataCluster(t, "bk")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	want := map[string]string{}
	for i := range 50 {
		k, v := fmt.Sprintf("/backup/%02d", i), fmt.Sprintf("v%d", i)
		if _, err := clients[i%3].Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	if _, err := clients[0].Delete(ctx, "/backup/49"); err != nil {
		t.Fatal(err)
	}
	delete(want, "/backup/49")
	last, err := clients[0].Get(ctx, "/backup/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backup.db")
	if res, err := Etcdctl(ctx, b.Etcdctl, []string{ms[1].ClientURL()}, "", "snapshot", "save", file); err != nil || res.ExitCode != 0 {
		t.Fatalf("etcdctl snapshot save: %v: %s", err, res)
	}

	res, err := Run(ctx, b.Subject, "", nil, "snapshot", "status", file, "-w", "json")
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("strata snapshot status: %v: %s", err, res)
	}
	var st struct {
		Revision  int64 `json:"revision"`
		TotalKey  int   `json:"totalKey"`
		TotalSize int64 `json:"totalSize"`
	}
	if err := json.Unmarshal(res.Stdout, &st); err != nil {
		t.Fatalf("status output %q: %v", res.Stdout, err)
	}
	fi, _ := os.Stat(file)
	if st.Revision != last.Header.Revision || st.TotalKey != len(want) || st.TotalSize != fi.Size() {
		t.Fatalf("status %+v; want revision %d, %d keys, %d bytes", st, last.Header.Revision, len(want), fi.Size())
	}

	// A damaged backup is refused.
	bad := filepath.Join(t.TempDir(), "bad.db")
	raw, _ := os.ReadFile(file)
	raw[len(raw)/2] ^= 0xFF
	if err := os.WriteFile(bad, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err = Run(ctx, b.Subject, "", nil, "snapshot", "restore", bad, "--data-dir", filepath.Join(t.TempDir(), "x"))
	if err != nil || res.ExitCode == 0 || !strings.Contains(string(res.Stderr), "expected sha256") {
		t.Fatalf("restoring a damaged file: %v: %s", err, res)
	}

	restore := func(m *Member, initial, token string) error {
		if err := os.Remove(m.DataDir); err != nil { // restore makes it
			return err
		}
		res, err := Run(ctx, b.Subject, "", nil, "snapshot", "restore", file, "--data-dir", m.DataDir, "--name", m.Name,
			"--initial-cluster", initial, "--initial-advertise-peer-urls", m.PeerURL(), "--initial-cluster-token", token)
		if err != nil || res.ExitCode != 0 {
			return fmt.Errorf("strata snapshot restore: %v: %s", err, res)
		}
		return nil
	}
	rs := StartCluster(t, "rs", 3, MemberConfig{Binary: b.Subject, ExtraArgs: fastRaft, Prepare: restore})
	var rc []*clientv3.Client
	for _, m := range rs {
		rc = append(rc, newEndpointClient(t, m))
	}
	got, err := rc[2].Get(ctx, "/backup/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if got.Header.Revision != last.Header.Revision || len(got.Kvs) != len(want) {
		t.Fatalf("restored: revision %d, %d keys; want %d, %d", got.Header.Revision, len(got.Kvs), last.Header.Revision, len(want))
	}
	for i, kv := range got.Kvs {
		if want[string(kv.Key)] != string(kv.Value) || kv.ModRevision != last.Kvs[i].ModRevision {
			t.Fatalf("restored %s=%s at %d; want %s at %d", kv.Key, kv.Value, kv.ModRevision, want[string(kv.Key)], last.Kvs[i].ModRevision)
		}
	}
	list, err := rc[0].MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range list.Members {
		names = append(names, m.Name)
	}
	if len(list.Members) != 3 || !strings.Contains(strings.Join(names, ","), "rs0") {
		t.Fatalf("restored cluster's members: %v", names)
	}
	put, err := rc[1].Put(ctx, "/backup/new", "after-restore")
	if err != nil {
		t.Fatal(err)
	}
	requireEqualHashKV(ctx, t, rc, put.Header.Revision)
	// Maintenance.Hash covers the whole state machine: equal once every
	// member has applied the same entries (bounded wait).
	for {
		var hashes []uint32
		for _, c := range rc {
			resp, err := pb.NewMaintenanceClient(c.ActiveConnection()).Hash(ctx, &pb.HashRequest{})
			if err != nil {
				t.Fatal(err)
			}
			hashes = append(hashes, resp.Hash)
		}
		if hashes[0] == hashes[1] && hashes[1] == hashes[2] {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Hash differs between members: %x", hashes)
		}
		time.Sleep(50 * time.Millisecond) // polling the members' state; bounded by ctx
	}
}
