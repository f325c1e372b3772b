package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/tlsconf/certtest"
)

// TestMutualTLSClusterWithReader runs three writers and a reader with
// client and peer mutual TLS (etcd's flags): raft links, snapshots, the
// reader's replication stream and its join all go over TLS; clients
// without a certificate of the cluster's CA are refused on client and peer
// URLs; a rotated certificate is served without a restart.
func TestMutualTLSClusterWithReader(t *testing.T) {
	b := needSubject(t)
	if b.SubjectName != "strata" {
		t.Skip("runs strata's multi-member path")
	}
	ca := certtest.NewCA(t, "ca")
	other := certtest.NewCA(t, "other")
	member := ca.Issue(t, "member", "member", "127.0.0.1", "localhost")
	user := ca.Issue(t, "user", "user", "127.0.0.1")
	foreign := other.Issue(t, "foreign", "user", "127.0.0.1")
	// Snapshots reach the reader below through the TLS stream.
	flags := append(mutualTLSFlags(ca, member), "--snapshot-count=50")
	ms := StartCluster(t, "tls", 3, MemberConfig{Binary: b.Subject, HTTPS: true, ExtraArgs: append(slices.Clone(fastRaft), flags...)})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	tlsFor := func(c certtest.Cert) *tls.Config {
		cfg := &tls.Config{RootCAs: pool(t, ca.CAFile), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
		if c.CertFile != "" {
			kp, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{kp}
		}
		return cfg
	}
	client := func(m *Member, c certtest.Cert) *clientv3.Client { return newTLSEndpointClient(t, m, tlsFor(c)) }
	var clients []*clientv3.Client
	for _, m := range ms {
		clients = append(clients, client(m, user))
	}
	for i := range 120 {
		if _, err := clients[i%3].Put(ctx, "/tls/"+strconv.Itoa(i), strconv.Itoa(i)); err != nil {
			t.Fatalf("put %d through member %d: %v", i, i%3, err)
		}
	}

	// The reader joins over TLS and catches up from a snapshot (the
	// writers have compacted their logs past index 50).
	r, _ := joinLearner(ctx, t, b, ms, clients[0], "reader0", append(slices.Clone(fastRaft), append(flags, "--role=reader")...)...)
	rc := client(r, user)
	got, err := rc.Get(ctx, "/tls/119")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "119" {
		t.Fatalf("linearizable read on the reader: %v, %v", got, err)
	}
	put, err := rc.Put(ctx, "/tls/via-reader", "x") // forwarded to the leader
	if err != nil {
		t.Fatalf("a write through the reader: %v", err)
	}
	requireEqualHashKV(ctx, t, append(clients, rc), put.Header.Revision)

	// etcdctl with etcd's TLS flags.
	res, err := Etcdctl(ctx, b.Etcdctl, []string{r.ClientURL()}, "", "--cacert="+ca.CAFile, "--cert="+user.CertFile, "--key="+user.KeyFile, "get", "/tls/via-reader", "--print-value-only")
	if err != nil || res.ExitCode != 0 || strings.TrimSpace(string(res.Stdout)) != "x" {
		t.Fatalf("etcdctl get over TLS: %v: %s", err, res)
	}
	if res, err := Etcdctl(ctx, b.Etcdctl, []string{ms[1].ClientURL()}, "", "--cacert="+ca.CAFile, "--dial-timeout=2s", "--command-timeout=3s", "get", "/tls/1"); err == nil && res.ExitCode == 0 {
		t.Fatalf("etcdctl without a client certificate was served: %s", res)
	}

	// Refused: no certificate, another CA's, no TLS at all.
	for name, c := range map[string]*clientv3.Client{"no certificate": client(ms[0], certtest.Cert{}), "another CA": client(ms[0], foreign)} {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		if _, err := c.Get(cctx, "/tls/1"); err == nil {
			t.Errorf("%s: a client was served", name)
		}
		ccancel()
	}
	plain, err := clientv3.New(clientv3.Config{Endpoints: []string{ms[0].Endpoint()}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	if _, err := plain.Get(pctx, "/tls/1"); err == nil {
		t.Error("a plain-text client was served on an https URL")
	}
	pcancel()
	// The peer URL refuses a member certificate of another CA.
	if _, err := tlsRead(ms[2].PeerPort, tlsFor(foreign)); err == nil {
		t.Error("the peer URL accepted a certificate of another CA")
	}

	// Rotation: the files change under the running members; the next
	// handshake presents the new certificate.
	rotated := ca.Issue(t, "member", "member", "127.0.0.1", "localhost")
	serial, err := tlsRead(ms[0].ClientPort, tlsFor(user))
	if err != nil || serial.Cmp(rotated.Serial) != 0 {
		t.Fatalf("after rotation the client URL presents serial %v (want %v): %v", serial, rotated.Serial, err)
	}
	if serial, err := tlsRead(ms[1].PeerPort, tlsFor(user)); err != nil || serial.Cmp(rotated.Serial) != 0 {
		t.Fatalf("after rotation the peer URL presents serial %v (want %v): %v", serial, rotated.Serial, err)
	}
	// The cluster keeps working over new connections.
	if _, err := client(ms[2], user).Put(ctx, "/tls/after-rotation", "y"); err != nil {
		t.Fatal(err)
	}
}

// tlsRead dials 127.0.0.1:port with cfg, sends an HTTP/1.1 request so that
// the server answers or closes, and returns the serial of the server's
// certificate. A server that refuses the client's certificate fails the
// read with TLS's alert (under TLS 1.3 the refusal follows the
// handshake); an answer or a plain close (a peer URL serves no HTTP/1) is
// success.
func tlsRead(port int, cfg *tls.Config) (*big.Int, error) {
	c, err := tls.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port), cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return nil, err
	}
	serial := c.ConnectionState().PeerCertificates[0].SerialNumber
	if _, err := io.WriteString(c, "GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		return serial, err
	}
	if _, err = c.Read(make([]byte, 1)); errors.Is(err, io.EOF) {
		err = nil
	}
	return serial, err
}

func pool(t *testing.T, caFile string) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(b) {
		t.Fatal("no CA certificate in " + caFile)
	}
	return p
}

