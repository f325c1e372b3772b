package perf

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// h2KV is the etcd KV service's unary calls over one HTTP/2 connection,
// framed here rather than by grpc-go: whatever calls are waiting when the
// writer wakes go out in one write, and the reader completes as many calls
// as one read brings. The harness's CPU per operation is what issue 6
// bounds (docs/perf.md), and grpc-go's per-call machinery (a stream object,
// a write and a read per call, retry buffers) is most of it. Only the KV
// calls the workloads make at rate go this way; watches, leases and
// maintenance stay on grpc-go.
//
// What it does not do: requests larger than one frame (16 KiB, the
// smallest maximum a server may set) go through fallback (grpc-go), as do
// calls once the connection failed; it honours the server's connection
// send window but assumes each request fits a stream's initial window.
type h2KV struct {
	fallback pb.KVClient
	authority,
	scheme string
	token func() string

	c   net.Conn
	wfr *http2.Framer // writes, into bw; REQUIRES: wmu
	bw  *bufio.Writer
	wmu sync.Mutex

	mu struct {
		sync.Mutex
		queue   []*h2call
		streams map[uint32]*h2call
		nextID  uint32
		window  int64 // connection send window
		err     error // the connection failed; every call after gets it
		// writing is set while a goroutine drains the queue: the
		// caller that queues first becomes the writer, sends what the
		// others queue meanwhile, and leaves when the queue is empty
		// (no writer goroutine to wake per call).
		writing bool
	}
	headers   sync.Map // path -> encoded header block
	readBytes int64    // received DATA not yet returned to the window (reader only)
}

// h2call is one call. Its answer fields are written only while it is in
// h2KV's stream map, under its lock, or by whoever removed it from there,
// before closing done.
type h2call struct {
	path   string
	body   []byte // the gRPC message, with its 5-byte prefix
	resp   []byte
	code   codes.Code
	msg    string
	gotSt  bool
	unsent bool // the server never processed it
	done   chan struct{}
}

// h2MaxRequest bounds what goes in one DATA frame (the protocol's minimum
// SETTINGS_MAX_FRAME_SIZE).
const h2MaxRequest = 16384

// h2MaxStreamID is the largest client stream ID.
const h2MaxStreamID = 1<<31 - 1

// h2RecvWindow is the window granted to the server, per stream and for the
// connection; the connection's is returned as it is read.
const h2RecvWindow = 1 << 30

func dialH2(ctx context.Context, target string, tc *tls.Config, fallback pb.KVClient, token func() string) (*h2KV, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if tc != nil {
		tc = tc.Clone()
		tc.NextProtos = []string{"h2"}
		if tc.ServerName == "" {
			tc.ServerName, _, _ = net.SplitHostPort(target)
		}
		tlc := tls.Client(c, tc)
		if err := tlc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c, scheme = tlc, "https"
	}
	k := &h2KV{fallback: fallback, authority: target, scheme: scheme, token: token, c: c,
		bw: bufio.NewWriterSize(c, 64<<10)}
	k.wfr = http2.NewFramer(k.bw, nil)
	k.mu.streams = map[uint32]*h2call{}
	k.mu.nextID = 1
	k.mu.window = 65535 // the protocol's initial connection window
	if _, err := k.bw.WriteString(http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	if err := k.wfr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2RecvWindow},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0}); err != nil {
		c.Close()
		return nil, err
	}
	if err := k.wfr.WriteWindowUpdate(0, h2RecvWindow-65535); err != nil {
		c.Close()
		return nil, err
	}
	if err := k.bw.Flush(); err != nil {
		c.Close()
		return nil, err
	}
	rfr := http2.NewFramer(nil, bufio.NewReaderSize(c, 64<<10))
	rfr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	rfr.MaxHeaderListSize = 1 << 20
	go k.read(rfr)
	return k, nil
}

func (k *h2KV) close() { k.c.Close() }

