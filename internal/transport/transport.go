package transport

import (
	"context"
	"errors"
	"io"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// Handler is the local raft node as the transport sees it.
//
// Its methods are called from transport goroutines, never from inside
// Transport.Send, and must not block for long: a slow Process holds back the
// stream it was called for (and, through flow control, that peer's queue).
type Handler interface {
	// Process steps a received message into raft. Messages from one peer
	// are processed one at a time, in the order that peer sent them.
	Process(ctx context.Context, m *raftpb.Message) error
	// ReportUnreachable tells raft that a message to id may have been lost.
	ReportUnreachable(id uint64)
	// ReportSnapshot tells raft how sending a snapshot to id ended.
	ReportSnapshot(id uint64, status raft.SnapshotStatus)
}

// SnapshotHandler is implemented by a Handler that installs snapshot data
// streamed out of band (see SnapshotSource). When the receiving Handler does
// not implement it, snapshot streams are refused.
type SnapshotHandler interface {
	// InstallSnapshot reads the snapshot data for the MsgSnap m from r and
	// makes it durable. The transport steps m into raft (Process) only
	// after InstallSnapshot returned nil.
	InstallSnapshot(m *raftpb.Message, r io.Reader) error
}

// SnapshotSource opens the data of an outgoing snapshot on the sender side.
type SnapshotSource interface {
	// Open returns the snapshot data that goes with the MsgSnap m. The
	// transport closes it when the stream ends.
	Open(m *raftpb.Message) (io.ReadCloser, error)
}

// Transport sends raft messages to peers.
type Transport interface {
	// Send queues msgs for their recipients (m.To). It never blocks: each
	// peer has a bounded queue, and a message that does not fit is dropped
	// and its peer later reported unreachable (raft retries). Messages to
	// unknown peers are dropped. Send does not retain msgs' slice but does
	// retain the messages, which the caller must not modify afterwards.
	Send(msgs []*raftpb.Message)
	// AddPeer starts a link to the peer id at urls. Adding a known peer is
	// a no-op.
	AddPeer(id uint64, urls []string)
	// RemovePeer stops the link to id, dropping what is queued for it, and
	// waits for its goroutines to exit.
	RemovePeer(id uint64)
	// Close stops all links and waits for every goroutine the transport
	// started.
	Close() error
}

var (
	// ErrClusterIDMismatch is returned when a frame's cluster ID is not the
	// receiver's: the two members belong to different clusters.
	ErrClusterIDMismatch = errors.New("transport: cluster ID mismatch")
	// ErrWrongRecipient is returned when a frame is addressed to a member
	// ID other than the receiver's (for example a peer URL that now serves
	// another member).
	ErrWrongRecipient = errors.New("transport: frame addressed to another member")
	// ErrBadFrame is returned when a frame cannot be decoded: short header,
	// unknown version or compression, or a corrupt body.
	ErrBadFrame = errors.New("transport: malformed frame")
	// ErrFrameTooLarge is returned when a frame body decompresses to more
	// than MaxFrameBytes.
	ErrFrameTooLarge = errors.New("transport: frame too large")
	// ErrNoSnapshotHandler is returned to a snapshot stream when the
	// receiving Handler does not implement SnapshotHandler.
	ErrNoSnapshotHandler = errors.New("transport: receiver cannot install streamed snapshots")
	// ErrSenderRemoved is returned to a sender the receiving member knows
	// was removed from the cluster (a Handler's Process returns it, or an
	// error wrapping it). The sender learns it through OnPeerError and, as
	// in etcd, stops: raft alone never tells a removed member.
	ErrSenderRemoved = errors.New("transport: the member has been permanently removed from the cluster")
	// ErrClosed is returned by operations on a closed transport.
	ErrClosed = errors.New("transport: closed")
)
