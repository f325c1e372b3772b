package serve

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
)

// ListenAddress is the network and address a client URL listens on:
// "tcp" and host:port for http and https; "unix" and host+path for unix and
// unixs, so that unix://localhost:20000 is the socket file "localhost:20000"
// in the working directory and unix:///run/strata.sock is an absolute path
// (etcd's reading of these URLs).
func ListenAddress(u url.URL) (network, address string, err error) {
	switch u.Scheme {
	case "http", "https":
		return "tcp", u.Host, nil
	case "unix", "unixs":
		addr := u.Host + u.Path
		if addr == "" {
			return "", "", fmt.Errorf("unix URL %q names no socket", u.String())
		}
		return "unix", addr, nil
	}
	return "", "", fmt.Errorf("cannot listen on %q: scheme must be http, https, unix or unixs", u.String())
}

// Listen opens the listener for a client URL. For a unix socket it first
// removes a stale socket file left by an earlier process (never a file of
// another kind); the listener removes the file again when closed.
//
// TLS is the caller's: for https and unixs, wrap the result with
// tls.NewListener.
func Listen(u url.URL) (net.Listener, error) {
	network, addr, err := ListenAddress(u)
	if err != nil {
		return nil, err
	}
	if network == "unix" {
		if err := removeStaleSocket(addr); err != nil {
			return nil, err
		}
	}
	return net.Listen(network, addr)
}

func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("cannot listen on unix socket %q: a file that is not a socket is in the way", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}
