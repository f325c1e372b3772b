package config

import (
	"flag"
	"testing"
)

// etcdFlag is one flag of etcd v3.7.3's server command line: its name, the
// default as `etcd --help` and the flag package show it, and whether it is
// a boolean (takes a value only as --f=v).
type etcdFlag struct {
	name     string
	defValue string
	isBool   bool
}

// etcdFlags is etcd v3.7.3's command line: embed.Config.AddFlags (108 flags)
// followed by the ones etcdmain adds (5) and the legacy names it accepts and
// ignores (15). Listed from the v3.7.3 sources.
var etcdFlags = []etcdFlag{
	{"advertise-client-urls", "http://localhost:2379", false},
	{"auth-token", "simple", false},
	{"auth-token-ttl", "300", false},
	{"auto-compaction-mode", "periodic", false},
	{"auto-compaction-retention", "0", false},
	{"auto-tls", "false", true},
	{"backend-batch-interval", "0s", false},
	{"backend-batch-limit", "0", false},
	{"backend-bbolt-freelist-type", "", false},
	{"bcrypt-cost", "10", false},
	{"bootstrap-defrag-threshold-megabytes", "0", false},
	{"cert-file", "", false},
	{"cipher-suites", "", false},
	{"client-cert-allowed-hostname", "", false},
	{"client-cert-auth", "false", true},
	{"client-cert-file", "", false},
	{"client-crl-file", "", false},
	{"client-key-file", "", false},
	{"compact-hash-check-time", "1m0s", false},
	{"compaction-batch-limit", "0", false},
	{"compaction-sleep-interval", "0s", false},
	{"corrupt-check-time", "0s", false},
	{"cors", "*", false},
	{"data-dir", "", false},
	{"discovery-cacert", "", false},
	{"discovery-cert", "", false},
	{"discovery-dial-timeout", "2s", false},
	{"discovery-endpoints", "", false},
	{"discovery-insecure-skip-tls-verify", "false", true},
	{"discovery-insecure-transport", "true", true},
	{"discovery-keepalive-time", "2s", false},
	{"discovery-keepalive-timeout", "6s", false},
	{"discovery-key", "", false},
	{"discovery-password", "", false},
	{"discovery-request-timeout", "5s", false},
	{"discovery-srv", "", false},
	{"discovery-srv-name", "", false},
	{"discovery-token", "", false},
	{"discovery-user", "", false},
	{"distributed-tracing-address", "localhost:4317", false},
	{"distributed-tracing-instance-id", "", false},
	{"distributed-tracing-sampling-rate", "0", false},
	{"distributed-tracing-service-name", "etcd", false},
	{"downgrade-check-time", "5s", false},
	{"election-timeout", "1000", false},
	{"enable-distributed-tracing", "false", true},
	{"enable-grpc-gateway", "true", true},
	{"enable-log-rotation", "false", true},
	{"enable-pprof", "false", true},
	{"feature-gates", "", false},
	{"force-new-cluster", "false", true},
	{"grpc-keepalive-interval", "2h0m0s", false},
	{"grpc-keepalive-min-time", "5s", false},
	{"grpc-keepalive-timeout", "20s", false},
	{"heartbeat-interval", "100", false},
	{"host-whitelist", "*", false},
	{"initial-advertise-peer-urls", "http://localhost:2380", false},
	{"initial-cluster", "default=http://localhost:2380", false},
	{"initial-cluster-token", "etcd-cluster", false},
	{"initial-election-tick-advance", "true", true},
	{"key-file", "", false},
	{"listen-client-http-urls", "", false},
	{"listen-client-urls", "http://localhost:2379", false},
	{"listen-metrics-urls", "", false},
	{"listen-peer-urls", "http://localhost:2380", false},
	{"log-format", "json", false},
	{"log-level", "info", false},
	{"log-outputs", "default", false},
	{"log-rotation-config-json", "{\"maxsize\": 100, \"maxage\": 0, \"maxbackups\": 0, \"localtime\": false, \"compress\": false}", false},
	{"logger", "zap", false},
	{"max-concurrent-streams", "4294967295", false},
	{"max-learners", "1", false},
	{"max-request-bytes", "1572864", false},
	{"max-snapshots", "5", false},
	{"max-txn-ops", "128", false},
	{"max-wals", "5", false},
	{"memory-mlock", "false", true},
	{"metrics", "basic", false},
	{"name", "default", false},
	{"peer-auto-tls", "false", true},
	{"peer-cert-allowed-cn", "", false},
	{"peer-cert-allowed-hostname", "", false},
	{"peer-cert-file", "", false},
	{"peer-client-cert-auth", "false", true},
	{"peer-client-cert-file", "", false},
	{"peer-client-key-file", "", false},
	{"peer-crl-file", "", false},
	{"peer-key-file", "", false},
	{"peer-skip-client-san-verification", "false", true},
	{"peer-trusted-ca-file", "", false},
	{"pre-vote", "true", true},
	{"quota-backend-bytes", "0", false},
	{"raft-read-timeout", "5s", false},
	{"raft-write-timeout", "5s", false},
	{"self-signed-cert-validity", "1", false},
	{"snapshot-catchup-entries", "5000", false},
	{"snapshot-count", "10000", false},
	{"socket-reuse-address", "false", true},
	{"socket-reuse-port", "false", true},
	{"strict-reconfig-check", "true", true},
	{"tls-max-version", "", false},
	{"tls-min-version", "TLS1.2", false},
	{"trusted-ca-file", "", false},
	{"unsafe-no-fsync", "false", true},
	{"wal-dir", "", false},
	{"warning-apply-duration", "100ms", false},
	{"warning-unary-request-duration", "300ms", false},
	{"watch-progress-notify-interval", "0s", false},
	// etcdmain.
	{"config-file", "", false},
	{"discovery-fallback", "exit", false},
	{"initial-cluster-state", "new", false},
	{"v2-deprecation", "", false},
	{"version", "false", true},
	// etcdmain's ignored legacy names.
	{"cluster-active-size", "", true},
	{"cluster-remove-delay", "", true},
	{"cluster-sync-interval", "", true},
	{"config", "", true},
	{"force", "", true},
	{"max-result-buffer", "", true},
	{"max-retry-attempts", "", true},
	{"peer-heartbeat-interval", "", true},
	{"peer-election-timeout", "", true},
	{"retry-interval", "", true},
	{"snapshot", "", true},
	{"v", "", true},
	{"vv", "", true},
	{"test.coverprofile", "", true},
	{"test.outputdir", "", true},
}

