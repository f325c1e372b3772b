package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/readernode"
	"github.com/stratakv/strata/snapshot"
)

// snapshotShape describes a Maintenance.Snapshot stream the way a client
// sees it: which fields are set, how the blobs are cut, how remaining_bytes
// behaves and what the last message holds. The content differs by design
// (bbolt vs strata's snapshot format; docs/compat.md).
func snapshotShape(t *testing.T, m *Member) (string, []byte) {
	t.Helper()
	conn, err := grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ss, err := pb.NewMaintenanceClient(conn).Snapshot(ctx, &pb.SnapshotRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []*pb.SnapshotResponse
	for {
		r, err := ss.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: snapshot stream: %v", m.Name, err)
		}
		msgs = append(msgs, r)
	}
	if len(msgs) < 3 {
		t.Fatalf("%s: %d snapshot messages; the test wants several chunks", m.Name, len(msgs))
	}
	var b strings.Builder
	var data []byte
	versions := map[string]bool{}
	headers := map[bool]bool{}
	for i, r := range msgs {
		versions[r.Version] = true
		headers[r.Header != nil] = true
		last := i == len(msgs)-1
		switch {
		case last:
			sum := sha256.Sum256(data)
			fmt.Fprintf(&b, "last message: remaining=%d, blob is the SHA-256 of the blobs before it: %v\n",
				r.RemainingBytes, bytes.Equal(r.Blob, sum[:]))
		case i < len(msgs)-2 && len(r.Blob) != 32<<10:
			fmt.Fprintf(&b, "message %d: blob of %d bytes, not 32 KiB\n", i, len(r.Blob))
		case i == len(msgs)-2:
			fmt.Fprintf(&b, "last data message: remaining=%d\n", r.RemainingBytes)
		case r.RemainingBytes == 0:
			fmt.Fprintf(&b, "message %d: remaining=0 before the last data message\n", i)
		case i > 0 && r.RemainingBytes > msgs[i-1].RemainingBytes:
			fmt.Fprintf(&b, "message %d: remaining grew\n", i)
		}
		if !last {
			data = append(data, r.Blob...)
		}
	}
	fmt.Fprintf(&b, "versions: %v, headers set: %v\n", versions, headers)
	return b.String(), data
}

// TestSnapshotMatchesEtcd: Maintenance.Snapshot streams like etcd's (32 KiB
// blobs, remaining_bytes counting down to the checksum message, the storage
// version on every message, a SHA-256 of the stream last), and etcdctl
// snapshot save writes the file. On strata the file is the state machine
// in strata's snapshot format with the SHA-256 trailer: it verifies, and
// installed into a fresh engine it hashes like the live member.
func TestSnapshotMatchesEtcd(t *testing.T) {
	b := needSubject(t)
	etcd, sub := pair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var shapes [2]string
	var revs [2]int64
	for i, m := range []*Member{etcd, sub} {
		c := newEndpointClient(t, m)
		var rev int64
		for j := range 3000 {
			r, err := c.Put(ctx, fmt.Sprintf("snap/%05d", j), fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint(j)))))
			if err != nil {
				t.Fatal(err)
			}
			rev = r.Header.Revision
		}
		revs[i] = rev
		shapes[i], _ = snapshotShape(t, m)
	}
	if d := Diff("etcd", shapes[0], sub.Binary, shapes[1]); d != "" {
		t.Fatalf("Snapshot streams differ:\n%s", d)
	}

	var outs [2]string
	var files [2]string
	for i, m := range []*Member{etcd, sub} {
		files[i] = filepath.Join(t.TempDir(), "backup.db")
		r, err := Etcdctl(ctx, b.Etcdctl, []string{m.Endpoint()}, "", "snapshot", "save", files[i])
		if err != nil || r.ExitCode != 0 {
			t.Fatalf("%s: etcdctl snapshot save: %v %+v", m.Name, err, r)
		}
		outs[i] = strings.ReplaceAll(string(r.Stdout), files[i], "FILE")
	}
	if d := Diff("etcd", outs[0], sub.Binary, outs[1]); d != "" {
		t.Fatalf("etcdctl snapshot save output differs:\n%s", d)
	}
	if b.SubjectName != "strata" {
		return
	}
	c := newEndpointClient(t, sub)
	want, err := c.HashKV(ctx, sub.Endpoint(), revs[1])
	if err != nil {
		t.Fatal(err)
	}
	if got := backupHashKV(t, files[1], revs[1]); got != want.Hash {
		t.Fatalf("the backup hashes %d at revision %d, the member %d", got, revs[1], want.Hash)
	}
}

// backupHashKV checks a strata backup file (the SHA-256 trailer, then the
// snapshot stream's own checks), installs it into a fresh bbolt engine and
// returns its HashKV at rev.
func backupHashKV(t *testing.T, file string, rev int64) uint32 {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) < sha256.Size {
		t.Fatalf("backup of %d bytes", len(data))
	}
	body, trailer := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if sum := sha256.Sum256(body); !bytes.Equal(sum[:], trailer) {
		t.Fatal("the backup's SHA-256 trailer does not match its content")
	}
	e, err := readernode.OpenBolt(filepath.Join(t.TempDir(), "restored.db"), readernode.BoltOptions{InitialMmapSize: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := snapshot.Install(bytes.NewReader(body), e); err != nil {
		t.Fatalf("install the backup: %v", err)
	}
	a, err := applier.New(applier.Config{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	h, err := a.HashKV(rev)
	if err != nil {
		t.Fatal(err)
	}
	return h.Hash
}
