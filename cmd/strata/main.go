package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/internal/config"
	"github.com/stratakv/strata/internal/logutil"
	"github.com/stratakv/strata/internal/serve"
	"github.com/stratakv/strata/internal/version"
	"github.com/stratakv/strata/metrics"
	"github.com/stratakv/strata/readernode"
	"github.com/stratakv/strata/writernode"
)

// openEngine returns how a member of role opens its state machine: a
// reader's is bbolt (member/bolt.db), moved aside and replaced by an empty
// one (which the member seeds from the leader) when it is corrupt; a
// writer's the default (Pebble).
func openEngine(role config.Role, lg *zap.Logger) func(dir string) (applier.Engine, error) {
	if role != config.RoleReader {
		return nil
	}
	return func(dir string) (applier.Engine, error) {
		path := filepath.Join(dir, "bolt.db")
		return readernode.OpenBoltRepairing(path, readernode.BoltOptions{}, func(err error) {
			lg.Warn("the state machine is corrupt; moving it aside and seeding a new one from the leader",
				zap.String("path", path), zap.Error(err))
		})
	}
}

// replacementEngine returns how a reader creates the new bbolt file a raft
// snapshot installs into (beside bolt.db, renamed over it once complete);
// nil for a writer, which installs in place.
func replacementEngine(role config.Role) func(dir string) (writernode.ReplacementEngine, error) {
	if role != config.RoleReader {
		return nil
	}
	return func(dir string) (writernode.ReplacementEngine, error) {
		return readernode.OpenBoltReplacement(filepath.Join(dir, "bolt.db"), readernode.BoltOptions{})
	}
}

// learnerCompression is the compression of raft traffic to readers:
// zstd, unless --peer-compression was set, which then applies to every
// link (see docs/performance.md for the ratios on Kubernetes-like data).
func learnerCompression(cfg *config.Config) string {
	if cfg.ExplicitlySet["peer-compression"] {
		return ""
	}
	return "zstd"
}

// readerHashCheck is how often a reader compares its HashKV with the
// leader's, and the leader every member's with its own: --corrupt-check-time
// when set, else every five minutes (etcd's check is off by default;
// docs/compat.md).
func readerHashCheck(cfg *config.Config) time.Duration {
	if cfg.CorruptCheckTime > 0 {
		return cfg.CorruptCheckTime
	}
	return 5 * time.Minute
}

// compactHashCheck is how often the leader compares the members' hashes
// at the compacted revision: --compact-hash-check-time, unless the
// CompactHashCheck gate (on in strata, off in etcd) is off.
func compactHashCheck(cfg *config.Config) time.Duration {
	if !cfg.FeatureGates[config.FeatureCompactHashCheck] {
		return 0
	}
	return cfg.CompactHashCheckTime
}

