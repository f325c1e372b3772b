// Package wal is the durable raft log of a writer member: raft entries, the
// HardState and snapshot markers, appended to segment files of CRC-framed
// records with group-commit fsync.
//
// It owns durability and crash recovery of the log: record framing, segment
// files, fsync batching, torn-tail repair, corruption detection, and
// releasing segments the state machine no longer needs. It knows nothing of
// what entries mean, and nothing of raft beyond two rules it applies on
// replay: a later entry at index i replaces i and everything after it, and
// a snapshot marker at index m makes the entries at or below m unneeded.
//
// # Files
//
// A WAL is a directory holding segment files named
//
//	%016x-%016x.wal    sequence number, first index
//
// Sequence numbers start at 0 and are consecutive; the first index is the
// index the log was expected to continue at when the segment was created
// (when raft overwrites a suffix, lower indexes may follow). A segment is
// created as NAME.tmp, preallocated with zeroes to Options.SegmentSize,
// given its header record, fsynced, renamed to NAME, and then the directory
// is fsynced; Open deletes leftover .tmp files. Only the last segment (the
// active one) is ever appended to. The directory is flock(2)ed while open.
//
// # Records
//
// Records start at multiples of 8 bytes and never span segments. All
// integers are little-endian; CRCs are CRC-32C (Castagnoli).
//
//	offset  size
//	0       4     header CRC, of bytes 4..24
//	4       4     payload length n
//	8       4     payload CRC
//	12      1     type: 1 segment header, 2 entry, 3 HardState,
//	              4 snapshot marker, 5 checkpoint (0 is never written)
//	13      3     zero
//	16      8     durable offset: every byte of this segment before it had
//	              been fsynced when this record was written
//	24      n     payload
//	              zero padding to a multiple of 8
//
// Payloads: an entry or HardState is its protobuf encoding. A snapshot
// marker is Index (8), Term (8) and the protobuf ConfState. A checkpoint is
// empty. The segment header is version (4, =1), zero (4), sequence number
// (8), first index (8), the offset at which the previous segment's data
// ends (8), then the latest HardState and the latest marker, each as a
// 4-byte length and its encoding (length 0: none yet).
//
// The header CRC lets a reader reject a bad header, and so a bad length,
// before reading any payload; a record's length is bounded by the bytes
// that remain in its file.
//
// # Invariants
//
//  1. A segment's first record is its header, and the header is durable
//     before the segment has its final name.
//  2. A segment is fsynced whole before its successor is created, and the
//     successor's header records where the segment's data ends.
//  3. Every segment header re-records the HardState and marker current at
//     its creation, so any suffix of the segments replays to the same
//     HardState, marker and log above the marker as the whole WAL.
//  4. A record's durable offset never exceeds what had been fsynced when it
//     was written.
//  5. Save (and SaveSnapshot, and WaitDurable) return only after an fsync
//     that covers their records. Appends are ordered by one mutex; an fsync
//     runs outside it.
//
// # Recovery
//
// Open reads every segment in order. Reading a segment stops at the first
// offset that holds no intact record, its end. What follows the end is
//
//   - clean: nothing but zeroes, the unused preallocated space;
//   - torn: damaged bytes, but no intact record further on has a durable
//     offset beyond the end. Only a crash during unsynced writes leaves
//     this, and none of those writes was acknowledged: the last segment is
//     truncated at its end (and preallocated again), with a warning;
//   - corrupt: an intact record further on has a durable offset beyond the
//     end, so the damaged bytes were already on disk, fsynced, when that
//     record was written. Open fails with ErrCorrupt, naming file and offset.
//
// Treating every "bad record followed by a good one" as corruption would be
// wrong: on power loss the pages of one group-commit write reach the disk
// in any order, so a crash can leave intact records after a torn one. The
// durable offset tells the two cases apart. In a segment that is not the
// last, the end must be exactly where the next header says (invariant 2);
// anything else is ErrCorrupt. So are a damaged or mismatched header, a
// missing sequence number, a CRC-valid record that does not decode, and a
// gap in the replayed log.
//
// One case cannot be told from a crash: damage to records of the last fsync
// before the process stopped, when nothing was written after them. Close
// therefore appends a checkpoint record, stamped after its final fsync,
// which vouches for everything before it: after a clean shutdown any damage
// is reported.
//
// # Group commit
//
// Save is Append followed by WaitDurable. Append encodes outside the mutex
// and writes under it. WaitDurable returns at once if its Position is
// durable; if no fsync is running, the caller becomes the leader and
// fsyncs the active segment, covering everything appended before it began;
// otherwise it waits for the running fsync and then checks again. Any
// write or fsync failure is sticky: the WAL fails every later write and
// every waiter not yet covered, because after a failed fsync the file's
// contents are unknown. Reopening recovers.
//
// # Releasing
//
// ReleaseTo(i) deletes the oldest segments whose entries are all at or
// below min(i, latest marker index), never the active one, oldest first,
// fsyncing the directory after each. By invariant 3, what remains replays
// to the same ReadAll, whose entries start at marker.Index+1.
package wal
