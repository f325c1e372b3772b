package serve

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"
)

// http2Preface is what an HTTP/2 client sends first (RFC 9113 §3.4); gRPC
// clients always do.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// Defaults for Server's timeouts.
const (
	DefaultSniffTimeout    = 10 * time.Second
	DefaultShutdownTimeout = 5 * time.Second
)

// Serve serves gRPC (grpcSrv) and HTTP/1.1 (httpHandler) on l until l is
// closed, with Server's defaults. Either may be nil: connections for it are
// then closed. It returns nil once l is closed and everything it started has
// stopped, or the listener's error.
func Serve(l net.Listener, grpcSrv *grpc.Server, httpHandler http.Handler) error {
	s := &Server{GRPC: grpcSrv, HTTP: httpHandler}
	return s.Serve(l)
}

// Server serves gRPC and HTTP/1.1 on the same listeners. The zero value of
// every field but GRPC and HTTP is usable. A Server may serve several
// listeners at once; its fields must not change while it does.
type Server struct {
	GRPC *grpc.Server
	HTTP http.Handler
	// Raw, when set, serves the connections that open with Raw.Preface
	// (a writer's raft message links, on its peer listener).
	Raw *Protocol

	// SniffTimeout bounds how long a new connection may take to send the
	// bytes that tell gRPC from HTTP, and an HTTP request its headers.
	// 0 means DefaultSniffTimeout.
	SniffTimeout time.Duration
	// ShutdownTimeout bounds how long closing waits for HTTP requests in
	// flight before closing their connections. 0 means
	// DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Logger receives the HTTP server's connection errors at debug level
	// (etcd discards them). nil discards them.
	Logger *zap.Logger
	// GRPCBytesIn and GRPCBytesOut, when set, count the bytes read from
	// and written to the gRPC connections (HTTP/2 frames, after TLS):
	// etcd_network_client_grpc_{received,sent}_bytes_total.
	GRPCBytesIn, GRPCBytesOut Counter
}

// Counter is a cumulative count (a prometheus.Counter is one).
type Counter interface{ Add(float64) }

// Protocol is a connection protocol told apart by the bytes a client sends
// first.
type Protocol struct {
	// Preface is what every client of the protocol sends first. It must
	// not begin like the HTTP/2 preface.
	Preface []byte
	// Serve owns c, whose reads replay the preface, until it closes it.
	// Each call runs on its own goroutine; the server does not wait for
	// it when closing (Serve's owner ends its connections).
	Serve func(c net.Conn)
}

// Serve serves l until it is closed; see the package comment for what
// closing does. It returns nil when l was closed, else the error that
// stopped accepting (and then closes l).
func (s *Server) Serve(l net.Listener) error {
	defer l.Close()
	if s.Raw != nil && (len(s.Raw.Preface) == 0 || s.Raw.Preface[0] == http2Preface[0]) {
		return fmt.Errorf("serve: raw protocol preface %q is empty or begins like HTTP/2's", s.Raw.Preface)
	}
	sniffTimeout := s.SniffTimeout
	if sniffTimeout <= 0 {
		sniffTimeout = DefaultSniffTimeout
	}
	shutdownTimeout := s.ShutdownTimeout
	if shutdownTimeout <= 0 {
		shutdownTimeout = DefaultShutdownTimeout
	}

	grpcL := newChanListener(l.Addr())
	httpL := newChanListener(l.Addr())
	httpSrv := &http.Server{
		Handler:           s.HTTP,
		ReadHeaderTimeout: sniffTimeout,
		ErrorLog:          s.errorLog(),
	}

	var servers sync.WaitGroup
	if s.GRPC != nil {
		servers.Go(func() {
			// It returns when grpcL is closed below, or at once with
			// ErrServerStopped when the grpc.Server was stopped first; in
			// both cases grpcL ends up closed.
			_ = s.GRPC.Serve(grpcL)
		})
	} else {
		grpcL.Close()
	}
	if s.HTTP != nil {
		servers.Go(func() { _ = httpSrv.Serve(httpL) })
	} else {
		httpL.Close()
	}

	sn := &sniffers{}
	sn.mu.conns = make(map[net.Conn]struct{})
	err := acceptLoop(l, func(c net.Conn) {
		if !sn.add(c) {
			c.Close()
			return
		}
		sn.wg.Go(func() { s.route(c, sniffTimeout, sn, grpcL, httpL) })
	})

	// Stop accepting work, then unwind in dependency order: sniffers may
	// still be handing connections to the two servers.
	sn.closeAll()
	sn.wg.Wait()
	grpcL.Close()
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	if httpSrv.Shutdown(ctx) != nil {
		httpSrv.Close()
	}
	cancel()
	httpL.Close()
	servers.Wait()

	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func (s *Server) errorLog() *log.Logger {
	if s.Logger == nil {
		return log.New(io.Discard, "", 0)
	}
	lg, err := zap.NewStdLogAt(s.Logger.Named("http"), zapcore.DebugLevel)
	if err != nil {
		return log.New(io.Discard, "", 0)
	}
	return lg
}

// acceptLoop accepts from l until it fails for good, retrying temporary
// failures (such as running out of file descriptors) with a growing pause,
// as net/http does.
func acceptLoop(l net.Listener, handle func(net.Conn)) error {
	var pause time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			// Temporary is deprecated but is still how net/http spots
			// EMFILE and friends.
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() {
				pause = min(max(2*pause, 5*time.Millisecond), time.Second)
				time.Sleep(pause)
				continue
			}
			return err
		}
		pause = 0
		handle(c)
	}
}