// minWatchProgressInterval is the shortest progress notification interval
// etcd accepts; a shorter --watch-progress-notify-interval is raised to it.
const minWatchProgressInterval = 100 * time.Millisecond

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit code.
func run(args, environ []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "playground" {
		return playground(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "perf" {
		return perfMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "snapshot" {
		return snapshotCmd(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "dump-logs" {
		return dumpLogs(args[1:], stdout, stderr)
	}
	cfg, err := config.Parse(args, environ)
	switch {
	case errors.Is(err, config.ErrVersion):
		fmt.Fprint(stdout, config.VersionText(version.EtcdServer, version.Strata))
		return 0
	case errors.Is(err, config.ErrHelp):
		fmt.Fprint(stdout, config.Usage())
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "strata: %v\n", err)
		return config.ExitCode(err)
	}
	lg, err := logutil.New(cfg.LogLevel, cfg.LogFormat, cfg.LogOutputs)
	if err != nil {
		fmt.Fprintf(stderr, "strata: %v\n", err)
		return 2
	}
	defer lg.Sync()
	cfg.LogNotices(lg)
	if cfg.Role == config.RoleReader && cfg.IsNewCluster() {
		fmt.Fprintf(stderr, "strata: a reader joins a running cluster: add it with `etcdctl member add %s --learner --peer-urls=...` and start it with --initial-cluster-state=existing\n", cfg.Name)
		return 2
	}
	err = serveMember(cfg, lg)
	for cfg.Role == config.RoleReader && errors.Is(err, writernode.ErrCorruptStateMachine) {
		// A reader whose state machine disagrees with the leader's moves
		// it aside and starts again: it seeds a new one.
		path := filepath.Join(cfg.DataDir, "member", "bolt.db")
		if rerr := os.Rename(path, path+".corrupt"); rerr != nil {
			err = fmt.Errorf("%w; moving it aside: %v", err, rerr)
			break
		}
		lg.Warn("moved the corrupt state machine aside; starting again to seed a new one", zap.String("path", path))
		err = serveMember(cfg, lg)
	}
	if err != nil {
		// One line, on stderr, for the operator; the log has the details.
		lg.Warn("strata stopped", zap.Error(err))
		fmt.Fprintf(stderr, "strata: %v\n", err)
		return 1
	}
	return 0
}

func serveMember(cfg *config.Config, lg *zap.Logger) error {
	lg.Info("starting strata",
		zap.String("etcd-version", version.EtcdServer),
		zap.String("strata-version", version.Strata),
		zap.String("name", cfg.Name),
		zap.String("data-dir", cfg.DataDir),
		zap.String("role", string(cfg.Role)))

	mtls, err := buildTLS(cfg, lg)
	if err != nil {
		return err
	}
	// Bind first, as etcd does: a taken port fails before any state is
	// touched, and the sockets exist once the process is up.
	var all []net.Listener
	defer func() {
		for _, l := range all {
			l.Close()
		}
	}()
	listen := func(urls []url.URL, secure *tls.Config) ([]net.Listener, error) {
		var ls []net.Listener
		for _, u := range urls {
			l, err := serve.Listen(u)
			if err != nil {
				return nil, fmt.Errorf("listen on %s: %w", u.String(), err)
			}
			if secureURL(u) {
				l = tls.NewListener(l, secure)
			}
			ls = append(ls, l)
			all = append(all, l)
		}
		return ls, nil
	}
	lis, err := listen(cfg.ListenClientURLs, mtls.clientServer)
	if err != nil {
		return err
	}
	peerLis, err := listen(cfg.ListenPeerURLs, mtls.peerServer)
	if err != nil {
		return err
	}
	metricsLis, err := listen(cfg.ListenMetricsURLs, mtls.clientServer)
	if err != nil {
		return err
	}

	reg := metrics.New(metrics.Options{
		ServerVersion: version.EtcdServer,
		Extensive:     cfg.Metrics == "extensive",
		Reader:        cfg.Role == config.RoleReader,
	})
	var (
		tracer   trace.Tracer
		grpcOpts []grpc.ServerOption
	)
	if cfg.EnableDistributedTracing {
		tr, err := metrics.NewTracing(context.Background(), metrics.TracingOptions{
			Address:                cfg.DistributedTracingAddress,
			ServiceName:            cfg.DistributedTracingServiceName,
			InstanceID:             cfg.DistributedTracingInstanceID,
			SamplingRatePerMillion: cfg.DistributedTracingSamplingRatePerMillion,
		})
		if err != nil {
			return err
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := tr.Shutdown(ctx); err != nil {
				lg.Warn("failed to flush traces", zap.Error(err))
			}
		}()
		tracer, grpcOpts = tr.Tracer(), []grpc.ServerOption{tr.GRPCServerOption()}
		lg.Info("distributed tracing enabled",
			zap.String("address", cfg.DistributedTracingAddress),
			zap.String("service-name", cfg.DistributedTracingServiceName),
			zap.Int("sampling-rate-per-million", cfg.DistributedTracingSamplingRatePerMillion))
	}

	m, err := writernode.Start(writernode.Config{
		Name:                 cfg.Name,
		DataDir:              cfg.DataDir,
		ClientURLs:           urlStrings(cfg.AdvertiseClientURLs),
		PeerTLS:              mtls.peerDial,
		InitialCluster:       initialCluster(cfg.InitialClusterMembers),
		InitialClusterToken:  cfg.InitialClusterToken,
		JoinExisting:         !cfg.IsNewCluster(),
		TickInterval:         cfg.HeartbeatDuration(),
		ElectionTicks:        cfg.ElectionTicks(),
		SnapshotCount:        cfg.SnapshotCount,
		CompactionBatchLimit: cfg.CompactionBatchLimit,
		MaxRequestBytes:      int(cfg.MaxRequestBytes),
		MaxTxnOps:            int(cfg.MaxTxnOps),
		Batching: writernode.Batching{
			MaxRequests: int(cfg.MaxBatchRequests),
			MaxBytes:    int(cfg.MaxBatchBytes),
			MaxInflight: int(cfg.MaxInflightBatches),
		},
		QuotaBytes:               quotaBytes(cfg.QuotaBackendBytes),
		UnsafeNoFsync:            cfg.UnsafeNoFsync,
		NoStrictReconfigCheck:    !cfg.StrictReconfigCheck,
		PeerCompression:          cfg.PeerCompression,
		LearnerCompression:       learnerCompression(cfg),
		WatchProgressInterval:    max(cfg.WatchProgressNotifyInterval, minWatchProgressInterval),
		Reader:                   cfg.Role == config.RoleReader,
		HashCheckInterval:        readerHashCheck(cfg),
		InitialCorruptCheck:      cfg.FeatureGates[config.FeatureInitialCorruptCheck],
		CompactHashCheckInterval: compactHashCheck(cfg),
		AutoCompaction:           writernode.AutoCompaction{Period: cfg.AutoCompactionPeriod, Revisions: cfg.AutoCompactionRevisions},
		OpenEngine:               openEngine(cfg.Role, lg),
		NewReplacementEngine:     replacementEngine(cfg.Role),
		Versions:                 api.Versions{Server: version.EtcdServer, Storage: version.Storage},
		Logger:                   lg,
		Metrics:                  reg,
		Tracer:                   tracer,
		Auth: writernode.Auth{
			Token:      cfg.AuthToken,
			TokenTTL:   time.Duration(cfg.AuthTokenTTL) * time.Second,
			BcryptCost: int(cfg.BcryptCost),
		},
		GRPCServerOptions: grpcOpts,
	})
	if err != nil {
		return err
	}
	defer m.Stop()
	reg.SetState(m.MetricsState)
	// Peers must reach the member before it can have a leader: serve the
	// peer URLs at once (etcd does too).
	for i, l := range peerLis {
		lg.Info("serving peer traffic", zap.String("address", cfg.ListenPeerURLs[i].String()))
		srv := &serve.Server{GRPC: m.PeerGRPCServer(), Raw: m.PeerProtocol()}
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
				lg.Warn("peer listener stopped", zap.Error(err))
			}
		}()
	}

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigc)

	select {
	case <-m.ReadyNotify():
	case <-m.Done():
		return fmt.Errorf("member stopped before it was ready: %w", m.Err())
	case s := <-sigc:
		lg.Info("received signal before ready; shutting down", zap.String("signal", s.String()))
		return nil
	}

	handler, metricsHandler := httpHandlers(cfg, m, reg)
	var wg sync.WaitGroup
	for i, l := range metricsLis {
		lg.Info("serving metrics", zap.String("address", cfg.ListenMetricsURLs[i].String()))
		srv := &http.Server{Handler: metricsHandler, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
				lg.Warn("metrics listener stopped", zap.Error(err))
			}
		}()
	}
	for i, l := range lis {
		lg.Info("ready to serve client requests", zap.String("address", cfg.ListenClientURLs[i].String()))
		if cfg.ListenClientURLs[i].Scheme == "http" || cfg.ListenClientURLs[i].Scheme == "unix" {
			lg.Warn("serving client traffic insecurely; this is strongly discouraged!",
				zap.String("address", cfg.ListenClientURLs[i].String()))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, out := reg.ClientGRPCBytes()
			srv := &serve.Server{GRPC: m.GRPCServer(), HTTP: handler, GRPCBytesIn: in, GRPCBytesOut: out}
			if err := srv.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
				lg.Warn("client listener stopped", zap.Error(err))
			}
		}()
	}
	// Shut down outside-in: closing the listeners ends the servers (and
	// with them every HTTP handler), then the member stops its stages and
	// waits for gRPC handlers before closing storage.
	shutdown := func() {
		for _, l := range lis {
			l.Close()
		}
		for _, l := range metricsLis {
			l.Close()
		}
		wg.Wait()
		m.Stop()
	}
	select {
	case s := <-sigc:
		lg.Info("received signal; shutting down", zap.String("signal", s.String()))
		shutdown()
		lg.Info("stopped strata")
		return nil
	case <-m.Done():
		shutdown()
		return fmt.Errorf("member stopped: %w", m.Err())
	}
}

