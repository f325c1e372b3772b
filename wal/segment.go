package wal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/failpoint"
)

// formatVersion is written in every segment header. A reader refuses
// segments of any other version.
const formatVersion = 1

const (
	segmentSuffix = ".wal"
	tempSuffix    = ".tmp"
	// segmentNameLen is len("%016x-%016x.wal").
	segmentNameLen = 16 + 1 + 16 + len(segmentSuffix)
)

// segmentName is the file name of segment seq whose log was expected to
// continue at firstIndex when it was created. Names sort in seq order.
func segmentName(seq, firstIndex uint64) string {
	return fmt.Sprintf("%016x-%016x%s", seq, firstIndex, segmentSuffix)
}

// parseSegmentName is the inverse of segmentName.
func parseSegmentName(name string) (seq, firstIndex uint64, ok bool) {
	if len(name) != segmentNameLen || name[16] != '-' || !strings.HasSuffix(name, segmentSuffix) {
		return 0, 0, false
	}
	seq, err1 := strconv.ParseUint(name[:16], 16, 64)
	firstIndex, err2 := strconv.ParseUint(name[17:33], 16, 64)
	return seq, firstIndex, err1 == nil && err2 == nil
}

// segmentInfo is what the WAL remembers about a live segment.
type segmentInfo struct {
	seq, firstIndex uint64
	// maxIndex is the highest entry index written to the segment (0 if
	// none). Entries are not in increasing order across a segment when raft
	// overwrote a suffix, so it is tracked rather than derived from names.
	maxIndex uint64
}

func (s segmentInfo) name() string { return segmentName(s.seq, s.firstIndex) }

// listSegments returns the segments in dir in seq order and removes the
// temporary files of segments whose creation never completed.
func listSegments(dir string) ([]segmentInfo, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []segmentInfo
	for _, de := range des {
		name := de.Name()
		if strings.HasSuffix(name, segmentSuffix+tempSuffix) {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				return nil, err
			}
			continue
		}
		if seq, first, ok := parseSegmentName(name); ok && de.Type().IsRegular() {
			segs = append(segs, segmentInfo{seq: seq, firstIndex: first})
		}
	}
	slices.SortFunc(segs, func(a, b segmentInfo) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	return segs, nil
}

// segmentHeader is the payload of a segment's first record.
type segmentHeader struct {
	seq, firstIndex uint64
	// prevEnd is the offset at which the data of segment seq-1 ends. Open
	// checks it, so damage that shortens a non-last segment is caught even
	// when it hits that segment's last record.
	prevEnd int64
	// hardState and marker are encoded as in their own records; an empty
	// hardState means none was recorded yet.
	hardState, marker []byte
}

const segmentHeaderFixed = 32

func (h *segmentHeader) encode(buf []byte) []byte {
	buf = binary.LittleEndian.AppendUint32(buf, formatVersion)
	buf = binary.LittleEndian.AppendUint32(buf, 0)
	buf = binary.LittleEndian.AppendUint64(buf, h.seq)
	buf = binary.LittleEndian.AppendUint64(buf, h.firstIndex)
	buf = binary.LittleEndian.AppendUint64(buf, uint64(h.prevEnd))
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(h.hardState)))
	buf = append(buf, h.hardState...)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(len(h.marker)))
	return append(buf, h.marker...)
}

func decodeSegmentHeader(b []byte) (segmentHeader, error) {
	var h segmentHeader
	if len(b) < segmentHeaderFixed {
		return h, errors.New("short segment header")
	}
	if v := binary.LittleEndian.Uint32(b); v != formatVersion {
		return h, fmt.Errorf("unsupported format version %d", v)
	}
	h.seq = binary.LittleEndian.Uint64(b[8:])
	h.firstIndex = binary.LittleEndian.Uint64(b[16:])
	h.prevEnd = int64(binary.LittleEndian.Uint64(b[24:]))
	rest := b[segmentHeaderFixed:]
	var ok bool
	if h.hardState, rest, ok = cutLengthPrefixed(rest); !ok {
		return h, errors.New("bad HardState in segment header")
	}
	if h.marker, rest, ok = cutLengthPrefixed(rest); !ok || len(rest) != 0 {
		return h, errors.New("bad snapshot marker in segment header")
	}
	if h.prevEnd < 0 {
		return h, errors.New("bad previous segment end in segment header")
	}
	return h, nil
}

