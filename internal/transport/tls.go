package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// LinkTLS returns the TLS configuration for dialing a peer at urls: nil
// when they are http URLs (or bare addresses), a copy of base that
// verifies the first URL's host when they are https. A peer whose URLs
// mix the two, or an https peer without base (no peer TLS configured), is
// an error: the scheme says what the peer listens for, as in etcd.
func LinkTLS(urls []string, base *tls.Config) (*tls.Config, error) {
	secure, plain := 0, 0
	var host string
	for _, raw := range urls {
		if !strings.Contains(raw, "://") {
			plain++
			continue
		}
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("transport: bad peer URL %q: %w", raw, err)
		}
		switch u.Scheme {
		case "https":
			secure++
			if host == "" {
				host = u.Hostname()
			}
		case "http":
			plain++
		default:
			return nil, fmt.Errorf("transport: peer URL %q: scheme must be http or https", raw)
		}
	}
	switch {
	case secure == 0:
		return nil, nil
	case plain > 0:
		return nil, fmt.Errorf("transport: peer URLs %s mix http and https", strings.Join(urls, ","))
	case base == nil:
		return nil, fmt.Errorf("transport: peer URLs %s are https but no peer TLS is configured (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file or --peer-auto-tls)", strings.Join(urls, ","))
	}
	c := base.Clone()
	if c.ServerName == "" {
		c.ServerName = host
	}
	return c, nil
}

// DialCredentials is the gRPC transport credentials option for a peer
// link's TLS configuration (nil: insecure).
func DialCredentials(c *tls.Config) grpc.DialOption {
	if c == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(c))
}

// dialTLS completes a link connection's TLS handshake when c is set,
// within rawDialTimeout.
func dialTLS(ctx context.Context, conn net.Conn, c *tls.Config) (net.Conn, error) {
	if c == nil {
		return conn, nil
	}
	ctx, cancel := context.WithTimeout(ctx, rawDialTimeout)
	defer cancel()
	tc := tls.Client(conn, c)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("transport: TLS handshake with %s: %w", conn.RemoteAddr(), err)
	}
	return tc, nil
}
