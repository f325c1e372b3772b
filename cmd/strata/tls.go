package main

import (
	"crypto/tls"
	"net"
	"net/url"
	"path/filepath"
	"slices"

	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/config"
	"github.com/stratakv/strata/internal/tlsconf"
)

// memberTLS is what a member's TLS flags configure: the server side of its
// https listeners and the client side of the connections it opens.
type memberTLS struct {
	// clientServer and peerServer serve the https client and peer URLs;
	// nil when that side has none.
	clientServer, peerServer *tls.Config
	// peerDial is for connections to other members' peer URLs (raft,
	// snapshots, joins, forwarded lease calls, hash checks); nil without
	// peer TLS. Members never dial each other's client URLs.
	peerDial *tls.Config
}

// buildTLS reads the certificate flags. With --auto-tls or --peer-auto-tls
// and no certificate files for that side, it generates a self-signed
// certificate under <data-dir>/fixtures/{client,peer}, as etcd does; with
// files, they win (etcd ignores auto TLS then, and says so).
func buildTLS(cfg *config.Config, lg *zap.Logger) (memberTLS, error) {
	client, peer, err := tlsconf.FromConfig(cfg)
	if err != nil {
		return memberTLS{}, err
	}
	auto := func(s tlsconf.Side, on bool, side string, urls ...[]url.URL) (tlsconf.Side, error) {
		if !on {
			return s, nil
		}
		if !s.Empty() {
			lg.Warn("ignoring auto TLS since certificate files are given", zap.String("side", side))
			return s, nil
		}
		var hosts []string
		for _, us := range urls {
			for _, u := range us {
				if h, _, err := net.SplitHostPort(u.Host); err == nil {
					hosts = append(hosts, h)
				}
			}
		}
		lg.Info("using a self-signed certificate (auto TLS)", zap.String("side", side), zap.Strings("hosts", hosts))
		return s.SelfSigned(filepath.Join(cfg.DataDir, "fixtures", side), hosts, cfg.SelfSignedCertValidity)
	}
	if client, err = auto(client, cfg.ClientAutoTLS, "client", cfg.ListenClientURLs, cfg.AdvertiseClientURLs); err != nil {
		return memberTLS{}, err
	}
	if peer, err = auto(peer, cfg.PeerAutoTLS, "peer", cfg.ListenPeerURLs, cfg.InitialAdvertisePeerURLs); err != nil {
		return memberTLS{}, err
	}
	var m memberTLS
	if secure(cfg.ListenClientURLs) {
		// gRPC needs HTTP/2 by ALPN; HTTP/1.1 serves the gateway and
		// health endpoints on the same port.
		if m.clientServer, err = client.Server("h2", "http/1.1"); err != nil {
			return memberTLS{}, err
		}
	}
	if secure(cfg.ListenPeerURLs) {
		if m.peerServer, err = peer.Server("h2"); err != nil {
			return memberTLS{}, err
		}
	}
	if !peer.Empty() {
		if m.peerDial, err = peer.Client(""); err != nil {
			return memberTLS{}, err
		}
	}
	return m, nil
}

func secure(urls []url.URL) bool { return slices.ContainsFunc(urls, secureURL) }

// secureURL reports whether u is served over TLS (https, unixs).
func secureURL(u url.URL) bool { return u.Scheme == "https" || u.Scheme == "unixs" }
