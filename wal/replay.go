package wal

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// replay rebuilds the log from records in the order they were written,
// applying raft's rules: an entry at index i replaces the entry at i and
// everything after it, and a snapshot marker at index m makes every entry at
// or below m unneeded.
//
// Invariant: ents[k].GetIndex() == start+k.
type replay struct {
	hs    *raftpb.HardState // nil until a non-empty one is seen
	snap  SnapshotMarker
	start uint64
	ents  []*raftpb.Entry
	// keepReleased keeps the entries at or below the markers, as far as
	// the segments still hold them (Inspect). Entries kept from before a
	// marker that jumped past them (a snapshot received from the leader)
	// move to released, and the log goes on after the marker.
	keepReleased bool
	released     []*raftpb.Entry
}

// lastIndex is the index the log ends at: its last entry, or the marker's
// index when the marker is ahead of every entry.
func (r *replay) lastIndex() uint64 {
	last := r.snap.Index
	if n := len(r.ents); n > 0 {
		last = max(last, r.start+uint64(n)-1)
	}
	return last
}

func (r *replay) entry(e *raftpb.Entry) error {
	i := e.GetIndex()
	switch {
	case i == 0:
		return fmt.Errorf("entry with index 0")
	case len(r.ents) == 0 || i < r.start:
		// The first entry after a marker, after ReleaseTo dropped the
		// segments holding the entries before it, or an overwrite below
		// everything replayed so far.
		clear(r.ents)
		r.start, r.ents = i, append(r.ents[:0], e)
	case i > r.start+uint64(len(r.ents)) && r.keepReleased && r.snap.Index >= i-1:
		// A snapshot from the leader covers the gap.
		r.released = append(r.released, r.ents...)
		r.start, r.ents = i, []*raftpb.Entry{e}
	case i > r.start+uint64(len(r.ents)):
		return fmt.Errorf("entry %d leaves a gap after entry %d", i, r.start+uint64(len(r.ents))-1)
	default:
		k := i - r.start
		clear(r.ents[k:])
		r.ents = append(r.ents[:k], e)
	}
	return nil
}

func (r *replay) marker(m SnapshotMarker) {
	r.snap = m
	if r.keepReleased {
		return
	}
	n := uint64(len(r.ents))
	if n == 0 || m.Index < r.start {
		return
	}
	k := min(m.Index-r.start+1, n)
	copy(r.ents, r.ents[k:])
	clear(r.ents[n-k:])
	r.ents = r.ents[:n-k]
	r.start = m.Index + 1
}

func (r *replay) hardState(hs *raftpb.HardState) { r.hs = hs }

// result returns what ReadAll reports. The entries start right after the
// marker: ReleaseTo never drops entries above the latest marker.
func (r *replay) result() (*raftpb.HardState, SnapshotMarker, []*raftpb.Entry, error) {
	r.marker(r.snap) // drop entries overwritten below the marker after it was written
	ents := r.ents
	if len(ents) > 0 && r.snap.Index > 0 && r.start != r.snap.Index+1 && !r.keepReleased {
		return nil, SnapshotMarker{}, nil, fmt.Errorf("log resumes at index %d after snapshot marker at %d", r.start, r.snap.Index)
	}
	if r.keepReleased && len(r.released) > 0 {
		// Overwrites after the jump may have reached below it.
		k := len(r.released)
		for k > 0 && len(ents) > 0 && r.released[k-1].GetIndex() >= ents[0].GetIndex() {
			k--
		}
		ents = append(r.released[:k:k], ents...)
	}
	if len(ents) == 0 {
		ents = nil
	}
	return r.hs, r.snap, ents, nil
}

// segmentScan is what reading one segment yields besides its records.
type segmentScan struct {
	header segmentHeader
	// end is the offset just past the last intact record.
	end int64
	// tail classifies the bytes from end on; witness is the offset of the
	// record that proves tailCorrupt.
	tail     tailState
	witness  int64
	maxIndex uint64
}

// readSegment feeds the intact records of b, the whole contents of one
// segment file, to r and classifies what follows them. It returns a
// *corruption for damage no crash can explain (a bad header, a CRC-valid
// record that does not decode, a gap in the log); the tail is for the caller
// to judge, since that depends on whether the segment is the last.
//
// checkHeader, if not nil, vets the header before any record is replayed,
// so that damage is reported against the segment it is in; its error is
// returned as is.
//
// readSegment is safe on arbitrary bytes: every length is checked against
// len(b) before use, so its allocations are bounded by len(b).
func readSegment(b []byte, r *replay, checkHeader func(*segmentHeader) error) (segmentScan, error) {
	var s segmentScan
	rec, ok := decodeRecord(b, 0)
	if !ok || rec.typ != recordTypeSegmentHeader {
		return s, &corruption{0, "missing or damaged segment header"}
	}
	var err error
	if s.header, err = decodeSegmentHeader(rec.payload); err != nil {
		return s, &corruption{0, err.Error()}
	}
	if checkHeader != nil {
		if err := checkHeader(&s.header); err != nil {
			return s, err
		}
	}
	if len(s.header.hardState) > 0 {
		hs := &raftpb.HardState{}
		if err := proto.Unmarshal(s.header.hardState, hs); err != nil {
			return s, &corruption{0, fmt.Sprintf("segment header HardState: %v", err)}
		}
		r.hardState(hs)
	}
	if len(s.header.marker) > 0 {
		m, err := decodeMarker(s.header.marker)
		if err != nil {
			return s, &corruption{0, err.Error()}
		}
		r.marker(m)
	}
	off := rec.next
	for {
		rec, ok := decodeRecord(b, off)
		if !ok {
			break
		}
		if err := applyRecord(rec, r, &s); err != nil {
			return s, &corruption{int64(off), err.Error()}
		}
		off = rec.next
	}
	s.end = int64(off)
	state, witness := classifyTail(b, off)
	s.tail, s.witness = state, int64(witness)
	return s, nil
}

func applyRecord(rec decodedRecord, r *replay, s *segmentScan) error {
	switch rec.typ {
	case recordTypeEntry:
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(rec.payload, e); err != nil {
			return fmt.Errorf("entry: %v", err)
		}
		if err := r.entry(e); err != nil {
			return err
		}
		s.maxIndex = max(s.maxIndex, e.GetIndex())
	case recordTypeHardState:
		hs := &raftpb.HardState{}
		if err := proto.Unmarshal(rec.payload, hs); err != nil {
			return fmt.Errorf("HardState: %v", err)
		}
		r.hardState(hs)
	case recordTypeSnapshot:
		m, err := decodeMarker(rec.payload)
		if err != nil {
			return err
		}
		r.marker(m)
	case recordTypeCheckpoint:
	default:
		return fmt.Errorf("unexpected %v record", rec.typ)
	}
	return nil
}

func (t recordType) String() string {
	switch t {
	case recordTypeSegmentHeader:
		return "segment header"
	case recordTypeEntry:
		return "entry"
	case recordTypeHardState:
		return "HardState"
	case recordTypeSnapshot:
		return "snapshot marker"
	case recordTypeCheckpoint:
		return "checkpoint"
	}
	return fmt.Sprintf("recordType(%d)", uint8(t))
}
