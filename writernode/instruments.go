package writernode

import (
	"time"

	"google.golang.org/grpc"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/metrics"
	"github.com/stratakv/strata/pipeline"
	"github.com/stratakv/strata/proposer"
	"github.com/stratakv/strata/wal"
)

// The stages' event listeners, wired to the member's metrics; each is the
// zero listener (no timing at all) without a registry.

func walEvents(r *metrics.Registry) wal.EventListener {
	if r == nil {
		return wal.EventListener{}
	}
	return wal.EventListener{SyncEnd: func(i wal.SyncInfo) { r.WALFsync(i.Duration) }}
}

func applierEvents(r *metrics.Registry) applier.EventListener {
	if r == nil {
		return applier.EventListener{}
	}
	return applier.EventListener{CommitEnd: r.BackendCommit}
}

func pipelineEvents(r *metrics.Registry) pipeline.EventListener {
	if r == nil {
		return pipeline.EventListener{}
	}
	return pipeline.EventListener{AppendEnd: r.AppendStage, ApplyEnd: r.ApplyStage}
}

func proposerEvents(r *metrics.Registry) proposer.EventListener {
	if r == nil {
		return proposer.EventListener{}
	}
	return proposer.EventListener{Proposed: r.Proposed, Queued: r.Queued, Committed: r.Committed}
}

func roundTripEvents(r *metrics.Registry) func(uint64, time.Duration) {
	if r == nil {
		return nil
	}
	return r.PeerRoundTrip
}

// grpcServerOptions are the client gRPC server's options for metrics and
// tracing, which go before the server's own interceptors.
func (m *Member) grpcServerOptions() []grpc.ServerOption {
	opts := append([]grpc.ServerOption(nil), m.cfg.GRPCServerOptions...)
	if m.cfg.Metrics != nil {
		opts = append(opts, m.cfg.Metrics.GRPCServerOptions()...)
	}
	return opts
}

// MetricsState is what the member metrics of /metrics read (package
// metrics), once per scrape.
func (m *Member) MetricsState() metrics.MemberState {
	st := m.node.Status()
	ms := (*backend)(m).Status()
	s := metrics.MemberState{
		HasLeader: st.Lead != 0, IsLeader: st.Lead == m.id.MemberID, IsLearner: ms.IsLearner,
		LeaderChanges: st.LeaderChanges, CommittedIndex: st.Commit, AppliedIndex: st.Applied,
		ProposalsPending: m.prop.Pending(), ProposalsFailed: m.prop.Failed(),
		DBSize: ms.DBSize, DBSizeInUse: ms.DBSizeInUse, QuotaBytes: m.cfg.QuotaBytes,
		Keys: m.app.Keys(),
	}
	if m.peers != nil {
		tm := m.peers.Metrics()
		s.Peers = make(map[uint64]metrics.PeerState, len(tm.Peers))
		for id, p := range tm.Peers {
			s.Peers[id] = metrics.PeerState{
				SentWireBytes: p.WireBytesSent, SentBodyBytes: p.BodyBytesSent,
				ReceivedBytes: tm.BytesReceived[id], SendFailures: p.MessagesDropped,
			}
		}
	}
	return s
}
