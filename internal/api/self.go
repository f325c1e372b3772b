package api

import (
	"context"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/test/bufconn"

	"github.com/stratakv/strata/internal/serve"
)

// SelfClient is a client/v3 client of a member's own gRPC server over an
// in-memory connection, for the services that etcd also builds on its own
// client API (Lock, Election). The server knows its connections for
// in-process ones (serve.InProcessConn): calls made on behalf of a caller
// known by its certificate's common name carry that name (delegate).
type SelfClient struct {
	lis *bufconn.Listener
	*clientv3.Client
}

// selfListener hands out the in-memory listener's connections marked as
// in-process.
type selfListener struct{ *bufconn.Listener }

func (l selfListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return selfConn{c}, nil
}

type selfConn struct{ net.Conn }

func (selfConn) InProcess() {}

var _ serve.InProcessConn = selfConn{}

// NewSelfClient returns a client that reaches the server given to Serve.
// It connects lazily, so services may be built with it before the server
// serves.
func NewSelfClient() (*SelfClient, error) {
	lis := bufconn.Listen(1 << 20)
	c, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"strata-self"},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return lis.DialContext(ctx)
		})},
	})
	if err != nil {
		lis.Close()
		return nil, err
	}
	return &SelfClient{lis: lis, Client: c}, nil
}

// Serve serves s on the in-memory listener until s stops.
func (c *SelfClient) Serve(s *grpc.Server) { go s.Serve(selfListener{c.lis}) }

// Close closes the client and the listener.
func (c *SelfClient) Close() {
	c.Client.Close()
	c.lis.Close()
}
