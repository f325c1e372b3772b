// Package certtest issues throwaway certificate authorities and
// certificates for tests of TLS: a CA, certificates it signs for given host
// names (usable as server and client certificates, as etcd's test fixtures
// are), and revocation lists, all written as PEM files.
package certtest
