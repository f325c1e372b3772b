package serve

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// testServer serves a grpc.Server with the health service and a mux with
// /version and /hello on l.
type testServer struct {
	l      net.Listener
	grpc   *grpc.Server
	served chan error
}

func startServer(t *testing.T, l net.Listener, s *Server) *testServer {
	t.Helper()
	gs := grpc.NewServer()
	healthpb.RegisterHealthServer(gs, health.NewServer())
	mux := http.NewServeMux()
	Endpoints{Versions: func() Versions { return Versions{"3.7.3", "3.7.0", "3.7.0"} }}.Register(mux)
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") })
	if s == nil {
		s = &Server{}
	}
	s.GRPC, s.HTTP = gs, mux
	ts := &testServer{l: l, grpc: gs, served: make(chan error, 1)}
	go func() { ts.served <- s.Serve(l) }()
	return ts
}

// stop closes the listener, waits for Serve, and stops the grpc.Server.
func (ts *testServer) stop(t *testing.T) {
	t.Helper()
	ts.l.Close()
	select {
	case err := <-ts.served:
		if err != nil {
			t.Errorf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after the listener closed")
	}
	ts.grpc.Stop()
}

// waitGoroutines fails the test unless the goroutine count drops back to
// at most want. Goroutines end asynchronously after Close returns (the
// runtime gives no event to wait on), hence the polling.
func waitGoroutines(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, want <= %d:\n%s", n, want, buf)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func grpcHealth(t *testing.T, target string) {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("gRPC health check: %v", err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("gRPC health = %v", resp.Status)
	}
}

func httpGet(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServeTCP(t *testing.T) {
	base := runtime.NumGoroutine()
	l, err := Listen(url.URL{Scheme: "http", Host: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, l, nil)
	addr := l.Addr().String()

	grpcHealth(t, "passthrough:///"+addr)
	tr := &http.Transport{}
	c := &http.Client{Transport: tr}
	if code, body := httpGet(t, c, "http://"+addr+"/version"); code != 200 || body != `{"etcdserver":"3.7.3","etcdcluster":"3.7.0","storage":"3.7.0"}` {
		t.Errorf("/version = %d %q", code, body)
	}
	// gRPC again, while the HTTP connection is open and idle.
	grpcHealth(t, "passthrough:///"+addr)
	if code, body := httpGet(t, c, "http://"+addr+"/hello"); code != 200 || body != "hello" {
		t.Errorf("/hello = %d %q", code, body)
	}
	tr.CloseIdleConnections()

	ts.stop(t)
	waitGoroutines(t, base)
}

func TestServeUnixSocket(t *testing.T) {
	base := runtime.NumGoroutine()
	// etcd's framework uses unix://localhost:<port>: a socket file named
	// "localhost:<port>" in the working directory. Short paths keep under
	// the socket path limit.
	dir, err := os.MkdirTemp("", "sv")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Chdir(dir)
	u, err := url.Parse("unix://localhost:20000")
	if err != nil {
		t.Fatal(err)
	}
	network, addr, err := ListenAddress(*u)
	if network != "unix" || addr != "localhost:20000" || err != nil {
		t.Fatalf("ListenAddress = %q, %q, %v", network, addr, err)
	}

	// A stale socket from a killed process is replaced.
	stale, err := net.Listen("unix", addr)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	if _, err := os.Stat(addr); err != nil {
		t.Fatalf("stale socket missing: %v", err)
	}

	l, err := Listen(*u)
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, l, nil)
	sock := filepath.Join(dir, addr)

	grpcHealth(t, "unix://"+sock)
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}}
	c := &http.Client{Transport: tr}
	if code, body := httpGet(t, c, "http://localhost/version"); code != 200 || !strings.Contains(body, `"etcdserver":"3.7.3"`) {
		t.Errorf("/version = %d %q", code, body)
	}
	tr.CloseIdleConnections()

	ts.stop(t)
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file left behind: %v", err)
	}
	waitGoroutines(t, base)
}

