package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
)

// Errors. Corruption is reported as a *CorruptError, which wraps ErrCorrupt.
var (
	// ErrCorrupt is returned (wrapped in a *CorruptError) when a stream
	// fails verification: a bad magic, an unknown version or compression,
	// a checksum mismatch, a length out of bounds, a malformed pair, keys
	// out of order, a trailer that does not match the content, or a
	// missing trailer (a truncated stream).
	ErrCorrupt = errors.New("snapshot: corrupt stream")
	// ErrNotEmpty is returned by Install when the destination engine
	// holds keys.
	ErrNotEmpty = errors.New("snapshot: destination engine is not empty")
)

// CorruptError describes where and why a stream failed verification.
type CorruptError struct {
	// Offset is the stream offset of the header, block or trailer found
	// corrupt (or of the end of the stream, for a truncated one).
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%v at offset %d: %s", ErrCorrupt, e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) hold.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Compression is a block compression. The zero value is zstd, the default.
type Compression uint8

const (
	// CompressionZstd compresses blocks with zstd (default level).
	CompressionZstd Compression = 0
	// CompressionS2 compresses blocks with s2: faster, larger.
	CompressionS2 Compression = 1
	// CompressionNone stores blocks as they are.
	CompressionNone Compression = 2

	numCompressions = 3
)

func (c Compression) String() string {
	switch c {
	case CompressionZstd:
		return "zstd"
	case CompressionS2:
		return "s2"
	case CompressionNone:
		return "none"
	}
	return fmt.Sprintf("Compression(%d)", uint8(c))
}

const (
	// DefaultBlockSize is the uncompressed size at which a block is cut
	// when WriteOptions.BlockSize is 0.
	DefaultBlockSize = 1 << 20
	// MaxBlockSize bounds the uncompressed length of every block, so it
	// bounds a reader's buffers. A single key/value pair must fit in it
	// (with its two length prefixes); it is far above any etcd request
	// size limit, and so above any key plus value the applier can hold.
	MaxBlockSize = 64 << 20
)

const (
	magic         = "STRATASN"
	formatVersion = 1

	headerLen      = 20 // magic, version, compression, reserved, blockSize, crc
	blockHeaderLen = 13 // tag, rawLen, compLen, crc
	trailerLen     = 53 // tag, keys, bytes, sha256, crc

	tagBlock   = 'B'
	tagTrailer = 'T'
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// maxCompLen bounds the compressed length of a block of rawLen bytes. It is
// above the worst case of every compression (incompressible data grows by
// a few bytes per 64 KiB with zstd, by about a sixth at most with s2).
func maxCompLen(c Compression, rawLen int) int {
	if c == CompressionNone {
		return rawLen
	}
	return rawLen + rawLen/4 + 1024
}

// The zstd encoder and decoder are shared: EncodeAll and DecodeAll are safe
// for concurrent use. The decoder refuses to produce more than
// MaxBlockSize bytes, or more than the destination's capacity, whatever a
// frame header claims.
var (
	zstdEncoder = sync.OnceValue(func() *zstd.Encoder {
		e, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(false))
		if err != nil {
			panic(fmt.Sprintf("snapshot: zstd encoder: %v", err))
		}
		return e
	})
	zstdDecoder = sync.OnceValue(func() *zstd.Decoder {
		d, err := zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxBlockSize),
			zstd.WithDecodeAllCapLimit(true))
		if err != nil {
			panic(fmt.Sprintf("snapshot: zstd decoder: %v", err))
		}
		return d
	})
)

// compressBlock appends the block frame of raw (block header and
// compressed payload) to dst[:0].
func compressBlock(dst []byte, c Compression, raw []byte) []byte {
	dst = append(dst[:0], make([]byte, blockHeaderLen)...)
	switch c {
	case CompressionZstd:
		dst = zstdEncoder().EncodeAll(raw, dst)
	case CompressionS2:
		need := blockHeaderLen + s2.MaxEncodedLen(len(raw))
		if cap(dst) < need {
			dst = append(make([]byte, 0, need), dst...)
		}
		enc := s2.Encode(dst[blockHeaderLen:need], raw)
		dst = dst[:blockHeaderLen+len(enc)]
	default:
		dst = append(dst, raw...)
	}
	dst[0] = tagBlock
	binary.LittleEndian.PutUint32(dst[1:], uint32(len(raw)))
	binary.LittleEndian.PutUint32(dst[5:], uint32(len(dst)-blockHeaderLen))
	crc := crc32.Update(crc32.Checksum(dst[:9], castagnoli), castagnoli, dst[blockHeaderLen:])
	binary.LittleEndian.PutUint32(dst[9:], crc)
	return dst
}

// decompressBlock decompresses a block payload into dst[:0], growing it if
// needed to max(rawLen, 2*cap(dst)) bytes, never more than MaxBlockSize.
// The result must be exactly rawLen (<= MaxBlockSize) bytes long.
func decompressBlock(dst []byte, c Compression, payload []byte, rawLen int) ([]byte, error) {
	if cap(dst) < rawLen {
		// Doubling: blocks just under the block size vary in length.
		dst = make([]byte, 0, max(rawLen, min(2*cap(dst), MaxBlockSize)))
	}
	var out []byte
	var err error
	switch c {
	case CompressionZstd:
		// The capacity limit makes the decoder refuse to produce more
		// than rawLen bytes; give back the whole buffer for reuse.
		out, err = zstdDecoder().DecodeAll(payload, dst[:0:rawLen])
		if err == nil && cap(out) > 0 && &out[:1][0] == &dst[:1][0] {
			out = dst[:len(out)]
		}
	case CompressionS2:
		var n int
		if n, err = s2.DecodedLen(payload); err == nil && n != rawLen {
			err = fmt.Errorf("s2 block decodes to %d bytes, header says %d", n, rawLen)
		}
		if err == nil {
			out, err = s2.Decode(dst[:rawLen], payload)
		}
	default:
		out = append(dst[:0], payload...)
	}
	if err != nil {
		return dst, err
	}
	if len(out) != rawLen {
		return dst, fmt.Errorf("block decodes to %d bytes, header says %d", len(out), rawLen)
	}
	return out, nil
}

// appendPair appends the encoding of one pair.
func appendPair(dst, key, value []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(key)))
	dst = append(dst, key...)
	dst = binary.AppendUvarint(dst, uint64(len(value)))
	return append(dst, value...)
}

// pairLen is the encoded length of a pair.
func pairLen(key, value []byte) int {
	return uvarintLen(len(key)) + len(key) + uvarintLen(len(value)) + len(value)
}

func uvarintLen(n int) int {
	l := 1
	for ; n >= 0x80; n >>= 7 {
		l++
	}
	return l
}

// nextPair decodes the pair at the start of b. Lengths are checked against
// what is left of b, so nothing in b can make it read out of bounds.
func nextPair(b []byte) (key, value, rest []byte, err error) {
	kl, n := binary.Uvarint(b)
	if n <= 0 || kl > uint64(len(b)-n) {
		return nil, nil, nil, errors.New("malformed key length")
	}
	b = b[n:]
	key, b = b[:kl], b[kl:]
	vl, n := binary.Uvarint(b)
	if n <= 0 || vl > uint64(len(b)-n) {
		return nil, nil, nil, errors.New("malformed value length")
	}
	b = b[n:]
	return key, b[:vl], b[vl:], nil
}
