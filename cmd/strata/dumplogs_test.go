package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/wal"
)

func TestDumpLogs(t *testing.T) {
	dir := t.TempDir()
	w, err := wal.Open(filepath.Join(dir, "member", "wal"), wal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	var reqs [][]byte
	for _, k := range []string{"a", "b"} {
		b, err := proto.Marshal(&pb.InternalRaftRequest{ID: 7, Put: &pb.PutRequest{Key: []byte(k), Value: []byte("v")}})
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, b)
	}
	ents := []*raftpb.Entry{
		{Index: new(uint64(1)), Term: new(uint64(2)), Data: applier.EncodeEntry(nil, reqs)},
		{Index: new(uint64(2)), Term: new(uint64(2)), Type: raftpb.EntryConfChange.Enum(), Data: []byte{1, 2}},
	}
	if err := w.Save(&raftpb.HardState{Term: new(uint64(2)), Commit: new(uint64(2))}, ents); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if code := run([]string{"dump-logs", "--data-dir", dir}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	sc := bufio.NewScanner(&out)
	var lines []string
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) != 3 || !strings.Contains(lines[0], `"Commit":2`) {
		t.Fatalf("dump:\n%s", out.String())
	}
	var e dumpedEntry
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil {
		t.Fatal(err)
	}
	if e.Index != 1 || e.Term != 2 || e.Type != "EntryNormal" || len(e.Requests) != 2 {
		t.Fatalf("first entry: %+v", e)
	}
	var r pb.InternalRaftRequest
	if err := proto.Unmarshal(e.Requests[1], &r); err != nil || string(r.Put.GetKey()) != "b" {
		t.Fatalf("second request: %v, %v", &r, err)
	}
	if err := json.Unmarshal([]byte(lines[2]), &e); err != nil || e.Type != "EntryConfChange" || !bytes.Equal(e.Data, []byte{1, 2}) {
		t.Fatalf("conf change: %+v, %v", e, err)
	}

	if code := run([]string{"dump-logs"}, nil, &out, &errOut); code != 2 {
		t.Fatalf("no --data-dir: exit %d", code)
	}
	errOut.Reset()
	if code := run([]string{"dump-logs", "--data-dir", filepath.Join(dir, "missing")}, nil, &out, &errOut); code != 1 || errOut.Len() == 0 {
		t.Fatalf("a missing data dir: exit %d, %q", code, errOut.String())
	}
}

// TestDumpLogsBootstrap: a member of a new cluster applies its initial
// members' conf changes without logging them; dump-logs shows them at
// indexes 1..n, where etcd's log has them, before what the WAL holds.
func TestDumpLogsBootstrap(t *testing.T) {
	dir := t.TempDir()
	w, err := wal.Open(filepath.Join(dir, "member", "wal"), wal.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Save(&raftpb.HardState{Term: new(uint64(2)), Commit: new(uint64(4))}, []*raftpb.Entry{{Index: new(uint64(4)), Term: new(uint64(2))}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	identity := `{"name":"a","memberID":1,"clusterID":9,"members":[` +
		`{"name":"a","id":1,"peerURLs":["http://127.0.0.1:1"]},` +
		`{"name":"b","id":2,"peerURLs":["http://127.0.0.1:2"]},` +
		`{"name":"c","id":3,"peerURLs":["http://127.0.0.1:3"]}]}`
	if err := os.WriteFile(filepath.Join(dir, "member", "identity.json"), []byte(identity), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"dump-logs", "--data-dir", dir}, nil, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("dump:\n%s", out.String())
	}
	for i, line := range lines[1:4] {
		var e dumpedEntry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(e.Data, &cc); err != nil || e.Index != uint64(i+1) || e.Term != 1 || e.Type != "EntryConfChange" ||
			cc.GetType() != raftpb.ConfChangeAddNode || cc.GetNodeId() != uint64(i+1) {
			t.Fatalf("bootstrap entry %d: %+v (%v, %v)", i+1, e, &cc, err)
		}
	}
	var e dumpedEntry
	if err := json.Unmarshal([]byte(lines[4]), &e); err != nil || e.Index != 4 {
		t.Fatalf("the logged entry: %+v, %v", e, err)
	}
}

func TestSnapshotCommandErrors(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"snapshot"}, 2, "usage: strata snapshot"},
		{[]string{"snapshot", "status"}, 2, "snapshot file path is required"},
		{[]string{"snapshot", "status", filepath.Join(t.TempDir(), "missing.db")}, 1, "no such file"},
		{[]string{"snapshot", "restore", "f.db", "--name", "a", "--initial-cluster", "a=http://127.0.0.1:1", "--initial-advertise-peer-urls", "http://127.0.0.1:2"}, 2,
			"--initial-cluster must include a=http://127.0.0.1:2"},
	} {
		out.Reset()
		errOut.Reset()
		if code := run(tc.args, nil, &out, &errOut); code != tc.code || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want %d, %q", tc.args, code, errOut.String(), tc.code, tc.want)
		}
	}
	if got := humanBytes(2_123_456); got != "2.1 MB" {
		t.Errorf("humanBytes = %q", got)
	}
}