func cutLengthPrefixed(b []byte) (field, rest []byte, ok bool) {
	if len(b) < 4 {
		return nil, nil, false
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, false
	}
	return b[4 : 4+n], b[4+n:], true
}

// encodeMarker encodes m as Index and Term (little-endian uint64s) followed
// by the protobuf-encoded ConfState.
func encodeMarker(buf []byte, m SnapshotMarker) ([]byte, error) {
	buf = binary.LittleEndian.AppendUint64(buf, m.Index)
	buf = binary.LittleEndian.AppendUint64(buf, m.Term)
	if m.ConfState == nil {
		return buf, nil
	}
	return proto.MarshalOptions{}.MarshalAppend(buf, m.ConfState)
}

func decodeMarker(b []byte) (SnapshotMarker, error) {
	var m SnapshotMarker
	if len(b) < 16 {
		return m, errors.New("short snapshot marker")
	}
	m.Index = binary.LittleEndian.Uint64(b)
	m.Term = binary.LittleEndian.Uint64(b[8:])
	m.ConfState = &raftpb.ConfState{}
	if err := proto.Unmarshal(b[16:], m.ConfState); err != nil {
		return m, fmt.Errorf("snapshot marker: %v", err)
	}
	return m, nil
}

// segmentFile is an open segment. The WAL's active segment is one; a
// group-commit leader holds a reference to the segment it is syncing, so a
// rollover or Close never closes a file under an fsync.
type segmentFile struct {
	f    *os.File
	path string
	// size is the file's preallocated size: appends stay below it.
	size int64
	// synced is the offset below which every byte is known durable. It only
	// grows; records are stamped with it when they are written.
	synced atomic.Int64
	refs   atomic.Int32
}

func newSegmentFile(f *os.File, size int64) *segmentFile {
	s := &segmentFile{f: f, path: f.Name(), size: size}
	s.refs.Store(1)
	return s
}

func (s *segmentFile) ref() { s.refs.Add(1) }

// unref drops a reference and closes the file with the last one.
func (s *segmentFile) unref() error {
	if s.refs.Add(-1) == 0 {
		return s.f.Close()
	}
	return nil
}

// advanceSynced raises s.synced to off if it is lower.
func (s *segmentFile) advanceSynced(off int64) {
	for {
		cur := s.synced.Load()
		if off <= cur || s.synced.CompareAndSwap(cur, off) {
			return
		}
	}
}

// createSegment writes a new segment for h to dir with the temp-file, fsync,
// rename protocol: a segment that exists under its final name has a durable,
// intact header and is preallocated to size. The caller fsyncs dir to make
// the name itself durable. The returned segment's data ends after the header.
func createSegment(dir string, h *segmentHeader, size int64, noSync bool) (_ *segmentFile, end int64, err error) {
	hdr := appendRecord(nil, recordTypeSegmentHeader, h.encode(nil), 0)
	size = max(size, int64(len(hdr)))
	final := filepath.Join(dir, segmentName(h.seq, h.firstIndex))
	tmp := final + tempSuffix
	failpoint.Created(tmp)
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := preallocate(f, size); err != nil {
		return nil, 0, fmt.Errorf("preallocate %s: %w", tmp, err)
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		return nil, 0, err
	}
	if !noSync {
		failpoint.WillSync(tmp, int64(len(hdr)), failpoint.Zero)
		if err := fdatasync(f); err != nil {
			return nil, 0, err
		}
	}
	failpoint.Renamed(tmp, final)
	if err := os.Rename(tmp, final); err != nil {
		return nil, 0, err
	}
	// f.Name() still says tmp; segmentFile keeps the final path for messages.
	s := newSegmentFile(f, size)
	s.path = final
	s.synced.Store(int64(len(hdr)))
	return s, int64(len(hdr)), nil
}
