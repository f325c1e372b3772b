package config

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// validate runs etcd's checks (etcdmain's and embed.Config.Validate's), in
// etcd's order so that a command line with several problems reports the same
// one first. Error texts are etcd's.
func (cl *cmdline) validate() error {
	cfg := cl.cfg
	if cl.discoveryFallback == "proxy" {
		return fmt.Errorf("v2 proxy is deprecated, and --discovery-fallback can't be configured as %q", cl.discoveryFallback)
	}
	if err := validateLogging(cfg); err != nil {
		return err
	}
	if err := checkBindURLs(cfg.ListenPeerURLs); err != nil {
		return err
	}
	if err := checkBindURLs(cfg.ListenClientURLs); err != nil {
		return err
	}
	if err := checkBindURLs(cfg.ListenClientHTTPURLs); err != nil {
		return err
	}
	if len(cfg.ListenClientHTTPURLs) == 0 {
		cfg.notice(zapcore.WarnLevel, "Running http and grpc server on single port. This is not recommended for production.")
	}
	if err := checkBindURLs(cfg.ListenMetricsURLs); err != nil {
		return err
	}
	if err := checkHostURLs(cfg.InitialAdvertisePeerURLs); err != nil {
		return fmt.Errorf(`--initial-advertise-peer-urls %q must be "host:port" (%w)`,
			strings.Join(urlStrings(cfg.InitialAdvertisePeerURLs), ","), err)
	}
	if err := checkHostURLs(cfg.AdvertiseClientURLs); err != nil {
		return fmt.Errorf(`--advertise-client-urls %q must be in the format "host:port", "unix:/path/to/socket" or "unixs:/path/to/socket" (%w)`,
			strings.Join(urlStrings(cfg.AdvertiseClientURLs), ","), err)
	}

	nSet := 0
	for _, set := range []bool{cfg.InitialCluster != "", cl.discoverySRV != "", len(cl.discoveryEndpoints) > 0} {
		if set {
			nSet++
		}
	}
	if nSet > 1 {
		return ErrConflictBootstrapFlags
	}
	if (cl.discoveryToken != "") != (len(cl.discoveryEndpoints) > 0) {
		return errors.New("both --discovery-token and --discovery-endpoints must be set")
	}
	for _, ep := range cl.discoveryEndpoints {
		if strings.TrimSpace(ep) == "" {
			return errors.New("--discovery-endpoints must not contain empty endpoints")
		}
	}

	if cfg.HeartbeatInterval == 0 {
		return fmt.Errorf("--heartbeat-interval must be >0 (set to %dms)", cfg.HeartbeatInterval)
	}
	if cfg.ElectionTimeout == 0 {
		return fmt.Errorf("--election-timeout must be >0 (set to %dms)", cfg.ElectionTimeout)
	}
	if 5*cfg.HeartbeatInterval > cfg.ElectionTimeout {
		return fmt.Errorf("--election-timeout[%vms] should be at least as 5 times as --heartbeat-interval[%vms]",
			cfg.ElectionTimeout, cfg.HeartbeatInterval)
	}
	if cfg.ElectionTimeout > maxElectionTimeout {
		return fmt.Errorf("--election-timeout[%vms] is too long, and should be set less than %vms",
			cfg.ElectionTimeout, maxElectionTimeout)
	}

	if cfg.ListenClientURLs != nil && cfg.AdvertiseClientURLs == nil {
		return ErrUnsetAdvertiseClientURLs
	}

	switch cfg.AutoCompactionMode {
	case CompactionModePeriodic, CompactionModeRevision:
	case "":
		return errors.New("undefined auto-compaction-mode")
	default:
		return fmt.Errorf("unknown auto-compaction-mode %q", cfg.AutoCompactionMode)
	}

	if cfg.EnableDistributedTracing {
		rate := cfg.DistributedTracingSamplingRatePerMillion
		var err error
		switch {
		case rate < 0:
			err = errors.New("tracing sampling rate must be positive")
		case rate > maxSamplingRatePerMillion:
			err = fmt.Errorf("tracing sampling rate must be less than %d", maxSamplingRatePerMillion)
		}
		if err != nil {
			return fmt.Errorf("distributed tracing configurition is not valid: (%w)", err)
		}
	}

	if cfg.FeatureGates[FeatureLeaseCheckpoint] && !cfg.FeatureGates[FeatureLeaseCheckpointPersist] {
		cfg.notice(zapcore.WarnLevel, "Detected that checkpointing is enabled without persistence. Consider enabling feature gate LeaseCheckpointPersist")
	}
	if cfg.FeatureGates[FeatureLeaseCheckpointPersist] && !cfg.FeatureGates[FeatureLeaseCheckpoint] {
		return errors.New("enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint")
	}

	if cfg.CompactHashCheckTime <= 0 {
		return fmt.Errorf("--compact-hash-check-time must be >0 (set to %v)", cfg.CompactHashCheckTime)
	}

	if cfg.Name == DefaultName {
		cfg.notice(zapcore.WarnLevel,
			"it isn't recommended to use default name, please set a value for --name. "+
				"Note that etcd might run into issue when multiple members have the same default name",
			zap.String("name", cfg.Name))
	}

	minVersion, err := TLSVersion(cfg.TLSMinVersion)
	if err != nil {
		return err
	}
	maxVersion, err := TLSVersion(cfg.TLSMaxVersion)
	if err != nil {
		return err
	}
	if maxVersion != 0 && minVersion > maxVersion {
		return fmt.Errorf("min version (%s) is greater than max version (%s)", cfg.TLSMinVersion, cfg.TLSMaxVersion)
	}
	if minVersion == tls.VersionTLS13 && len(cfg.CipherSuites) > 0 {
		return errors.New("cipher suites cannot be configured when only TLS1.3 is enabled")
	}
	return nil
}