// fail ends the connection: every call waiting, and every later one, gets
// err.
func (k *h2KV) fail(err error) {
	k.mu.Lock()
	if k.mu.err == nil {
		k.mu.err = err
	}
	unsent := k.mu.queue
	k.mu.queue = nil
	var sent []*h2call
	for _, c := range k.mu.streams {
		sent = append(sent, c)
	}
	k.mu.streams = map[uint32]*h2call{}
	k.mu.Unlock()
	k.c.Close()
	// Removed from the map under the lock, the calls are no longer the
	// reader's to touch.
	for _, c := range unsent {
		c.unsent = true // the server never saw it: it goes through grpc-go
		close(c.done)
	}
	for _, c := range sent {
		c.code, c.msg = codes.Unavailable, err.Error()
		close(c.done)
	}
}

// goAway handles the server's GOAWAY: calls above its last stream ID were
// not processed and fail; those at or below it complete as they come; new
// calls go through grpc-go.
func (k *h2KV) goAway(f *http2.GoAwayFrame) {
	err := fmt.Errorf("server sent GOAWAY: %v %s", f.ErrCode, f.DebugData())
	k.mu.Lock()
	if k.mu.err == nil {
		k.mu.err = err
	}
	unsent := k.mu.queue
	k.mu.queue = nil
	var refused []*h2call
	for id, c := range k.mu.streams {
		if id > f.LastStreamID {
			refused = append(refused, c)
			delete(k.mu.streams, id)
		}
	}
	k.mu.Unlock()
	for _, c := range append(unsent, refused...) {
		c.unsent = true // never processed: safe to send again through grpc-go
		close(c.done)
	}
}

// drain sends what is queued, as much as the connection window allows,
// one flush per pass, unless another goroutine is already doing so.
func (k *h2KV) drain() {
	k.mu.Lock()
	if k.mu.writing {
		k.mu.Unlock()
		return
	}
	k.mu.writing = true
	// Let the clients the reader just woke queue their next calls first:
	// one write then carries several (a write syscall is most of what a
	// call costs the harness).
	k.mu.Unlock()
	runtime.Gosched()
	k.mu.Lock()
	for {
		if k.mu.err != nil {
			break
		}
		var batch []*h2call
		var ids []uint32
		n := 0
		for ; n < len(k.mu.queue) && int64(len(k.mu.queue[n].body)) <= k.mu.window; n++ {
			c := k.mu.queue[n]
			k.mu.window -= int64(len(c.body))
			id := k.mu.nextID
			k.mu.nextID += 2
			k.mu.streams[id] = c
			batch, ids = append(batch, c), append(ids, id)
		}
		k.mu.queue = append(k.mu.queue[:0], k.mu.queue[n:]...)
		if len(batch) == 0 {
			break
		}
		k.mu.Unlock()
		k.wmu.Lock()
		var err error
		for i, c := range batch {
			if err = k.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: ids[i], BlockFragment: k.headerBlock(c.path), EndHeaders: true}); err != nil {
				break
			}
			if err = k.wfr.WriteData(ids[i], true, c.body); err != nil {
				break
			}
		}
		if err == nil {
			err = k.bw.Flush()
		}
		k.wmu.Unlock()
		if err != nil {
			k.mu.Lock()
			k.mu.writing = false
			k.mu.Unlock()
			k.fail(err)
			return
		}
		k.mu.Lock()
		if len(k.mu.queue) > 0 && k.mu.err == nil {
			// Calls queued during this pass: a goroutine of its own
			// sends them, so this caller goes back to waiting for
			// its own answer rather than writing for everyone.
			k.mu.Unlock()
			go k.drainOnce()
			return
		}
	}
	k.mu.writing = false
	k.mu.Unlock()
}

// drainOnce continues a drain begun by a caller: it holds the writing
// role already.
func (k *h2KV) drainOnce() {
	k.mu.Lock()
	k.mu.writing = false
	k.mu.Unlock()
	k.drain()
}

