package perf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// conn is one gRPC connection to one endpoint, with the etcd API's clients;
// the KV calls go over a connection of their own (h2.go) unless
// Config.GRPCGoKV.
type conn struct {
	endpoint string
	cc       *grpc.ClientConn
	h2       *h2KV
	kv       pb.KVClient
	watch    pb.WatchClient
	lease    pb.LeaseClient
	maint    pb.MaintenanceClient
}

// dialer opens connections with the run's TLS and auth settings.
type dialer struct {
	creds credentials.TransportCredentials
	tls   *tls.Config // nil without TLS
	token *tokenCreds
	cfg   Config
}

func newDialer(c Config) (*dialer, error) {
	d := &dialer{cfg: c, creds: insecure.NewCredentials()}
	if c.CACert != "" || c.Cert != "" || c.InsecureSkipVerify || anyHTTPS(c.Endpoints) {
		tc := &tls.Config{InsecureSkipVerify: c.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
		if c.CACert != "" {
			pem, err := os.ReadFile(c.CACert)
			if err != nil {
				return nil, fmt.Errorf("--cacert: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--cacert %s: no certificate in it", c.CACert)
			}
		}
		if (c.Cert == "") != (c.Key == "") {
			return nil, errors.New("--cert and --key go together")
		}
		if c.Cert != "" {
			kp, err := tls.LoadX509KeyPair(c.Cert, c.Key)
			if err != nil {
				return nil, fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{kp}
		}
		d.creds = credentials.NewTLS(tc)
		d.tls = tc
	}
	if c.User != "" {
		name, pass, ok := strings.Cut(c.User, ":")
		if !ok {
			pass = c.Password
		}
		d.token = &tokenCreds{name: name, password: pass, secure: d.creds.Info().SecurityProtocol == "tls"}
	}
	return d, nil
}

func anyHTTPS(eps []string) bool {
	for _, e := range eps {
		if strings.HasPrefix(e, "https://") {
			return true
		}
	}
	return false
}

// target turns an endpoint into a gRPC target.
func target(ep string) (string, error) {
	if !strings.Contains(ep, "://") {
		return ep, nil
	}
	u, err := url.Parse(ep)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", ep, err)
	}
	switch u.Scheme {
	case "http", "https":
		return u.Host, nil
	case "unix", "unixs":
		return "unix://" + u.Host + u.Path, nil
	}
	return "", fmt.Errorf("endpoint %q: unknown scheme %q", ep, u.Scheme)
}

func (d *dialer) dial(ctx context.Context, ep string) (*conn, error) {
	t, err := target(ep)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(d.creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(math.MaxInt32)),
		// Fixed flow-control windows turn off gRPC's bandwidth-delay
		// estimation, whose pings and window updates are frames (and
		// syscalls) of their own on every connection.
		grpc.WithInitialWindowSize(1 << 20),
		grpc.WithInitialConnWindowSize(1 << 24),
		grpc.WithSharedWriteBuffer(true),
		// A failed call is a result to count, not to retry; gRPC's
		// transparent retry also keeps a copy of every request sent.
		grpc.WithDisableRetry(),
	}
	if d.token != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(d.token))
	}
	cc, err := grpc.NewClient(t, opts...)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep, err)
	}
	c := &conn{endpoint: ep, cc: cc, kv: pb.NewKVClient(cc), watch: pb.NewWatchClient(cc),
		lease: pb.NewLeaseClient(cc), maint: pb.NewMaintenanceClient(cc)}
	if d.token != nil {
		if err := d.token.authenticate(ctx, pb.NewAuthClient(cc)); err != nil {
			cc.Close()
			return nil, fmt.Errorf("endpoint %s: authenticate: %w", ep, err)
		}
	}
	if !d.cfg.GRPCGoKV && !strings.HasPrefix(t, "unix://") {
		var token func() string
		if d.token != nil {
			token = func() string { return d.token.token }
		}
		h, err := dialH2(ctx, t, d.tls, c.kv, token)
		if err != nil {
			cc.Close()
			return nil, fmt.Errorf("endpoint %s: %w", ep, err)
		}
		c.h2, c.kv = h, h
	}
	return c, nil
}

func (c *conn) close() {
	if c.h2 != nil {
		c.h2.close()
	}
	c.cc.Close()
}

// tokenCreds sends the auth token etcd's Authenticate returned with every
// call, under the "token" metadata key, as client/v3 does.
type tokenCreds struct {
	name, password string
	secure         bool
	token          string
}

func (t *tokenCreds) authenticate(ctx context.Context, ac pb.AuthClient) error {
	if t.token != "" {
		return nil
	}
	r, err := ac.Authenticate(ctx, &pb.AuthenticateRequest{Name: t.name, Password: t.password})
	if err != nil {
		return err
	}
	t.token = r.Token
	return nil
}

func (t *tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	if t.token == "" {
		return nil, nil
	}
	return map[string]string{"token": t.token}, nil
}

func (t *tokenCreds) RequireTransportSecurity() bool { return false }

// selectEndpoints returns the endpoints of cfg.Endpoints whose role (from
// their Status) matches cfg.Target.
func selectEndpoints(ctx context.Context, d *dialer, cfg Config) ([]string, error) {
	if cfg.Target == "all" {
		return cfg.Endpoints, nil
	}
	var out []string
	for _, ep := range cfg.Endpoints {
		c, err := d.dial(ctx, ep)
		if err != nil {
			return nil, err
		}
		sctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
		st, err := c.maint.Status(sctx, &pb.StatusRequest{})
		cancel()
		c.close()
		if err != nil {
			return nil, fmt.Errorf("endpoint %s: status: %w", ep, err)
		}
		role := "followers"
		switch {
		case st.IsLearner:
			role = "readers"
		case st.Leader == st.Header.GetMemberId():
			role = "leader"
		}
		if role == cfg.Target {
			out = append(out, ep)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--target %s: none of %v is one", cfg.Target, cfg.Endpoints)
	}
	return out, nil
}
