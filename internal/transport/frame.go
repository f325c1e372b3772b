package transport

import (
	"encoding/binary"
	"fmt"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Frame format. Every frame on a message link (raw.go) and every gRPC message
// on the snapshot stream is one frame:
//
//	offset size field
//	0      1    version (frameVersion)
//	1      1    compression (Compression)
//	2      1    kind (frameKind)
//	3      1    reserved, zero
//	4      8    cluster ID, big endian
//	12     8    sender member ID, big endian
//	20     8    recipient member ID, big endian
//	28     -    body, compressed as a whole when compression != none
//
// The uncompressed body of a frameKindMessages frame is a sequence of
// messages, each a uvarint length followed by that many bytes of a marshaled
// raftpb.Message; the body of a frameKindSnapshotData frame is raw snapshot
// bytes. A snapshot stream is one frameKindMessages frame holding the MsgSnap
// followed by frameKindSnapshotData frames.
const (
	frameVersion    = 1
	frameHeaderSize = 28
)

type frameKind uint8

const (
	frameKindMessages     frameKind = 1
	frameKindSnapshotData frameKind = 2
)

// Compression is the compression of a link's frames.
type Compression string

const (
	CompressionNone Compression = "none"
	CompressionS2   Compression = "s2"
	CompressionZstd Compression = "zstd"
)

// The compression byte of a frame header.
const (
	noneWire byte = 0
	s2Wire   byte = 1
	zstdWire byte = 2
)

func (c Compression) wire() (byte, error) {
	switch c {
	case CompressionNone, "":
		return noneWire, nil
	case CompressionS2:
		return s2Wire, nil
	case CompressionZstd:
		return zstdWire, nil
	}
	return 0, fmt.Errorf("transport: unknown compression %q", string(c))
}

// frameHeader is the decoded fixed part of a frame.
type frameHeader struct {
	compression byte
	kind        frameKind
	clusterID   uint64
	from, to    uint64
}

func putHeader(b []byte, h frameHeader) {
	b[0] = frameVersion
	b[1] = h.compression
	b[2] = byte(h.kind)
	b[3] = 0
	binary.BigEndian.PutUint64(b[4:], h.clusterID)
	binary.BigEndian.PutUint64(b[12:], h.from)
	binary.BigEndian.PutUint64(b[20:], h.to)
}

func parseHeader(b []byte) (frameHeader, error) {
	if len(b) < frameHeaderSize {
		return frameHeader{}, fmt.Errorf("%w: %d bytes, shorter than the header", ErrBadFrame, len(b))
	}
	if b[0] != frameVersion {
		return frameHeader{}, fmt.Errorf("%w: version %d, want %d", ErrBadFrame, b[0], frameVersion)
	}
	if b[1] > 2 {
		return frameHeader{}, fmt.Errorf("%w: compression %d", ErrBadFrame, b[1])
	}
	return frameHeader{
		compression: b[1],
		kind:        frameKind(b[2]),
		clusterID:   binary.BigEndian.Uint64(b[4:]),
		from:        binary.BigEndian.Uint64(b[12:]),
		to:          binary.BigEndian.Uint64(b[20:]),
	}, nil
}

// codecs holds the compressors a transport shares between its links. The
// zstd encoder's EncodeAll and decoder's DecodeAll are safe for concurrent
// use; s2 is stateless.
type codecs struct {
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	// maxBody bounds a decompressed body, so a corrupt or hostile frame
	// cannot make the receiver allocate without bound.
	maxBody int
}

func newCodecs(maxBody int) (*codecs, error) {
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, err
	}
	zdec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(uint64(maxBody)), zstd.WithDecoderConcurrency(0))
	if err != nil {
		zenc.Close()
		return nil, err
	}
	return &codecs{zenc: zenc, zdec: zdec, maxBody: maxBody}, nil
}

func (c *codecs) close() {
	c.zenc.Close()
	c.zdec.Close()
}

// seal returns a new frame holding h and body, compressed per h.compression.
// The result never aliases body, so body may be reused; the frame itself is
// handed to gRPC and must not be reused.
func (c *codecs) seal(h frameHeader, body []byte) []byte {
	var f []byte
	switch h.compression {
	case 0:
		f = make([]byte, frameHeaderSize+len(body))
		copy(f[frameHeaderSize:], body)
	case 1:
		f = make([]byte, frameHeaderSize+s2.MaxEncodedLen(len(body)))
		n := len(s2.Encode(f[frameHeaderSize:], body))
		f = f[:frameHeaderSize+n]
	case 2:
		f = c.zenc.EncodeAll(body, make([]byte, frameHeaderSize, frameHeaderSize+len(body)/2+64))
	default:
		panic(fmt.Sprintf("transport: sealing frame with compression %d", h.compression))
	}
	putHeader(f, h)
	return f
}

// open returns the uncompressed body of frame f (whose header is h),
// decompressing into scratch when needed. The result may alias f or scratch.
func (c *codecs) open(h frameHeader, f, scratch []byte) ([]byte, error) {
	body := f[frameHeaderSize:]
	switch h.compression {
	case 0:
		if len(body) > c.maxBody {
			return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(body))
		}
		return body, nil
	case 1:
		n, err := s2.DecodedLen(body)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrBadFrame, err)
		}
		if n > c.maxBody {
			return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n)
		}
		out, err := s2.Decode(scratch[:cap(scratch)], body)
		if err != nil {
			return nil, fmt.Errorf("%w: s2: %v", ErrBadFrame, err)
		}
		return out, nil
	case 2:
		out, err := c.zdec.DecodeAll(body, scratch[:0])
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrBadFrame, err)
		}
		if len(out) > c.maxBody {
			return nil, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, len(out))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: compression %d", ErrBadFrame, h.compression)
}

var marshalOpts = proto.MarshalOptions{UseCachedSize: true}

// appendBatch appends length-prefixed messages from msgs to body until the body
// would exceed limit (always at least one message). It returns the body and the
// number of messages appended.
func appendBatch(body []byte, msgs []*raftpb.Message, limit int) ([]byte, int) {
	n := 0
	for _, m := range msgs {
		size := proto.Size(m)
		if n > 0 && len(body)+binary.MaxVarintLen64+size > limit {
			break
		}
		body = binary.AppendUvarint(body, uint64(size))
		var err error
		body, err = marshalOpts.MarshalAppend(body, m)
		if err != nil {
			// raftpb.Message has no required fields and no invalid
			// states proto can detect; failing here is a bug.
			panic(fmt.Sprintf("transport: marshaling %s: %v", m.GetType(), err))
		}
		n++
	}
	return body, n
}

// forEachMessage decodes the messages of a frameKindMessages body in order and
// calls fn with each. It stops at the first error.
func forEachMessage(body []byte, fn func(m *raftpb.Message) error) error {
	for len(body) > 0 {
		size, k := binary.Uvarint(body)
		if k <= 0 || size > uint64(len(body)-k) {
			return fmt.Errorf("%w: bad message length", ErrBadFrame)
		}
		m := new(raftpb.Message)
		if err := proto.Unmarshal(body[k:k+int(size)], m); err != nil {
			return fmt.Errorf("%w: %v", ErrBadFrame, err)
		}
		body = body[k+int(size):]
		if err := fn(m); err != nil {
			return err
		}
	}
	return nil
}