// headerBlock is the request headers of path, encoded once: every field
// is a never-indexed literal, so the block changes no HPACK state and can
// be sent again as it is.
func (k *h2KV) headerBlock(path string) []byte {
	if b, ok := k.headers.Load(path); ok {
		return b.([]byte)
	}
	var buf []byte
	w := &sliceWriter{&buf}
	enc := hpack.NewEncoder(w)
	fields := [][2]string{{":method", "POST"}, {":scheme", k.scheme}, {":path", path}, {":authority", k.authority},
		{"content-type", "application/grpc"}, {"te", "trailers"}}
	if k.token != nil {
		if t := k.token(); t != "" {
			fields = append(fields, [2]string{"token", t})
		}
	}
	for _, f := range fields {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1], Sensitive: true})
	}
	k.headers.Store(path, buf)
	return buf
}

type sliceWriter struct{ b *[]byte }

func (w *sliceWriter) Write(p []byte) (int, error) { *w.b = append(*w.b, p...); return len(p), nil }

// read dispatches frames until the connection fails.
func (k *h2KV) read(fr *http2.Framer) {
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			k.fail(err)
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				k.control(func() error { return k.wfr.WriteSettingsAck() })
			}
		case *http2.MetaHeadersFrame:
			k.headersFrame(f)
		case *http2.DataFrame:
			k.dataFrame(f)
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				k.mu.Lock()
				k.mu.window += int64(f.Increment)
				k.mu.Unlock()
				go k.drain() // not on the reader: a full socket must not stop it reading
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				k.control(func() error { return k.wfr.WritePing(true, data) })
			}
		case *http2.RSTStreamFrame:
			k.finish(f.StreamID, codes.Unavailable, "stream reset: "+f.ErrCode.String())
		case *http2.GoAwayFrame:
			k.goAway(f)
		}
	}
}

// control writes a connection-level frame now.
func (k *h2KV) control(write func() error) {
	k.wmu.Lock()
	err := write()
	if err == nil {
		err = k.bw.Flush()
	}
	k.wmu.Unlock()
	if err != nil {
		k.fail(err)
	}
}

func (k *h2KV) headersFrame(f *http2.MetaHeadersFrame) {
	k.mu.Lock()
	c := k.mu.streams[f.StreamID]
	if c == nil {
		k.mu.Unlock()
		return
	}
	for _, h := range f.Fields {
		switch h.Name {
		case ":status":
			if h.Value != "200" {
				c.code, c.msg, c.gotSt = codes.Unknown, "HTTP status "+h.Value, true
			}
		case "grpc-status":
			n, err := strconv.Atoi(h.Value)
			if err != nil {
				n = int(codes.Unknown)
			}
			c.code, c.gotSt = codes.Code(n), true
		case "grpc-message":
			c.msg = decodeGRPCMessage(h.Value)
		}
	}
	code, msg := c.code, c.msg
	if !c.gotSt {
		code, msg = codes.Internal, "response without grpc-status"
	}
	k.mu.Unlock()
	if f.StreamEnded() {
		k.finish(f.StreamID, code, msg)
	}
}

func (k *h2KV) dataFrame(f *http2.DataFrame) {
	if n := f.Length; n > 0 {
		k.readBytes += int64(n)
		if k.readBytes > h2RecvWindow/2 {
			inc := uint32(k.readBytes)
			k.readBytes = 0
			k.control(func() error { return k.wfr.WriteWindowUpdate(0, inc) })
		}
	}
	k.mu.Lock()
	c := k.mu.streams[f.StreamID]
	if c != nil {
		c.resp = append(c.resp, f.Data()...)
	}
	k.mu.Unlock()
	if c != nil && f.StreamEnded() {
		k.finish(f.StreamID, codes.Internal, "response without trailers")
	}
}

func (k *h2KV) finish(id uint32, code codes.Code, msg string) {
	k.mu.Lock()
	c := k.mu.streams[id]
	delete(k.mu.streams, id)
	k.mu.Unlock()
	if c == nil {
		return
	}
	c.code, c.msg = code, msg
	close(c.done)
}

// decodeGRPCMessage undoes grpc-message's percent-encoding.
func decodeGRPCMessage(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+3], 16, 8); err == nil {
				out = append(out, byte(v))
				i += 2
				continue
			}
		}
		out = append(out, s[i])
	}
	return string(out)
}

