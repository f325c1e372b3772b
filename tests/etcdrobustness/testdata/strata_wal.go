// This file is copied into etcd's tests module (robustness/report) by
// tests/etcdrobustness/run.sh; it is not part of strata's build.

package report

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"go.etcd.io/raft/v3/raftpb"
)

// strataBatch marks an entry whose Data holds the requests of one strata
// raft entry, each length-prefixed (uvarint): strata proposes many
// requests per entry where etcd proposes one.
var strataBatch = []byte("strata-batch\x00")

// readStrataWAL reads a strata member's log through `strata dump-logs`
// (the binary STRATA_DUMP_LOGS names): strata's WAL is not etcd's, so
// etcd's wal package cannot read it.
func readStrataWAL(lg *zap.Logger, dataDir string) (*raftpb.HardState, []*raftpb.Entry, error) {
	cmd := exec.Command(os.Getenv("STRATA_DUMP_LOGS"), "dump-logs", "--data-dir", dataDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("strata dump-logs --data-dir %s: %w: %s", dataDir, err, stderr.String())
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 64<<20)
	if !sc.Scan() {
		return nil, nil, errors.New("strata dump-logs: no hard state")
	}
	var hs struct {
		HardState struct{ Term, Vote, Commit uint64 }
	}
	if err := json.Unmarshal(sc.Bytes(), &hs); err != nil {
		return nil, nil, err
	}
	state := &raftpb.HardState{Term: proto.Uint64(hs.HardState.Term), Vote: proto.Uint64(hs.HardState.Vote), Commit: proto.Uint64(hs.HardState.Commit)}
	var ents []*raftpb.Entry
	for sc.Scan() {
		var d struct {
			Index, Term uint64
			Type        string
			Requests    [][]byte
			Data        []byte
		}
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			return nil, nil, err
		}
		typ, ok := raftpb.EntryType_value[d.Type]
		if !ok {
			return nil, nil, fmt.Errorf("strata dump-logs: entry %d has type %q", d.Index, d.Type)
		}
		e := &raftpb.Entry{Index: proto.Uint64(d.Index), Term: proto.Uint64(d.Term), Type: raftpb.EntryType(typ).Enum(), Data: d.Data}
		if e.GetType() == raftpb.EntryNormal {
			data := append([]byte(nil), strataBatch...)
			for _, r := range d.Requests {
				data = binary.AppendUvarint(data, uint64(len(r)))
				data = append(data, r...)
			}
			e.Data = data
		}
		ents = append(ents, e)
	}
	lg.Info("read strata WAL", zap.String("data-dir", dataDir), zap.Int("entries", len(ents)))
	return state, ents, sc.Err()
}

// strataRequests splits a strata entry read by readStrataWAL into one
// entry per request, as etcd would have logged them.
func strataRequests(e *raftpb.Entry) ([]*raftpb.Entry, bool) {
	data, ok := bytes.CutPrefix(e.GetData(), strataBatch)
	if !ok {
		return nil, false
	}
	var out []*raftpb.Entry
	for len(data) > 0 {
		n, w := binary.Uvarint(data)
		if w <= 0 || uint64(len(data)-w) < n {
			return nil, false
		}
		out = append(out, &raftpb.Entry{Index: e.Index, Term: e.Term, Type: e.Type, Data: data[w : w+int(n)]})
		data = data[w+int(n):]
	}
	return out, true
}
