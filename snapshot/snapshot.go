package snapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"slices"

	"github.com/stratakv/strata/applier"
)

// Info describes a snapshot's content.
type Info struct {
	// Keys is the number of key/value pairs; Bytes the total of
	// len(key)+len(value) over them.
	Keys, Bytes int64
	// Checksum is the SHA-256 of the logical content (the uncompressed
	// pairs, see doc.go): independent of compression and block size.
	Checksum [32]byte
	// AppliedIndex and AppliedTerm are the raft position the content
	// reflects, from its m/applied key (0 if it has none).
	AppliedIndex, AppliedTerm uint64
}

// WriteOptions configures Write. The zero value writes zstd blocks of
// DefaultBlockSize.
type WriteOptions struct {
	Compression Compression
	// BlockSize is the uncompressed size at which a block is cut; 0 means
	// DefaultBlockSize. It bounds the reader's memory (together with the
	// largest pair). At most MaxBlockSize.
	BlockSize int
}

// Write streams every key/value of r, which must be a consistent view (an
// applier.Snapshot), to w in the snapshot format, and returns its Info. It
// fails if r's keys are not strictly increasing or a pair does not fit in
// MaxBlockSize. Memory is bounded by the block size, whatever r holds.
func Write(w io.Writer, r applier.Reader, opts WriteOptions) (Info, error) {
	sw, err := newStreamWriter(w, opts)
	if err != nil {
		return Info{}, err
	}
	it, err := r.NewIter(nil, nil)
	if err != nil {
		return Info{}, err
	}
	var prev []byte
	for valid := it.First(); valid; valid = it.Next() {
		key, value := it.Key(), it.Value()
		if value == nil {
			if err := it.Error(); err != nil {
				it.Close()
				return Info{}, fmt.Errorf("snapshot: read %q: %w", key, err)
			}
		}
		if sw.info.Keys > 0 && bytes.Compare(prev, key) >= 0 {
			it.Close()
			return Info{}, fmt.Errorf("snapshot: source keys out of order: %q after %q", key, prev)
		}
		prev = append(prev[:0], key...)
		if err := sw.add(key, value); err != nil {
			it.Close()
			return Info{}, err
		}
	}
	if err := it.Error(); err != nil {
		it.Close()
		return Info{}, fmt.Errorf("snapshot: iterate: %w", err)
	}
	if err := it.Close(); err != nil {
		return Info{}, err
	}
	return sw.finish()
}

// streamWriter encodes a stream. It does not check key order (Write does),
// so tests can produce out-of-order streams.
type streamWriter struct {
	w         io.Writer
	c         Compression
	blockSize int
	block     []byte // pairs of the block being built
	frame     []byte // scratch for the compressed frame
	sum       hash.Hash
	info      Info
}

func newStreamWriter(w io.Writer, opts WriteOptions) (*streamWriter, error) {
	if opts.Compression >= numCompressions {
		return nil, fmt.Errorf("snapshot: unknown compression %v", opts.Compression)
	}
	bs := opts.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 0 || bs > MaxBlockSize {
		return nil, fmt.Errorf("snapshot: block size %d out of (0, %d]", bs, MaxBlockSize)
	}
	var h [headerLen]byte
	copy(h[:], magic)
	h[8] = formatVersion
	h[9] = byte(opts.Compression)
	binary.LittleEndian.PutUint32(h[12:], uint32(bs))
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], castagnoli))
	if _, err := w.Write(h[:]); err != nil {
		return nil, err
	}
	return &streamWriter{w: w, c: opts.Compression, blockSize: bs, sum: sha256.New()}, nil
}

// add appends a pair, cutting the current block first if the pair would
// make it exceed the block size. A pair larger than the block size
// therefore travels alone.
func (sw *streamWriter) add(key, value []byte) error {
	n := pairLen(key, value)
	if n > MaxBlockSize {
		return fmt.Errorf("snapshot: pair of key %q is %d bytes, more than MaxBlockSize", key, n)
	}
	if len(sw.block) > 0 && len(sw.block)+n > sw.blockSize {
		if err := sw.flush(); err != nil {
			return err
		}
	}
	sw.block = appendPair(sw.block, key, value)
	sw.info.Keys++
	sw.info.Bytes += int64(len(key) + len(value))
	if bytes.Equal(key, keyMetaApplied) {
		// A reader would refuse the stream; fail now.
		var err error
		if sw.info.AppliedIndex, sw.info.AppliedTerm, err = parseApplied(value); err != nil {
			return err
		}
	}
	if len(sw.block) >= sw.blockSize {
		return sw.flush()
	}
	return nil
}