// validateStrata rejects what etcd accepts but strata cannot honour, and
// settings that make no sense although etcd lets them through.
func (cl *cmdline) validateStrata() error {
	cfg := cl.cfg
	if cl.discoverySRV != "" || len(cl.discoveryEndpoints) > 0 {
		return errors.New("cluster discovery (--discovery-endpoints, --discovery-srv) is not supported by strata; list the members with --initial-cluster")
	}
	// etcd makes these checks when it opens its listeners; strata makes
	// them here, with etcd's texts. --auto-tls supplies a certificate.
	if cfg.ClientTLS.Empty() && !cfg.ClientAutoTLS {
		for _, u := range slices.Concat(cfg.ListenClientURLs, cfg.ListenClientHTTPURLs) {
			if u.Scheme == "https" || u.Scheme == "unixs" {
				return fmt.Errorf("TLS key/cert (--cert-file, --key-file) must be provided for client url %s with HTTPS scheme", u.String())
			}
		}
		for _, u := range cfg.ListenMetricsURLs {
			if u.Scheme == "https" || u.Scheme == "unixs" {
				return errors.New("client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url")
			}
		}
	}
	if cfg.PeerTLS.Empty() && !cfg.PeerAutoTLS {
		for _, u := range cfg.ListenPeerURLs {
			if u.Scheme == "https" {
				return fmt.Errorf("TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for peer url %s with HTTPS scheme", u.String())
			}
		}
	}
	if cfg.MaxTxnOps == 0 {
		return errors.New("--max-txn-ops must be >0 (set to 0)")
	}
	if cfg.MaxRequestBytes == 0 {
		return errors.New("--max-request-bytes must be >0 (set to 0)")
	}
	for _, f := range []struct {
		name   string
		v, max uint
	}{
		{"max-batch-requests", cfg.MaxBatchRequests, MaxBatchRequests},
		{"max-batch-bytes", cfg.MaxBatchBytes, MaxBatchBytes},
		{"max-inflight-batches", cfg.MaxInflightBatches, MaxInflightBatches},
	} {
		if f.v == 0 {
			return fmt.Errorf("--%s must be >0 (set to 0)", f.name)
		}
		if f.v > f.max {
			return fmt.Errorf("--%s must be at most %d (set to %d)", f.name, f.max, f.v)
		}
	}
	return nil
}

// validateLogging checks the logging flags the way etcd does when it builds
// its logger.
func validateLogging(cfg *Config) error {
	switch cfg.Logger {
	case "zap":
	case "capnslog":
		return errors.New("--logger=capnslog is removed in v3.5")
	default:
		return fmt.Errorf("unknown logger option %q", cfg.Logger)
	}
	if len(cfg.LogOutputs) == 0 {
		cfg.LogOutputs = []string{DefaultLogOutput}
	}
	if len(cfg.LogOutputs) > 1 {
		for _, o := range cfg.LogOutputs {
			if o == DefaultLogOutput {
				return fmt.Errorf("multi logoutput for %q is not supported yet", DefaultLogOutput)
			}
		}
	}
	// etcd panics on a bad level; strata says what is wrong.
	if _, err := zapcore.ParseLevel(cfg.LogLevel); err != nil {
		return fmt.Errorf("--log-level %q is not valid; use debug, info, warn, error, panic or fatal", cfg.LogLevel)
	}
	switch cfg.LogFormat {
	case "json", "console":
	case "":
		cfg.LogFormat = DefaultLogFormat
	default:
		return fmt.Errorf("unknown log format: %s, supported values json, console", cfg.LogFormat)
	}
	return nil
}

