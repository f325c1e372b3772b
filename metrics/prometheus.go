package metrics

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
)

// MemberState is what the member-level metrics read, once per scrape.
type MemberState struct {
	HasLeader, IsLeader, IsLearner bool
	// LeaderChanges counts the new leaders the member saw.
	LeaderChanges uint64
	// CommittedIndex and AppliedIndex are raft's (etcd exposes them as
	// etcd_server_proposals_{committed,applied}_total).
	CommittedIndex, AppliedIndex uint64
	// ProposalsPending are the requests proposed or queued and not yet
	// answered; ProposalsFailed counts those that failed (timeouts, lost
	// entries).
	ProposalsPending int
	ProposalsFailed  uint64
	// DBSize and DBSizeInUse are the state machine's bytes on disk and
	// in use; QuotaBytes is --quota-backend-bytes.
	DBSize, DBSizeInUse, QuotaBytes int64
	// Keys is the number of live keys.
	Keys int64
	// Peers are the member's links, by peer member ID.
	Peers map[uint64]PeerState
}

// PeerState is the traffic of one peer link.
type PeerState struct {
	// SentWireBytes and SentBodyBytes are the bytes sent to the peer on
	// the wire and before compression; ReceivedBytes those received from
	// it, on the wire. SendFailures counts messages that could not be
	// sent.
	SentWireBytes, SentBodyBytes, ReceivedBytes, SendFailures uint64
}

// Options configures a Registry.
type Options struct {
	// ServerVersion labels etcd_server_version.
	ServerVersion string
	// Extensive adds grpc_server_handling_seconds (etcd's
	// --metrics=extensive).
	Extensive bool
	// Reader marks a reader member, which exports its lag behind the
	// leader's commit index.
	Reader bool
}

// Registry is a member's metrics: its own Prometheus registry (nothing is
// registered globally), served by Handler. Its methods hand the stages the
// observers they call (the member wires them into the stages' event
// listeners); every method is safe for concurrent use.
type Registry struct {
	reg   *prometheus.Registry
	state atomic.Pointer[func() MemberState]

	walFsync, backendCommit prometheus.Histogram
	peerRTT                 *prometheus.HistogramVec
	batchRequests           prometheus.Histogram
	batchBytes              prometheus.Histogram
	stageQueue, stageAppend prometheus.Observer
	stageApply, stageCommit prometheus.Observer
	grpc                    *grpcprom.ServerMetrics
	clientIn, clientOut     prometheus.Counter
}

// Names of strata's own pipeline stages (label stage of
// strata_pipeline_stage_duration_seconds).
const (
	StageQueue  = "queue"  // a request waits in the proposer for an entry
	StageAppend = "append" // one batch of log writes and its fsync
	StageApply  = "apply"  // one batch of entries applied to the state machine
	StageCommit = "commit" // a request's entry, from proposal to applied result
)