func (sw *streamWriter) flush() error {
	if len(sw.block) == 0 {
		return nil
	}
	sw.sum.Write(sw.block)
	sw.frame = compressBlock(sw.frame, sw.c, sw.block)
	sw.block = sw.block[:0]
	_, err := sw.w.Write(sw.frame)
	return err
}

// finish writes the last block and the trailer.
func (sw *streamWriter) finish() (Info, error) {
	if err := sw.flush(); err != nil {
		return Info{}, err
	}
	sw.sum.Sum(sw.info.Checksum[:0])
	var t [trailerLen]byte
	t[0] = tagTrailer
	binary.LittleEndian.PutUint64(t[1:], uint64(sw.info.Keys))
	binary.LittleEndian.PutUint64(t[9:], uint64(sw.info.Bytes))
	copy(t[17:], sw.info.Checksum[:])
	binary.LittleEndian.PutUint32(t[49:], crc32.Checksum(t[:49], castagnoli))
	if _, err := sw.w.Write(t[:]); err != nil {
		return Info{}, err
	}
	return sw.info, nil
}

// Read verifies and decodes a stream, calling fn for every key/value in
// key order, and returns the stream's Info once its trailer has verified.
//
// Every block is verified (CRC, lengths, key order) before any of its pairs
// reaches fn, but fn sees the pairs of earlier blocks before the whole
// stream has verified: only a nil error from Read says the content is
// complete and intact. key and value are valid only during the call.
//
// Read returns a *CorruptError (errors.Is(err, ErrCorrupt)) for any
// problem with the stream, including a truncated one; an error of r other
// than io.EOF, or one from fn, is returned (wrapped) as it is. Read
// consumes exactly the stream's bytes from r. Its buffers never exceed
// maxCompLen(MaxBlockSize) and MaxBlockSize bytes, whatever the stream
// claims, and grow only as bytes arrive or blocks verify.
func Read(r io.Reader, fn func(key, value []byte) error) (Info, error) {
	d := decoder{r: r}
	return d.read(fn)
}

type decoder struct {
	r         io.Reader
	off       int64 // bytes consumed so far
	c         Compression
	blockSize int
	hdr       [trailerLen]byte // the largest fixed-size record
	comp, raw []byte
}

func (d *decoder) corrupt(off int64, format string, args ...any) error {
	return &CorruptError{Offset: off, Reason: fmt.Sprintf(format, args...)}
}

// readFull fills b from the stream, reporting a short stream as corruption.
func (d *decoder) readFull(b []byte, what string) error {
	n, err := io.ReadFull(d.r, b)
	d.off += int64(n)
	switch {
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return d.corrupt(d.off, "truncated in %s", what)
	case err != nil:
		return fmt.Errorf("snapshot: read at offset %d: %w", d.off, err)
	}
	return nil
}

// readPayload reads n bytes into d.comp, growing it only as bytes arrive,
// so a length field larger than the data that follows costs no more than
// that data.
func (d *decoder) readPayload(n int) ([]byte, error) {
	buf := d.comp[:0]
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(n-len(buf), max(cap(buf), 64<<10)))
		}
		end := min(n, cap(buf))
		err := d.readFull(buf[len(buf):end], "block payload")
		buf = buf[:end]
		if err != nil {
			d.comp = buf
			return nil, err
		}
	}
	d.comp = buf
	return buf, nil
}

