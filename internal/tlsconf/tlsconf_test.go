package tlsconf_test

import (
	"crypto/tls"
	"io"
	"math/big"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stratakv/strata/internal/config"
	"github.com/stratakv/strata/internal/tlsconf"
	"github.com/stratakv/strata/internal/tlsconf/certtest"
)

// handshake serves one connection with srv and dials it with cli, and
// returns the serial of the server's certificate as the client saw it and
// the first error either side met (a refused client certificate surfaces
// on the client's first read under TLS 1.3).
func handshake(t *testing.T, srv, cli *tls.Config) (*big.Int, error) {
	t.Helper()
	l, err := tls.Listen("tcp", "127.0.0.1:0", srv)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		if err := c.(*tls.Conn).Handshake(); err != nil {
			done <- err
			return
		}
		_, err = c.Write([]byte("x"))
		done <- err
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), cli)
	if err != nil {
		<-done
		return nil, err
	}
	defer c.Close()
	serial := c.ConnectionState().PeerCertificates[0].SerialNumber
	_, rerr := io.ReadFull(c, make([]byte, 1))
	serr := <-done
	if serr != nil {
		return serial, serr
	}
	return serial, rerr
}

func side(info config.TLSInfo) tlsconf.Side { return tlsconf.Side{TLSInfo: info} }

func TestMutualTLS(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	other := certtest.NewCA(t, "other")
	srvCert := ca.Issue(t, "server", "server", "127.0.0.1")
	cliCert := ca.Issue(t, "client", "client", "127.0.0.1")
	foreign := other.Issue(t, "foreign", "client", "127.0.0.1")

	srv, err := side(config.TLSInfo{CertFile: srvCert.CertFile, KeyFile: srvCert.KeyFile, TrustedCAFile: ca.CAFile, ClientCertAuth: true}).Server()
	if err != nil {
		t.Fatal(err)
	}
	client := func(c certtest.Cert) *tls.Config {
		cfg, err := side(config.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, TrustedCAFile: ca.CAFile}).Client("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	if serial, err := handshake(t, srv, client(cliCert)); err != nil || serial.Cmp(srvCert.Serial) != 0 {
		t.Fatalf("a client with a certificate of the CA: serial %v, %v", serial, err)
	}
	if _, err := handshake(t, srv, client(foreign)); err == nil {
		t.Fatal("a client certificate of another CA was accepted")
	}
	noCert, err := side(config.TLSInfo{TrustedCAFile: ca.CAFile}).Client("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := handshake(t, srv, noCert); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}

	// Rotation: a new certificate in the same files is served on the
	// next handshake.
	rotated := ca.Issue(t, "server", "server", "127.0.0.1")
	if serial, err := handshake(t, srv, client(cliCert)); err != nil || serial.Cmp(rotated.Serial) != 0 {
		t.Fatalf("after rotation: serial %v (want %v), %v", serial, rotated.Serial, err)
	}
}

func TestRevokedAndDisallowedClients(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	srvCert := ca.Issue(t, "server", "server", "127.0.0.1")
	good := ca.Issue(t, "good", "member-1", "127.0.0.1")
	revoked := ca.Issue(t, "revoked", "member-1", "127.0.0.1")
	stranger := ca.Issue(t, "stranger", "stranger", "127.0.0.1")
	crl := ca.CRL(t, "crl.der", revoked.Serial)

	srv, err := side(config.TLSInfo{CertFile: srvCert.CertFile, KeyFile: srvCert.KeyFile, TrustedCAFile: ca.CAFile,
		ClientCertAuth: true, CRLFile: crl, AllowedCNs: []string{"member-1"}}).Server()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cert    certtest.Cert
		refused string
	}{{good, ""}, {revoked, "revoked"}, {stranger, "not allowed"}} {
		cli, err := side(config.TLSInfo{CertFile: tc.cert.CertFile, KeyFile: tc.cert.KeyFile, TrustedCAFile: ca.CAFile}).Client("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		_, err = handshake(t, srv, cli)
		switch {
		case tc.refused == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.cert.CertFile, err)
		case tc.refused != "" && (err == nil || !strings.Contains(err.Error(), tc.refused)):
			t.Errorf("%s: want an error with %q, got %v", tc.cert.CertFile, tc.refused, err)
		}
	}
}

func TestSelfSignedIsKept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fixtures", "peer")
	s, err := tlsconf.Side{}.SelfSigned(dir, []string{"127.0.0.1", "localhost"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := s.Server()
	if err != nil {
		t.Fatal(err)
	}
	cli, err := s.Client("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	first, err := handshake(t, srv, cli)
	if err != nil {
		t.Fatal(err)
	}
	again, err := tlsconf.Side{}.SelfSigned(dir, nil, 1)
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := again.Server()
	if err != nil {
		t.Fatal(err)
	}
	second, err := handshake(t, srv2, cli)
	if err != nil || second.Cmp(first) != 0 {
		t.Fatalf("a restarted member's certificate: serial %v, first %v, %v", second, first, err)
	}
}

func TestBadSettings(t *testing.T) {
	ca := certtest.NewCA(t, "ca")
	c := ca.Issue(t, "server", "server", "127.0.0.1")
	for name, s := range map[string]tlsconf.Side{
		"no key":            side(config.TLSInfo{CertFile: c.CertFile}),
		"missing file":      side(config.TLSInfo{CertFile: c.CertFile + ".nope", KeyFile: c.KeyFile}),
		"key of another":    side(config.TLSInfo{CertFile: ca.CAFile, KeyFile: c.KeyFile}),
		"auth without a CA": side(config.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile, ClientCertAuth: true}),
		"unknown cipher":    {TLSInfo: config.TLSInfo{CertFile: c.CertFile, KeyFile: c.KeyFile}, CipherSuites: []string{"TLS_NOPE"}},
	} {
		if _, err := s.Server(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
