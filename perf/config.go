package perf

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Config describes one run.
type Config struct {
	// Endpoints are the members to drive: URLs (http://host:port,
	// https://...) or host:port.
	Endpoints []string `json:"endpoints"`
	// Target picks among Endpoints by role, from each member's Status:
	// "all" (default), "leader", "followers" (voters that do not lead) or
	// "readers" (learners).
	Target string `json:"target"`
	// Workload is the name of a workload (Workloads lists them).
	Workload string `json:"workload"`
	// Clients is the number of concurrent workers; Conns the number of
	// gRPC connections they share (round-robin over the endpoints).
	Clients int `json:"clients"`
	Conns   int `json:"conns"`
	// Rate is the offered load in operations per second over all
	// clients; 0 runs closed-loop, as fast as the clients go.
	Rate float64 `json:"rate"`
	// Total operations, or Duration of the measured phase; the first
	// reached ends the run. At least one must be set.
	Total    int64         `json:"total"`
	Duration time.Duration `json:"duration_ns"`
	// KeySize is the length of generated keys (at least long enough for
	// the key space), KeySpace the number of distinct keys, KeyDist how
	// keys are drawn: "sequential" (each client walks the space),
	// "uniform" or "zipf" (ZipfS skew).
	KeySize  int     `json:"key_size"`
	KeySpace int     `json:"key_space"`
	KeyDist  string  `json:"key_dist"`
	ZipfS    float64 `json:"zipf_s"`
	// ValSize is the value size of writes.
	ValSize int `json:"val_size"`
	// Consistency of reads: "l" (linearizable, default) or "s"
	// (serializable), as etcdctl names it.
	Consistency string `json:"consistency"`
	// Watchers is the number of watchers of the watch workloads;
	// WatchStreams the gRPC streams they share.
	Watchers     int `json:"watchers"`
	WatchStreams int `json:"watch_streams"`
	// KeepAlivesPerGrant is how many keep-alives the lease workload sends
	// on each lease it grants; LeaseTTL its TTL in seconds.
	KeepAlivesPerGrant int   `json:"keepalives_per_grant"`
	LeaseTTL           int64 `json:"lease_ttl"`
	// PageSize is the limit of the paginated lists of the kubernetes
	// workload; CompactEvery how often it compacts (0: never).
	PageSize     int           `json:"page_size"`
	CompactEvery time.Duration `json:"compact_every_ns"`
	// Prefix is prepended to every key the run writes, so runs can share
	// a cluster without touching each other's keys.
	Prefix string `json:"prefix"`
	// Seed makes the generated keys and values reproducible.
	Seed uint64 `json:"seed"`
	// TLS and auth, as etcdctl names them. User may be "name:password".
	CACert             string        `json:"cacert,omitempty"`
	Cert               string        `json:"cert,omitempty"`
	Key                string        `json:"key,omitempty"`
	InsecureSkipVerify bool          `json:"insecure_skip_tls_verify,omitempty"`
	User               string        `json:"user,omitempty"`
	Password           string        `json:"-"`
	DialTimeout        time.Duration `json:"dial_timeout_ns"`
	// GRPCGoKV sends the KV calls through grpc-go like every other call,
	// rather than through the harness's own HTTP/2 framing (h2.go).
	GRPCGoKV bool `json:"grpc_go_kv,omitempty"`
}

// DefaultDialTimeout is Config.DialTimeout's default.
const DefaultDialTimeout = 5 * time.Second

// Targets are the values of Config.Target.
var Targets = []string{"all", "leader", "followers", "readers"}

// KeyDists are the values of Config.KeyDist.
var KeyDists = []string{"sequential", "uniform", "zipf"}

// withDefaults returns c with zero fields set to their defaults.
func (c Config) withDefaults() Config {
	orDefault(&c.Target, "all")
	orDefault(&c.KeySize, 8)
	orDefault(&c.KeySpace, 1)
	orDefault(&c.KeyDist, "uniform")
	orDefault(&c.ZipfS, 1.1)
	orDefault(&c.ValSize, 8)
	orDefault(&c.Consistency, "l")
	orDefault(&c.Watchers, 10)
	orDefault(&c.WatchStreams, 1)
	orDefault(&c.KeepAlivesPerGrant, 10)
	orDefault(&c.LeaseTTL, 60)
	orDefault(&c.PageSize, 500)
	orDefault(&c.DialTimeout, DefaultDialTimeout)
	return c
}

func orDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// Validate reports the first problem with c (after defaults), as a message
// that names the flag.
func (c Config) Validate() error {
	// Clients and Conns have no default: 0 is always a mistake.
	switch {
	case c.Clients < 1:
		return fmt.Errorf("--clients %d: want at least 1", c.Clients)
	case c.Conns < 1:
		return fmt.Errorf("--conns %d: want at least 1", c.Conns)
	}
	c = c.withDefaults()
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("--endpoints: at least one endpoint is required")
	case !slices.Contains(Targets, c.Target):
		return fmt.Errorf("--target %q: want one of %v", c.Target, Targets)
	case lookupWorkload(c.Workload) == nil:
		return fmt.Errorf("--workload %q: want one of %v", c.Workload, WorkloadNames())
	case c.Rate < 0:
		return fmt.Errorf("--rate %v: want 0 (closed loop) or more", c.Rate)
	case c.Total < 0 || c.Duration < 0:
		return errors.New("--total and --duration must not be negative")
	case c.Total == 0 && c.Duration == 0:
		return errors.New("--total or --duration is required")
	case c.KeySpace < 1:
		return fmt.Errorf("--key-space %d: want at least 1", c.KeySpace)
	case c.KeySize < 1 || c.KeySize > 1<<20:
		return fmt.Errorf("--key-size %d: want 1 to 1048576", c.KeySize)
	case !slices.Contains(KeyDists, c.KeyDist):
		return fmt.Errorf("--key-dist %q: want one of %v", c.KeyDist, KeyDists)
	case c.KeyDist == "zipf" && c.ZipfS <= 1:
		return fmt.Errorf("--zipf-s %v: want more than 1", c.ZipfS)
	case c.ValSize < 0 || c.ValSize > 64<<20:
		return fmt.Errorf("--val-size %d: want 0 to 67108864", c.ValSize)
	case c.Consistency != "l" && c.Consistency != "s":
		return fmt.Errorf("--consistency %q: want l (linearizable) or s (serializable)", c.Consistency)
	case c.Watchers < 1 || c.WatchStreams < 1:
		return errors.New("--watchers and --watch-streams: want at least 1")
	case c.KeepAlivesPerGrant < 1 || c.LeaseTTL < 1:
		return errors.New("--keepalives-per-grant and --lease-ttl: want at least 1")
	case c.PageSize < 1:
		return fmt.Errorf("--page-size %d: want at least 1", c.PageSize)
	}
	return nil
}
