// Package transport carries raft messages between writer members.
//
// It owns the peer link: per-peer bounded send queues, batching of queued
// messages into frames, optional per-link compression, reconnection with
// backoff, and the out-of-band streaming of snapshot data. It knows nothing of
// what the messages mean beyond their type (MsgSnap is routed to the snapshot
// stream) and never touches raft state itself: received messages go to a
// Handler, failures are reported through Handler.ReportUnreachable and
// Handler.ReportSnapshot, and raft decides what to retry.
//
// Two implementations share the Transport contract:
//
//   - GRPCTransport sends frames of messages over one long-lived TCP
//     connection per peer opened on the peer URL (raw.go; the member's peer
//     listener tells it from gRPC by RawPreface), and snapshots on a gRPC
//     stream to the same URL. The gRPC service is hand-written (no protoc)
//     and uses a raw []byte codec; see frame.go for the wire format.
//   - Network is an in-memory network for deterministic multi-node tests,
//     with drop, partition and delay controls driven by an injected clock.
//
// Invariants, for both implementations:
//
//  1. Send never blocks. It appends to a bounded per-peer queue; a message that
//     does not fit is dropped and the peer is reported unreachable.
//  2. Messages to one peer are delivered in Send order, or not at all (a
//     delivered message is never followed by an earlier one). Snapshot data
//     travels on its own stream and is not ordered with other messages, as in
//     etcd; raft pauses appends to a peer that is receiving a snapshot.
//  3. Handler methods are never called from inside Send, so a Handler may
//     forward them into the raft loop that called Send without deadlock. They
//     are called from transport goroutines and must not block for long.
//  4. Close (and RemovePeer for one peer) stops every goroutine the transport
//     started and waits for it.
//
// The transport does not authenticate peers (TLS is configured on the gRPC
// server and dial options by the member; message links are plain TCP today,
// and peer TLS must wrap them too, with the same configuration), does not
// persist anything, and does not retry messages: raft's own retries are the
// only retries.
package transport