// invoke makes one unary call of path with req, decoding the answer into
// resp; it reports false when the call must go through fallback.
func (k *h2KV) invoke(ctx context.Context, path string, req, resp proto.Message) (bool, error) {
	size := proto.Size(req)
	if size+5 > h2MaxRequest {
		return false, nil
	}
	body := make([]byte, 5, 5+size)
	binary.BigEndian.PutUint32(body[1:], uint32(size))
	body, err := proto.MarshalOptions{}.MarshalAppend(body, req)
	if err != nil {
		return true, status.Error(codes.Internal, err.Error())
	}
	c := &h2call{path: path, body: body, done: make(chan struct{})}
	k.mu.Lock()
	if k.mu.err != nil || k.mu.nextID+2*uint32(len(k.mu.queue)) > h2MaxStreamID {
		// Failed, or out of stream IDs (after a billion calls): the
		// rest go through grpc-go.
		k.mu.Unlock()
		return false, nil
	}
	k.mu.queue = append(k.mu.queue, c)
	k.mu.Unlock()
	k.drain()
	select {
	case <-c.done:
	case <-ctx.Done():
		return true, status.FromContextError(ctx.Err()).Err()
	}
	if c.unsent {
		return false, nil
	}
	if c.code != codes.OK {
		return true, status.Error(c.code, c.msg)
	}
	if len(c.resp) < 5 || c.resp[0] != 0 || int(binary.BigEndian.Uint32(c.resp[1:5])) != len(c.resp)-5 {
		return true, status.Errorf(codes.Internal, "malformed response of %d bytes", len(c.resp))
	}
	if err := proto.Unmarshal(c.resp[5:], resp); err != nil {
		return true, status.Error(codes.Internal, err.Error())
	}
	return true, nil
}

// viaH2 makes a unary call of path on k, or through fallback when k
// cannot carry it.
func viaH2[Resp proto.Message](ctx context.Context, k *h2KV, path string, req proto.Message, resp Resp, fallback func() (Resp, error)) (Resp, error) {
	if ok, err := k.invoke(ctx, path, req, resp); ok {
		return resp, err
	}
	return fallback()
}

func (k *h2KV) Range(ctx context.Context, r *pb.RangeRequest, opts ...grpc.CallOption) (*pb.RangeResponse, error) {
	return viaH2(ctx, k, "/etcdserverpb.KV/Range", r, &pb.RangeResponse{}, func() (*pb.RangeResponse, error) { return k.fallback.Range(ctx, r, opts...) })
}

func (k *h2KV) Put(ctx context.Context, r *pb.PutRequest, opts ...grpc.CallOption) (*pb.PutResponse, error) {
	return viaH2(ctx, k, "/etcdserverpb.KV/Put", r, &pb.PutResponse{}, func() (*pb.PutResponse, error) { return k.fallback.Put(ctx, r, opts...) })
}

func (k *h2KV) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest, opts ...grpc.CallOption) (*pb.DeleteRangeResponse, error) {
	return viaH2(ctx, k, "/etcdserverpb.KV/DeleteRange", r, &pb.DeleteRangeResponse{}, func() (*pb.DeleteRangeResponse, error) { return k.fallback.DeleteRange(ctx, r, opts...) })
}

func (k *h2KV) Txn(ctx context.Context, r *pb.TxnRequest, opts ...grpc.CallOption) (*pb.TxnResponse, error) {
	return viaH2(ctx, k, "/etcdserverpb.KV/Txn", r, &pb.TxnResponse{}, func() (*pb.TxnResponse, error) { return k.fallback.Txn(ctx, r, opts...) })
}

func (k *h2KV) RangeStream(ctx context.Context, r *pb.RangeRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[pb.RangeStreamResponse], error) {
	return k.fallback.RangeStream(ctx, r, opts...)
}

func (k *h2KV) Compact(ctx context.Context, r *pb.CompactionRequest, opts ...grpc.CallOption) (*pb.CompactionResponse, error) {
	return k.fallback.Compact(ctx, r, opts...)
}
