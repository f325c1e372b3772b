package failpoint

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadLedgerFollowsRenames(t *testing.T) {
	files, err := ReadLedger(strings.NewReader(strings.Join([]string{
		"create /d/a.tmp",
		"sync t 10 /d/a.tmp",
		"rename /d/a.tmp\t/d/a",
		"sync z 8192 /d/wal seg",
		"sync z 4096 /d/wal seg", // two fsyncs recorded out of order
		"create /d/b",
		"sync t 5 /d/c",
		"rename /d/missing\t/d/c",
	}, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Durable{"/d/a": {10, Truncate}, "/d/wal seg": {8192, Zero}, "/d/b": {0, Truncate}}
	if len(files) != len(want) {
		t.Fatalf("got %v, want %v", files, want)
	}
	for k, v := range want {
		if files[k] != v {
			t.Fatalf("%s: got %+v, want %+v (all: %v)", k, files[k], v, files)
		}
	}
	if _, err := ReadLedger(strings.NewReader("sync t x /a\n")); err == nil {
		t.Fatal("a bad offset was accepted")
	}
	if _, err := ReadLedger(strings.NewReader("truncate /a\n")); err == nil {
		t.Fatal("an unknown record was accepted")
	}
}

func TestLoseUnsynced(t *testing.T) {
	dir := t.TempDir()
	appended := filepath.Join(dir, "000001.log")
	prealloc := filepath.Join(dir, "0000000000000001-0000000000000001.wal")
	fresh := filepath.Join(dir, "000002.sst")
	untracked := filepath.Join(dir, "identity")
	for name, data := range map[string][]byte{
		appended:  bytes.Repeat([]byte{'a'}, 100),
		prealloc:  bytes.Repeat([]byte{'w'}, 100),
		fresh:     bytes.Repeat([]byte{'s'}, 50),
		untracked: []byte("kept"),
	} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ledger := filepath.Join(dir, "ledger")
	records := fmt.Sprintf("create %s\nsync t 60 %s\nsync z 30 %s\ncreate %s\nsync t 0 %s\n", appended, appended, prealloc, fresh, filepath.Join(dir, "removed"))
	if err := os.WriteFile(ledger, []byte(records), 0o600); err != nil {
		t.Fatal(err)
	}
	lost, err := LoseUnsynced(ledger)
	if err != nil {
		t.Fatal(err)
	}
	if lost != 40+70+50 {
		t.Fatalf("lost %d bytes, want %d", lost, 40+70+50)
	}
	check := func(name string, want []byte) {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: got %q, want %q", filepath.Base(name), got, want)
		}
	}
	check(appended, bytes.Repeat([]byte{'a'}, 60))
	check(prealloc, append(bytes.Repeat([]byte{'w'}, 30), make([]byte, 70)...))
	check(fresh, nil)
	check(untracked, []byte("kept"))
}
