package config

import (
	"errors"
	"net/url"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func mustParse(t *testing.T, args []string, environ []string) *Config {
	t.Helper()
	cfg, err := Parse(args, environ)
	if err != nil {
		t.Fatalf("Parse(%q, %q): %v", args, environ, err)
	}
	return cfg
}

func urls(t *testing.T, ss ...string) []url.URL {
	t.Helper()
	var out []url.URL
	for _, s := range ss {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *u)
	}
	return out
}

func strs(us []url.URL) string { return strings.Join(urlStrings(us), ",") }

func hasNotice(cfg *Config, level zapcore.Level, msg string) bool {
	for _, n := range cfg.Notices {
		if n.Level == level && n.Msg == msg {
			return true
		}
	}
	return false
}

func TestDefaults(t *testing.T) {
	cfg := mustParse(t, nil, nil)
	checks := []struct {
		name      string
		got, want any
	}{
		{"name", cfg.Name, "default"},
		{"data-dir", cfg.DataDir, "default.etcd"},
		{"wal-dir", cfg.WALDir, ""},
		{"listen-client-urls", strs(cfg.ListenClientURLs), "http://localhost:2379"},
		{"advertise-client-urls", strs(cfg.AdvertiseClientURLs), "http://localhost:2379"},
		{"listen-peer-urls", strs(cfg.ListenPeerURLs), "http://localhost:2380"},
		{"initial-advertise-peer-urls", strs(cfg.InitialAdvertisePeerURLs), "http://localhost:2380"},
		{"listen-metrics-urls", len(cfg.ListenMetricsURLs), 0},
		{"listen-client-http-urls", len(cfg.ListenClientHTTPURLs), 0},
		{"initial-cluster", cfg.InitialCluster, "default=http://localhost:2380"},
		{"initial-cluster parsed", cfg.InitialClusterMembers, map[string][]url.URL{"default": urls(t, "http://localhost:2380")}},
		{"initial-cluster-state", cfg.InitialClusterState, "new"},
		{"initial-cluster-token", cfg.InitialClusterToken, "etcd-cluster"},
		{"max-request-bytes", cfg.MaxRequestBytes, uint(1572864)},
		{"max-txn-ops", cfg.MaxTxnOps, uint(128)},
		{"max-concurrent-streams", cfg.MaxConcurrentStreams, uint32(1<<32 - 1)},
		{"snapshot-count", cfg.SnapshotCount, uint64(10000)},
		{"snapshot-catchup-entries", cfg.SnapshotCatchUpEntries, uint64(5000)},
		{"heartbeat-interval", cfg.HeartbeatInterval, uint(100)},
		{"election-timeout", cfg.ElectionTimeout, uint(1000)},
		{"election ticks", cfg.ElectionTicks(), 10},
		{"quota-backend-bytes", cfg.QuotaBackendBytes, int64(0)},
		{"log-level", cfg.LogLevel, "info"},
		{"log-format", cfg.LogFormat, "json"},
		{"log-outputs", cfg.LogOutputs, []string{"default"}},
		{"logger", cfg.Logger, "zap"},
		{"unsafe-no-fsync", cfg.UnsafeNoFsync, false},
		{"role", cfg.Role, RoleWriter},
		{"peer-compression", cfg.PeerCompression, "none"},
		{"strict-reconfig-check", cfg.StrictReconfigCheck, true},
		{"pre-vote", cfg.PreVote, true},
		{"auto-compaction-mode", cfg.AutoCompactionMode, "periodic"},
		{"auto-compaction period", cfg.AutoCompactionPeriod, time.Duration(0)},
		{"watch-progress-notify-interval", cfg.WatchProgressNotifyInterval, 10 * time.Minute},
		{"compaction-batch-limit", cfg.CompactionBatchLimit, 1000},
		{"auth-token", cfg.AuthToken, "simple"},
		{"metrics", cfg.Metrics, "basic"},
		{"tls-min-version", cfg.TLSMinVersion, "TLS1.2"},
		{"cors", cfg.CORS, []string{"*"}},
		{"host-whitelist", cfg.HostWhitelist, []string{"*"}},
		{"feature FastLeaseKeepAlive", cfg.FeatureGates[FeatureFastLeaseKeepAlive], true},
		{"feature InitialCorruptCheck (on in strata)", cfg.FeatureGates[FeatureInitialCorruptCheck], true},
		{"feature CompactHashCheck (on in strata)", cfg.FeatureGates[FeatureCompactHashCheck], true},
		{"explicitly set", len(cfg.ExplicitlySet), 0},
		{"ignored", len(cfg.Ignored), 0},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
	// etcd warns about both at startup with no flags.
	for _, msg := range []string{
		"Running http and grpc server on single port. This is not recommended for production.",
		"'data-dir' was empty; using default",
	} {
		if !hasNotice(cfg, zapcore.WarnLevel, msg) {
			t.Errorf("missing warning %q in %+v", msg, cfg.Notices)
		}
	}
}

// TestE2ECommandLines parses the command lines etcd's e2e and robustness
// frameworks give "an etcd binary" (tests/framework/e2e/cluster.go).
func TestE2ECommandLines(t *testing.T) {
	const dataDir = "/tmp/TestKVPutNoTLS1234/001"
	base := []string{
		"--name=TestKVPutNoTLS-test-0",
		"--listen-client-urls=http://localhost:20000", "--advertise-client-urls=http://localhost:20000",
		"--listen-peer-urls=http://localhost:20001", "--initial-advertise-peer-urls=http://localhost:20001",
		"--initial-cluster-token=new", "--data-dir=" + dataDir, "--snapshot-count=10000",
		"--strict-reconfig-check=false", "--initial-cluster-token=new",
		"--initial-cluster=TestKVPutNoTLS-test-0=http://localhost:20001", "--initial-cluster-state=new",
	}
	// What the framework puts in the child's environment.
	environ := []string{"PATH=/usr/bin:/bin", "ETCD_UNSUPPORTED_ARCH=amd64", "ETCD_VERIFY=all"}

	t.Run("no TLS", func(t *testing.T) {
		cfg := mustParse(t, base, environ)
		if cfg.Name != "TestKVPutNoTLS-test-0" || cfg.DataDir != dataDir || cfg.InitialClusterToken != "new" ||
			cfg.SnapshotCount != 10000 || cfg.StrictReconfigCheck || !cfg.IsNewCluster() {
			t.Errorf("unexpected config: %+v", cfg)
		}
		if got := strs(cfg.ListenClientURLs); got != "http://localhost:20000" {
			t.Errorf("listen-client-urls = %s", got)
		}
		if got := strs(cfg.InitialClusterMembers["TestKVPutNoTLS-test-0"]); got != "http://localhost:20001" {
			t.Errorf("initial cluster member URLs = %s", got)
		}
		if err := cfg.VerifyInitialCluster(); err != nil {
			t.Errorf("VerifyInitialCluster: %v", err)
		}
		// etcd warns about the framework's variables; so does strata.
		for _, kv := range []string{"ETCD_UNSUPPORTED_ARCH=amd64", "ETCD_VERIFY=all"} {
			found := false
			for _, n := range cfg.Notices {
				if n.Msg == "unrecognized environment variable" && n.Fields[0].String == kv {
					found = true
				}
			}
			if !found {
				t.Errorf("no unrecognized-variable warning for %s", kv)
			}
		}
	})

	t.Run("TLS with space-separated values", func(t *testing.T) {
		args := append([]string{}, base...)
		args = append(args,
			"--cert-file", "/fixtures/server.crt", "--key-file", "/fixtures/server.key.insecure",
			"--trusted-ca-file", "/fixtures/ca.crt", "--client-cert-auth",
			"--peer-cert-file", "/fixtures/server.crt", "--peer-key-file", "/fixtures/server.key.insecure",
			"--peer-trusted-ca-file", "/fixtures/ca.crt",
			"--client-crl-file", "/fixtures/revoke.crl",
			"--cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
			"--listen-client-urls=https://localhost:20000", "--advertise-client-urls=https://localhost:20000",
		)
		cfg := mustParse(t, args, environ)
		want := TLSInfo{
			CertFile: "/fixtures/server.crt", KeyFile: "/fixtures/server.key.insecure",
			TrustedCAFile: "/fixtures/ca.crt", CRLFile: "/fixtures/revoke.crl", ClientCertAuth: true,
		}
		if !reflect.DeepEqual(cfg.ClientTLS, want) {
			t.Errorf("client TLS = %+v, want %+v", cfg.ClientTLS, want)
		}
		if cfg.PeerTLS.CertFile != "/fixtures/server.crt" || cfg.PeerTLS.TrustedCAFile != "/fixtures/ca.crt" {
			t.Errorf("peer TLS = %+v", cfg.PeerTLS)
		}
		if len(cfg.CipherSuites) != 2 {
			t.Errorf("cipher suites = %q", cfg.CipherSuites)
		}
		if got := strs(cfg.ListenClientURLs); got != "https://localhost:20000" {
			t.Errorf("listen-client-urls = %s (last value wins)", got)
		}
	})

	t.Run("auto TLS bare booleans", func(t *testing.T) {
		args := append([]string{"--auto-tls", "--peer-auto-tls"}, base...)
		cfg := mustParse(t, args, environ)
		if !cfg.ClientAutoTLS || !cfg.PeerAutoTLS {
			t.Errorf("auto-tls = %v, peer-auto-tls = %v", cfg.ClientAutoTLS, cfg.PeerAutoTLS)
		}
	})

	t.Run("unix client URLs", func(t *testing.T) {
		args := append([]string{}, base...)
		args = append(args, "--listen-client-urls=unix://localhost:20000", "--advertise-client-urls=unix://localhost:20000")
		cfg := mustParse(t, args, environ)
		if got := cfg.ListenClientURLs; len(got) != 1 || got[0].Scheme != "unix" || got[0].Host != "localhost:20000" {
			t.Errorf("listen-client-urls = %+v", got)
		}
		args = append(args, "--listen-client-urls=unixs://localhost:20000", "--advertise-client-urls=unixs://localhost:20000",
			"--cert-file", "/fixtures/server.crt", "--key-file", "/fixtures/server.key.insecure")
		cfg = mustParse(t, args, environ)
		if got := strs(cfg.AdvertiseClientURLs); got != "unixs://localhost:20000" {
			t.Errorf("advertise-client-urls = %s", got)
		}
	})

	t.Run("optional flags the framework emits", func(t *testing.T) {
		args := append([]string{}, base...)
		args = append(args,
			"--listen-client-http-urls=http://localhost:20004", "--listen-metrics-urls=http://localhost:20002",
			"--force-new-cluster=true", "--quota-backend-bytes=8589934592",
			"--enable-distributed-tracing", "--distributed-tracing-address=localhost:4317",
			"--distributed-tracing-service-name=etcd", "--distributed-tracing-sampling-rate=1000000",
			"--heartbeat-interval=29", "--election-timeout=271",
			"--auth-token=jwt,pub-key=/fixtures/server.crt,priv-key=/fixtures/server.key.insecure,sign-method=RS256,ttl=5s",
			"--log-level=debug", "--feature-gates=InitialCorruptCheck=true,CompactHashCheck=true",
			"--compact-hash-check-time=100ms", "--corrupt-check-time=5s",
			"--compaction-batch-limit=10", "--compaction-sleep-interval=1ms",
			"--watch-progress-notify-interval=100ms", "--warning-unary-request-duration=1s",
			"--snapshot-catchup-entries=100", "--snapshot-count=50", "--metrics=extensive",
		)
		cfg := mustParse(t, args, environ)
		checks := []struct {
			name      string
			got, want any
		}{
			{"listen-client-http-urls", strs(cfg.ListenClientHTTPURLs), "http://localhost:20004"},
			{"listen-metrics-urls", strs(cfg.ListenMetricsURLs), "http://localhost:20002"},
			{"force-new-cluster", cfg.ForceNewCluster, true},
			{"quota-backend-bytes", cfg.QuotaBackendBytes, int64(8 << 30)},
			{"tracing", cfg.EnableDistributedTracing, true},
			{"tracing rate", cfg.DistributedTracingSamplingRatePerMillion, 1000000},
			{"heartbeat", cfg.HeartbeatInterval, uint(29)},
			{"election", cfg.ElectionTimeout, uint(271)},
			{"election ticks", cfg.ElectionTicks(), 9},
			{"auth-token", cfg.AuthToken, "jwt,pub-key=/fixtures/server.crt,priv-key=/fixtures/server.key.insecure,sign-method=RS256,ttl=5s"},
			{"log-level", cfg.LogLevel, "debug"},
			{"InitialCorruptCheck", cfg.FeatureGates[FeatureInitialCorruptCheck], true},
			{"CompactHashCheck", cfg.FeatureGates[FeatureCompactHashCheck], true},
			{"compact-hash-check-time", cfg.CompactHashCheckTime, 100 * time.Millisecond},
			{"corrupt-check-time", cfg.CorruptCheckTime, 5 * time.Second},
			{"compaction-batch-limit", cfg.CompactionBatchLimit, 10},
			{"compaction-sleep-interval", cfg.CompactionSleepInterval, time.Millisecond},
			{"watch-progress-notify-interval", cfg.WatchProgressNotifyInterval, 100 * time.Millisecond},
			{"warning-unary-request-duration", cfg.WarningUnaryRequestDuration, time.Second},
			{"snapshot-catchup-entries", cfg.SnapshotCatchUpEntries, uint64(100)},
			{"snapshot-count (repeated; last wins)", cfg.SnapshotCount, uint64(50)},
			{"metrics", cfg.Metrics, "extensive"},
		}
		for _, c := range checks {
			if !reflect.DeepEqual(c.got, c.want) {
				t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
			}
		}
		if hasNotice(cfg, zapcore.WarnLevel, "Running http and grpc server on single port. This is not recommended for production.") {
			t.Error("single-port warning with --listen-client-http-urls set")
		}
	})

	t.Run("restart with a populated data dir passes the same flags", func(t *testing.T) {
		// Parse does not look at the data dir: the same command line parses
		// the same way, and it is the caller who skips VerifyInitialCluster.
		a, b := mustParse(t, base, environ), mustParse(t, base, environ)
		if a.InitialCluster != b.InitialCluster || a.DataDir != b.DataDir {
			t.Error("same command line parsed differently")
		}
	})
}

func TestFlagSyntax(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // Name after parsing
	}{
		{"equals", []string{"--name=a"}, "a"},
		{"space", []string{"--name", "a"}, "a"},
		{"single dash", []string{"-name", "a"}, "a"},
		{"single dash equals", []string{"-name=a"}, "a"},
		{"repeated, last wins", []string{"--name=a", "--name", "b", "--name=c"}, "c"},
		{"terminator", []string{"--name=a", "--"}, "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustParse(t, tt.args, nil).Name; got != tt.want {
				t.Errorf("name = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("bare boolean, then another flag", func(t *testing.T) {
		cfg := mustParse(t, []string{"--unsafe-no-fsync", "--name", "x"}, nil)
		if !cfg.UnsafeNoFsync || cfg.Name != "x" {
			t.Errorf("unsafe-no-fsync = %v, name = %q", cfg.UnsafeNoFsync, cfg.Name)
		}
	})
	t.Run("boolean forms", func(t *testing.T) {
		for _, arg := range []string{"--pre-vote=false", "--pre-vote=0", "-pre-vote=f", "--pre-vote=FALSE"} {
			if mustParse(t, []string{arg}, nil).PreVote {
				t.Errorf("%s left pre-vote on", arg)
			}
		}
	})
	t.Run("repeated URL list replaces, deduplicates and sorts", func(t *testing.T) {
		cfg := mustParse(t, []string{
			"--listen-peer-urls=http://127.0.0.1:1",
			"--listen-peer-urls=http://127.0.0.1:3,http://127.0.0.1:2,http://127.0.0.1:3",
		}, nil)
		if got := strs(cfg.ListenPeerURLs); got != "http://127.0.0.1:2,http://127.0.0.1:3" {
			t.Errorf("listen-peer-urls = %s", got)
		}
	})
	t.Run("empty URL list value changes nothing", func(t *testing.T) {
		cfg := mustParse(t, []string{"--listen-peer-urls="}, nil)
		if got := strs(cfg.ListenPeerURLs); got != DefaultListenPeerURLs {
			t.Errorf("listen-peer-urls = %s", got)
		}
	})
	t.Run("feature gates accumulate over repeats", func(t *testing.T) {
		cfg := mustParse(t, []string{"--feature-gates=InitialCorruptCheck=true", "--feature-gates=CompactHashCheck=true,FastLeaseKeepAlive=false"}, nil)
		g := cfg.FeatureGates
		if !g[FeatureInitialCorruptCheck] || !g[FeatureCompactHashCheck] || g[FeatureFastLeaseKeepAlive] {
			t.Errorf("gates = %v", g)
		}
	})
	t.Run("AllAlpha, explicit gate wins", func(t *testing.T) {
		cfg := mustParse(t, []string{"--feature-gates=StopGRPCServiceOnDefrag=false,AllAlpha=true,LeaseCheckpointPersist=true"}, nil)
		g := cfg.FeatureGates
		if g[FeatureStopGRPCServiceOnDefrag] || !g[FeatureLeaseCheckpoint] || !g[FeaturePriorityRequest] || !g[FeatureTxnModeWriteWithSharedBuffer] {
			t.Errorf("gates = %v", g)
		}
	})
	t.Run("cors and host whitelist", func(t *testing.T) {
		cfg := mustParse(t, []string{"--cors=https://b.example:443,http://a.example:80", "--host-whitelist=b.example,a.example"}, nil)
		if !reflect.DeepEqual(cfg.CORS, []string{"http://a.example:80", "https://b.example:443"}) ||
			!reflect.DeepEqual(cfg.HostWhitelist, []string{"a.example", "b.example"}) {
			t.Errorf("cors = %q, host-whitelist = %q", cfg.CORS, cfg.HostWhitelist)
		}
	})
	t.Run("role", func(t *testing.T) {
		if got := mustParse(t, []string{"--role=reader"}, nil).Role; got != RoleReader {
			t.Errorf("role = %q", got)
		}
	})
	t.Run("peer-compression", func(t *testing.T) {
		if got := mustParse(t, []string{"--peer-compression=zstd"}, nil).PeerCompression; got != "zstd" {
			t.Errorf("peer-compression = %q", got)
		}
		if _, err := Parse([]string{"--peer-compression=gzip"}, nil); err == nil || ExitCode(err) != 2 {
			t.Errorf("--peer-compression=gzip: %v, want a usage error", err)
		}
	})
	t.Run("help and version", func(t *testing.T) {
		for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"--name=x", "--help"}} {
			if _, err := Parse(args, nil); !errors.Is(err, ErrHelp) || ExitCode(err) != 0 {
				t.Errorf("Parse(%q) = %v, want ErrHelp", args, err)
			}
		}
		for _, args := range [][]string{{"--version"}, {"--version", "--election-timeout=1"}, {"-version=true"}} {
			if _, err := Parse(args, nil); !errors.Is(err, ErrVersion) || ExitCode(err) != 0 {
				t.Errorf("Parse(%q) = %v, want ErrVersion", args, err)
			}
		}
		// As in etcd, a bad command line fails even with --version.
		if _, err := Parse([]string{"--version", "--xyz"}, nil); ExitCode(err) != 2 {
			t.Errorf("--version --xyz: %v", err)
		}
	})
}

