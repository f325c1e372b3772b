package config

import (
	"flag"
	"io"
	"time"
)

// legacyFlags are names from etcd's v2 command line that etcd v3.7.3 still
// accepts and ignores (etcdmain's "ignored" list). They are boolean-style:
// they take a value only as --f=v.
var legacyFlags = []string{
	"cluster-active-size",
	"cluster-remove-delay",
	"cluster-sync-interval",
	"config",
	"force",
	"max-result-buffer",
	"max-retry-attempts",
	"peer-heartbeat-interval",
	"peer-election-timeout",
	"retry-interval",
	"snapshot",
	"v",
	"vv",
	"test.coverprofile",
	"test.outputdir",
}

// cmdline is the flag set being parsed and the values that are not plain
// Config fields.
type cmdline struct {
	fs  *flag.FlagSet
	cfg *Config

	// ignored holds the flags strata registers only so that etcd command
	// lines keep working.
	ignored map[string]bool
	// hidden holds the legacy names, left out of Usage.
	hidden map[string]bool

	printVersion       bool
	configFile         string
	discoveryEndpoints []string
	discoverySRV       string
	discoverySRVName   string
	discoveryToken     string
	discoveryFallback  string
	features           featureGatesValue
}

func newCmdline() *cmdline {
	c := &Config{}
	fs := flag.NewFlagSet("strata", flag.ContinueOnError)
	// Parse returns errors; it never prints.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	cl := &cmdline{fs: fs, cfg: c, ignored: map[string]bool{}, hidden: map[string]bool{}}

	// Member.
	fs.StringVar(&c.Name, "name", DefaultName, "Human-readable name of this member; unique in the cluster.")
	fs.StringVar(&c.DataDir, "data-dir", "", "Directory of this member's data (default \"${name}.etcd\").")
	fs.StringVar(&c.WALDir, "wal-dir", "", "Directory of the write-ahead log, when it should not live in the data directory.")
	fs.Uint64Var(&c.SnapshotCount, "snapshot-count", DefaultSnapshotCount, "Committed entries between raft snapshots.")
	fs.Uint64Var(&c.SnapshotCatchUpEntries, "snapshot-catchup-entries", DefaultSnapshotCatchUpEntries, "Entries kept after a snapshot so that a slow follower can catch up without one.")
	fs.UintVar(&c.HeartbeatInterval, "heartbeat-interval", DefaultHeartbeatInterval, "Raft heartbeat interval, in milliseconds.")
	fs.UintVar(&c.ElectionTimeout, "election-timeout", DefaultElectionTimeout, "Raft election timeout, in milliseconds; at least 5 heartbeat intervals.")
	fs.BoolVar(&c.InitialElectionTickAdvance, "initial-election-tick-advance", true, "Fast-forward election ticks at boot so that a leader is elected sooner.")
	fs.Int64Var(&c.QuotaBackendBytes, "quota-backend-bytes", 0, "Size in bytes at which the NOSPACE alarm is raised (0: 2 GiB).")
	fs.UintVar(&c.MaxTxnOps, "max-txn-ops", DefaultMaxTxnOps, "Most operations allowed in one transaction.")
	fs.UintVar(&c.MaxRequestBytes, "max-request-bytes", DefaultMaxRequestBytes, "Largest client request accepted, in bytes.")
	c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	fs.Var(uint32Value{&c.MaxConcurrentStreams}, "max-concurrent-streams", "Most concurrent gRPC streams per client connection.")
	fs.DurationVar(&c.GRPCKeepAliveMinTime, "grpc-keepalive-min-time", DefaultGRPCKeepAliveMinTime, "Shortest interval at which a client may ping the server.")
	fs.DurationVar(&c.GRPCKeepAliveInterval, "grpc-keepalive-interval", DefaultGRPCKeepAliveInterval, "Interval of server-to-client pings (0 disables).")
	fs.DurationVar(&c.GRPCKeepAliveTimeout, "grpc-keepalive-timeout", DefaultGRPCKeepAliveTimeout, "How long to wait for a ping answer before closing the connection (0 disables).")
	fs.BoolVar(&c.SocketReusePort, "socket-reuse-port", false, "Set SO_REUSEPORT on listeners.")
	fs.BoolVar(&c.SocketReuseAddress, "socket-reuse-address", false, "Set SO_REUSEADDR on listeners.")

	// URLs.
	fs.Var(newURLsValue(&c.ListenClientURLs, DefaultListenClientURLs, ""), "listen-client-urls", "URLs to serve clients on (gRPC, and HTTP unless --listen-client-http-urls is set).")
	fs.Var(newURLsValue(&c.ListenClientHTTPURLs, "", ""), "listen-client-http-urls", "URLs to serve HTTP-only client traffic on.")
	fs.Var(newURLsValue(&c.AdvertiseClientURLs, DefaultAdvertiseClientURLs, ""), "advertise-client-urls", "This member's client URLs, as published to the cluster; required with --listen-client-urls.")
	fs.Var(newURLsValue(&c.ListenPeerURLs, DefaultListenPeerURLs, ""), "listen-peer-urls", "URLs to serve peer traffic on.")
	fs.Var(newURLsValue(&c.InitialAdvertisePeerURLs, DefaultInitialAdvertisePeerURLs, ""), "initial-advertise-peer-urls", "This member's peer URLs, as announced to the rest of the cluster.")
	fs.Var(newURLsValue(&c.ListenMetricsURLs, "", ""), "listen-metrics-urls", "Extra URLs serving only /metrics and the health endpoints.")

	// Clustering.
	fs.StringVar(&c.InitialCluster, "initial-cluster", defaultInitialCluster, "Bootstrap membership: name=peerURL pairs, comma-separated.")
	fs.Var(newChoiceValue(&c.InitialClusterState, ClusterStateNew, ClusterStateNew, ClusterStateExisting), "initial-cluster-state", "\"new\" to bootstrap a cluster, \"existing\" to join one; ignored once the data directory is initialised.")
	fs.StringVar(&c.InitialClusterToken, "initial-cluster-token", DefaultInitialClusterToken, "Token that keeps separate clusters' IDs apart during bootstrap.")
	fs.BoolVar(&c.StrictReconfigCheck, "strict-reconfig-check", true, "Reject membership changes that would lose quorum.")
	fs.BoolVar(&c.PreVote, "pre-vote", true, "Enable raft pre-vote.")
	fs.IntVar(&c.MaxLearners, "max-learners", DefaultMaxLearners, "Most learner members the cluster may have.")
	fs.BoolVar(&c.ForceNewCluster, "force-new-cluster", false, "Restart as a one-member cluster from the existing data.")
	fs.Var(newChoiceValue(&cl.discoveryFallback, "exit", "exit", "proxy"), "discovery-fallback", "Accepted for compatibility with etcd; only \"exit\" is valid.")
	fs.StringVar(&cl.discoverySRV, "discovery-srv", "", "DNS discovery domain (not supported by strata).")
	fs.StringVar(&cl.discoverySRVName, "discovery-srv-name", "", "DNS discovery service name (not supported by strata).")
	fs.Var(newStringsValue(&cl.discoveryEndpoints, "", true), "discovery-endpoints", "V3 discovery endpoints (not supported by strata).")
	fs.StringVar(&cl.discoveryToken, "discovery-token", "", "V3 discovery token (not supported by strata).")
	fs.Duration("discovery-dial-timeout", 2*time.Second, "")
	fs.Duration("discovery-request-timeout", 5*time.Second, "")
	fs.Duration("discovery-keepalive-time", 2*time.Second, "")
	fs.Duration("discovery-keepalive-timeout", 6*time.Second, "")
	fs.Bool("discovery-insecure-transport", true, "")
	fs.Bool("discovery-insecure-skip-tls-verify", false, "")
	fs.String("discovery-cert", "", "")
	fs.String("discovery-key", "", "")
	fs.String("discovery-cacert", "", "")
	fs.String("discovery-user", "", "")
	fs.String("discovery-password", "", "")

	// Compaction and housekeeping.
	fs.StringVar(&c.AutoCompactionMode, "auto-compaction-mode", CompactionModePeriodic, "How --auto-compaction-retention is read: \"periodic\" (a duration; a bare number is hours) or \"revision\" (a revision count).")
	fs.StringVar(&c.AutoCompactionRetention, "auto-compaction-retention", "0", "History kept by auto compaction; 0 disables it.")
	fs.IntVar(&c.CompactionBatchLimit, "compaction-batch-limit", 0, "Most revisions deleted per compaction batch (0: 1000).")
	fs.DurationVar(&c.CompactionSleepInterval, "compaction-sleep-interval", 0, "Pause between compaction batches.")
	fs.DurationVar(&c.WatchProgressNotifyInterval, "watch-progress-notify-interval", 0, "Interval of watch progress notifications (0: 10m).")
	fs.DurationVar(&c.WarningApplyDuration, "warning-apply-duration", DefaultWarningApplyDuration, "Apply time above which a warning is logged.")
	fs.DurationVar(&c.WarningUnaryRequestDuration, "warning-unary-request-duration", DefaultWarningUnaryRequestDuration, "Unary request time above which a warning is logged.")
	fs.DurationVar(&c.CorruptCheckTime, "corrupt-check-time", 0, "Interval of the cluster-wide corruption check (0 disables).")
	fs.DurationVar(&c.CompactHashCheckTime, "compact-hash-check-time", DefaultCompactHashCheckTime, "Interval at which the leader compares followers' compaction hashes.")
	fs.Var(&cl.features, "feature-gates", "Feature gates as Name=bool pairs, comma-separated.")

	// Security.
	fs.StringVar(&c.ClientTLS.CertFile, "cert-file", "", "Client-facing TLS certificate.")
	fs.StringVar(&c.ClientTLS.KeyFile, "key-file", "", "Client-facing TLS key.")
	fs.StringVar(&c.ClientTLS.ClientCertFile, "client-cert-file", "", "Certificate this member presents as a client, when it differs from --cert-file.")
	fs.StringVar(&c.ClientTLS.ClientKeyFile, "client-key-file", "", "Key for --client-cert-file.")
	fs.BoolVar(&c.ClientTLS.ClientCertAuth, "client-cert-auth", false, "Require client certificates.")
	fs.StringVar(&c.ClientTLS.CRLFile, "client-crl-file", "", "Certificate revocation list for client certificates.")
	fs.Var(newStringsValue(&c.ClientTLS.AllowedHostnames, "", false), "client-cert-allowed-hostname", "Allowed SAN host names of client certificates, comma-separated.")
	fs.StringVar(&c.ClientTLS.TrustedCAFile, "trusted-ca-file", "", "CA bundle for client certificates.")
	fs.BoolVar(&c.ClientAutoTLS, "auto-tls", false, "Serve clients with a generated self-signed certificate.")
	fs.StringVar(&c.PeerTLS.CertFile, "peer-cert-file", "", "Peer TLS certificate.")
	fs.StringVar(&c.PeerTLS.KeyFile, "peer-key-file", "", "Peer TLS key.")
	fs.StringVar(&c.PeerTLS.ClientCertFile, "peer-client-cert-file", "", "Certificate presented when dialing peers, when it differs from --peer-cert-file.")
	fs.StringVar(&c.PeerTLS.ClientKeyFile, "peer-client-key-file", "", "Key for --peer-client-cert-file.")
	fs.BoolVar(&c.PeerTLS.ClientCertAuth, "peer-client-cert-auth", false, "Require peer client certificates.")
	fs.StringVar(&c.PeerTLS.TrustedCAFile, "peer-trusted-ca-file", "", "CA bundle for peer certificates.")
	fs.BoolVar(&c.PeerAutoTLS, "peer-auto-tls", false, "Talk to peers with a generated self-signed certificate.")
	fs.UintVar(&c.SelfSignedCertValidity, "self-signed-cert-validity", 1, "Validity of generated certificates, in years.")
	fs.StringVar(&c.PeerTLS.CRLFile, "peer-crl-file", "", "Certificate revocation list for peer certificates.")
	fs.Var(newStringsValue(&c.PeerTLS.AllowedCNs, "", false), "peer-cert-allowed-cn", "Allowed common names of peer certificates, comma-separated.")
	fs.Var(newStringsValue(&c.PeerTLS.AllowedHostnames, "", false), "peer-cert-allowed-hostname", "Allowed SAN host names of peer certificates, comma-separated.")
	fs.Var(newStringsValue(&c.CipherSuites, "", false), "cipher-suites", "TLS cipher suites, comma-separated (empty: Go's defaults).")
	fs.BoolVar(&c.PeerTLS.SkipClientSANVerify, "peer-skip-client-san-verification", false, "Do not verify the SAN of peer client certificates.")
	fs.StringVar(&c.TLSMinVersion, "tls-min-version", DefaultTLSMinVersion, "Lowest TLS version: TLS1.2 or TLS1.3.")
	fs.StringVar(&c.TLSMaxVersion, "tls-max-version", "", "Highest TLS version: TLS1.2 or TLS1.3 (empty: Go's default).")
	c.CORS = []string{"*"}
	fs.Var(&corsValue{dst: &c.CORS}, "cors", "Origins allowed by CORS, comma-separated; \"*\" allows all.")
	fs.Var(newStringsValue(&c.HostWhitelist, "*", true), "host-whitelist", "Host names accepted in plain-HTTP requests, comma-separated; \"*\" accepts all.")

	// Auth.
	fs.StringVar(&c.AuthToken, "auth-token", DefaultAuthToken, "Auth token type and options: \"simple\" or \"jwt,pub-key=...,priv-key=...,sign-method=...,ttl=...\".")
	fs.UintVar(&c.AuthTokenTTL, "auth-token-ttl", DefaultAuthTokenTTL, "Lifetime of simple auth tokens, in seconds.")
	fs.UintVar(&c.BcryptCost, "bcrypt-cost", DefaultBcryptCost, "bcrypt cost of stored passwords.")

	// Observability.
	fs.StringVar(&c.Metrics, "metrics", "basic", "Metrics detail: \"basic\" or \"extensive\" (adds gRPC latency histograms).")
	fs.BoolVar(&c.EnablePprof, "enable-pprof", false, "Serve /debug/pprof on the client URLs.")
	fs.BoolVar(&c.EnableGRPCGateway, "enable-grpc-gateway", true, "Serve the JSON gateway under /v3/.")
	fs.BoolVar(&c.EnableDistributedTracing, "enable-distributed-tracing", false, "Export OpenTelemetry traces.")
	fs.StringVar(&c.DistributedTracingAddress, "distributed-tracing-address", DefaultDistributedTracingAddress, "OTLP/gRPC collector address.")
	fs.StringVar(&c.DistributedTracingServiceName, "distributed-tracing-service-name", DefaultDistributedTracingService, "service.name of exported spans.")
	fs.StringVar(&c.DistributedTracingInstanceID, "distributed-tracing-instance-id", "", "service.instance.id of exported spans; unique per member.")
	fs.IntVar(&c.DistributedTracingSamplingRatePerMillion, "distributed-tracing-sampling-rate", 0, "Sampled spans per million.")

	// Logging.
	fs.StringVar(&c.Logger, "logger", "zap", "Logger implementation; only \"zap\".")
	fs.Var(newStringsValue(&c.LogOutputs, DefaultLogOutput, true), "log-outputs", "Log destinations: \"default\" or \"stderr\", \"stdout\", or file paths, comma-separated.")
	fs.StringVar(&c.LogLevel, "log-level", DefaultLogLevel, "Log level: debug, info, warn, error, panic or fatal.")
	fs.StringVar(&c.LogFormat, "log-format", DefaultLogFormat, "Log format: json or console.")
	fs.Bool("enable-log-rotation", false, "")
	fs.String("log-rotation-config-json", `{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}`, "")

	// Unsafe.
	fs.BoolVar(&c.UnsafeNoFsync, "unsafe-no-fsync", false, "Do not fsync; data is lost on a crash. For tests only.")

	// etcd storage and process knobs strata has no counterpart for.
	fs.Uint("max-snapshots", 5, "")
	fs.Uint("max-wals", 5, "")
	fs.String("backend-bbolt-freelist-type", "", "")
	fs.Duration("backend-batch-interval", 0, "")
	fs.Int("backend-batch-limit", 0, "")
	fs.Duration("raft-read-timeout", 5*time.Second, "")
	fs.Duration("raft-write-timeout", 5*time.Second, "")
	fs.Bool("memory-mlock", false, "")
	fs.Uint("bootstrap-defrag-threshold-megabytes", 0, "")
	fs.Duration("downgrade-check-time", 5*time.Second, "")
	fs.Var(&choicesValue{valids: []string{"write-only", "write-only-skip-check", "write-only-drop-data", "gone"}}, "v2-deprecation", "")

	// etcdmain.
	fs.StringVar(&cl.configFile, "config-file", "", "Not supported by strata.")
	fs.BoolVar(&cl.printVersion, "version", false, "Print the version and exit.")
	for _, name := range legacyFlags {
		fs.Var(legacyValue{}, name, "")
		cl.hidden[name] = true
	}

	// strata.
	fs.Var(newChoiceValue((*string)(&c.Role), string(RoleWriter), string(RoleWriter), string(RoleReader)), "role", "strata: the member kind, \"writer\" (raft voter) or \"reader\" (raft learner serving reads).")
	fs.Var(newChoiceValue(&c.PeerCompression, "none", "none", "s2", "zstd"), "peer-compression", "strata: compress raft traffic this member sends to peers: \"none\", \"s2\" (fast) or \"zstd\" (smaller).")
	fs.UintVar(&c.MaxBatchRequests, "max-batch-requests", DefaultMaxBatchRequests, "strata: most client requests one raft entry carries (a writer's batching; docs/tuning.md).")
	fs.UintVar(&c.MaxBatchBytes, "max-batch-bytes", DefaultMaxBatchBytes, "strata: most request bytes one raft entry carries; a larger request goes alone.")
	fs.UintVar(&c.MaxInflightBatches, "max-inflight-batches", DefaultMaxInflightBatches, "strata: most raft entries a writer has proposed and not yet applied; requests queue behind them.")

	// Every flag registered with an empty usage string is one strata
	// accepts and ignores.
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage == "" {
			cl.ignored[f.Name] = true
		}
	})
	return cl
}
