// Package applier is the replicated state machine: it decodes committed raft
// entries and applies them to an MVCC key-value store with etcd v3.7's
// semantics, through the Engine interface (Pebble on writers, bbolt on
// readers).
//
// # Apply
//
// Apply takes committed entries in index order and applies all of them in
// one engine batch, together with the new applied index, term and
// ConfState. Every request of a normal entry (see entry.go) is applied in
// order in that batch, so request i+1 reads what request i wrote; each
// request that writes takes the next main revision (a txn takes one, its
// ops take sub-revisions), and a request that writes nothing (a failed
// check, a DeleteRange that deletes nothing, a txn branch of reads) takes
// none. Once the batch is committed, and so visible to reads, Config.Notify
// answers each request. A request etcd would reject at apply time (a future
// or compacted revision, a missing key or lease) is answered with the
// rpctypes error and changes nothing; this rejection is deterministic, so
// every member rejects it alike. Apply itself fails only on engine errors,
// corrupt entries or missing entries, and then the member must stop.
//
// kv.go spells out etcd's semantics, quirks included; the kvmodel package is
// an independent, deliberately naive model of the same semantics that the
// property tests compare the applier with, request by request.
//
// # Key layout
//
// One ordered key space, shared by every Engine, so that a Pebble writer and
// a bbolt reader hold byte-identical state for the same applied index:
//
//	k/<key>                          latest view: the live version of key
//	                                 (absent once deleted)
//	h/<esc(key)><^main><^sub>        history: every version of key, newest
//	                                 first; a put or a tombstone
//	r/<main><sub>                    revision index: kind and key of the
//	                                 write at that revision, in order
//	m/applied                        applied index and term
//	m/confstate                      ConfState (raftpb, marshaled)
//	m/rev                            current and compacted revision
//	m/compactor                      physical compaction progress
//	m/snapshot-installing            present only while snapshot.Install
//	                                 runs (an engine holding it is unusable)
//	c/m/<id>                         a member (etcdserverpb.Member), see
//	                                 membership.go
//
// <main> and <sub> are big-endian uint64s; <^main> and <^sub> their
// complements, so that newer versions sort first. esc(key) escapes 0x00 as
// 0x00 0xFF and ends with 0x00 0x01: escaped keys sort as the keys do and
// never run into each other, so the versions of one key are contiguous.
// Values of k/ are
//
//	uvarint(create_revision) uvarint(mod_revision) uvarint(version) varint(lease) value
//
// and values of h/ are the byte 'p' followed by the same encoding, or the
// single byte 't' for a tombstone. Values of r/ are 'p' or 't' followed by
// the key. Leases live under l/ (lease.go): l/r/<id> their TTLs, l/k/<id><key>
// the keys attached to each; a/ is reserved for auth.
//
// Invariants, after every committed batch:
//   - k/<key> exists iff the newest h/ version of key is a put, and holds
//     the same KeyValue.
//   - Every h/ version at a revision above the physically compacted one has
//     an r/ entry, and every r/ entry at or above it names a write that
//     happened at that revision.
//   - m/rev's current revision is the main revision of the newest write
//     (or 1 in a store never written), and m/applied is the index of the
//     last entry whose effects the other keys hold.
//   - l/k/<id><key> exists iff k/<key> exists and carries lease id.
//
// Reads at the current revision scan k/ and never touch history. A read at
// an older revision R seeks, for each key in its range, straight to the
// first h/ version at or below R (one seek per key; a few Next calls when
// keys have few versions). No index of keys is kept in memory: memory does
// not grow with the number of keys or versions. The revision index serves
// compaction and watch catch-up, which both walk writes in revision order.
//
// # Compaction
//
// A Compact only records the compacted revision in m/rev, in the apply
// batch; from then on reads below it fail with ErrCompacted. A background
// compactor then removes, in bounded steps that resume after a restart,
// the versions no allowed read can return; see compact.go. WaitCompaction
// waits for it (Compact with physical=true).
//
// # Durability
//
// The raft WAL is the source of durability; the engine is a cache of the
// log's effects that spares replaying it from the start. Therefore:
//
//  1. Batch commits are not fsynced (Engine.Batch.Commit need not be
//     durable).
//  2. A batch holds the applied index together with the state changes of
//     exactly the entries up to it, so the engine always holds the state
//     of some applied prefix of the log: after a crash it may have lost the
//     last batches, but never half of one.
//  3. On restart the member replays the log from the stored applied index
//     + 1. Apply is deterministic, so the replay recreates exactly what was
//     lost, with the same revisions: a revision never goes backwards, and a
//     client that was answered before the crash finds its write again at
//     the same revision. Entries at or below the applied index are skipped,
//     so replaying too much is harmless.
//  4. The WAL may only release entries at or below an index whose batch has
//     been made durable by Engine.Sync (the member syncs, then truncates).
//
// Until the replay has caught up, the engine may show an older state than
// some client saw; reads must wait for the applied index as usual
// (linearizable reads do, through ReadIndex).
package applier
