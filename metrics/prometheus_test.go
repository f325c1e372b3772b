package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, r *Registry) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, err := io.ReadAll(rec.Result().Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

func TestRegistryExposesState(t *testing.T) {
	r := New(Options{ServerVersion: "3.7.3", Reader: true})
	if text := scrape(t, r); strings.Contains(text, "etcd_server_has_leader") {
		t.Fatalf("member metrics before SetState:\n%s", text)
	}
	r.SetState(func() MemberState {
		return MemberState{
			HasLeader: true, IsLearner: true, LeaderChanges: 2, CommittedIndex: 10, AppliedIndex: 7,
			ProposalsPending: 3, ProposalsFailed: 1, Keys: 42, QuotaBytes: 1 << 31,
			Peers: map[uint64]PeerState{0xabc: {SentWireBytes: 100, SentBodyBytes: 250, ReceivedBytes: 7, SendFailures: 1}},
		}
	})
	r.WALFsync(3 * time.Millisecond)
	r.PeerRoundTrip(0xabc, time.Millisecond)
	r.Proposed(5, 1000)
	r.Queued(time.Millisecond)
	text := scrape(t, r)
	for _, want := range []string{
		"etcd_server_has_leader 1", "etcd_server_is_learner 1", "etcd_server_leader_changes_seen_total 2",
		"etcd_server_proposals_committed_total 10", "etcd_server_proposals_applied_total 7",
		"etcd_server_proposals_pending 3", "etcd_server_proposals_failed_total 1",
		"etcd_debugging_mvcc_keys_total 42", "etcd_server_quota_backend_bytes 2.147483648e+09",
		`etcd_server_version{server_version="3.7.3"} 1`,
		`etcd_network_peer_sent_bytes_total{To="abc"} 100`, `etcd_network_peer_received_bytes_total{From="abc"} 7`,
		`etcd_network_peer_sent_failures_total{To="abc"} 1`, `strata_network_peer_compression_ratio{To="abc"} 2.5`,
		`etcd_network_peer_round_trip_time_seconds_count{To="abc"} 1`,
		`etcd_disk_wal_fsync_duration_seconds_bucket{le="0.004"} 1`,
		"strata_proposer_batch_requests_sum 5", "strata_proposer_batch_bytes_sum 1000",
		`strata_pipeline_stage_duration_seconds_count{stage="queue"} 1`,
		"strata_reader_lag_entries 3",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("missing %q", want)
		}
	}
	if strings.Contains(text, "grpc_server_handling_seconds") {
		t.Error("grpc_server_handling_seconds without Extensive")
	}
	if text := scrape(t, New(Options{Extensive: true})); strings.Contains(text, "strata_reader_lag_entries") {
		t.Error("reader lag on a writer")
	}
}