// TestEveryEtcdFlagRegistered checks that strata registers each etcd flag
// with etcd's default and etcd's boolean-ness (which decides whether
// "--f v" consumes v), and nothing else but --role.
func TestEveryEtcdFlagRegistered(t *testing.T) {
	if len(etcdFlags) != 128 {
		t.Fatalf("fixture has %d flags, want 128", len(etcdFlags))
	}
	cl := newCmdline()
	want := map[string]bool{"role": true, "peer-compression": true, "max-batch-requests": true, "max-batch-bytes": true, "max-inflight-batches": true} // strata's own
	for _, ef := range etcdFlags {
		want[ef.name] = true
		f := cl.fs.Lookup(ef.name)
		if f == nil {
			t.Errorf("--%s is not registered", ef.name)
			continue
		}
		if f.DefValue != ef.defValue {
			t.Errorf("--%s default = %q, etcd's is %q", ef.name, f.DefValue, ef.defValue)
		}
		bf, ok := f.Value.(interface{ IsBoolFlag() bool })
		if isBool := ok && bf.IsBoolFlag(); isBool != ef.isBool {
			t.Errorf("--%s boolean = %v, etcd's is %v", ef.name, isBool, ef.isBool)
		}
	}
	cl.fs.VisitAll(func(f *flag.Flag) {
		if !want[f.Name] {
			t.Errorf("--%s is registered but etcd v3.7.3 has no such flag", f.Name)
		}
	})
}