func TestIgnoredFlags(t *testing.T) {
	args := []string{
		"--max-wals=10", "--max-snapshots", "3", "--backend-bbolt-freelist-type=array",
		"--backend-batch-interval=10ms", "--raft-read-timeout=6s", "--memory-mlock",
		"--v2-deprecation=write-only",
		"--enable-log-rotation", "--discovery-dial-timeout=1s",
		// Legacy names: boolean-style, value only with "=".
		"--v", "--snapshot=foo", "--peer-heartbeat-interval=5",
	}
	cfg := mustParse(t, args, nil)
	want := []string{
		"backend-batch-interval", "backend-bbolt-freelist-type", "discovery-dial-timeout",
		"enable-log-rotation", "max-snapshots", "max-wals", "memory-mlock",
		"peer-heartbeat-interval", "raft-read-timeout", "snapshot", "v", "v2-deprecation",
	}
	if !reflect.DeepEqual(cfg.Ignored, want) {
		t.Errorf("Ignored = %q\nwant      %q", cfg.Ignored, want)
	}
	debug := 0
	for _, n := range cfg.Notices {
		if n.Level == zapcore.DebugLevel && n.Msg == "flag accepted for etcd compatibility and ignored" {
			debug++
		}
	}
	if debug != len(want) {
		t.Errorf("%d debug notices, want %d", debug, len(want))
	}

	// Ignored flags still check their values as etcd does.
	for _, args := range [][]string{
		{"--max-wals=x"}, {"--raft-read-timeout=5"}, {"--cors=ftp://x:1"}, {"--v2-deprecation=not-yet"},
	} {
		if _, err := Parse(args, nil); ExitCode(err) != 2 {
			t.Errorf("Parse(%q) = %v, want a syntax error", args, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		environ []string
		want    string // the whole error text
		code    int
	}{
		// The flag package's own errors: exit status 2, as in etcd.
		{"unknown flag", []string{"--xyz"}, nil, "flag provided but not defined: -xyz", 2},
		{"unknown flag with value", []string{"--name=a", "--xyz=1"}, nil, "flag provided but not defined: -xyz", 2},
		{"removed experimental flag", []string{"--experimental-initial-corrupt-check=true"}, nil,
			"flag provided but not defined: -experimental-initial-corrupt-check", 2},
		{"removed experimental tracing flag", []string{"--experimental-enable-distributed-tracing"}, nil,
			"flag provided but not defined: -experimental-enable-distributed-tracing", 2},
		{"missing value", []string{"--name"}, nil, "flag needs an argument: -name", 2},
		{"bad number", []string{"--heartbeat-interval=-1"}, nil, `invalid value "-1" for flag -heartbeat-interval: parse error`, 2},
		{"bad URL scheme", []string{"--listen-client-urls=foo://a:1"}, nil,
			`invalid value "foo://a:1" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: foo://a:1`, 2},
		{"URL without port", []string{"--listen-peer-urls=http://127.0.0.1"}, nil,
			`invalid value "http://127.0.0.1" for flag -listen-peer-urls: URL address does not have the form "host:port": http://127.0.0.1`, 2},
		{"URL with path", []string{"--advertise-client-urls=http://a:1/x"}, nil,
			`invalid value "http://a:1/x" for flag -advertise-client-urls: URL must not contain a path: http://a:1/x`, 2},
		{"bad cluster state", []string{"--initial-cluster-state=foo"}, nil,
			`invalid value "foo" for flag -initial-cluster-state: must be one of "new" or "existing"`, 2},
		{"bad role", []string{"--role=voter"}, nil,
			`invalid value "voter" for flag -role: must be one of "writer" or "reader"`, 2},
		{"bad feature gate", []string{"--feature-gates=Nope=true"}, nil,
			`invalid value "Nope=true" for flag -feature-gates: unrecognized feature gate: Nope`, 2},
		{"feature gate without value", []string{"--feature-gates=CompactHashCheck"}, nil,
			`invalid value "CompactHashCheck" for flag -feature-gates: missing bool value for CompactHashCheck`, 2},

		// etcd's validation: exit status 1.
		{"positional argument", []string{"--strict-reconfig-check", "false"}, nil, `"false" is not a valid flag`, 1},
		{"bind to a host name", []string{"--listen-client-urls=http://foo.com:2379", "--advertise-client-urls=http://localhost:2379"}, nil,
			"expected IP in URL for binding (http://foo.com:2379)", 1},
		{"metrics bind to a host name", []string{"--listen-metrics-urls=http://foo.com:2379"}, nil,
			"expected IP in URL for binding (http://foo.com:2379)", 1},
		{"advertise peer without host", []string{"--initial-advertise-peer-urls=http://:2380"}, nil,
			`--initial-advertise-peer-urls "http://:2380" must be "host:port" (unexpected empty host (http://:2380))`, 1},
		{"advertise client without host", []string{"--advertise-client-urls=http://:2379"}, nil,
			`--advertise-client-urls "http://:2379" must be in the format "host:port", "unix:/path/to/socket" or "unixs:/path/to/socket" (unexpected empty host (http://:2379))`, 1},
		{"listen client without advertise", []string{"--listen-client-urls=http://127.0.0.1:2379"}, nil,
			"--advertise-client-urls is required when --listen-client-urls is set explicitly", 1},
		{"listen client set to its default without advertise", []string{"--listen-client-urls=http://localhost:2379"}, nil,
			"--advertise-client-urls is required when --listen-client-urls is set explicitly", 1},
		{"listen client from env without advertise", nil, []string{"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379"},
			"--advertise-client-urls is required when --listen-client-urls is set explicitly", 1},
		{"election < 5 heartbeats", []string{"--election-timeout=400"}, nil,
			"--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]", 1},
		{"zero heartbeat", []string{"--heartbeat-interval=0"}, nil, "--heartbeat-interval must be >0 (set to 0ms)", 1},
		{"zero election", []string{"--election-timeout=0"}, nil, "--election-timeout must be >0 (set to 0ms)", 1},
		{"election too long", []string{"--election-timeout=50001"}, nil,
			"--election-timeout[50001ms] is too long, and should be set less than 50000ms", 1},
		{"unknown compaction mode", []string{"--auto-compaction-mode=hourly"}, nil, `unknown auto-compaction-mode "hourly"`, 1},
		{"empty compaction mode", []string{"--auto-compaction-mode="}, nil, "undefined auto-compaction-mode", 1},
		{"bad compaction retention", []string{"--auto-compaction-retention=soon"}, nil,
			`error parsing CompactionRetention: time: invalid duration "soon"`, 1},
		{"duration retention in revision mode", []string{"--auto-compaction-mode=revision", "--auto-compaction-retention=5m"}, nil,
			`--auto-compaction-retention "5m" must be a revision count with --auto-compaction-mode=revision`, 1},
		{"tracing rate", []string{"--enable-distributed-tracing", "--distributed-tracing-sampling-rate=2000000"}, nil,
			"distributed tracing configurition is not valid: (tracing sampling rate must be less than 1000000)", 1},
		{"checkpoint persist without checkpoint", []string{"--feature-gates=LeaseCheckpointPersist=true"}, nil,
			"enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint", 1},
		{"zero compact hash check time", []string{"--compact-hash-check-time=0s"}, nil,
			"--compact-hash-check-time must be >0 (set to 0s)", 1},
		{"bad TLS version", []string{"--tls-min-version=TLS1.1"}, nil,
			`unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)`, 1},
		{"TLS min > max", []string{"--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"}, nil,
			"min version (TLS1.3) is greater than max version (TLS1.2)", 1},
		{"ciphers with TLS1.3 only", []string{"--tls-min-version=TLS1.3", "--cipher-suites=TLS_AES_128_GCM_SHA256"}, nil,
			"cipher suites cannot be configured when only TLS1.3 is enabled", 1},
		{"capnslog", []string{"--logger=capnslog"}, nil, "--logger=capnslog is removed in v3.5", 1},
		{"bad log level", []string{"--log-level=bogus"}, nil,
			`--log-level "bogus" is not valid; use debug, info, warn, error, panic or fatal`, 1},
		{"bad log format", []string{"--log-format=xml"}, nil, "unknown log format: xml, supported values json, console", 1},
		{"default among several log outputs", []string{"--log-outputs=default,stdout"}, nil,
			`multi logoutput for "default" is not supported yet`, 1},
		{"discovery fallback proxy", []string{"--discovery-fallback=proxy"}, nil,
			`v2 proxy is deprecated, and --discovery-fallback can't be configured as "proxy"`, 1},
		{"discovery with initial cluster", []string{"--initial-cluster=a=http://localhost:2380", "--discovery-srv=example.com"}, nil,
			ErrConflictBootstrapFlags.Error(), 1},
		{"discovery token without endpoints", []string{"--discovery-token=x"}, nil,
			"both --discovery-token and --discovery-endpoints must be set", 1},
		{"initial cluster with a bad URL", []string{"--initial-cluster=a=http://10.0.0.1"}, nil,
			`error setting up initial cluster: URL address does not have the form "host:port": http://10.0.0.1`, 1},
		{"initial cluster without URL", []string{"--initial-cluster=a"}, nil,
			`error setting up initial cluster: URL scheme must be http, https, unix, or unixs: `, 1},

		// strata's own checks: exit status 1.
		{"discovery", []string{"--discovery-endpoints=http://10.0.0.1:2379", "--discovery-token=t"}, nil,
			"cluster discovery (--discovery-endpoints, --discovery-srv) is not supported by strata; list the members with --initial-cluster", 1},
		{"https client URL without certificate", []string{"--listen-client-urls=https://127.0.0.1:2379", "--advertise-client-urls=https://127.0.0.1:2379"}, nil,
			"TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme", 1},
		{"unixs client URL without certificate", []string{"--listen-client-urls=unixs://localhost:20000", "--advertise-client-urls=unixs://localhost:20000"}, nil,
			"TLS key/cert (--cert-file, --key-file) must be provided for client url unixs://localhost:20000 with HTTPS scheme", 1},
		{"https metrics URL without certificate", []string{"--listen-metrics-urls=https://127.0.0.1:2381"}, nil,
			"client TLS key/cert (--cert-file, --key-file) must be provided for metrics secure url", 1},
		{"zero max txn ops", []string{"--max-txn-ops=0"}, nil, "--max-txn-ops must be >0 (set to 0)", 1},
		{"zero max request bytes", []string{"--max-request-bytes=0"}, nil, "--max-request-bytes must be >0 (set to 0)", 1},
		{"zero max batch requests", []string{"--max-batch-requests=0"}, nil, "--max-batch-requests must be >0 (set to 0)", 1},
		{"zero max batch bytes", []string{"--max-batch-bytes=0"}, nil, "--max-batch-bytes must be >0 (set to 0)", 1},
		{"zero max inflight batches", []string{"--max-inflight-batches=0"}, nil, "--max-inflight-batches must be >0 (set to 0)", 1},
		{"huge max batch bytes", []string{"--max-batch-bytes=1073741824"}, nil, "--max-batch-bytes must be at most 33554432 (set to 1073741824)", 1},
		{"huge max inflight batches", []string{"--max-inflight-batches=18446744073709551615"}, nil, "--max-inflight-batches must be at most 1024 (set to 18446744073709551615)", 1},
		{"negative max batch requests", []string{"--max-batch-requests=-1"}, nil, "invalid value \"-1\" for flag -max-batch-requests: parse error", 2},
		{"config file", []string{"--config-file=/etc/etcd.yaml"}, nil,
			`--config-file "/etc/etcd.yaml": configuration files are not supported by strata; use flags or ETCD_* environment variables`, 1},
		{"config file from env", nil, []string{"ETCD_CONFIG_FILE=/etc/etcd.yaml"},
			`--config-file "/etc/etcd.yaml": configuration files are not supported by strata; use flags or ETCD_* environment variables`, 1},

		// Environment.
		{"env and flag conflict", []string{"--name=bar"}, []string{"ETCD_NAME=foo"},
			"conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag): ETCD_NAME", 1},
		{"empty env and flag conflict", []string{"--name=bar"}, []string{"ETCD_NAME="},
			"conflicting environment variable is shadowed by corresponding command-line flag (either unset environment variable or disable flag): ETCD_NAME", 1},
		{"bad env value", nil, []string{"ETCD_SNAPSHOT_COUNT=many"},
			`invalid value "many" for ETCD_SNAPSHOT_COUNT: parse error`, 1},
		{"bad env role", nil, []string{"ETCD_ROLE=voter"},
			`invalid value "voter" for ETCD_ROLE: must be one of "writer" or "reader"`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse(tt.args, tt.environ)
			if err == nil {
				t.Fatalf("Parse(%q, %q) = %+v, want error %q", tt.args, tt.environ, cfg, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q\nwant    %q", err.Error(), tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans lines: %q", err)
			}
			if got := ExitCode(err); got != tt.code {
				t.Errorf("ExitCode = %d, want %d", got, tt.code)
			}
			if cfg != nil {
				t.Errorf("Parse returned a config with its error")
			}
		})
	}
	if !errors.Is(mustErr(Parse([]string{"--name=a"}, []string{"ETCD_NAME=b"})), ErrEnvConflict) {
		t.Error("conflict error does not wrap ErrEnvConflict")
	}
	if !errors.Is(mustErr(Parse([]string{"--listen-client-urls=http://127.0.0.1:1"}, nil)), ErrUnsetAdvertiseClientURLs) {
		t.Error("missing advertise URL error is not ErrUnsetAdvertiseClientURLs")
	}
}

func mustErr(_ *Config, err error) error { return err }

func TestEnvironment(t *testing.T) {
	t.Run("sets unset flags", func(t *testing.T) {
		cfg := mustParse(t, []string{"--name=m1"}, []string{
			"ETCD_DATA_DIR=/var/lib/strata",
			"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379",
			"ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:2379",
			"ETCD_UNSAFE_NO_FSYNC=true",
			"ETCD_INITIAL_CLUSTER_STATE=existing",
			"ETCD_ROLE=reader",
			"ETCD_FEATURE_GATES=CompactHashCheck=true",
			"ETCD_INITIAL_CLUSTER=m1=http://localhost:2380",
		})
		if cfg.DataDir != "/var/lib/strata" || !cfg.UnsafeNoFsync || cfg.InitialClusterState != ClusterStateExisting ||
			cfg.Role != RoleReader || !cfg.FeatureGates[FeatureCompactHashCheck] {
			t.Errorf("unexpected config: %+v", cfg)
		}
		if got := strs(cfg.ListenClientURLs); got != "http://127.0.0.1:2379" {
			t.Errorf("listen-client-urls = %s", got)
		}
		for _, name := range []string{"name", "data-dir", "listen-client-urls", "role"} {
			if !cfg.ExplicitlySet[name] {
				t.Errorf("%s not counted as explicitly set", name)
			}
		}
		if !hasNotice(cfg, zapcore.InfoLevel, "recognized and used environment variable") {
			t.Error("no notice for a used variable")
		}
	})
	t.Run("empty variable does not set", func(t *testing.T) {
		cfg := mustParse(t, nil, []string{"ETCD_NAME="})
		if cfg.Name != DefaultName || cfg.ExplicitlySet["name"] {
			t.Errorf("name = %q, explicitly set = %v", cfg.Name, cfg.ExplicitlySet["name"])
		}
		if !hasNotice(cfg, zapcore.WarnLevel, "unrecognized environment variable") {
			t.Error("etcd warns about an unused empty ETCD_ variable; strata did not")
		}
	})
	t.Run("first entry for a key wins, as with os.Getenv", func(t *testing.T) {
		if got := mustParse(t, nil, []string{"ETCD_NAME=a", "ETCD_NAME=b"}).Name; got != "a" {
			t.Errorf("name = %q", got)
		}
	})
	t.Run("unrecognized and foreign variables", func(t *testing.T) {
		cfg := mustParse(t, nil, []string{"HOME=/root", "ETCD_BOGUS=1", "ETCDCTL_API=3", "NOEQUALS"})
		var warned []string
		for _, n := range cfg.Notices {
			if n.Level == zapcore.WarnLevel && len(n.Fields) == 1 && n.Fields[0].Key == "environment-variable" {
				warned = append(warned, n.Msg+": "+n.Fields[0].String)
			}
		}
		// In the environment's order; ETCDCTL_* is not ETCD_*.
		want := []string{"unrecognized environment variable: ETCD_BOGUS=1", "found invalid environment variable: NOEQUALS"}
		if !reflect.DeepEqual(warned, want) {
			t.Errorf("warnings = %q\nwant       %q", warned, want)
		}
	})
	t.Run("ETCD_VERSION never prints the version", func(t *testing.T) {
		cfg := mustParse(t, nil, []string{"ETCD_VERSION=3.5.0"})
		if !hasNotice(cfg, zapcore.WarnLevel, "cannot set special environment variable") {
			t.Error("no warning for ETCD_VERSION")
		}
		if hasNotice(cfg, zapcore.WarnLevel, "unrecognized environment variable") {
			t.Error("ETCD_VERSION also reported as unrecognized")
		}
	})
	t.Run("ETCD_VERSION with --version", func(t *testing.T) {
		if _, err := Parse([]string{"--version"}, []string{"ETCD_VERSION=1"}); !errors.Is(err, ErrVersion) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestInitialClusterDerivation(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"defaults", nil, "default=http://localhost:2380"},
		{"name only", []string{"--name=abc"}, "abc=http://localhost:2380"},
		{"name and advertise peer URLs", []string{"--name=abc", "--initial-advertise-peer-urls=http://10.0.0.2:2380,http://10.0.0.1:2380"},
			"abc=http://10.0.0.1:2380,abc=http://10.0.0.2:2380"},
		{"default name keeps the default text", []string{"--initial-advertise-peer-urls=http://10.0.0.1:2380"}, "default=http://localhost:2380"},
		{"explicit value kept", []string{"--name=abc", "--initial-cluster=abc=http://10.0.0.1:2380,def=http://10.0.0.2:2380"},
			"abc=http://10.0.0.1:2380,def=http://10.0.0.2:2380"},
		// etcd compares text, not whether the flag was set.
		{"explicit default text is rebuilt", []string{"--name=abc", "--initial-cluster=default=http://localhost:2380"}, "abc=http://localhost:2380"},
		{"discovery-srv-name drops the default", []string{"--discovery-srv-name=x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustParse(t, tt.args, nil)
			if cfg.InitialCluster != tt.want {
				t.Errorf("initial cluster = %q, want %q", cfg.InitialCluster, tt.want)
			}
			if tt.want != "" && membersString(cfg.InitialClusterMembers) != tt.want {
				t.Errorf("parsed = %q", membersString(cfg.InitialClusterMembers))
			}
		})
	}
	t.Run("data dir follows the name", func(t *testing.T) {
		if got := mustParse(t, []string{"--name=abc"}, nil).DataDir; got != "abc.etcd" {
			t.Errorf("data dir = %q", got)
		}
	})
}

func TestVerifyInitialCluster(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // "" for no error
	}{
		{"defaults", nil, ""},
		{"three members", []string{"--name=b", "--initial-advertise-peer-urls=http://10.0.0.2:2380",
			"--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380"}, ""},
		{"several peer URLs", []string{"--name=a", "--initial-advertise-peer-urls=http://10.0.0.1:2380,http://10.0.1.1:2380",
			"--initial-cluster=a=http://10.0.1.1:2380,a=http://10.0.0.1:2380"}, ""},
		{"name missing", []string{"--name=d", "--initial-cluster=a=http://10.0.0.1:2380"},
			`couldn't find local name "d" in the initial cluster configuration`},
		{"default name, advertise changed, cluster forgotten", []string{"--initial-advertise-peer-urls=http://10.0.0.1:2380"},
			`--initial-cluster has default=http://localhost:2380 but missing from --initial-advertise-peer-urls=http://10.0.0.1:2380 (resolved urls: "http://10.0.0.1:2380" != "http://localhost:2380")`},
		{"listed URL not advertised", []string{"--name=a", "--initial-advertise-peer-urls=http://10.0.0.1:2380",
			"--initial-cluster=a=http://10.0.0.1:2380,a=http://10.0.0.2:2380"},
			`--initial-cluster has a=http://10.0.0.2:2380 but missing from --initial-advertise-peer-urls=http://10.0.0.1:2380 (len(["http://10.0.0.1:2380"]) != len(["http://10.0.0.1:2380" "http://10.0.0.2:2380"]))`},
		{"advertise URL not listed", []string{"--name=a", "--initial-advertise-peer-urls=http://10.0.0.1:2380,http://10.0.0.9:2380",
			"--initial-cluster=a=http://10.0.0.1:2380"},
			"--initial-advertise-peer-urls has http://10.0.0.9:2380 but missing from --initial-cluster=a=http://10.0.0.1:2380,a=http://10.0.0.9:2380"},
		{"duplicate URL", []string{"--name=a", "--initial-advertise-peer-urls=http://10.0.0.1:2380",
			"--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.1:2380"},
			"initial cluster a=http://10.0.0.1:2380,b=http://10.0.0.1:2380 has duplicate url"},
		{"joining: advertise URLs are not compared", []string{"--name=a", "--initial-cluster-state=existing",
			"--initial-advertise-peer-urls=http://10.0.0.9:2380", "--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380"}, ""},
		{"joining: name still required", []string{"--name=c", "--initial-cluster-state=existing",
			"--initial-cluster=a=http://10.0.0.1:2380"}, `couldn't find local name "c" in the initial cluster configuration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := mustParse(t, tt.args, nil).VerifyInitialCluster()
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("VerifyInitialCluster() = %q\nwant                    %q", got, tt.want)
			}
		})
	}
}

func TestAutoCompaction(t *testing.T) {
	tests := []struct {
		args      []string
		period    time.Duration
		revisions int64
	}{
		{nil, 0, 0},
		{[]string{"--auto-compaction-retention=1"}, time.Hour, 0},
		{[]string{"--auto-compaction-retention=30m"}, 30 * time.Minute, 0},
		{[]string{"--auto-compaction-mode=periodic", "--auto-compaction-retention=72h"}, 72 * time.Hour, 0},
		{[]string{"--auto-compaction-mode=revision", "--auto-compaction-retention=1000"}, 0, 1000},
	}
	for _, tt := range tests {
		cfg := mustParse(t, tt.args, nil)
		if cfg.AutoCompactionPeriod != tt.period || cfg.AutoCompactionRevisions != tt.revisions {
			t.Errorf("%q: period %v, revisions %d; want %v, %d", tt.args, cfg.AutoCompactionPeriod,
				cfg.AutoCompactionRevisions, tt.period, tt.revisions)
		}
	}
}

func TestLogNotices(t *testing.T) {
	cfg := mustParse(t, []string{"--max-wals=3"}, []string{"ETCD_BOGUS=1"})
	core, logs := observer.New(zapcore.DebugLevel)
	cfg.LogNotices(zap.New(core))
	if logs.Len() != len(cfg.Notices) {
		t.Fatalf("logged %d entries for %d notices", logs.Len(), len(cfg.Notices))
	}
	got := logs.FilterMessage("unrecognized environment variable").All()
	if len(got) != 1 || got[0].Level != zapcore.WarnLevel || got[0].ContextMap()["environment-variable"] != "ETCD_BOGUS=1" {
		t.Errorf("entries = %+v", got)
	}
	if logs.FilterMessage("flag accepted for etcd compatibility and ignored").Len() != 1 {
		t.Error("no debug entry for the ignored flag")
	}

	// Below the logger's level, notices are dropped.
	core, logs = observer.New(zapcore.InfoLevel)
	cfg.LogNotices(zap.New(core))
	if logs.FilterLevelExact(zapcore.DebugLevel).Len() != 0 {
		t.Error("debug notices written at info level")
	}
}

func TestVersionText(t *testing.T) {
	got := VersionText("3.7.3", "0.1.0")
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines:\n%s", len(lines), got)
	}
	want := []string{
		"etcd Version: 3.7.3",
		"Git SHA: ",
		"Go Version: " + runtime.Version(),
		"Go OS/Arch: " + runtime.GOOS + "/" + runtime.GOARCH,
		"strata Version: 0.1.0",
	}
	for i := range want {
		if !strings.HasPrefix(lines[i], want[i]) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], want[i])
		}
	}
	// Kubernetes: `etcd --version | grep Version | head -n 1 | cut -d " " -f 3`.
	for _, l := range lines {
		if strings.Contains(l, "Version") {
			if f := strings.Split(l, " "); len(f) < 3 || f[2] != "3.7.3" {
				t.Errorf("first Version line %q does not yield 3.7.3", l)
			}
			break
		}
	}
}

func TestUsage(t *testing.T) {
	u := Usage()
	for _, want := range []string{"--listen-client-urls 'http://localhost:2379'", "--role 'writer'", "--max-wals", "--initial-cluster-state 'new'"} {
		if !strings.Contains(u, want) {
			t.Errorf("usage lacks %q", want)
		}
	}
	for _, hidden := range []string{"--vv", "--test.coverprofile", "--cluster-active-size"} {
		if strings.Contains(u, hidden) {
			t.Errorf("usage shows legacy %q", hidden)
		}
	}
}
