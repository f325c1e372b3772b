package tlsconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stratakv/strata/internal/config"
)

// Side is one side's TLS settings: etcd's flags for it, and the settings
// both sides share.
type Side struct {
	config.TLSInfo
	// MinVersion and MaxVersion are tls.VersionTLS12 or VersionTLS13;
	// MaxVersion 0 leaves the highest to crypto/tls.
	MinVersion, MaxVersion uint16
	// CipherSuites are IANA names (--cipher-suites); empty: Go's defaults.
	CipherSuites []string
	// SkipVerify makes a client side accept any certificate of the other
	// end: auto TLS, where every member's certificate is self-signed.
	SkipVerify bool
}

// FromConfig returns the client side's and the peer side's settings of cfg.
func FromConfig(cfg *config.Config) (client, peer Side, err error) {
	min, err := config.TLSVersion(cfg.TLSMinVersion)
	if err != nil {
		return Side{}, Side{}, err
	}
	max, err := config.TLSVersion(cfg.TLSMaxVersion)
	if err != nil {
		return Side{}, Side{}, err
	}
	client = Side{TLSInfo: cfg.ClientTLS, MinVersion: min, MaxVersion: max, CipherSuites: cfg.CipherSuites}
	peer = Side{TLSInfo: cfg.PeerTLS, MinVersion: min, MaxVersion: max, CipherSuites: cfg.CipherSuites}
	return client, peer, nil
}

// cipherSuites maps IANA names to IDs, refusing the ones crypto/tls counts
// as insecure (etcd accepts only the names crypto/tls offers as secure).
func cipherSuites(names []string) ([]uint16, error) {
	var ids []uint16
	for _, n := range names {
		i := slices.IndexFunc(tls.CipherSuites(), func(c *tls.CipherSuite) bool { return c.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unexpected TLS cipher suite %q", n)
		}
		ids = append(ids, tls.CipherSuites()[i].ID)
	}
	return ids, nil
}

func (s Side) base() (*tls.Config, error) {
	ids, err := cipherSuites(s.CipherSuites)
	if err != nil {
		return nil, err
	}
	min := s.MinVersion
	if min == 0 {
		min = tls.VersionTLS12
	}
	return &tls.Config{MinVersion: min, MaxVersion: s.MaxVersion, CipherSuites: ids}, nil
}

// Server returns the configuration of a listener on this side. nextProtos
// are offered by ALPN ("h2" for a listener that serves gRPC).
func (s Side) Server(nextProtos ...string) (*tls.Config, error) {
	if s.CertFile == "" || s.KeyFile == "" {
		return nil, errors.New("tlsconf: a server needs a certificate and a key")
	}
	cfg, err := s.base()
	if err != nil {
		return nil, err
	}
	kp := &keyPair{cert: s.CertFile, key: s.KeyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	cfg.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() }
	cfg.NextProtos = nextProtos
	if !s.ClientCertAuth {
		return cfg, nil
	}
	if s.TrustedCAFile == "" {
		return nil, errors.New("tlsconf: client certificate authentication needs a trusted CA file")
	}
	// The pool is read per handshake (from cache), so the CA bundle can
	// rotate too: verification is done here rather than by crypto/tls.
	pool := &caPool{path: s.TrustedCAFile}
	if _, err := pool.get(); err != nil {
		return nil, err
	}
	var crl *revocations
	if s.CRLFile != "" {
		crl = &revocations{path: s.CRLFile}
		if _, err := crl.get(); err != nil {
			return nil, err
		}
	}
	cfg.ClientAuth = tls.RequireAnyClientCert
	cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		roots, err := pool.get()
		if err != nil {
			return err
		}
		certs, err := parseChain(raw)
		if err != nil {
			return err
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
		for _, c := range certs[1:] {
			opts.Intermediates.AddCert(c)
		}
		if _, err := certs[0].Verify(opts); err != nil {
			return err
		}
		if crl != nil {
			revoked, err := crl.get()
			if err != nil {
				return err
			}
			for _, c := range certs {
				if _, ok := revoked[c.SerialNumber.String()]; ok {
					return fmt.Errorf("tlsconf: certificate %s (serial %s) is revoked", c.Subject.CommonName, c.SerialNumber)
				}
			}
		}
		return s.checkNames(certs[0])
	}
	return cfg, nil
}

// checkNames applies --peer-cert-allowed-cn and --*-cert-allowed-hostname.
func (s Side) checkNames(c *x509.Certificate) error {
	if len(s.AllowedCNs) > 0 && !slices.Contains(s.AllowedCNs, c.Subject.CommonName) {
		return fmt.Errorf("tlsconf: common name %q is not allowed (allowed: %s)", c.Subject.CommonName, strings.Join(s.AllowedCNs, ","))
	}
	if len(s.AllowedHostnames) > 0 {
		for _, h := range s.AllowedHostnames {
			if c.VerifyHostname(h) == nil {
				return nil
			}
		}
		return fmt.Errorf("tlsconf: the certificate of %q names none of the allowed host names (%s)", c.Subject.CommonName, strings.Join(s.AllowedHostnames, ","))
	}
	return nil
}

// Client returns the configuration of connections this member opens on
// this side. serverName is the host verified in the other end's
// certificate. Without certificate files it is nil: plain connections.
func (s Side) Client(serverName string) (*tls.Config, error) {
	cfg, err := s.base()
	if err != nil {
		return nil, err
	}
	cfg.ServerName = serverName
	cfg.InsecureSkipVerify = s.SkipVerify
	if s.TrustedCAFile != "" {
		roots, err := (&caPool{path: s.TrustedCAFile}).get()
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = roots
	}
	cert, key := s.ClientCertFile, s.ClientKeyFile
	if cert == "" {
		cert, key = s.CertFile, s.KeyFile
	}
	if cert != "" {
		kp := &keyPair{cert: cert, key: key}
		if _, err := kp.get(); err != nil {
			return nil, err
		}
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() }
	}
	return cfg, nil
}

