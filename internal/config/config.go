package config

import (
	"net/url"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Defaults, as in etcd v3.7.3 (server/embed/config.go and etcdmain).
const (
	DefaultName                        = "default"
	DefaultListenClientURLs            = "http://localhost:2379"
	DefaultAdvertiseClientURLs         = "http://localhost:2379"
	DefaultListenPeerURLs              = "http://localhost:2380"
	DefaultInitialAdvertisePeerURLs    = "http://localhost:2380"
	DefaultInitialClusterToken         = "etcd-cluster"
	DefaultMaxRequestBytes             = 1572864 // 1.5 MiB
	DefaultMaxBatchRequests            = 1024
	DefaultMaxBatchBytes               = 1 << 20
	DefaultMaxInflightBatches          = 4
	DefaultMaxTxnOps                   = 128
	DefaultMaxConcurrentStreams        = 1<<32 - 1
	DefaultSnapshotCount               = 10000
	DefaultSnapshotCatchUpEntries      = 5000
	DefaultHeartbeatInterval           = 100  // ms
	DefaultElectionTimeout             = 1000 // ms
	DefaultGRPCKeepAliveMinTime        = 5 * time.Second
	DefaultGRPCKeepAliveInterval       = 2 * time.Hour
	DefaultGRPCKeepAliveTimeout        = 20 * time.Second
	DefaultWarningApplyDuration        = 100 * time.Millisecond
	DefaultWarningUnaryRequestDuration = 300 * time.Millisecond
	DefaultWatchProgressNotifyInterval = 10 * time.Minute
	DefaultCompactHashCheckTime        = time.Minute
	DefaultCompactionBatchLimit        = 1000
	DefaultQuotaBackendBytes           = 2 << 30 // what QuotaBackendBytes 0 means
	DefaultMaxLearners                 = 1
	DefaultAuthToken                   = "simple"
	DefaultAuthTokenTTL                = 300 // seconds
	DefaultBcryptCost                  = 10
	DefaultLogLevel                    = "info"
	DefaultLogFormat                   = "json"
	DefaultLogOutput                   = "default"
	DefaultTLSMinVersion               = "TLS1.2"
	DefaultDistributedTracingAddress   = "localhost:4317"
	DefaultDistributedTracingService   = "etcd"

	// maxElectionTimeout is etcd's upper bound for --election-timeout, in ms.
	maxElectionTimeout = 50000
	// maxSamplingRatePerMillion bounds --distributed-tracing-sampling-rate.
	maxSamplingRatePerMillion = 1000000
)

// The batching knobs' upper bounds. An entry must fit a peer link's frame
// (64 MiB) with room to spare; more requests or entries in flight than
// these would only queue memory.
const (
	MaxBatchRequests   = 1 << 20
	MaxBatchBytes      = 32 << 20
	MaxInflightBatches = 1024
)

// Initial cluster states (--initial-cluster-state).
const (
	ClusterStateNew      = "new"
	ClusterStateExisting = "existing"
)

// Auto-compaction modes (--auto-compaction-mode).
const (
	CompactionModePeriodic = "periodic"
	CompactionModeRevision = "revision"
)

// Role is the kind of member strata runs (--role).
type Role string

const (
	// RoleWriter is a raft voter with the Pebble state machine.
	RoleWriter Role = "writer"
	// RoleReader is a raft learner with the bbolt state machine.
	RoleReader Role = "reader"
)

// defaultInitialCluster is the text --initial-cluster has before parsing.
// etcd rebuilds it from --name only while it still has exactly this text.
const defaultInitialCluster = DefaultName + "=" + DefaultInitialAdvertisePeerURLs

// TLSInfo is one side's TLS settings (client or peer), by etcd's flags.
type TLSInfo struct {
	CertFile            string   // --cert-file / --peer-cert-file
	KeyFile             string   // --key-file / --peer-key-file
	ClientCertFile      string   // --client-cert-file / --peer-client-cert-file
	ClientKeyFile       string   // --client-key-file / --peer-client-key-file
	TrustedCAFile       string   // --trusted-ca-file / --peer-trusted-ca-file
	CRLFile             string   // --client-crl-file / --peer-crl-file
	ClientCertAuth      bool     // --client-cert-auth / --peer-client-cert-auth
	AllowedHostnames    []string // --client-cert-allowed-hostname / --peer-cert-allowed-hostname
	AllowedCNs          []string // --peer-cert-allowed-cn (peer only)
	SkipClientSANVerify bool     // --peer-skip-client-san-verification (peer only)
}

// Empty reports whether no certificate material is configured.
func (t TLSInfo) Empty() bool { return t.CertFile == "" && t.KeyFile == "" }

// Config is a parsed and validated server command line. Field comments name
// the flag; durations and sizes are in the flag's own unit.
type Config struct {
	// Member.
	Name                       string        // --name
	DataDir                    string        // --data-dir; "${name}.etcd" when unset
	WALDir                     string        // --wal-dir; "" means inside DataDir
	SnapshotCount              uint64        // --snapshot-count
	SnapshotCatchUpEntries     uint64        // --snapshot-catchup-entries
	HeartbeatInterval          uint          // --heartbeat-interval, ms
	ElectionTimeout            uint          // --election-timeout, ms
	InitialElectionTickAdvance bool          // --initial-election-tick-advance
	QuotaBackendBytes          int64         // --quota-backend-bytes; 0 means DefaultQuotaBackendBytes
	MaxTxnOps                  uint          // --max-txn-ops
	MaxRequestBytes            uint          // --max-request-bytes
	MaxConcurrentStreams       uint32        // --max-concurrent-streams
	GRPCKeepAliveMinTime       time.Duration // --grpc-keepalive-min-time
	GRPCKeepAliveInterval      time.Duration // --grpc-keepalive-interval
	GRPCKeepAliveTimeout       time.Duration // --grpc-keepalive-timeout
	SocketReusePort            bool          // --socket-reuse-port
	SocketReuseAddress         bool          // --socket-reuse-address

	// URLs. Lists are sorted and free of duplicates, as etcd keeps them.
	ListenClientURLs         []url.URL // --listen-client-urls (gRPC, and HTTP unless ListenClientHTTPURLs)
	ListenClientHTTPURLs     []url.URL // --listen-client-http-urls
	AdvertiseClientURLs      []url.URL // --advertise-client-urls
	ListenPeerURLs           []url.URL // --listen-peer-urls
	InitialAdvertisePeerURLs []url.URL // --initial-advertise-peer-urls
	ListenMetricsURLs        []url.URL // --listen-metrics-urls

	// Clustering.
	InitialCluster string // --initial-cluster, after etcd's derivation from --name
	// InitialClusterMembers is InitialCluster parsed: member name to its
	// sorted peer URLs. Empty when InitialCluster is "".
	InitialClusterMembers map[string][]url.URL
	InitialClusterState   string // --initial-cluster-state: ClusterStateNew or ClusterStateExisting
	InitialClusterToken   string // --initial-cluster-token
	StrictReconfigCheck   bool   // --strict-reconfig-check
	PreVote               bool   // --pre-vote
	MaxLearners           int    // --max-learners
	ForceNewCluster       bool   // --force-new-cluster

	// Compaction and housekeeping.
	AutoCompactionMode      string // --auto-compaction-mode
	AutoCompactionRetention string // --auto-compaction-retention, as given
	// AutoCompactionPeriod is the retention in periodic mode (a bare integer
	// means hours); 0 disables auto compaction.
	AutoCompactionPeriod time.Duration
	// AutoCompactionRevisions is the retention in revision mode; 0 disables.
	AutoCompactionRevisions     int64
	CompactionBatchLimit        int           // --compaction-batch-limit; 0 (the flag's default) becomes DefaultCompactionBatchLimit
	CompactionSleepInterval     time.Duration // --compaction-sleep-interval
	WatchProgressNotifyInterval time.Duration // --watch-progress-notify-interval; 0 (the flag's default) becomes DefaultWatchProgressNotifyInterval
	WarningApplyDuration        time.Duration // --warning-apply-duration
	WarningUnaryRequestDuration time.Duration // --warning-unary-request-duration
	CorruptCheckTime            time.Duration // --corrupt-check-time
	CompactHashCheckTime        time.Duration // --compact-hash-check-time
	// FeatureGates holds every gate etcd v3.7.3 knows (Feature* names) with
	// its effective value after --feature-gates.
	FeatureGates map[string]bool

	// Security.
	ClientTLS              TLSInfo
	PeerTLS                TLSInfo
	ClientAutoTLS          bool     // --auto-tls
	PeerAutoTLS            bool     // --peer-auto-tls
	SelfSignedCertValidity uint     // --self-signed-cert-validity, years
	CipherSuites           []string // --cipher-suites
	TLSMinVersion          string   // --tls-min-version: "TLS1.2" or "TLS1.3"
	TLSMaxVersion          string   // --tls-max-version: "", "TLS1.2" or "TLS1.3"
	CORS                   []string // --cors: allowed origins; "*" allows all
	HostWhitelist          []string // --host-whitelist: Host names accepted without TLS; "*" accepts all

	// Auth.
	AuthToken    string // --auth-token, e.g. "simple" or "jwt,pub-key=...,..."
	AuthTokenTTL uint   // --auth-token-ttl, seconds
	BcryptCost   uint   // --bcrypt-cost

	// Observability.
	Metrics                                  string // --metrics: "basic" or "extensive"
	EnablePprof                              bool   // --enable-pprof
	EnableGRPCGateway                        bool   // --enable-grpc-gateway
	EnableDistributedTracing                 bool   // --enable-distributed-tracing
	DistributedTracingAddress                string // --distributed-tracing-address
	DistributedTracingServiceName            string // --distributed-tracing-service-name
	DistributedTracingInstanceID             string // --distributed-tracing-instance-id
	DistributedTracingSamplingRatePerMillion int    // --distributed-tracing-sampling-rate

	// Logging.
	Logger     string   // --logger; only "zap"
	LogLevel   string   // --log-level
	LogFormat  string   // --log-format: "json" or "console"
	LogOutputs []string // --log-outputs: "default", "stderr", "stdout" or file paths

	// Unsafe.
	UnsafeNoFsync bool // --unsafe-no-fsync

	// strata's own.
	Role Role // --role
	// PeerCompression compresses raft messages and snapshots on every
	// peer link this member sends on: "none", "s2" or "zstd".
	PeerCompression string // --peer-compression
	// The batching knobs of a writer's proposer (docs/tuning.md): the
	// most requests and bytes one raft entry carries, and the most
	// entries proposed but not yet applied.
	MaxBatchRequests   uint // --max-batch-requests
	MaxBatchBytes      uint // --max-batch-bytes
	MaxInflightBatches uint // --max-inflight-batches

	// ExplicitlySet holds the flags set on the command line or through an
	// ETCD_* variable (etcd's FlagsExplicitlySet).
	ExplicitlySet map[string]bool
	// Ignored lists, sorted, the explicitly set flags that strata accepts for
	// compatibility with etcd but does not act on.
	Ignored []string
	// Notices is what etcd would have logged while parsing, in order.
	Notices []Notice
}

// A Notice is a message Parse leaves for the caller's logger.
type Notice struct {
	Level  zapcore.Level
	Msg    string
	Fields []zap.Field
}

// LogNotices writes c.Notices to lg.
func (c *Config) LogNotices(lg *zap.Logger) {
	for _, n := range c.Notices {
		if ce := lg.Check(n.Level, n.Msg); ce != nil {
			ce.Write(n.Fields...)
		}
	}
}

// ElectionTicks is the election timeout in heartbeat ticks.
func (c *Config) ElectionTicks() int { return int(c.ElectionTimeout / c.HeartbeatInterval) }

// HeartbeatDuration is --heartbeat-interval as a duration.
func (c *Config) HeartbeatDuration() time.Duration {
	return time.Duration(c.HeartbeatInterval) * time.Millisecond
}

// ElectionDuration is --election-timeout as a duration.
func (c *Config) ElectionDuration() time.Duration {
	return time.Duration(c.ElectionTimeout) * time.Millisecond
}

// IsNewCluster reports whether --initial-cluster-state is "new".
func (c *Config) IsNewCluster() bool { return c.InitialClusterState == ClusterStateNew }

func (c *Config) notice(level zapcore.Level, msg string, fields ...zap.Field) {
	c.Notices = append(c.Notices, Notice{Level: level, Msg: msg, Fields: fields})
}