func (d *decoder) read(fn func(key, value []byte) error) (Info, error) {
	h := d.hdr[:headerLen]
	if err := d.readFull(h, "header"); err != nil {
		return Info{}, err
	}
	switch {
	case string(h[:8]) != magic:
		return Info{}, d.corrupt(0, "bad magic %q", h[:8])
	case binary.LittleEndian.Uint32(h[16:]) != crc32.Checksum(h[:16], castagnoli):
		return Info{}, d.corrupt(0, "header checksum mismatch")
	case h[8] != formatVersion:
		return Info{}, d.corrupt(0, "unknown version %d", h[8])
	case h[9] >= numCompressions:
		return Info{}, d.corrupt(0, "unknown compression %d", h[9])
	case h[10] != 0 || h[11] != 0:
		return Info{}, d.corrupt(0, "reserved header bytes set")
	}
	d.c = Compression(h[9])
	bs := binary.LittleEndian.Uint32(h[12:])
	if bs == 0 || bs > MaxBlockSize {
		return Info{}, d.corrupt(0, "block size %d out of (0, %d]", bs, MaxBlockSize)
	}
	d.blockSize = int(bs)

	var (
		info    Info
		sum     = sha256.New()
		last    []byte // the last key so far (a copy)
		started bool
	)
	for {
		// A block header is shorter than a trailer, so reading one never
		// reads past the end of the stream.
		at := d.off
		bh := d.hdr[:blockHeaderLen]
		if err := d.readFull(bh, "block header or trailer (trailer missing)"); err != nil {
			return Info{}, err
		}
		switch bh[0] {
		case tagBlock:
		case tagTrailer:
			return d.readTrailer(at, info, sum)
		default:
			return Info{}, d.corrupt(at, "unknown record tag %#x", bh[0])
		}
		rawLen := int(binary.LittleEndian.Uint32(bh[1:]))
		compLen := int(binary.LittleEndian.Uint32(bh[5:]))
		if rawLen == 0 || rawLen > MaxBlockSize {
			return Info{}, d.corrupt(at, "block length %d out of (0, %d]", rawLen, MaxBlockSize)
		}
		if compLen > maxCompLen(d.c, rawLen) {
			return Info{}, d.corrupt(at, "compressed length %d too large for %d bytes", compLen, rawLen)
		}
		payload, err := d.readPayload(compLen)
		if err != nil {
			return Info{}, err
		}
		crc := crc32.Update(crc32.Checksum(bh[:9], castagnoli), castagnoli, payload)
		if crc != binary.LittleEndian.Uint32(bh[9:]) {
			return Info{}, d.corrupt(at, "block checksum mismatch")
		}
		raw, err := decompressBlock(d.raw, d.c, payload, rawLen)
		if err != nil {
			return Info{}, d.corrupt(at, "decompress: %v", err)
		}
		d.raw = raw
		// Verify the whole block before handing any of it to fn. prev
		// is the last key of the previous block (a copy: raw is reused),
		// then a key in raw.
		pairs, prev := 0, last
		for b := raw; len(b) > 0; pairs++ {
			key, _, rest, err := nextPair(b)
			if err != nil {
				return Info{}, d.corrupt(at, "pair %d: %v", pairs, err)
			}
			if started && bytes.Compare(prev, key) >= 0 {
				return Info{}, d.corrupt(at, "key %q out of order after %q", key, prev)
			}
			prev, started, b = key, true, rest
		}
		if rawLen > d.blockSize && pairs != 1 {
			return Info{}, d.corrupt(at, "block of %d bytes (block size %d) holds %d pairs", rawLen, d.blockSize, pairs)
		}
		last = append(last[:0], prev...)
		sum.Write(raw)
		for b := raw; len(b) > 0; {
			key, value, rest, _ := nextPair(b)
			info.Keys++
			info.Bytes += int64(len(key) + len(value))
			if bytes.Equal(key, keyMetaApplied) {
				if info.AppliedIndex, info.AppliedTerm, err = parseApplied(value); err != nil {
					return Info{}, d.corrupt(at, "%v", err)
				}
			}
			if err := fn(key, value); err != nil {
				return Info{}, err
			}
			b = rest
		}
	}
}

func (d *decoder) readTrailer(at int64, info Info, sum hash.Hash) (Info, error) {
	t := d.hdr[:trailerLen]
	if err := d.readFull(t[blockHeaderLen:], "trailer"); err != nil {
		return Info{}, err
	}
	if binary.LittleEndian.Uint32(t[49:]) != crc32.Checksum(t[:49], castagnoli) {
		return Info{}, d.corrupt(at, "trailer checksum mismatch")
	}
	keys, nbytes := int64(binary.LittleEndian.Uint64(t[1:])), int64(binary.LittleEndian.Uint64(t[9:]))
	sum.Sum(info.Checksum[:0])
	switch {
	case keys != info.Keys:
		return Info{}, d.corrupt(at, "trailer says %d keys, stream holds %d", keys, info.Keys)
	case nbytes != info.Bytes:
		return Info{}, d.corrupt(at, "trailer says %d bytes, stream holds %d", nbytes, info.Bytes)
	case !bytes.Equal(t[17:49], info.Checksum[:]):
		return Info{}, d.corrupt(at, "content checksum mismatch")
	}
	return info, nil
}

