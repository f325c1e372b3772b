package transport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.etcd.io/raft/v3/raftpb"
)

// Raft messages do not travel on a gRPC stream but on a plain TCP connection
// per link, opened on the same peer URL: a gRPC stream costs two more
// goroutine hand-offs per message (the sender's loopy writer, the receiver's
// stream handler) on the path every write waits on, which on a busy machine
// is measurable latency. Snapshots, whose streams are long and rare, stay on
// gRPC, and so does the Cluster service.
//
// A link connection starts with RawPreface, which the member's peer listener
// uses to tell it from HTTP/2 (internal/serve), and one byte, the link mode.
// Then, from sender to receiver, a sequence of
//
//	4 bytes  frame length n, big endian
//	n bytes  one frame (frame.go), kind frameKindMessages
//
// In mode linkFrames that sequence is the rest of the connection, each
// frame compressed on its own as its header says (none, s2, zstd). In mode
// linkZstdStream (links whose compression is zstd) the rest of the
// connection is one zstd stream that carries the sequence, its frames
// uncompressed, and is flushed at the end of every batch the sender writes:
// the compression window (linkZstdWindow) carries over from frame to frame,
// so an idle cluster's single-entry frames compress as well as a busy
// one's batches (docs/performance.md). Limits apply to the decompressed
// frames, as in mode linkFrames.
//
// The receiver never writes, except once before it closes the connection
// because of an error the sender must know (another cluster, a removed
// sender): a linkError record,
//
//	1 byte   code: 1 + the index of the sentinel in sentinels, or 0
//	2 bytes  message length m, big endian
//	m bytes  the error's text

// RawPreface opens every raft message link. Version 2 added the link mode
// byte; a version-1 link is not recognised as a raft link at all, rather
// than misread.
var RawPreface = []byte("STRATA-RAFT-LINK/2\r\n")

// Link modes, the byte after RawPreface.
const (
	linkFrames     byte = 0
	linkZstdStream byte = 1
)

// linkZstdWindow is the window of a linkZstdStream link: what the encoder
// remembers (and the decoder must hold) per link.
const linkZstdWindow = 1 << 20

// rawWriteTimeout bounds one write to a peer. A peer that stops reading
// breaks the link after it, and raft hears the peer is unreachable (etcd's
// rafthttp uses the same bound).
const rawWriteTimeout = 5 * time.Second

// rawDialTimeout bounds establishing a link connection.
const rawDialTimeout = 5 * time.Second

// rawConns tracks the receiving side's connections so that Close can end
// them and wait for their goroutines.
type rawConns struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]context.CancelFunc
	wg     sync.WaitGroup
	// senders holds the link each sender is stepping through. A sender
	// that reconnects supersedes its old link, which the receiver may
	// not have seen end yet: the new one steps nothing until the old one
	// has stopped, so messages from one sender are never stepped out of
	// order.
	senders map[uint64]*rawLink
}

// rawLink is one receiving link as the sender table sees it.
type rawLink struct {
	conn   net.Conn
	cancel context.CancelFunc
	done   chan struct{} // closed when the link steps no more
}

// claim makes l the link of sender from, ending the link it supersedes and
// waiting until that one steps no more.
func (r *rawConns) claim(from uint64, l *rawLink) {
	r.mu.Lock()
	if r.senders == nil {
		r.senders = make(map[uint64]*rawLink)
	}
	old := r.senders[from]
	r.senders[from] = l
	r.mu.Unlock()
	if old != nil {
		old.cancel()
		old.conn.Close()
		<-old.done
	}
}

// release forgets l as from's link, unless a newer link took its place.
func (r *rawConns) release(from uint64, l *rawLink) {
	r.mu.Lock()
	if r.senders[from] == l {
		delete(r.senders, from)
	}
	r.mu.Unlock()
}

func (r *rawConns) add(c net.Conn, cancel context.CancelFunc) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	if r.conns == nil {
		r.conns = make(map[net.Conn]context.CancelFunc)
	}
	r.conns[c] = cancel
	r.wg.Add(1)
	return true
}

func (r *rawConns) remove(c net.Conn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
	r.wg.Done()
}

