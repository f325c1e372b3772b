package serve

import (
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"

	"github.com/stratakv/strata/internal/config"
	"github.com/stratakv/strata/internal/tlsconf"
	"github.com/stratakv/strata/internal/tlsconf/certtest"
)

// TestTLSHandshakeTimeout: over TLS the sniff deadline bounds the
// handshake too, so a client that connects and never completes one (or
// stalls halfway) is dropped; a client that does is served.
func TestTLSHandshakeTimeout(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	c := ca.Issue(t, "server", "server", "127.0.0.1")
	srvTLS, err := tlsconf.Side{TLSInfo: config.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile}}.Server("h2", "http/1.1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, tls.NewListener(l, srvTLS), &Server{SniffTimeout: 100 * time.Millisecond})
	defer ts.stop(t)

	for _, sent := range []string{"", "\x16\x03\x01"} { // nothing; the start of a ClientHello
		conn, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, sent)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := conn.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("after sending %q and stalling: read %d, %v; want EOF", sent, n, err)
		}
		conn.Close()
	}
	cli, err := tlsconf.Side{TLSInfo: config.TLSInfo{TrustedCAFile: ca.CAFile}}.Client("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	cli.NextProtos = []string{"h2"}
	conn, err := tls.Dial("tcp", l.Addr().String(), cli)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN negotiated %q, want h2 (gRPC needs it)", p)
	}
}