// httpHandlers returns the handlers of etcd's HTTP endpoints on the client
// URLs, and on --listen-metrics-urls: /metrics and the health checks
// (etcd serves /version and the debug endpoints only on the client URLs).
func httpHandlers(cfg *config.Config, m *writernode.Member, reg *metrics.Registry) (client, metricsOnly http.Handler) {
	withTimeout := func(ctx context.Context, serializable bool) error {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return m.Health(ctx, serializable)
	}
	health := func(ctx context.Context, q serve.HealthQuery) serve.HealthStatus {
		// As etcd: any alarm not excluded (?exclude=NOSPACE) fails
		// the check, serializable or not.
		for _, a := range m.Alarms() {
			if q.ExcludedAlarms[a.Alarm.String()] {
				continue
			}
			switch a.Alarm {
			case pb.AlarmType_NOSPACE:
				return serve.HealthStatus{Reason: serve.ReasonAlarmNoSpace}
			case pb.AlarmType_CORRUPT:
				return serve.HealthStatus{Reason: serve.ReasonAlarmCorrupt}
			default:
				return serve.HealthStatus{Reason: serve.ReasonAlarmUnknown}
			}
		}
		if !q.Serializable && !m.HasLeader() {
			return serve.HealthStatus{Reason: serve.ReasonNoLeader}
		}
		if err := withTimeout(ctx, q.Serializable); err != nil {
			return serve.HealthStatus{Reason: serve.ReasonRangeErrorPrefix + err.Error()}
		}
		return serve.HealthStatus{Healthy: true}
	}
	serializableRead := serve.Check{Name: serve.CheckSerializableRead, Run: func(ctx context.Context) error {
		return withTimeout(ctx, true)
	}}
	linearizableRead := serve.Check{Name: serve.CheckLinearizableRead, Run: func(ctx context.Context) error {
		return withTimeout(ctx, false)
	}}
	// As etcd: not ready while the CORRUPT alarm is raised.
	dataCorruption := func(context.Context) error {
		for _, a := range m.Alarms() {
			if a.Alarm == pb.AlarmType_CORRUPT {
				return fmt.Errorf("alarm activated: %s", a.Alarm)
			}
		}
		return nil
	}
	// etcd's learners are not ready; strata's readers are learners that
	// serve, and are (a writer added as a learner, to be promoted, is
	// not, as in etcd).
	nonLearner := func(context.Context) error {
		if cfg.Role == config.RoleWriter && m.IsLearner() {
			return errors.New("is learner")
		}
		return nil
	}
	endpoints := serve.Endpoints{
		Health: health,
		Livez:  []serve.Check{serializableRead},
		Readyz: []serve.Check{
			{Name: serve.CheckDataCorruption, Run: dataCorruption},
			serializableRead,
			linearizableRead,
			{Name: serve.CheckNonLearner, Run: nonLearner},
		},
	}
	mm := http.NewServeMux()
	mm.Handle("/metrics", reg.Handler())
	endpoints.Register(mm)

	mux := http.NewServeMux()
	mux.Handle("/metrics", reg.Handler())
	endpoints.Versions = func() serve.Versions {
		return serve.Versions{Server: version.EtcdServer, Cluster: version.EtcdCluster, Storage: version.Storage}
	}
	endpoints.Register(mux)
	if cfg.EnablePprof {
		// etcd serves the runtime profiles under /debug/pprof/ when asked.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return serve.AccessControl(mux, cfg.CORS, cfg.HostWhitelist), mm
}

// quotaBytes applies etcd's rule that a zero quota means the default.
func quotaBytes(q int64) int64 {
	if q <= 0 {
		return config.DefaultQuotaBackendBytes
	}
	return q
}

func urlStrings(us []url.URL) []string {
	out := make([]string, len(us))
	for i := range us {
		out[i] = us[i].String()
	}
	return out
}

func initialCluster(members map[string][]url.URL) map[string][]string {
	out := make(map[string][]string, len(members))
	for name, us := range members {
		out[name] = urlStrings(us)
	}
	return out
}
