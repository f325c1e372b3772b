package api

import (
	"context"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	epb "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	lpb "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"

	"github.com/stratakv/strata/internal/serve"
)

// grpcOverheadBytes is the slack etcd allows on top of --max-request-bytes
// for gRPC framing when sizing the server's receive limit.
const grpcOverheadBytes = 512 * 1024

// LeaderSource tells whether the member currently knows a leader.
type LeaderSource interface {
	HasLeader() bool
}

// ServerConfig configures the gRPC server.
type ServerConfig struct {
	Backend    Backend
	Status     StatusSource
	Membership Membership
	Leader     LeaderSource
	Mover      LeaderMover
	Leases     Leases
	// Snapshots, when set, serves Maintenance.Snapshot.
	Snapshots Snapshotter
	// Watch, when its Hub is set, serves the Watch service.
	Watch WatchConfig
	// Self, when set, is a client of this server (SelfClient); it serves
	// the Lock and Election services.
	Self            *clientv3.Client
	Versions        Versions
	Limits          Limits
	MaxRequestBytes int
	// ServerOptions are added before etcd's (metrics, tracing): their
	// interceptors run outside strata's own.
	ServerOptions []grpc.ServerOption
	// Auth, when its Store is set, serves the Auth service and checks
	// every RPC's caller as etcd does (authz.go).
	Auth AuthConfig
}

// NewServer returns a gRPC server with etcd's KV, Maintenance and Cluster
// services and grpc.health.v1 registered, and etcd's server options.
func NewServer(cfg ServerConfig) *grpc.Server {
	z := authz{cfg: cfg.Auth}
	ic := interceptor{leader: cfg.Leader, z: z}
	s := grpc.NewServer(append(slices.Clip(cfg.ServerOptions),
		// TLS is the listener's: this hands the gRPC layer the
		// connection's state, for the client certificate's common name.
		grpc.Creds(serve.PassthroughTLS{}),
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes+grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(math.MaxUint32),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Hour, Timeout: 20 * time.Second}),
		// Stop waits for running handlers, so the member can close its
		// storage after it without pulling it from under a read.
		grpc.WaitForHandlers(true),
		grpc.ChainUnaryInterceptor(ic.unary),
		grpc.ChainStreamInterceptor(ic.stream),
	)...)
	kv := NewKV(cfg.Backend, cfg.Limits)
	kv.z = z
	pb.RegisterKVServer(s, kv)
	if cfg.Leases != nil {
		l := NewLease(cfg.Backend, cfg.Leases)
		l.z = z
		pb.RegisterLeaseServer(s, l)
	}
	if cfg.Self != nil {
		lpb.RegisterLockServer(s, NewLock(cfg.Self))
		epb.RegisterElectionServer(s, NewElection(cfg.Self))
	}
	if cfg.Watch.Hub != nil {
		w := NewWatch(cfg.Backend, cfg.Leader, cfg.Watch, cfg.MaxRequestBytes)
		w.z = z
		pb.RegisterWatchServer(s, w)
	}
	mt := NewMaintenance(cfg.Backend, cfg.Status, cfg.Mover, cfg.Snapshots, cfg.Versions)
	mt.z = z
	pb.RegisterMaintenanceServer(s, mt)
	cl := NewCluster(cfg.Backend, cfg.Membership)
	cl.z = z
	pb.RegisterClusterServer(s, cl)
	if cfg.Auth.Store != nil {
		pb.RegisterAuthServer(s, &Auth{b: cfg.Backend, z: z})
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	return s
}

// interceptor applies etcd's per-call metadata rules: a non-UTF-8
// client-api-version is refused, and a call marked hasleader=true fails
// with "no leader" while the member knows none.
type interceptor struct {
	leader LeaderSource
	z      authz
}

func (ic interceptor) check(ctx context.Context) error {
	// ValueFromIncomingContext looks the two keys up without copying the
	// whole metadata map (FromIncomingContext does, on every request).
	for _, v := range metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataClientAPIVersionKey) {
		if !utf8.ValidString(v) {
			return rpctypes.ErrGRPCInvalidClientAPIVersion
		}
	}
	if vs := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataRequireLeaderKey); len(vs) > 0 && vs[0] == rpctypes.MetadataHasLeader {
		if ic.leader != nil && !ic.leader.HasLeader() {
			return rpctypes.ErrGRPCNoLeader
		}
	}
	return nil
}

func (ic interceptor) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := ic.check(ctx); err != nil {
		return nil, err
	}
	ctx, err := ic.z.withCaller(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (ic interceptor) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := ic.check(ss.Context()); err != nil {
		return err
	}
	// Streams resolve their caller per request (authz.accessNow).
	return h(srv, ss)
}