// route reads just enough of c to tell an HTTP/2 client from a raw
// protocol's client and from an HTTP/1 client, and hands c, with the bytes
// read replayed, to the matching server. It closes c if the client fails or
// stalls before that, or if the server is closing.
func (s *Server) route(c net.Conn, timeout time.Duration, sn *sniffers, grpcL, httpL *chanListener) {
	raw := s.Raw
	var rawPreface []byte
	if raw != nil {
		rawPreface = raw.Preface
	}
	prefix, kind, ok := sniff(c, timeout, rawPreface)
	if !sn.release(c) || !ok {
		c.Close()
		return
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		c.Close()
		return
	}
	pc := &prefixConn{Conn: c, prefix: prefix}
	switch kind {
	case kindHTTP2:
		if s.GRPCBytesIn != nil && s.GRPCBytesOut != nil {
			grpcL.deliver(&countedConn{Conn: pc, in: s.GRPCBytesIn, out: s.GRPCBytesOut, wrapped: pc})
			return
		}
		grpcL.deliver(pc)
	case kindRaw:
		go raw.Serve(pc)
	default:
		httpL.deliver(pc)
	}
}

type connKind int

const (
	kindHTTP1 connKind = iota
	kindHTTP2
	kindRaw
)

// sniff reads from c until its bytes either differ from every preface (the
// HTTP/2 one, and raw's when not nil) or complete one. ok is false if c
// failed (or the deadline passed) first.
func sniff(c net.Conn, timeout time.Duration, raw []byte) (prefix []byte, kind connKind, ok bool) {
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return nil, 0, false
	}
	cands := []struct {
		preface []byte
		kind    connKind
	}{{http2Preface, kindHTTP2}}
	size := len(http2Preface)
	if raw != nil {
		cands = append(cands, struct {
			preface []byte
			kind    connKind
		}{raw, kindRaw})
		size = max(size, len(raw))
	}
	buf := make([]byte, size)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		n += m
		alive := false
		for _, cd := range cands {
			k := min(n, len(cd.preface))
			if !bytes.Equal(buf[:k], cd.preface[:k]) {
				continue
			}
			if n >= len(cd.preface) {
				return buf[:n], cd.kind, true
			}
			alive = true
		}
		if !alive {
			// Not HTTP/2 nor raw. A read error, if any, reaches the
			// HTTP server on its next read.
			return buf[:n], kindHTTP1, true
		}
		if err != nil {
			return nil, 0, false
		}
	}
}

// sniffers tracks the connections being sniffed, so that closing the server
// need not wait for their deadlines.
type sniffers struct {
	wg sync.WaitGroup
	mu struct {
		sync.Mutex
		closed bool
		conns  map[net.Conn]struct{}
	}
}

func (sn *sniffers) add(c net.Conn) bool {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.mu.closed {
		return false
	}
	sn.mu.conns[c] = struct{}{}
	return true
}

// release takes c off the list once it is sniffed, so that closeAll no
// longer touches it. It reports false if the server is closing, in which
// case c is (or is about to be) closed.
func (sn *sniffers) release(c net.Conn) bool {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	delete(sn.mu.conns, c)
	return !sn.mu.closed
}

// closeAll closes the connections being sniffed, interrupting their reads,
// and makes release refuse the rest.
func (sn *sniffers) closeAll() {
	sn.mu.Lock()
	defer sn.mu.Unlock()
	sn.mu.closed = true
	for c := range sn.mu.conns {
		c.Close()
	}
}

// prefixConn is a connection whose first bytes were already read.
type prefixConn struct {
	net.Conn
	prefix []byte
}

// countedConn counts a gRPC connection's bytes (Server.GRPCBytesIn/Out).
type countedConn struct {
	net.Conn
	in, out Counter
	wrapped *prefixConn
}

func (c *countedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.in.Add(float64(n))
	}
	return n, err
}

func (c *countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.out.Add(float64(n))
	}
	return n, err
}

// CloseWrite half-closes the connection when the underlying one can.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// chanListener is a net.Listener fed by route. Close is idempotent; a
// connection delivered after Close is closed.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// deliver hands c to the listener's server, or closes it if the listener is
// closed.
func (l *chanListener) deliver(c net.Conn) {
	select {
	case <-l.done:
		c.Close()
		return
	default:
	}
	select {
	case l.conns <- c:
	case <-l.done:
		c.Close()
	}
}