func parseChain(raw [][]byte) ([]*x509.Certificate, error) {
	if len(raw) == 0 {
		return nil, errors.New("tlsconf: no client certificate")
	}
	certs := make([]*x509.Certificate, len(raw))
	for i, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return nil, err
		}
		certs[i] = c
	}
	return certs, nil
}

// stamp identifies a file's version by what os.Stat says of it.
type stamp struct {
	mod  time.Time
	size int64
}

func stat(path string) (stamp, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return stamp{}, err
	}
	return stamp{fi.ModTime(), fi.Size()}, nil
}

// cached holds what was parsed from a set of files, and reparses when one
// of them changed. A failed reparse keeps the last good value, so a
// half-written rotation never breaks handshakes.
type cached[T any] struct {
	mu     sync.Mutex
	stamps []stamp
	val    T
	ok     bool
}

func (c *cached[T]) get(paths []string, parse func() (T, error)) (T, error) {
	stamps := make([]stamp, len(paths))
	for i, p := range paths {
		st, err := stat(p)
		if err != nil {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.ok {
				return c.val, nil
			}
			return c.val, err
		}
		stamps[i] = st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ok && slices.Equal(stamps, c.stamps) {
		return c.val, nil
	}
	v, err := parse()
	if err != nil {
		if c.ok {
			return c.val, nil
		}
		return v, err
	}
	c.val, c.stamps, c.ok = v, stamps, true
	return v, nil
}

type keyPair struct {
	cert, key string
	c         cached[*tls.Certificate]
}

func (k *keyPair) get() (*tls.Certificate, error) {
	return k.c.get([]string{k.cert, k.key}, func() (*tls.Certificate, error) {
		c, err := tls.LoadX509KeyPair(k.cert, k.key)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %w", err)
		}
		return &c, nil
	})
}

type caPool struct {
	path string
	c    cached[*x509.CertPool]
}

func (p *caPool) get() (*x509.CertPool, error) {
	return p.c.get([]string{p.path}, func() (*x509.CertPool, error) {
		b, err := os.ReadFile(p.path)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("tlsconf: %s holds no PEM certificate", p.path)
		}
		return pool, nil
	})
}

type revocations struct {
	path string
	c    cached[map[string]struct{}]
}

func (r *revocations) get() (map[string]struct{}, error) {
	return r.c.get([]string{r.path}, func() (map[string]struct{}, error) {
		b, err := os.ReadFile(r.path)
		if err != nil {
			return nil, err
		}
		// etcd's CRL files are DER; accept PEM too.
		if blk := pemBlock(b); blk != nil {
			b = blk
		}
		l, err := x509.ParseRevocationList(b)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: %s: %w", r.path, err)
		}
		out := make(map[string]struct{}, len(l.RevokedCertificateEntries))
		for _, e := range l.RevokedCertificateEntries {
			out[(*big.Int)(e.SerialNumber).String()] = struct{}{}
		}
		return out, nil
	})
}

func pemBlock(b []byte) []byte {
	if !bytes.HasPrefix(bytes.TrimSpace(b), []byte("-----BEGIN")) {
		return nil
	}
	if blk, _ := pem.Decode(b); blk != nil {
		return blk.Bytes
	}
	return nil
}
