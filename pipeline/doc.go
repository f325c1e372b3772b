// Package pipeline runs the raft loop of a writer member.
//
// raft runs with AsyncStorageWrites: a Ready is not a barrier but a set of
// messages, routed to three stages that run concurrently:
//
//	raft goroutine ──MsgApp/heartbeats/votes──────────────▶ transport (peers)
//	     │  ├──MsgStorageAppend──▶ append stage ──responses──┐
//	     │  └──MsgStorageApply───▶ apply stage  ──responses──┤
//	     ◀───────────── local responses, peer messages ──────┘
//
// The ordering rules of raft's contract, and where each is enforced:
//
//   - Appends are processed in order, and their responses (a follower's
//     MsgAppResp and vote, the leader's own MsgAppResp that lets it count
//     itself in the quorum) are delivered only after the writes are
//     durable: Node.appendBatch saves, fsyncs once for the whole batch, then
//     updates raft's MemoryStorage, then delivers. An append carrying no
//     responses (a commit-index-only HardState) is not fsynced.
//   - Entries reach MemoryStorage before raft hears they are stable
//     (MsgStorageAppendResp), because raft then reads them from there.
//   - Applies are processed in order, exactly once per process lifetime;
//     their responses go back after the state machine has the entries
//     (Node.runApply). The state machine hands each committed conf change
//     to raft as it applies it (Node.ApplyConfChange, run on the raft
//     goroutine), after deciding whether to accept it, so a rejected
//     change is applied as a no-op on every member alike.
//   - Messages to peers are sent at once: the leader replicates entries
//     while it is still fsyncing them itself (raft thesis §10.2.1); a
//     follower's acknowledgement waits in the append's responses.
//   - No queue between stages blocks the raft goroutine; the proposer bounds
//     the work in flight (apply lag, queued bytes).
//
// Linearizable reads use ReadIndex, batched so that one raft round confirms
// leadership for every read that arrived before it (reads.go).
//
// A storage error in any stage stops the node (raft's contract); the
// pipeline knows nothing of KV semantics: entries are opaque bytes to it.
package pipeline
