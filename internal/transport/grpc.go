package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stratakv/strata/internal/clock"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
)

// GRPCConfig configures a GRPCTransport. Zero values of the optional fields
// take the defaults documented on each.
type GRPCConfig struct {
	// LocalID is this member's raft ID; ClusterID is the cluster's. Frames
	// from another cluster or addressed to another member are rejected.
	LocalID, ClusterID uint64
	// Handler receives messages and failure reports. Required.
	Handler Handler
	// Compression is the default compression of outgoing links; AddPeerWith
	// overrides it per link. The receiver accepts every kind. Default none.
	Compression Compression
	// Snapshots, when set, opens the data of outgoing MsgSnap messages,
	// which is then streamed on the Snapshot RPC in SnapshotChunkBytes
	// chunks. When nil, MsgSnap travels as an ordinary message.
	Snapshots SnapshotSource
	// Logger defaults to zap.NewNop().
	Logger *zap.Logger
	// Clock drives reconnection backoff. Defaults to clock.Real.
	Clock clock.Clock
	// QueueSize bounds each peer's send queue, in messages. Default 4096.
	QueueSize int
	// MaxFrameBytes is the uncompressed size a sender aims a frame at:
	// queued messages are coalesced into frames of at most this size (a
	// larger single message goes alone). Default 1 MiB.
	MaxFrameBytes int
	// MaxMessageBytes bounds a received frame, compressed or not. The gRPC
	// server must accept messages this large (see ServerOptions). Default
	// 64 MiB.
	MaxMessageBytes int
	// SnapshotChunkBytes is the size of snapshot data frames. Default 1 MiB.
	SnapshotChunkBytes int
	// MinBackoff and MaxBackoff bound the delay between reconnection
	// attempts to a peer, which doubles after each failure. Defaults 100ms
	// and 5s.
	MinBackoff, MaxBackoff time.Duration
	// TLS is the client side of peer TLS: links to peers with https URLs
	// use a copy of it (LinkTLS), for both the raw message link and the
	// gRPC connection. Nil: peers must have http URLs.
	TLS *tls.Config
	// DialOptions are added to every peer connection.
	DialOptions []grpc.DialOption
	// OnPeerError, when set, is called (from a transport goroutine) with
	// each error that broke a link or failed a snapshot, so the member can
	// log or count it. Errors the receiver returned keep their sentinel:
	// errors.Is(err, ErrClusterIDMismatch) holds on the sender too.
	OnPeerError func(id uint64, err error)
	// OnRoundTrip, when set, is called with the round trip time of a
	// heartbeat to a peer: from the send of a MsgHeartbeat (the oldest
	// unanswered one) to the arrival of the peer's MsgHeartbeatResp
	// (etcd's peer_round_trip_time_seconds; only a leader sends
	// heartbeats). Measured on Clock.
	OnRoundTrip func(id uint64, d time.Duration)
}

func (c *GRPCConfig) validateAndDefault() error {
	if c.Handler == nil {
		return errors.New("transport: GRPCConfig.Handler is nil")
	}
	if c.LocalID == 0 {
		return errors.New("transport: GRPCConfig.LocalID is zero")
	}
	if _, err := c.Compression.wire(); err != nil {
		return err
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	setDefault(&c.QueueSize, 4096)
	setDefault(&c.MaxFrameBytes, 1<<20)
	setDefault(&c.MaxMessageBytes, 64<<20)
	setDefault(&c.SnapshotChunkBytes, 1<<20)
	setDefault(&c.MinBackoff, 100*time.Millisecond)
	setDefault(&c.MaxBackoff, 5*time.Second)
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	return nil
}

func setDefault[T int | time.Duration](p *T, v T) {
	if *p <= 0 {
		*p = v
	}
}

// GRPCTransport is the Transport of a writer member: one long-lived gRPC
// stream per peer, fed by a sender goroutine that coalesces everything queued
// for that peer into frames.
type GRPCTransport struct {
	cfg    GRPCConfig
	codecs *codecs
	recv   recvCounters

	mu struct {
		sync.RWMutex
		closed bool
		peers  map[uint64]*grpcPeer
	}
	// srv guards the server side against Close: handlers hold it shared
	// while decoding and stepping a frame; Close takes it exclusively
	// before releasing the codecs.
	srv struct {
		sync.RWMutex
		closed bool
	}
	raw rawConns // the receiving side's link connections
}

var _ Transport = (*GRPCTransport)(nil)

// NewGRPC returns a transport with no peers. Register it on the member's peer
// gRPC server to receive, and AddPeer to send.
func NewGRPC(cfg GRPCConfig) (*GRPCTransport, error) {
	if err := cfg.validateAndDefault(); err != nil {
		return nil, err
	}
	c, err := newCodecs(cfg.MaxMessageBytes)
	if err != nil {
		return nil, err
	}
	t := &GRPCTransport{cfg: cfg, codecs: c}
	t.mu.peers = make(map[uint64]*grpcPeer)
	return t, nil
}

// Register adds the peer service to s. The server should be created with
// ServerOptions so that it accepts frames up to MaxMessageBytes.
func (t *GRPCTransport) Register(s *grpc.Server) {
	s.RegisterService(&serviceDesc, &grpcServer{t: t})
}

// ServerOptions returns the options the peer gRPC server needs for this
// transport (today: a receive limit of MaxMessageBytes; gRPC's default is
// 4 MiB).
func (t *GRPCTransport) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.MaxRecvMsgSize(t.cfg.MaxMessageBytes + frameHeaderSize)}
}