func (r *rawConns) closeAll() {
	r.mu.Lock()
	r.closed = true
	for c, cancel := range r.conns {
		cancel()
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// ServeConn serves one raft message link: c is a connection accepted on the
// peer listener whose first bytes are RawPreface (the listener may have read
// them already and replay them). It returns when the link ends, and closes
// c.
func (t *GRPCTransport) ServeConn(c net.Conn) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !t.raw.add(c, cancel) {
		c.Close()
		return
	}
	defer t.raw.remove(c)
	defer c.Close()
	link := &rawLink{conn: c, cancel: cancel, done: make(chan struct{})}
	defer close(link.done)
	var from uint64 // the sender, known from the first frame
	defer func() {
		if from != 0 {
			t.raw.release(from, link)
		}
	}()
	// wire counts the bytes read off the connection, compressed or not;
	// each frame's share goes to its sender's received bytes.
	wire := &countingReader{r: c}
	var counted uint64
	br := bufio.NewReaderSize(wire, 64<<10)
	pre := make([]byte, len(RawPreface)+1)
	if _, err := io.ReadFull(br, pre); err != nil || !bytes.Equal(pre[:len(RawPreface)], RawPreface) {
		return
	}
	var r io.Reader = br
	switch mode := pre[len(RawPreface)]; mode {
	case linkFrames:
	case linkZstdStream:
		dec, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(linkZstdWindow))
		if err != nil {
			return
		}
		defer dec.Close()
		r = dec
	default:
		t.recv.framesRejected.Add(1)
		endLink(c, br, fmt.Errorf("%w: link mode %d", ErrBadFrame, mode))
		return
	}
	limit := t.cfg.MaxMessageBytes + frameHeaderSize
	var f, scratch []byte
	for {
		var lb [4]byte
		if _, err := io.ReadFull(r, lb[:]); err != nil {
			return // the sender closed the link, or Close did (or the stream is corrupt)
		}
		n := int(binary.BigEndian.Uint32(lb[:]))
		if n > limit {
			t.recv.framesRejected.Add(1)
			endLink(c, br, fmt.Errorf("%w: %d bytes", ErrFrameTooLarge, n))
			return
		}
		var err error
		if f, err = readFrame(r, f, n); err != nil {
			return
		}
		if h, err := parseHeader(f); err == nil {
			switch {
			case from == 0 && h.from != 0:
				from = h.from
				t.raw.claim(from, link)
			case h.from != from:
				t.recv.framesRejected.Add(1)
				endLink(c, br, fmt.Errorf("%w: frame from member %x on the link of member %x", ErrBadFrame, h.from, from))
				return
			}
		}
		// Stepping copies what it keeps out of f (proto.Unmarshal copies
		// bytes fields), so f is reused for the next frame.
		if scratch, err = t.handleMessages(ctx, f, scratch); err != nil {
			if ctx.Err() != nil {
				return // superseded or closed
			}
			t.recv.framesRejected.Add(1)
			endLink(c, br, err)
			return
		}
		t.recv.framesReceived.Add(1)
		// Bytes buffered ahead of this frame count with the next.
		read := wire.n - uint64(br.Buffered())
		t.recv.addBytes(from, int(read-counted))
		counted = read
	}
}