// TestAutoTLSCluster: --auto-tls and --peer-auto-tls give every member a
// self-signed certificate under <data-dir>/fixtures; the members link over
// TLS without verifying each other (etcd's behaviour), and a restarted
// member keeps its certificate.
func TestAutoTLSCluster(t *testing.T) {
	b := needSubject(t)
	if b.SubjectName != "strata" {
		t.Skip("runs strata's multi-member path")
	}
	ms := StartCluster(t, "auto", 3, MemberConfig{Binary: b.Subject, HTTPS: true,
		ExtraArgs: append(slices.Clone(fastRaft), "--auto-tls", "--peer-auto-tls")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	insecure := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ms[0].Endpoint(), ms[1].Endpoint(), ms[2].Endpoint()}, TLS: insecure, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Put(ctx, "auto", "tls"); err != nil {
		t.Fatal(err)
	}
	for _, side := range []string{"client", "peer"} {
		if _, err := os.Stat(filepath.Join(ms[1].DataDir, "fixtures", side, "cert.pem")); err != nil {
			t.Fatalf("%s certificate: %v", side, err)
		}
	}
	before, err := tlsRead(ms[1].PeerPort, insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := ms[1].Stop(); err != nil {
		t.Fatal(err)
	}
	if err := ms[1].Restart(); err != nil {
		t.Fatal(err)
	}
	after, err := tlsRead(ms[1].PeerPort, insecure)
	if err != nil || after.Cmp(before) != 0 {
		t.Fatalf("the restarted member's peer certificate: serial %v, before %v: %v", after, before, err)
	}
	got, err := newTLSEndpointClient(t, ms[1], insecure).Get(ctx, "auto")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "tls" {
		t.Fatalf("read on the restarted member: %v, %v", got, err)
	}
}

// mutualTLSFlags are etcd's flags for client and peer mutual TLS with
// member's certificate, trusting ca's.
func mutualTLSFlags(ca *certtest.CA, member certtest.Cert) []string {
	return []string{
		"--cert-file=" + member.CertFile, "--key-file=" + member.KeyFile,
		"--trusted-ca-file=" + ca.CAFile, "--client-cert-auth",
		"--peer-cert-file=" + member.CertFile, "--peer-key-file=" + member.KeyFile,
		"--peer-trusted-ca-file=" + ca.CAFile, "--peer-client-cert-auth",
	}
}

func newTLSEndpointClient(t *testing.T, m *Member, cfg *tls.Config) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
