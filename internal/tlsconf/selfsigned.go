package tlsconf

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// SelfSigned gives s a self-signed certificate for hosts, kept in dir as
// cert.pem and key.pem (etcd's <data-dir>/fixtures/{client,peer}): an
// existing pair is reused, so a restarted member keeps its certificate.
// The result's client side skips verification of the other end.
func (s Side) SelfSigned(dir string, hosts []string, years uint) (Side, error) {
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	s.CertFile, s.KeyFile = cert, key
	s.SkipVerify = true
	_, errC := os.Stat(cert)
	_, errK := os.Stat(key)
	if errC == nil && errK == nil {
		return s, nil
	}
	if !errors.Is(errC, fs.ErrNotExist) && errC != nil {
		return s, errC
	}
	if years == 0 {
		years = 1
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return s, err
	}
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return s, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return s, err
	}
	now := time.Now()
	tmpl := x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"strata"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.AddDate(int(years), 0, 0),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &priv.PublicKey, priv)
	if err != nil {
		return s, fmt.Errorf("tlsconf: self-signed certificate: %w", err)
	}
	kb, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		return s, err
	}
	if err := writePEM(cert, "CERTIFICATE", der, 0o644); err != nil {
		return s, err
	}
	return s, writePEM(key, "EC PRIVATE KEY", kb, 0o600)
}

func writePEM(path, typ string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
