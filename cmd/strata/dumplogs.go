package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"path/filepath"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/wal"
	"github.com/stratakv/strata/writernode"
)

// dumpLogs is `strata dump-logs --data-dir DIR`, etcd's etcd-dump-logs
// for strata's WAL: one JSON line with the hard state and the latest
// snapshot marker, then one per entry: the bootstrap conf changes of a
// member of a new cluster (indexes 1..n, which strata applies without
// logging and etcd logs), then every entry the WAL's segments still hold
// (released ones included, until their segment is removed; a range a
// snapshot from the leader covered is skipped), with a normal entry's
// requests split out of strata's batch and each encoded as etcd's
// InternalRaftRequest (base64, as encoding/json writes []byte). It changes
// nothing (wal.Inspect): read a stopped member's log, or a running one's at
// the risk of a torn tail.
func dumpLogs(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata dump-logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "The member's data directory.")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: strata dump-logs --data-dir DIR")
		return 2
	}
	if err := writeLogs(filepath.Join(*dataDir, "member"), stdout); err != nil {
		fmt.Fprintf(stderr, "strata dump-logs: %v\n", err)
		return 1
	}
	return 0
}

// dumpedHardState and dumpedEntry are dump-logs' lines.
type dumpedHardState struct {
	Term, Vote, Commit uint64
}

type dumpedEntry struct {
	Index, Term uint64
	Type        string
	// Requests are a normal entry's requests; Data is any other
	// entry's data.
	Requests [][]byte `json:",omitempty"`
	Data     []byte   `json:",omitempty"`
}

func writeLogs(memberDir string, out io.Writer) error {
	hs, snap, ents, err := wal.Inspect(filepath.Join(memberDir, "wal"))
	if err != nil {
		return err
	}
	boot, err := writernode.BootstrapEntries(memberDir)
	if err != nil {
		return err
	}
	for len(boot) > 0 && len(ents) > 0 && boot[len(boot)-1].GetIndex() >= ents[0].GetIndex() {
		boot = boot[:len(boot)-1]
	}
	ents = append(boot, ents...)
	enc := json.NewEncoder(out)
	first := struct {
		HardState dumpedHardState
		// Snapshot is the latest snapshot marker: the log before it
		// may be gone.
		Snapshot struct{ Index, Term uint64 }
	}{HardState: dumpedHardState{hs.GetTerm(), hs.GetVote(), hs.GetCommit()}}
	first.Snapshot.Index, first.Snapshot.Term = snap.Index, snap.Term
	if err := enc.Encode(first); err != nil {
		return err
	}
	for _, e := range ents {
		d := dumpedEntry{Index: e.GetIndex(), Term: e.GetTerm(), Type: e.GetType().String()}
		if e.GetType() == raftpb.EntryNormal {
			reqs, err := applier.DecodeEntry(e.GetData())
			if err != nil {
				return fmt.Errorf("entry %d: %w", e.GetIndex(), err)
			}
			for _, r := range reqs {
				b, err := proto.Marshal(r)
				if err != nil {
					return err
				}
				d.Requests = append(d.Requests, b)
			}
		} else {
			d.Data = e.GetData()
		}
		if err := enc.Encode(d); err != nil {
			return err
		}
	}
	return nil
}