// Install replaces the content of dst, which must be empty (ErrNotEmpty
// otherwise), with the stream's, writing in batches of about
// installBatchBytes. It returns the stream's Info with the applied index
// and term read back from the installed m/applied key.
//
// dst must be a fresh engine that the caller swaps in only once Install
// has returned nil. On error the engine holds part of the content, no
// m/applied, and the marker Incomplete detects; the caller discards it.
func Install(r io.Reader, dst applier.Engine) (Info, error) {
	if empty, err := isEmpty(dst); err != nil {
		return Info{}, err
	} else if !empty {
		return Info{}, ErrNotEmpty
	}
	b := dst.NewBatch()
	defer func() { b.Close() }()
	if err := b.Set(keyInstalling, nil); err != nil {
		return Info{}, err
	}
	var (
		pending int
		applied []byte
	)
	info, err := Read(r, func(key, value []byte) error {
		switch {
		case bytes.Equal(key, keyInstalling):
			return fmt.Errorf("snapshot: stream holds the reserved key %s", keyInstalling)
		case bytes.Equal(key, keyMetaApplied):
			applied = append([]byte(nil), value...)
			return nil
		}
		if err := b.Set(key, value); err != nil {
			return err
		}
		if pending += len(key) + len(value); pending >= installBatchBytes {
			if err := b.Commit(); err != nil {
				return err
			}
			b.Close()
			b, pending = dst.NewBatch(), 0
		}
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	// The stream has verified: publish the applied index and clear the
	// marker, atomically.
	if applied != nil {
		if err := b.Set(keyMetaApplied, applied); err != nil {
			return Info{}, err
		}
	}
	if err := b.Delete(keyInstalling); err != nil {
		return Info{}, err
	}
	if err := b.Commit(); err != nil {
		return Info{}, err
	}
	if err := dst.Sync(); err != nil {
		return Info{}, err
	}
	snap := dst.NewSnapshot()
	defer snap.Close()
	v, err := snap.Get(keyMetaApplied)
	switch {
	case errors.Is(err, applier.ErrNotFound):
		info.AppliedIndex, info.AppliedTerm = 0, 0
	case err != nil:
		return Info{}, err
	default:
		if info.AppliedIndex, info.AppliedTerm, err = parseApplied(v); err != nil {
			return Info{}, err
		}
	}
	return info, nil
}

// installBatchBytes bounds the key and value bytes of one Install batch.
// (A variable so that tests can make small streams span batches.)
var installBatchBytes = 4 << 20

// Incomplete reports whether r holds the marker of an Install that has not
// completed (failed, or interrupted by a crash).
func Incomplete(r applier.Reader) (bool, error) {
	_, err := r.Get(keyInstalling)
	if errors.Is(err, applier.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func isEmpty(e applier.Engine) (bool, error) {
	snap := e.NewSnapshot()
	defer snap.Close()
	it, err := snap.NewIter(nil, nil)
	if err != nil {
		return false, err
	}
	empty := !it.First()
	if err := it.Error(); err != nil {
		it.Close()
		return false, err
	}
	return empty, it.Close()
}

// The meta keys this package reads or writes. The applier owns the layout
// (applier/doc.go) and exports no accessor for a bare Reader, so what this
// package relies on is kept here, in one place:
//
//   - m/applied holds the applied index then the term, each a big-endian
//     uint64 (16 bytes), as the applier's writeState writes them.
//   - m/snapshot-installing is this package's own marker, present only in
//     an engine an Install has not completed; it sorts among the meta keys
//     and an applier never reads it.
var (
	keyMetaApplied = []byte("m/applied")
	keyInstalling  = []byte("m/snapshot-installing")
)

// parseApplied decodes an m/applied value.
func parseApplied(v []byte) (index, term uint64, err error) {
	if len(v) != 16 {
		return 0, 0, fmt.Errorf("snapshot: m/applied value is %d bytes, want 16", len(v))
	}
	return binary.BigEndian.Uint64(v), binary.BigEndian.Uint64(v[8:]), nil
}
