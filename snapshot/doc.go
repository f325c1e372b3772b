// Package snapshot creates raft snapshots of the state machine, streams them
// compressed and checksummed, and installs them into an engine.
//
// A snapshot is the entire content of an applier.Engine at one consistent
// point: every key of the shared MVCC layout (applier/doc.go), meta keys
// included, so it carries the applied index and term (m/applied), the
// ConfState (m/confstate) and the revisions (m/rev) together with the data
// they describe. A follower too far behind receives one from a writer,
// installs it into a fresh engine, swaps that engine in, and then receives
// the log from the snapshot's applied index + 1. The format knows nothing of
// the engine that produced it, so a Pebble writer's snapshot installs into a
// bbolt reader and the other way round.
//
// # Stream format
//
// All integers are little-endian; CRC is CRC-32C (Castagnoli).
//
//	stream  := header block* trailer
//	header  := magic:"STRATASN" version:u8=1 compression:u8 reserved:u16=0
//	           blockSize:u32 crc:u32                       (20 bytes; crc over the first 16)
//	block   := 'B' rawLen:u32 compLen:u32 crc:u32 payload:[compLen]byte
//	           (crc over the tag, both lengths and the payload)
//	trailer := 'T' keys:u64 bytes:u64 sha256:[32]byte crc:u32
//	           (53 bytes; crc over the first 49)
//
// A block's payload is compressed (per the header: none, zstd or s2, see
// Compression) and decompresses to exactly rawLen bytes of pairs:
//
//	pair := uvarint(len(key)) key uvarint(len(value)) value
//
// The trailer carries the number of pairs, the total of len(key)+len(value)
// over them, and the SHA-256 of the concatenated uncompressed payloads, that
// is of the logical content: it does not depend on the compression or the
// block size, so two snapshots of the same state have the same Info.Checksum.
//
// Invariants of a valid stream, all checked by Read:
//   - Keys are strictly increasing across the whole stream.
//   - 0 < rawLen <= MaxBlockSize, and rawLen > blockSize only for a block
//     that holds a single pair (a pair larger than the block size travels
//     alone). compLen is at most rawLen + rawLen/4 + 1024 (exactly rawLen
//     without compression). So no length from the stream makes a reader
//     allocate more than that per buffer; the payload buffer grows only as
//     bytes actually arrive, and the decompression buffer only once the
//     block's CRC has verified.
//   - The stream ends with a trailer whose counts and checksum match what
//     was read: a truncated stream has no trailer and is refused.
//
// The stream is self-delimiting: Read consumes exactly the snapshot's bytes
// and no more, so a snapshot may be followed by other data (the log) on the
// same connection. (Read issues one small read per block header; wrap an
// unbuffered connection in a bufio.Reader only if nothing else reads it.)
//
// # Install
//
// Install writes into an engine that must be empty (ErrNotEmpty otherwise)
// in bounded batches, so batches are visible in it before the stream has
// been verified. The destination is meant to be a fresh engine that the
// caller swaps in only after Install returns nil, and discards otherwise.
// Until then it is unusable but detectable: Install writes the marker key
// m/snapshot-installing in its first batch, holds back m/applied, and only
// after the trailer verified writes m/applied and deletes the marker in its
// final batch, then syncs. Batches commit in order and each atomically, so
// an engine left by a failed Install, or by a crash during one, is either
// still empty or holds the marker (Incomplete reports it), and never
// claims an applied index: nothing in it could make a member skip entries.
//
// What the package does not do: take the engine snapshot (the caller passes
// a consistent applier.Snapshot), move bytes between members, or swap
// engines; those belong to the member composition.
package snapshot
