package transport

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Metrics are a GRPCTransport's cumulative counters, for the member to export
// under its own names; the transport registers nothing globally.
type Metrics struct {
	// Peers holds the sending side, per current peer. A removed peer's
	// counters go with it.
	Peers map[uint64]PeerMetrics
	// FramesReceived counts message and snapshot frames accepted;
	// FramesRejected those refused (bad frame, other cluster or member).
	FramesReceived, FramesRejected uint64
	// MessagesReceived counts messages handed to Handler.Process.
	MessagesReceived uint64
	// BytesReceived counts the wire bytes of the message frames received,
	// per sending member.
	BytesReceived map[uint64]uint64
}

// PeerMetrics are the counters of one outgoing link.
type PeerMetrics struct {
	// MessagesSent and FramesSent count what was written to the stream;
	// the messages of a write that failed also count in MessagesDropped.
	MessagesSent uint64
	FramesSent   uint64
	// BodyBytesSent is the uncompressed size of the frames sent and
	// WireBytesSent their size on the wire (headers included), so
	// BodyBytesSent/WireBytesSent is the link's compression ratio.
	BodyBytesSent, WireBytesSent uint64
	// MessagesDropped counts messages refused by a full queue or lost with
	// a broken stream (each such event is reported unreachable).
	MessagesDropped uint64
	// LinkFailures counts streams that broke or could not be opened.
	LinkFailures                   uint64
	SnapshotsSent, SnapshotsFailed uint64
}

type peerCounters struct {
	messagesSent, framesSent       atomic.Uint64
	bodyBytesSent, wireBytesSent   atomic.Uint64
	messagesDropped, linkFailures  atomic.Uint64
	snapshotsSent, snapshotsFailed atomic.Uint64
}

func (c *peerCounters) load() PeerMetrics {
	return PeerMetrics{
		MessagesSent:    c.messagesSent.Load(),
		FramesSent:      c.framesSent.Load(),
		BodyBytesSent:   c.bodyBytesSent.Load(),
		WireBytesSent:   c.wireBytesSent.Load(),
		MessagesDropped: c.messagesDropped.Load(),
		LinkFailures:    c.linkFailures.Load(),
		SnapshotsSent:   c.snapshotsSent.Load(),
		SnapshotsFailed: c.snapshotsFailed.Load(),
	}
}

type recvCounters struct {
	framesReceived, framesRejected, messagesReceived atomic.Uint64

	mu        sync.Mutex
	bytesFrom map[uint64]uint64
}

func (c *recvCounters) addBytes(from uint64, n int) {
	c.mu.Lock()
	if c.bytesFrom == nil {
		c.bytesFrom = make(map[uint64]uint64)
	}
	c.bytesFrom[from] += uint64(n)
	c.mu.Unlock()
}

// Metrics returns a snapshot of the transport's counters.
func (t *GRPCTransport) Metrics() Metrics {
	m := Metrics{
		FramesReceived:   t.recv.framesReceived.Load(),
		FramesRejected:   t.recv.framesRejected.Load(),
		MessagesReceived: t.recv.messagesReceived.Load(),
	}
	t.recv.mu.Lock()
	m.BytesReceived = maps.Clone(t.recv.bytesFrom)
	t.recv.mu.Unlock()
	t.mu.RLock()
	defer t.mu.RUnlock()
	m.Peers = make(map[uint64]PeerMetrics, len(t.mu.peers))
	for id, p := range t.mu.peers {
		m.Peers[id] = p.counters.load()
	}
	return m
}
