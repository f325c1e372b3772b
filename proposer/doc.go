// Package proposer turns client write requests into raft proposals.
//
// It is a group commit: callers hand it requests and wait; a single flusher
// goroutine packs every request queued while earlier entries are in flight
// into one raft entry (bounded by bytes and count), assigns request IDs and
// registers a waiter per ID. The applier answers waiters by ID once the
// entry is applied. An idle proposer proposes a lone request at once: no
// timer sits on the path, so single-client latency does not pay for
// batching.
//
// Invariants:
//   - A caller is answered only with the result the applier produced for its
//     request ID, or with an error that says the request may not have been
//     applied (timeout, stop, dropped proposal).
//   - Nothing queues without bound: at most MaxInflightEntries entries are in
//     flight and the queue is bounded in bytes; beyond that callers get
//     etcd's "too many requests".
//
// The proposer knows nothing of raft internals or storage: it talks to the
// pipeline through the narrow Raft interface.
package proposer
