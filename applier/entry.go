package applier

import (
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// Entry data format. A normal raft entry proposed by strata carries a batch
// of client requests:
//
//	entry   := kind:byte body
//	kind    := 0x01 (request batch)
//	body    := count:uvarint request*count
//	request := len:uvarint InternalRaftRequest(protobuf, len bytes)
//
// Each request carries its own ID (InternalRaftRequest.ID) by which the
// proposer's waiter is answered. An entry with empty data is raft's no-op
// (appended by a new leader) and applies nothing but the index.

// EntryKind is the first byte of a normal entry's data.
type EntryKind byte

const (
	// EntryKindRequestBatch is a batch of InternalRaftRequests.
	EntryKindRequestBatch EntryKind = 0x01
)

// ErrCorruptEntry is returned by DecodeEntry when entry data is malformed.
// A committed entry that fails to decode means the log is corrupt; the
// member must stop rather than skip it.
var ErrCorruptEntry = errors.New("applier: corrupt entry")

// EncodeEntry appends the encoding of reqs, already marshaled, to dst.
func EncodeEntry(dst []byte, reqs [][]byte) []byte {
	dst = append(dst, byte(EntryKindRequestBatch))
	dst = binary.AppendUvarint(dst, uint64(len(reqs)))
	for _, r := range reqs {
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

// DecodeEntry decodes the requests of a normal entry's data. Empty data
// decodes to no requests.
func DecodeEntry(data []byte) ([]*pb.InternalRaftRequest, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if EntryKind(data[0]) != EntryKindRequestBatch {
		return nil, fmt.Errorf("%w: unknown kind %#x", ErrCorruptEntry, data[0])
	}
	data = data[1:]
	n, w := binary.Uvarint(data)
	if w <= 0 {
		return nil, fmt.Errorf("%w: bad count", ErrCorruptEntry)
	}
	data = data[w:]
	// Every request takes at least one byte (its length), which bounds a
	// hostile count before we allocate for it.
	if n > uint64(len(data)) {
		return nil, fmt.Errorf("%w: count %d exceeds data", ErrCorruptEntry, n)
	}
	reqs := make([]*pb.InternalRaftRequest, 0, n)
	for i := uint64(0); i < n; i++ {
		l, w := binary.Uvarint(data)
		if w <= 0 || l > uint64(len(data)-w) {
			return nil, fmt.Errorf("%w: bad length of request %d", ErrCorruptEntry, i)
		}
		r := &pb.InternalRaftRequest{}
		if err := proto.Unmarshal(data[w:w+int(l)], r); err != nil {
			return nil, fmt.Errorf("%w: request %d: %v", ErrCorruptEntry, i, err)
		}
		reqs = append(reqs, r)
		data = data[w+int(l):]
	}
	if len(data) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptEntry, len(data))
	}
	return reqs, nil
}