// readFrame reads an n-byte frame into buf (reused when large enough). The
// buffer grows with the bytes that actually arrive, not with what the length
// claims, so a peer announcing a large frame and sending little costs
// little.
func readFrame(r io.Reader, buf []byte, n int) ([]byte, error) {
	if cap(buf) >= n {
		buf = buf[:n]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	buf = buf[:0]
	for len(buf) < n {
		chunk := min(n-len(buf), max(64<<10, len(buf)))
		buf = slices.Grow(buf, chunk)
		m, err := io.ReadFull(r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+m]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// endLink tells the sender why the link ends, then closes its side and
// drains what the sender still had in flight (bounded in time), so that the
// connection ends with a FIN the sender reads the reason before, not a reset
// that may destroy it.
func endLink(c net.Conn, r io.Reader, err error) {
	writeLinkError(c, err)
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	_, _ = io.Copy(io.Discard, r)
}

// writeLinkError writes a linkError record; best effort.
func writeLinkError(c net.Conn, err error) {
	code := byte(0)
	for i, s := range sentinels {
		if errors.Is(err, s.err) {
			code = byte(i + 1)
			break
		}
	}
	msg := err.Error()
	if len(msg) > 1<<15 {
		msg = msg[:1<<15]
	}
	rec := make([]byte, 3, 3+len(msg))
	rec[0] = code
	binary.BigEndian.PutUint16(rec[1:], uint16(len(msg)))
	rec = append(rec, msg...)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(rec)
}

// readLinkError reads what the receiver said before it closed the link.
func readLinkError(r io.Reader) error {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("transport: peer closed the link")
		}
		return fmt.Errorf("transport: link: %w", err)
	}
	msg := make([]byte, binary.BigEndian.Uint16(hdr[1:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return fmt.Errorf("transport: link closed mid-error: %w", err)
	}
	if c := int(hdr[0]); c > 0 && c <= len(sentinels) {
		s := sentinels[c-1].err
		if rest, ok := bytes.CutPrefix(msg, []byte(s.Error())); ok {
			return fmt.Errorf("%w%s", s, rest)
		}
		return fmt.Errorf("%w: %s", s, msg)
	}
	return fmt.Errorf("transport: peer: %s", msg)
}

// dial opens a link connection to the first of the peer's addresses that
// answers.
func (p *grpcPeer) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: rawDialTimeout}
	var lastErr error
	for _, a := range p.addrs {
		c, err := d.DialContext(ctx, "tcp", a)
		if err == nil {
			if c, err = dialTLS(ctx, c, p.tls); err == nil {
				return c, nil
			}
		}
		lastErr = err
	}
	return nil, lastErr
}

// stream opens one link connection and feeds it until it breaks or the peer
// stops. It returns whether any frame was sent and the spare queue buffer.
func (p *grpcPeer) stream(spare []*raftpb.Message) (sent bool, _ []*raftpb.Message, _ error) {
	ctx, cancel := context.WithCancel(p.ctx)
	defer cancel()
	c, err := p.dial(ctx)
	if err != nil {
		return false, spare, err
	}
	// The receiver writes only to say why it ends the link; reading that
	// (or EOF) is how a broken link is noticed while idle. Cancelling
	// closes the connection, which ends the read.
	broken := make(chan error, 1)
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		broken <- readLinkError(c)
	}()
	go func() {
		defer p.wg.Done()
		<-ctx.Done()
		c.Close()
	}()
	bw := bufio.NewWriterSize(countingWriter{c, &p.counters.wireBytesSent}, 64<<10)
	if _, err := bw.Write(RawPreface); err != nil {
		return false, spare, err
	}
	h := p.header
	var out io.Writer = bw
	var zw *zstd.Encoder
	if h.compression == zstdWire {
		// One zstd stream for the link; frames go in uncompressed.
		if err := bw.WriteByte(linkZstdStream); err != nil {
			return false, spare, err
		}
		if zw, err = zstd.NewWriter(bw, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(linkZstdWindow),
			zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true)); err != nil {
			return false, spare, err
		}
		// Close writes the stream's end into bw, which is never
		// flushed again: the link is over.
		defer zw.Close()
		out = zw
		h.compression = 0
	} else if err := bw.WriteByte(linkFrames); err != nil {
		return false, spare, err
	}
	// A token may predate this link (messages queued while in backoff).
	p.poke()
	var scratch, fbuf []byte
	for {
		select {
		case <-ctx.Done():
			return sent, spare, ctx.Err()
		case err := <-broken:
			return sent, spare, err
		case <-p.notify:
		}
		batch := p.take(spare)
		for rest := batch; len(rest) > 0; {
			var n, bodyLen int
			fbuf, scratch, n, bodyLen = p.t.appendFrame(fbuf[:0], h, rest, scratch)
			p.counters.framesSent.Add(1)
			p.counters.messagesSent.Add(uint64(n))
			p.counters.bodyBytesSent.Add(uint64(bodyLen))
			var lb [4]byte
			binary.BigEndian.PutUint32(lb[:], uint32(len(fbuf)))
			// The deadline bounds each write, not the batch: a long
			// batch to a peer that keeps reading is not a failure.
			if err := c.SetWriteDeadline(time.Now().Add(rawWriteTimeout)); err != nil {
				return sent, clearMessages(batch), err
			}
			if _, err := out.Write(lb[:]); err != nil {
				p.counters.messagesDropped.Add(uint64(len(rest)))
				return sent, clearMessages(batch), p.linkErr(err, broken)
			}
			if _, err := out.Write(fbuf); err != nil {
				p.counters.messagesDropped.Add(uint64(len(rest)))
				return sent, clearMessages(batch), p.linkErr(err, broken)
			}
			sent = true
			rest = rest[n:]
		}
		if err := c.SetWriteDeadline(time.Now().Add(rawWriteTimeout)); err != nil {
			return sent, clearMessages(batch), err
		}
		if zw != nil {
			// The batch's last block, so the receiver can decode it now.
			if err := zw.Flush(); err != nil {
				p.counters.messagesDropped.Add(uint64(len(batch)))
				return sent, clearMessages(batch), p.linkErr(err, broken)
			}
		}
		if err := bw.Flush(); err != nil {
			p.counters.messagesDropped.Add(uint64(len(batch)))
			return sent, clearMessages(batch), p.linkErr(err, broken)
		}
		spare = clearMessages(batch)
	}
}

// countingWriter adds what it writes to n: the link's bytes on the wire.
type countingWriter struct {
	w io.Writer
	n *atomic.Uint64
}

// countingReader counts the bytes read through it (one goroutine).
type countingReader struct {
	r io.Reader
	n uint64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += uint64(n)
	return n, err
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}

// linkErr prefers what the receiver said to the write error it caused.
func (p *grpcPeer) linkErr(werr error, broken <-chan error) error {
	select {
	case err := <-broken:
		return err
	case <-time.After(100 * time.Millisecond):
		return werr
	}
}

// appendFrame appends to f a frame holding a prefix of msgs and returns it,
// the (possibly grown) scratch buffer, the number of messages encoded and the
// uncompressed body size.
func (t *GRPCTransport) appendFrame(f []byte, h frameHeader, msgs []*raftpb.Message, scratch []byte) (frame, _ []byte, n, bodyLen int) {
	if h.compression == 0 {
		f = append(f, make([]byte, frameHeaderSize)...)
		f, n = appendBatch(f, msgs, t.cfg.MaxFrameBytes+frameHeaderSize)
		putHeader(f, h)
		return f, scratch, n, len(f) - frameHeaderSize
	}
	body, n := appendBatch(scratch[:0], msgs, t.cfg.MaxFrameBytes)
	return append(f, t.codecs.seal(h, body)...), body[:0], n, len(body)
}