// New returns a registry with the Go runtime and process collectors etcd
// exposes too, etcd's member, disk, network and gRPC metrics under etcd's
// names and buckets, and strata's own. The member metrics read the state
// function given to SetState.
func New(o Options) *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.reg.MustRegister(&memberCollector{r: r, reader: o.Reader})
	version := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "etcd", Subsystem: "server", Name: "version", Help: "Which version is running. 1 for 'server_version' label with current version.",
	}, []string{"server_version"})
	version.WithLabelValues(o.ServerVersion).Set(1)
	r.reg.MustRegister(version)

	hist := func(ns, sub, name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help, Buckets: buckets})
		r.reg.MustRegister(h)
		return h
	}
	r.walFsync = hist("etcd", "disk", "wal_fsync_duration_seconds", "The latency distributions of fsync called by WAL.",
		prometheus.ExponentialBuckets(0.001, 2, 14))
	r.backendCommit = hist("etcd", "disk", "backend_commit_duration_seconds", "The latency distributions of commit called by backend.",
		prometheus.ExponentialBuckets(0.001, 2, 14))
	r.peerRTT = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "etcd", Subsystem: "network", Name: "peer_round_trip_time_seconds",
		Help:    "Round-Trip-Time histogram between peers",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"To"})
	r.reg.MustRegister(r.peerRTT)
	r.batchRequests = hist("strata", "proposer", "batch_requests", "Client requests carried by each raft entry the proposer proposed.",
		prometheus.ExponentialBuckets(1, 2, 12))
	r.batchBytes = hist("strata", "proposer", "batch_bytes", "Size of each raft entry the proposer proposed.",
		prometheus.ExponentialBuckets(64, 4, 10))
	stages := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "strata", Subsystem: "pipeline", Name: "stage_duration_seconds",
		Help: "Time spent in each stage of the write path: queue (a request waiting for an entry), append (a batch of log writes " +
			"and its fsync), apply (a batch applied to the state machine), commit (a request's entry, from proposal to result).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
	}, []string{"stage"})
	r.reg.MustRegister(stages)
	r.stageQueue = stages.WithLabelValues(StageQueue)
	r.stageAppend = stages.WithLabelValues(StageAppend)
	r.stageApply = stages.WithLabelValues(StageApply)
	r.stageCommit = stages.WithLabelValues(StageCommit)

	var gopts []grpcprom.ServerMetricsOption
	if o.Extensive {
		gopts = append(gopts, grpcprom.WithServerHandlingTimeHistogram())
	}
	r.grpc = grpcprom.NewServerMetrics(gopts...)
	r.reg.MustRegister(r.grpc)
	counter := func(ns, sub, name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: name, Help: help})
		r.reg.MustRegister(c)
		return c
	}
	r.clientIn = counter("etcd", "network", "client_grpc_received_bytes_total", "The total number of bytes received from grpc clients.")
	r.clientOut = counter("etcd", "network", "client_grpc_sent_bytes_total", "The total number of bytes sent to grpc clients.")
	return r
}

// SetState sets what the member metrics read at each scrape.
func (r *Registry) SetState(state func() MemberState) { r.state.Store(&state) }

// Handler serves the registry in Prometheus' text format (/metrics).
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}

// WALFsync observes one WAL fsync.
func (r *Registry) WALFsync(d time.Duration) { r.walFsync.Observe(d.Seconds()) }

// BackendCommit observes one commit of an apply batch to the engine.
func (r *Registry) BackendCommit(d time.Duration) { r.backendCommit.Observe(d.Seconds()) }

// PeerRoundTrip observes one heartbeat round trip to peer id.
func (r *Registry) PeerRoundTrip(id uint64, d time.Duration) {
	r.peerRTT.WithLabelValues(peerLabel(id)).Observe(d.Seconds())
}

// Proposed observes one raft entry proposed with requests requests in
// bytes bytes.
func (r *Registry) Proposed(requests, bytes int) {
	r.batchRequests.Observe(float64(requests))
	r.batchBytes.Observe(float64(bytes))
}

// Queued observes one request's wait for an entry.
func (r *Registry) Queued(d time.Duration) { r.stageQueue.Observe(d.Seconds()) }

// Committed observes one request's time from proposal to result.
func (r *Registry) Committed(d time.Duration) { r.stageCommit.Observe(d.Seconds()) }

// AppendStage observes one batch of the append stage.
func (r *Registry) AppendStage(d time.Duration, _ int) { r.stageAppend.Observe(d.Seconds()) }

// ApplyStage observes one batch of the apply stage.
func (r *Registry) ApplyStage(d time.Duration, _ int) { r.stageApply.Observe(d.Seconds()) }

// GRPCServerOptions returns the options that count a client gRPC server's
// calls (grpc_server_*); they go before the server's own interceptors, so
// refused calls count too.
func (r *Registry) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(r.grpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(r.grpc.StreamServerInterceptor()),
	}
}

// ClientGRPCBytes returns the counters of the bytes read from and written to
// client gRPC connections (etcd_network_client_grpc_{received,sent}_bytes_total),
// which the listener's connections add to (serve.Server.GRPCBytesIn/Out):
// counting there costs an atomic add per read or write, where a gRPC stats
// handler costs allocations and clock reads per message.
func (r *Registry) ClientGRPCBytes() (in, out prometheus.Counter) { return r.clientIn, r.clientOut }

// InitializeGRPC sets the grpc_server_* series of every method of s to
// zero, as etcd does, so that rates exist before the first call.
func (r *Registry) InitializeGRPC(s *grpc.Server) { r.grpc.InitializeMetrics(s) }

// peerLabel formats a member ID as etcd does in its To/From labels.
func peerLabel(id uint64) string { return strconv.FormatUint(id, 16) }

