// Package pipeline runs the raft loop of a writer member.
//
// One goroutine owns the raft.RawNode. Each Ready is split into stages: the
// append stage writes entries and HardState to the WAL (fsync), committed
// entries are handed to the apply stage in order, messages go to peers.
// Linearizable reads are served through ReadIndex, batched so that one raft
// round confirms leadership for every read that arrived before it.
//
// Invariants:
//   - Entries and HardState are durable in the WAL before raft is told
//     (Advance) and before any committed entry they cover is applied.
//   - Committed entries reach the applier exactly once, in index order.
//   - A storage error in the loop stops the member (raft's contract).
//
// The pipeline knows nothing of KV semantics: entries are opaque bytes to it.
package pipeline
