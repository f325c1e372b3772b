// Package tlsconf turns etcd's TLS flags (one side's: client or peer) into
// crypto/tls configurations for the member's listeners and for the
// connections it opens.
//
// Certificates are read from their files when a handshake needs them and
// read again only when a file's modification time or size changed, so a
// rotated certificate takes effect on the next handshake without a restart
// (as etcd re-reads its files). The trusted CA bundle and the CRL are read
// the same way.
//
// A server side verifies client certificates when --client-cert-auth (or
// --peer-client-cert-auth) asks for them, against --trusted-ca-file, and
// then applies the extra checks etcd makes: the certificate is not in the
// CRL, its common name is one of --peer-cert-allowed-cn, one of its names is
// one of --*-cert-allowed-hostname. A client side trusts --trusted-ca-file
// (or the system pool without one) and presents --client-cert-file, or the
// server certificate when none is given, as etcd does.
//
// Auto TLS (--auto-tls, --peer-auto-tls) generates a self-signed ECDSA
// certificate for the member's host names under the data dir, as etcd does
// under <data-dir>/fixtures/{client,peer}; a client side then skips
// verification of the other end, which has a self-signed certificate too.
package tlsconf