// memberCollector exports the member state, read once per scrape.
type memberCollector struct {
	r      *Registry
	reader bool
}

var (
	descHasLeader     = etcdDesc("server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.")
	descIsLeader      = etcdDesc("server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.")
	descIsLearner     = etcdDesc("server", "is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.")
	descLeaderChanges = etcdDesc("server", "leader_changes_seen_total", "The number of leader changes seen.")
	descCommitted     = etcdDesc("server", "proposals_committed_total", "The total number of consensus proposals committed.")
	descApplied       = etcdDesc("server", "proposals_applied_total", "The total number of consensus proposals applied.")
	descPending       = etcdDesc("server", "proposals_pending", "The current number of pending proposals to commit.")
	descFailed        = etcdDesc("server", "proposals_failed_total", "The total number of failed proposals seen.")
	descQuota         = etcdDesc("server", "quota_backend_bytes", "Current backend storage quota size in bytes.")
	descDBSize        = etcdDesc("mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.")
	descDBInUse       = etcdDesc("mvcc", "db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.")
	descKeys          = prometheus.NewDesc("etcd_debugging_mvcc_keys_total", "Total number of keys.", nil, nil)
	descPeerSent      = prometheus.NewDesc("etcd_network_peer_sent_bytes_total", "The total number of bytes sent to peers.", []string{"To"}, nil)
	descPeerReceived  = prometheus.NewDesc("etcd_network_peer_received_bytes_total", "The total number of bytes received from peers.", []string{"From"}, nil)
	descPeerFailures  = prometheus.NewDesc("etcd_network_peer_sent_failures_total", "The total number of send failures from peers.", []string{"To"}, nil)
	descPeerBody      = prometheus.NewDesc("strata_network_peer_sent_uncompressed_bytes_total",
		"The total number of bytes sent to peers before compression.", []string{"To"}, nil)
	descPeerRatio = prometheus.NewDesc("strata_network_peer_compression_ratio",
		"Bytes sent to the peer before compression divided by bytes on the wire, since start.", []string{"To"}, nil)
	descReaderLag = prometheus.NewDesc("strata_reader_lag_entries",
		"Entries the reader knows committed and has not applied yet.", nil, nil)
)

func etcdDesc(subsystem, name, help string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("etcd", subsystem, name), help, nil, nil)
}

func (c *memberCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHasLeader, descIsLeader, descIsLearner, descLeaderChanges, descCommitted,
		descApplied, descPending, descFailed, descQuota, descDBSize, descDBInUse, descKeys,
		descPeerSent, descPeerReceived, descPeerFailures, descPeerBody, descPeerRatio} {
		ch <- d
	}
	if c.reader {
		ch <- descReaderLag
	}
}

func (c *memberCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.r.state.Load()
	if f == nil {
		return
	}
	s := (*f)()
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(descHasLeader, b(s.HasLeader))
	gauge(descIsLeader, b(s.IsLeader))
	gauge(descIsLearner, b(s.IsLearner))
	counter(descLeaderChanges, float64(s.LeaderChanges))
	// Gauges in etcd too, despite their names.
	gauge(descCommitted, float64(s.CommittedIndex))
	gauge(descApplied, float64(s.AppliedIndex))
	gauge(descPending, float64(s.ProposalsPending))
	counter(descFailed, float64(s.ProposalsFailed))
	gauge(descQuota, float64(s.QuotaBytes))
	gauge(descDBSize, float64(s.DBSize))
	gauge(descDBInUse, float64(s.DBSizeInUse))
	gauge(descKeys, float64(s.Keys))
	for id, p := range s.Peers {
		l := peerLabel(id)
		counter(descPeerSent, float64(p.SentWireBytes), l)
		counter(descPeerReceived, float64(p.ReceivedBytes), l)
		counter(descPeerFailures, float64(p.SendFailures), l)
		counter(descPeerBody, float64(p.SentBodyBytes), l)
		if p.SentWireBytes > 0 {
			gauge(descPeerRatio, float64(p.SentBodyBytes)/float64(p.SentWireBytes), l)
		}
	}
	if c.reader {
		var lag float64
		if s.CommittedIndex > s.AppliedIndex {
			lag = float64(s.CommittedIndex - s.AppliedIndex)
		}
		gauge(descReaderLag, lag)
	}
}