// PeerOptions configures one link.
type PeerOptions struct {
	// Compression of this link's frames; empty means GRPCConfig.Compression.
	Compression Compression
}

// AddPeer implements Transport with the default PeerOptions.
func (t *GRPCTransport) AddPeer(id uint64, urls []string) {
	if err := t.AddPeerWith(id, urls, PeerOptions{}); err != nil {
		t.cfg.Logger.Warn("cannot add peer", zap.Uint64("peer", id), zap.Strings("urls", urls), zap.Error(err))
	}
}

// AddPeerWith starts a link to id at urls (tried in order on connection
// failure) with opts. Adding a known peer is a no-op.
func (t *GRPCTransport) AddPeerWith(id uint64, urls []string, opts PeerOptions) error {
	comp := opts.Compression
	if comp == "" {
		comp = t.cfg.Compression
	}
	wire, err := comp.wire()
	if err != nil {
		return err
	}
	if id == 0 || id == t.cfg.LocalID {
		return fmt.Errorf("transport: cannot add peer %d (local %d)", id, t.cfg.LocalID)
	}
	addrs := make([]resolver.Address, 0, len(urls))
	dialAddrs := make([]string, 0, len(urls))
	for _, u := range urls {
		a, err := peerAddr(u)
		if err != nil {
			return err
		}
		addrs = append(addrs, resolver.Address{Addr: a})
		dialAddrs = append(dialAddrs, a)
	}
	if len(addrs) == 0 {
		return fmt.Errorf("transport: peer %d has no URLs", id)
	}
	linkTLS, err := LinkTLS(urls, t.cfg.TLS)
	if err != nil {
		return err
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return ErrClosed
	}
	if _, ok := t.mu.peers[id]; ok {
		return nil
	}
	r := manual.NewBuilderWithScheme("strata-peer")
	r.InitialState(resolver.State{Addresses: addrs})
	dopts := []grpc.DialOption{
		grpc.WithResolvers(r),
		DialCredentials(linkTLS),
		// gRPC's own reconnect backoff is reset before each attempt (see
		// grpcPeer.run), so the injected clock governs retries; these
		// bounds only matter between attempts.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: t.cfg.MinBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: t.cfg.MaxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype(codecName), grpc.MaxCallRecvMsgSize(t.cfg.MaxMessageBytes+frameHeaderSize)),
	}
	conn, err := grpc.NewClient(r.Scheme()+":///peer", append(dopts, t.cfg.DialOptions...)...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &grpcPeer{
		t:      t,
		id:     id,
		conn:   conn,
		addrs:  dialAddrs,
		tls:    linkTLS,
		ctx:    ctx,
		cancel: cancel,
		notify: make(chan struct{}, 1),
		header: frameHeader{compression: wire, kind: frameKindMessages, clusterID: t.cfg.ClusterID, from: t.cfg.LocalID, to: id},
	}
	t.mu.peers[id] = p
	p.wg.Add(1)
	go p.run()
	return nil
}

// peerAddr turns a peer URL ("http://10.0.0.1:2380") or a bare host:port into
// a TCP dial address. Unix-socket peer URLs are not supported.
func peerAddr(raw string) (string, error) {
	if !strings.Contains(raw, "://") {
		return raw, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("transport: bad peer URL %q: %w", raw, err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("transport: peer URL %q has no host", raw)
	}
	return u.Host, nil
}

// RemovePeer implements Transport.
func (t *GRPCTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.mu.peers[id]
	delete(t.mu.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// Send implements Transport.
func (t *GRPCTransport) Send(msgs []*raftpb.Message) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.mu.closed {
		return
	}
	for _, m := range msgs {
		p := t.mu.peers[m.GetTo()]
		if p == nil {
			continue // unknown peer: raft retries once membership catches up
		}
		if m.GetType() == raftpb.MsgSnap && t.cfg.Snapshots != nil {
			p.maybeStartSnapshot(m)
			continue
		}
		if m.GetType() == raftpb.MsgHeartbeat && t.cfg.OnRoundTrip != nil {
			p.heartbeat.CompareAndSwap(0, t.cfg.Clock.Now().UnixNano())
		}
		p.enqueue(m)
	}
}

// Close implements Transport. It stops every link and waits for their
// goroutines; server-side streams that are still open answer Unavailable.
func (t *GRPCTransport) Close() error {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return nil
	}
	t.mu.closed = true
	peers := t.mu.peers
	t.mu.peers = nil
	t.mu.Unlock()
	for _, p := range peers {
		p.stop()
	}
	t.raw.closeAll()
	t.srv.Lock()
	t.srv.closed = true
	t.srv.Unlock()
	t.codecs.close()
	return nil
}

// roundTrip reports the round trip of the heartbeat a MsgHeartbeatResp
// from id answers.
func (t *GRPCTransport) roundTrip(id uint64) {
	t.mu.RLock()
	p := t.mu.peers[id]
	t.mu.RUnlock()
	if p == nil {
		return
	}
	if sent := p.heartbeat.Swap(0); sent != 0 {
		t.cfg.OnRoundTrip(id, time.Duration(t.cfg.Clock.Now().UnixNano()-sent))
	}
}

func (t *GRPCTransport) peerError(id uint64, err error) {
	t.cfg.Logger.Warn("peer link failed", zap.Uint64("local", t.cfg.LocalID), zap.Uint64("peer", id), zap.Error(err))
	if t.cfg.OnPeerError != nil {
		t.cfg.OnPeerError(id, err)
	}
}

// grpcPeer is the sending side of one link.
type grpcPeer struct {
	t  *GRPCTransport
	id uint64
	// conn carries snapshot streams; messages go on a link connection
	// dialed to addrs (raw.go).
	conn   *grpc.ClientConn
	addrs  []string
	tls    *tls.Config // nil: plain links
	header frameHeader
	// ctx is cancelled by stop; every stream of the peer derives from it.
	ctx    context.Context
	cancel context.CancelFunc
	// notify has room for one token; enqueue leaves one when the queue
	// goes from empty to not, and run drains the whole queue per token.
	notify   chan struct{}
	wg       sync.WaitGroup
	counters peerCounters
	// heartbeat is when the oldest unanswered MsgHeartbeat to the peer
	// was sent (unix nanoseconds on the transport's clock), 0 if none;
	// only kept with GRPCConfig.OnRoundTrip.
	heartbeat atomic.Int64

	mu struct {
		sync.Mutex
		// stopped is set by stop; after it nothing is queued or started.
		stopped bool
		queue   []*raftpb.Message
		// dropped counts messages refused since run last reported.
		dropped int
		// snapBusy is set while a snapshot stream runs (one at a time);
		// snapRefused counts MsgSnaps refused meanwhile.
		snapBusy    bool
		snapRefused int
	}
}

func (p *grpcPeer) enqueue(m *raftpb.Message) {
	p.mu.Lock()
	if p.mu.stopped {
		p.mu.Unlock()
		return
	}
	if len(p.mu.queue) >= p.t.cfg.QueueSize {
		p.mu.dropped++
		p.counters.messagesDropped.Add(1)
	} else {
		p.mu.queue = append(p.mu.queue, m)
	}
	p.mu.Unlock()
	p.poke()
}

func (p *grpcPeer) poke() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

// take swaps the queue with spare (which must be empty) and reports what was
// dropped since the last call.
func (p *grpcPeer) take(spare []*raftpb.Message) []*raftpb.Message {
	p.mu.Lock()
	q := p.mu.queue
	p.mu.queue = spare
	dropped, refused := p.mu.dropped, p.mu.snapRefused
	p.mu.dropped, p.mu.snapRefused = 0, 0
	p.mu.Unlock()
	p.report(dropped, refused)
	return q
}

func (p *grpcPeer) report(dropped, snapRefused int) {
	h := p.t.cfg.Handler
	if dropped > 0 {
		h.ReportUnreachable(p.id)
	}
	for range snapRefused {
		h.ReportSnapshot(p.id, raft.SnapshotFailure)
	}
}

func (p *grpcPeer) stop() {
	p.mu.Lock()
	p.mu.stopped = true
	p.mu.queue = nil
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
	p.conn.Close()
}

// run is the peer's sender goroutine: it keeps one stream open, reconnecting
// with exponential backoff through the injected clock.
func (p *grpcPeer) run() {
	defer p.wg.Done()
	backoff := p.t.cfg.MinBackoff
	var spare []*raftpb.Message
	for {
		var sent bool
		var err error
		sent, spare, err = p.stream(spare)
		if p.ctx.Err() != nil {
			return
		}
		p.counters.linkFailures.Add(1)
		p.heartbeat.Store(0) // its answer, if any, is not a round trip
		p.t.peerError(p.id, err)
		// Whatever was queued behind the broken stream is stale by the
		// time the link is back; raft resends what still matters.
		stale := p.take(spare)
		p.counters.messagesDropped.Add(uint64(len(stale)))
		spare = clearMessages(stale)
		p.t.cfg.Handler.ReportUnreachable(p.id)
		if sent {
			backoff = p.t.cfg.MinBackoff
		}
		if !p.wait(backoff) {
			return
		}
		backoff = min(2*backoff, p.t.cfg.MaxBackoff)
		p.conn.ResetConnectBackoff()
	}
}

// wait waits d on the injected clock, reporting drops meanwhile. It returns
// false when the peer stopped.
func (p *grpcPeer) wait(d time.Duration) bool {
	timer := p.t.cfg.Clock.After(d)
	for {
		select {
		case <-p.ctx.Done():
			return false
		case <-timer:
			return true
		case <-p.notify:
			// Keep the queue (it is sent on reconnect) but report drops.
			p.mu.Lock()
			dropped, refused := p.mu.dropped, p.mu.snapRefused
			p.mu.dropped, p.mu.snapRefused = 0, 0
			p.mu.Unlock()
			p.report(dropped, refused)
		}
	}
}

func clearMessages(q []*raftpb.Message) []*raftpb.Message {
	clear(q)
	return q[:0]
}

// encodeMessages encodes a prefix of msgs into a new frame; see appendFrame.
func (t *GRPCTransport) encodeMessages(h frameHeader, msgs []*raftpb.Message, scratch []byte) (frame, _ []byte, n, bodyLen int) {
	return t.appendFrame(make([]byte, 0, frameHeaderSize+256), h, msgs, scratch)
}

func (p *grpcPeer) maybeStartSnapshot(m *raftpb.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.stopped {
		return
	}
	if p.mu.snapBusy {
		// raft sends one snapshot at a time per follower; a second one
		// means the first is stale. Refuse it; run reports the failure.
		p.mu.snapRefused++
		p.poke()
		return
	}
	p.mu.snapBusy = true
	p.wg.Add(1)
	go p.sendSnapshot(m)
}

func (p *grpcPeer) sendSnapshot(m *raftpb.Message) {
	defer p.wg.Done()
	err := p.streamSnapshot(m)
	p.mu.Lock()
	p.mu.snapBusy = false
	p.mu.Unlock()
	if p.ctx.Err() != nil {
		return // removed or closed: nobody left to tell
	}
	h := p.t.cfg.Handler
	if err != nil {
		p.t.peerError(p.id, fmt.Errorf("transport: sending snapshot at index %d: %w", m.GetSnapshot().GetMetadata().GetIndex(), err))
		h.ReportUnreachable(p.id)
		p.counters.snapshotsFailed.Add(1)
		h.ReportSnapshot(p.id, raft.SnapshotFailure)
		return
	}
	p.counters.snapshotsSent.Add(1)
	h.ReportSnapshot(p.id, raft.SnapshotFinish)
}

func (p *grpcPeer) streamSnapshot(m *raftpb.Message) error {
	rc, err := p.t.cfg.Snapshots.Open(m)
	if err != nil {
		return err
	}
	defer rc.Close()
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	s, err := p.conn.NewStream(ctx, &serviceDesc.Streams[streamIndexSnapshot], methodSnapshot)
	if err != nil {
		return fromStatus(err)
	}
	closeAndRecv := func() error {
		if err := s.CloseSend(); err != nil {
			return fromStatus(err)
		}
		var ack []byte
		return fromStatus(s.RecvMsg(&ack))
	}
	meta, _, _, _ := p.t.encodeMessages(p.header, []*raftpb.Message{m}, nil)
	if err := s.SendMsg(&meta); err != nil {
		return closeAndRecv()
	}
	dh := p.header
	dh.kind = frameKindSnapshotData
	chunk := make([]byte, p.t.cfg.SnapshotChunkBytes)
	for {
		n, rerr := io.ReadFull(rc, chunk)
		if n > 0 {
			f := p.t.codecs.seal(dh, chunk[:n])
			if err := s.SendMsg(&f); err != nil {
				return closeAndRecv() // io.EOF: the status says why
			}
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return closeAndRecv()
		default:
			return fmt.Errorf("transport: reading snapshot data: %w", rerr)
		}
	}
}

// grpcServer is the receiving side of the peer service.
type grpcServer struct{ t *GRPCTransport }

// checkHeader validates h for a frame of the given kind. REQUIRES: t.srv
// held shared.
func (t *GRPCTransport) checkHeader(h frameHeader, kind frameKind) error {
	if h.clusterID != t.cfg.ClusterID {
		return fmt.Errorf("%w: frame from member %x is for cluster %x, local cluster is %x",
			ErrClusterIDMismatch, h.from, h.clusterID, t.cfg.ClusterID)
	}
	if h.to != t.cfg.LocalID {
		return fmt.Errorf("%w: frame from member %x is for member %x, local member is %x",
			ErrWrongRecipient, h.from, h.to, t.cfg.LocalID)
	}
	if h.kind != kind {
		return fmt.Errorf("%w: kind %d, want %d", ErrBadFrame, h.kind, kind)
	}
	return nil
}

// handleMessages steps the messages of frame f in order.
func (t *GRPCTransport) handleMessages(ctx context.Context, f, scratch []byte) ([]byte, error) {
	t.srv.RLock()
	defer t.srv.RUnlock()
	if t.srv.closed {
		return scratch, ErrClosed
	}
	h, err := parseHeader(f)
	if err != nil {
		return scratch, err
	}
	if err := t.checkHeader(h, frameKindMessages); err != nil {
		return scratch, err
	}
	body, err := t.codecs.open(h, f, scratch)
	if err != nil {
		return scratch, err
	}
	if h.compression != 0 {
		scratch = body[:0]
	}
	return scratch, forEachMessage(body, func(m *raftpb.Message) error {
		if err := ctx.Err(); err != nil {
			return err // the link was superseded or closed: step nothing more
		}
		t.recv.messagesReceived.Add(1)
		if m.GetType() == raftpb.MsgHeartbeatResp && t.cfg.OnRoundTrip != nil {
			t.roundTrip(m.GetFrom())
		}
		if err := t.cfg.Handler.Process(ctx, m); err != nil {
			if errors.Is(err, ErrSenderRemoved) {
				return err // ends the stream; the sender hears why
			}
			// As in etcd: a message raft refuses is not a link
			// failure; raft recovers through its own retries.
			t.cfg.Logger.Warn("failed to process raft message", zap.Uint64("from", h.from), zap.Stringer("type", m.GetType()), zap.Error(err))
		}
		return nil
	})
}

func (s *grpcServer) snapshot(ss grpc.ServerStream) error {
	t := s.t
	sh, ok := t.cfg.Handler.(SnapshotHandler)
	if !ok {
		return toStatus(ErrNoSnapshotHandler)
	}
	var f []byte
	if err := ss.RecvMsg(&f); err != nil {
		return err
	}
	m, err := s.decodeSnapshotMeta(f)
	if err != nil {
		t.recv.framesRejected.Add(1)
		return toStatus(err)
	}
	t.recv.framesReceived.Add(1)
	r := &snapshotReader{t: t, ss: ss}
	if err := sh.InstallSnapshot(m, r); err != nil {
		return status.Errorf(codes.Internal, "transport: installing snapshot at index %d: %v", m.GetSnapshot().GetMetadata().GetIndex(), err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return toStatus(err)
	}
	t.recv.messagesReceived.Add(1)
	if err := t.cfg.Handler.Process(ss.Context(), m); err != nil {
		return status.Errorf(codes.Internal, "transport: stepping installed snapshot: %v", err)
	}
	ack := []byte{}
	return ss.SendMsg(&ack)
}

// decodeSnapshotMeta decodes the first frame of a snapshot stream, which holds
// exactly one MsgSnap.
func (s *grpcServer) decodeSnapshotMeta(f []byte) (*raftpb.Message, error) {
	t := s.t
	t.srv.RLock()
	defer t.srv.RUnlock()
	if t.srv.closed {
		return nil, ErrClosed
	}
	h, err := parseHeader(f)
	if err != nil {
		return nil, err
	}
	if err := t.checkHeader(h, frameKindMessages); err != nil {
		return nil, err
	}
	body, err := t.codecs.open(h, f, nil)
	if err != nil {
		return nil, err
	}
	var m *raftpb.Message
	err = forEachMessage(body, func(mm *raftpb.Message) error {
		if m != nil || mm.GetType() != raftpb.MsgSnap {
			return fmt.Errorf("%w: snapshot stream must start with exactly one MsgSnap", ErrBadFrame)
		}
		m = mm
		return nil
	})
	if err == nil && m == nil {
		err = fmt.Errorf("%w: empty snapshot header frame", ErrBadFrame)
	}
	return m, err
}

// snapshotReader reads the data frames of a snapshot stream as one byte
// stream; io.EOF is the sender closing its side.
type snapshotReader struct {
	t       *GRPCTransport
	ss      grpc.ServerStream
	buf     []byte // unread part of the current chunk
	scratch []byte
	err     error // sticky
}

func (r *snapshotReader) Read(b []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.err = r.next()
	}
	n := copy(b, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *snapshotReader) next() error {
	var f []byte
	if err := r.ss.RecvMsg(&f); err != nil {
		return err // io.EOF at the end of the stream
	}
	t := r.t
	t.srv.RLock()
	defer t.srv.RUnlock()
	if t.srv.closed {
		return ErrClosed
	}
	h, err := parseHeader(f)
	if err != nil {
		return err
	}
	if err := t.checkHeader(h, frameKindSnapshotData); err != nil {
		t.recv.framesRejected.Add(1)
		return err
	}
	t.recv.framesReceived.Add(1)
	body, err := t.codecs.open(h, f, r.scratch)
	if err != nil {
		return err
	}
	if h.compression != 0 {
		r.scratch = body[:0]
	}
	r.buf = body
	return nil
}

// sentinels are the errors that cross the wire: the receiver sends them as a
// status whose message starts with the sentinel's text, and fromStatus turns
// them back into wrapped sentinels on the sender.
var sentinels = []struct {
	err  error
	code codes.Code
}{
	{ErrClusterIDMismatch, codes.FailedPrecondition},
	{ErrWrongRecipient, codes.FailedPrecondition},
	{ErrNoSnapshotHandler, codes.Unimplemented},
	{ErrFrameTooLarge, codes.ResourceExhausted},
	{ErrBadFrame, codes.InvalidArgument},
	{ErrClosed, codes.Unavailable},
	{ErrSenderRemoved, codes.FailedPrecondition},
}

func toStatus(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return status.Error(s.code, err.Error())
		}
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Internal, err.Error())
}

func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok || err == nil {
		return err
	}
	msg := st.Message()
	for _, s := range sentinels {
		if rest, ok := strings.CutPrefix(msg, s.err.Error()); ok && st.Code() == s.code {
			return fmt.Errorf("%w%s", s.err, rest)
		}
	}
	return err
}