// checkBindURLs accepts URLs a server can listen on: unix sockets, and hosts
// that are IP addresses or "localhost".
func checkBindURLs(urls []url.URL) error {
	for _, u := range urls {
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host == "localhost" {
			continue
		}
		if net.ParseIP(host) == nil {
			return fmt.Errorf("expected IP in URL for binding (%s)", u.String())
		}
	}
	return nil
}

// checkHostURLs accepts URLs others can dial: unix sockets, and host:port
// with a non-empty host.
func checkHostURLs(urls []url.URL) error {
	for _, u := range urls {
		if u.Scheme == "unix" || u.Scheme == "unixs" {
			continue
		}
		host, _, err := net.SplitHostPort(u.Host)
		if err != nil {
			return err
		}
		if host == "" {
			return fmt.Errorf("unexpected empty host (%s)", u.String())
		}
	}
	return nil
}

// TLSVersion parses a --tls-min-version or --tls-max-version value; "" is 0.
func TLSVersion(v string) (uint16, error) {
	switch v {
	case "":
		return 0, nil
	case "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("unexpected TLS version %q (must be one of: TLS1.2, TLS1.3)", v)
}

// resolve fills in what etcd derives after validation: the initial cluster
// from the member name, the data dir from the name, the parsed initial
// cluster, the compaction retention, and defaults that a 0 flag stands for.
func (cl *cmdline) resolve() error {
	cfg := cl.cfg
	// etcd rebuilds the initial cluster from --name when the name is not
	// the default and --initial-cluster still has its default text (set
	// explicitly to that text or not): "etcd --name abc" bootstraps
	// "abc=<advertise peer URLs>".
	if cfg.Name != DefaultName && cfg.InitialCluster == defaultInitialCluster {
		cfg.InitialCluster = initialClusterFromName(cfg.Name, cfg.InitialAdvertisePeerURLs)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = cfg.Name + ".etcd"
		cfg.notice(zapcore.WarnLevel, "'data-dir' was empty; using default", zap.String("data-dir", cfg.DataDir))
	}
	if cfg.InitialCluster != "" {
		members, err := parseInitialCluster(cfg.InitialCluster)
		if err != nil {
			return fmt.Errorf("error setting up initial cluster: %w", err)
		}
		cfg.InitialClusterMembers = members
	}

	if err := resolveCompaction(cfg); err != nil {
		return err
	}
	if cfg.WatchProgressNotifyInterval == 0 {
		cfg.WatchProgressNotifyInterval = DefaultWatchProgressNotifyInterval
	}
	if cfg.CompactionBatchLimit == 0 {
		cfg.CompactionBatchLimit = DefaultCompactionBatchLimit
	}
	return nil
}

// resolveCompaction reads --auto-compaction-retention as etcd does: a bare
// non-negative integer is hours in periodic mode and a revision count in
// revision mode; anything else must be a duration, and only periodic mode
// takes one.
func resolveCompaction(cfg *Config) error {
	r := cfg.AutoCompactionRetention
	if n, err := strconv.Atoi(r); err == nil && n >= 0 {
		if cfg.AutoCompactionMode == CompactionModeRevision {
			cfg.AutoCompactionRevisions = int64(n)
		} else {
			cfg.AutoCompactionPeriod = time.Duration(n) * time.Hour
		}
		return nil
	}
	d, err := time.ParseDuration(r)
	if err != nil {
		return fmt.Errorf("error parsing CompactionRetention: %w", err)
	}
	if cfg.AutoCompactionMode == CompactionModeRevision {
		return fmt.Errorf("--auto-compaction-retention %q must be a revision count with --auto-compaction-mode=revision", r)
	}
	if d < 0 {
		return fmt.Errorf("--auto-compaction-retention %q must not be negative", r)
	}
	cfg.AutoCompactionPeriod = d
	return nil
}
