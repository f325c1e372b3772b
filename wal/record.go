package wal

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// Record framing; see the package documentation for the layout.
const (
	recordHeaderSize = 24
	recordAlign      = 8
	// maxPayload bounds one record's payload by what its length field holds.
	maxPayload = math.MaxUint32
)

// recordType is the kind of a record's payload.
type recordType uint8

const (
	// recordTypeInvalid is never written: a header whose type byte is zero
	// is preallocated space (or damage), never a record.
	recordTypeInvalid recordType = iota
	// recordTypeSegmentHeader opens every segment (and appears nowhere
	// else): format version, sequence number, first index, where the
	// previous segment's data ended, and the latest HardState and
	// SnapshotMarker as of the segment's creation.
	recordTypeSegmentHeader
	// recordTypeEntry is one raftpb.Entry, protobuf-encoded.
	recordTypeEntry
	// recordTypeHardState is one non-empty raftpb.HardState, protobuf-encoded.
	recordTypeHardState
	// recordTypeSnapshot is one SnapshotMarker (see encodeMarker).
	recordTypeSnapshot
	// recordTypeCheckpoint carries no payload. Close writes one after its
	// final fsync, so that its durable offset vouches for every byte before
	// it and damage there is reported rather than taken for a torn tail.
	recordTypeCheckpoint

	recordTypeMax = recordTypeCheckpoint
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// paddedSize is the bytes a record with an n-byte payload occupies.
func paddedSize(n int) int {
	return (recordHeaderSize + n + recordAlign - 1) &^ (recordAlign - 1)
}

// beginRecord reserves a record header at the end of buf. The caller appends
// the payload and calls endRecord with the returned start.
func beginRecord(buf []byte) (_ []byte, start int) {
	start = len(buf)
	return append(buf, make([]byte, recordHeaderSize)...), start
}

// endRecord fills in the length, type and payload CRC of the record that
// begins at start and runs to the end of buf, and pads it with zeroes. The
// header CRC and durable offset are filled in later by stampRecord, once the
// record's place in a segment is known.
func endRecord(buf []byte, start int, typ recordType) []byte {
	payload := buf[start+recordHeaderSize:]
	h := buf[start : start+recordHeaderSize]
	binary.LittleEndian.PutUint32(h[4:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(payload, castagnoli))
	h[12] = byte(typ)
	pad := paddedSize(len(payload)) - recordHeaderSize - len(payload)
	return append(buf, make([]byte, pad)...)
}

// stampRecord records in the header at h that every byte of the segment
// before offset synced was durable before the record was written, and seals
// the header with its CRC.
func stampRecord(h []byte, synced int64) {
	binary.LittleEndian.PutUint64(h[16:], uint64(synced))
	binary.LittleEndian.PutUint32(h[0:], crc32.Checksum(h[4:recordHeaderSize], castagnoli))
}

// appendRecord appends a complete record (stamped with synced) to buf.
func appendRecord(buf []byte, typ recordType, payload []byte, synced int64) []byte {
	buf, start := beginRecord(buf)
	buf = append(buf, payload...)
	buf = endRecord(buf, start, typ)
	stampRecord(buf[start:], synced)
	return buf
}

// decodedRecord is one record read back from a segment. payload aliases the
// segment's bytes.
type decodedRecord struct {
	typ     recordType
	payload []byte
	synced  int64
	next    int // offset just past the record's padding
}

// decodeRecord decodes the record at off in b, a whole segment file. ok is
// false when there is no intact record there: zeroes, a torn or damaged
// record, or a length that runs past the end of b. The length is checked
// against b before the payload is touched, so no input makes decodeRecord
// read out of bounds or allocate.
func decodeRecord(b []byte, off int) (r decodedRecord, ok bool) {
	if off < 0 || off > len(b)-recordHeaderSize {
		return r, false
	}
	h := b[off : off+recordHeaderSize]
	r.typ = recordType(h[12])
	if r.typ == recordTypeInvalid || r.typ > recordTypeMax || h[13]|h[14]|h[15] != 0 {
		return r, false
	}
	if binary.LittleEndian.Uint32(h[0:]) != crc32.Checksum(h[4:], castagnoli) {
		return r, false
	}
	n := int64(binary.LittleEndian.Uint32(h[4:]))
	if n > int64(len(b)-off-recordHeaderSize) {
		return r, false
	}
	r.next = off + paddedSize(int(n))
	if r.next > len(b) {
		return r, false
	}
	r.payload = b[off+recordHeaderSize : off+recordHeaderSize+int(n) : off+recordHeaderSize+int(n)]
	if binary.LittleEndian.Uint32(h[8:]) != crc32.Checksum(r.payload, castagnoli) {
		return r, false
	}
	r.synced = int64(binary.LittleEndian.Uint64(h[16:]))
	return r, true
}

// tailState classifies the bytes of a segment after its last intact record.
type tailState int

const (
	// tailClean: nothing but zeroes (preallocated space) follows.
	tailClean tailState = iota
	// tailTorn: damaged bytes follow, but no intact record among them
	// claims that the damaged part was durable when it was written. This is
	// what a crash in the middle of unsynced writes leaves (pages of a write
	// may reach the disk in any order), so it is repaired by truncation.
	tailTorn
	// tailCorrupt: an intact record further on was written after the bytes
	// at the end offset had been fsynced, so the damage is to durable data.
	tailCorrupt
)

func (t tailState) String() string {
	switch t {
	case tailClean:
		return "clean"
	case tailTorn:
		return "torn"
	case tailCorrupt:
		return "corrupt"
	}
	return "tailState(?)"
}

// classifyTail looks at b[end:], where end is the offset of the first bad
// record in segment b. For tailCorrupt, witness is the offset of the intact
// record that proves the damage is to durable data.
//
// Records start at multiples of recordAlign and every record has a non-zero
// type byte, so the search skips aligned offsets with a zero type byte
// without computing a CRC; preallocated space costs one byte load per
// recordAlign bytes.
func classifyTail(b []byte, end int) (state tailState, witness int) {
	if end >= len(b) || allZero(b[end:]) {
		return tailClean, 0
	}
	state = tailTorn
	for off := end + recordAlign; off <= len(b)-recordHeaderSize; {
		if t := recordType(b[off+12]); t == recordTypeInvalid || t > recordTypeMax {
			off += recordAlign
			continue
		}
		r, ok := decodeRecord(b, off)
		if !ok {
			off += recordAlign
			continue
		}
		if r.synced > int64(end) {
			return tailCorrupt, off
		}
		off = r.next
	}
	return state, 0
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