func TestListenRefusesNonSocket(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := os.WriteFile("data", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(url.URL{Scheme: "unix", Host: "data"}); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile("data"); string(b) != "x" {
		t.Error("regular file damaged")
	}
	if _, err := Listen(url.URL{Scheme: "ftp", Host: "127.0.0.1:0"}); err == nil {
		t.Error("Listen accepted an ftp URL")
	}
}

func TestShortHTTPRequestIsNotHeldBack(t *testing.T) {
	// An HTTP/1.0 request shorter than the HTTP/2 preface is routed as soon
	// as its first byte differs, not after the sniff timeout.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, l, &Server{SniffTimeout: time.Minute})
	defer ts.stop(t)

	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /hello HTTP/1.0\r\n\r\n"
	if len(req) >= len(http2Preface) {
		t.Fatalf("request of %d bytes is not shorter than the preface", len(req))
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

func TestSlowClientsAreDropped(t *testing.T) {
	base := runtime.NumGoroutine()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, l, &Server{SniffTimeout: 100 * time.Millisecond})

	for _, sent := range []string{"", "PRI * HTTP/2.0\r\n"} {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, sent)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("after sending %q and stalling: read %d, %v; want EOF", sent, n, err)
		}
		c.Close()
	}
	// A stalled client does not block others.
	stalled, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	grpcHealth(t, "passthrough:///"+l.Addr().String())

	ts.stop(t)
	stalled.Close()
	waitGoroutines(t, base)
}

func TestCloseWithConnectionsInFlight(t *testing.T) {
	base := runtime.NumGoroutine()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, l, &Server{SniffTimeout: time.Hour})
	addr := l.Addr().String()

	// One connection mid-sniff, one live gRPC connection, one idle
	// keep-alive HTTP connection.
	sniffing, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer sniffing.Close()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	httpGet(t, &http.Client{Transport: tr}, "http://"+addr+"/hello")

	// Serve returns promptly although the sniff timeout is an hour.
	start := time.Now()
	ts.stop(t)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("closing took %v", d)
	}
	sniffing.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := sniffing.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("connection being sniffed: %v, want EOF", err)
	}
	conn.Close()
	tr.CloseIdleConnections()
	sniffing.Close()
	waitGoroutines(t, base)
}

func TestGRPCStoppedFirst(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, l, nil)
	addr := l.Addr().String()
	grpcHealth(t, "passthrough:///"+addr)
	ts.grpc.Stop()

	// HTTP is still served.
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	if code, _ := httpGet(t, &http.Client{Transport: tr}, "http://"+addr+"/hello"); code != 200 {
		t.Errorf("/hello = %d after gRPC stopped", code)
	}
	// An HTTP/2 connection is closed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(http2Preface)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil {
		t.Errorf("HTTP/2 connection after gRPC stopped: %v, want EOF", err)
	}
	ts.stop(t)
}

func TestServeFunction(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Serve(l, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "x") }))
	}()
	tr := &http.Transport{}
	if code, body := httpGet(t, &http.Client{Transport: tr}, "http://"+l.Addr().String()+"/"); code != 200 || body != "x" {
		t.Errorf("GET = %d %q", code, body)
	}
	tr.CloseIdleConnections()
	l.Close()
	if err := <-done; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// TestServeRawProtocol serves a raw protocol beside gRPC and HTTP: a
// connection that opens with its preface reaches Raw.Serve with the preface
// replayed, even when the preface arrives a byte at a time and the client's
// first write carries more than the preface; gRPC and HTTP are unaffected.
func TestServeRawProtocol(t *testing.T) {
	l, err := Listen(url.URL{Scheme: "http", Host: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	preface := []byte("STRATA-TEST/1\r\n")
	got := make(chan string, 2)
	raw := &Protocol{Preface: preface, Serve: func(c net.Conn) {
		defer c.Close()
		b := make([]byte, len(preface)+5)
		if _, err := io.ReadFull(c, b); err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- string(b)
	}}
	ts := startServer(t, l, &Server{Raw: raw})
	addr := l.Addr().String()

	send := func(chunks ...[]byte) string {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, ch := range chunks {
			if _, err := c.Write(ch); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("raw connection never reached Raw.Serve")
			return ""
		}
	}
	want := string(preface) + "hello"
	if s := send(append(append([]byte(nil), preface...), "hello"...)); s != want {
		t.Errorf("one write: Raw.Serve read %q, want %q", s, want)
	}
	var chunks [][]byte
	for _, b := range preface {
		chunks = append(chunks, []byte{b})
	}
	if s := send(append(chunks, []byte("hello"))...); s != want {
		t.Errorf("byte by byte: Raw.Serve read %q, want %q", s, want)
	}

	grpcHealth(t, "passthrough:///"+addr)
	c := &http.Client{Transport: &http.Transport{}}
	if code, body := httpGet(t, c, "http://"+addr+"/hello"); code != 200 || body != "hello" {
		t.Errorf("/hello = %d %q", code, body)
	}
	c.CloseIdleConnections()
	ts.stop(t)
}
