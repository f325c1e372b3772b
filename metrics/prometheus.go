package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// MemberState is what the member-level gauges read, at scrape time.
type MemberState struct {
	HasLeader, IsLeader, IsLearner bool
	// LeaderChanges counts the new leaders the member saw.
	LeaderChanges uint64
	// CommittedIndex and AppliedIndex are raft's (etcd exposes them as
	// etcd_server_proposals_{committed,applied}_total).
	CommittedIndex, AppliedIndex uint64
	// DBSize and DBSizeInUse are the state machine's bytes on disk and
	// in use; QuotaBytes is --quota-backend-bytes.
	DBSize, DBSizeInUse, QuotaBytes int64
}

// Registry is a member's metrics: its own Prometheus registry (nothing is
// registered globally), served by Handler.
type Registry struct {
	reg *prometheus.Registry
}

// New returns a registry with the Go runtime and process collectors etcd
// exposes too, and the member gauges under etcd's names, read from state
// at every scrape. serverVersion labels etcd_server_version.
func New(serverVersion string, state func() MemberState) *Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gauge := func(subsystem, name, help string, value func(MemberState) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "etcd", Subsystem: subsystem, Name: name, Help: help,
		}, func() float64 { return value(state()) }))
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	gauge("server", "has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.", func(s MemberState) float64 { return b(s.HasLeader) })
	gauge("server", "is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.", func(s MemberState) float64 { return b(s.IsLeader) })
	gauge("server", "is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.", func(s MemberState) float64 { return b(s.IsLearner) })
	gauge("server", "proposals_committed_total", "The total number of consensus proposals committed.", func(s MemberState) float64 { return float64(s.CommittedIndex) })
	gauge("server", "proposals_applied_total", "The total number of consensus proposals applied.", func(s MemberState) float64 { return float64(s.AppliedIndex) })
	gauge("server", "quota_backend_bytes", "Current backend storage quota size in bytes.", func(s MemberState) float64 { return float64(s.QuotaBytes) })
	gauge("mvcc", "db_total_size_in_bytes", "Total size of the underlying database physically allocated in bytes.", func(s MemberState) float64 { return float64(s.DBSize) })
	gauge("mvcc", "db_total_size_in_use_in_bytes", "Total size of the underlying database logically in use in bytes.", func(s MemberState) float64 { return float64(s.DBSizeInUse) })
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "etcd", Subsystem: "server", Name: "leader_changes_seen_total", Help: "The number of leader changes seen.",
	}, func() float64 { return float64(state().LeaderChanges) }))
	version := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "etcd", Subsystem: "server", Name: "version", Help: "Which version is running. 1 for 'server_version' label with current version.",
	}, []string{"server_version"})
	version.WithLabelValues(serverVersion).Set(1)
	reg.MustRegister(version)
	return &Registry{reg: reg}
}

// Handler serves the registry in Prometheus' text format (/metrics).
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{})
}
