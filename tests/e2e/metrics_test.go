package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// metricValues parses Prometheus' text format: unlabelled samples by name
// (labelled ones by their full series).
func metricValues(t *testing.T, text string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out
}

// family reports whether a scrape holds a sample of the named family
// (labelled or not).
func family(values map[string]float64, name string) bool {
	if _, ok := values[name]; ok {
		return true
	}
	for k := range values {
		if strings.HasPrefix(k, name+"{") {
			return true
		}
	}
	return false
}

// TestMetricsMatchEtcdNames: /metrics serves, under etcd's names, what
// dashboards and alerts read, as etcd v3.7.3 does (three members each, run
// side by side, with --metrics=extensive and --listen-metrics-urls on the
// leader's side): each family is present on both, and values agree where
// they must (a healthy cluster has a leader, the leader leads and is no
// learner, saw one leader; both counted the same gRPC calls and hold the
// same live keys). The metrics URL answers /metrics and /health and not
// /version, on both.
func TestMetricsMatchEtcdNames(t *testing.T) {
	b := needSubject(t)
	families := []string{
		"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
		"etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
		"etcd_server_proposals_pending", "etcd_server_proposals_failed_total",
		"etcd_server_quota_backend_bytes", "etcd_mvcc_db_total_size_in_bytes",
		"etcd_mvcc_db_total_size_in_use_in_bytes", "etcd_server_version", "etcd_debugging_mvcc_keys_total",
		"etcd_disk_wal_fsync_duration_seconds_bucket", "etcd_disk_wal_fsync_duration_seconds_count",
		"etcd_disk_backend_commit_duration_seconds_bucket", "etcd_disk_backend_commit_duration_seconds_sum",
		"etcd_network_peer_round_trip_time_seconds_bucket", "etcd_network_peer_sent_bytes_total",
		"etcd_network_peer_received_bytes_total",
		"etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
		"grpc_server_started_total", "grpc_server_handled_total", "grpc_server_msg_received_total",
		"grpc_server_msg_sent_total", "grpc_server_handling_seconds_bucket",
		"go_goroutines", "process_resident_memory_bytes",
	}
	// Series whose values must be equal: the same calls were made.
	equal := []string{
		"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
		"etcd_server_quota_backend_bytes", "etcd_server_leader_changes_seen_total", "etcd_debugging_mvcc_keys_total",
		`etcd_server_version{server_version="3.7.3"}`,
		`grpc_server_started_total{grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="Put",grpc_service="etcdserverpb.KV",grpc_type="unary"}`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="DeleteRange",grpc_service="etcdserverpb.KV",grpc_type="unary"}`,
		// Pre-initialised to zero, as etcd does.
		`grpc_server_started_total{grpc_method="Defragment",grpc_service="etcdserverpb.Maintenance",grpc_type="unary"}`,
		`grpc_server_handled_total{grpc_code="Unavailable",grpc_method="Range",grpc_service="etcdserverpb.KV",grpc_type="unary"}`,
	}
	type result struct {
		values map[string]float64
		codes  map[string]int // metrics URL path → status
	}
	scrape := func(t *testing.T, binary string) result {
		ports, err := FreePorts(1)
		if err != nil {
			t.Fatal(err)
		}
		metricsURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
		ms := StartCluster(t, "mt", 3, MemberConfig{Binary: binary, ExtraArgs: []string{"--metrics=extensive"}})
		clients := make([]*clientv3.Client, len(ms))
		for i, m := range ms {
			clients[i] = newEndpointClient(t, m)
		}
		leader := ms[leaderIndex(t.Context(), t, clients)]
		// Restart a follower with a metrics URL.
		f := ms[0]
		if f == leader {
			f = ms[1]
		}
		if err := f.Stop(); err != nil {
			t.Fatal(err)
		}
		f.Args = append(f.Args, "--listen-metrics-urls="+metricsURL)
		if err := f.Restart(); err != nil {
			t.Fatal(err)
		}
		c := newEndpointClient(t, leader)
		for _, k := range []string{"a", "b", "c"} {
			if _, err := c.Put(t.Context(), k, "v"); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := c.Delete(t.Context(), "b"); err != nil {
			t.Fatal(err)
		}
		// Round trips: etcd probes its peers every few seconds, strata
		// times the leader's heartbeats. Wait for both to show.
		var values map[string]float64
		deadline := time.Now().Add(20 * time.Second)
		for {
			text, err := httpGet(leader, "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			values = metricValues(t, text)
			if family(values, "etcd_network_peer_round_trip_time_seconds_bucket") || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond) // paces the polling of a condition the servers report; bounded by deadline
		}
		codes := map[string]int{}
		for _, path := range []string{"/metrics", "/health", "/version"} {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL+path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("GET %s%s: %v", metricsURL, path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			cancel()
			codes[path] = resp.StatusCode
			if path == "/metrics" && !strings.Contains(string(body), "etcd_server_has_leader 1") {
				t.Errorf("%s on the metrics URL lacks etcd_server_has_leader 1", path)
			}
		}
		return result{values, codes}
	}
	var etcd, got result
	t.Run("etcd", func(t *testing.T) { etcd = scrape(t, b.Etcd) })
	t.Run(b.SubjectName, func(t *testing.T) { got = scrape(t, b.Subject) })
	if t.Failed() {
		return
	}
	for _, n := range families {
		if !family(etcd.values, n) {
			t.Errorf("etcd does not serve %s: the test's list is wrong", n)
		}
		if !family(got.values, n) {
			t.Errorf("%s does not serve %s", b.SubjectName, n)
		}
	}
	for _, n := range equal {
		if _, ok := etcd.values[n]; !ok {
			t.Errorf("etcd does not serve %s: the test's list is wrong", n)
		}
		if _, ok := got.values[n]; !ok {
			t.Errorf("%s does not serve %s", b.SubjectName, n)
		}
		if got.values[n] != etcd.values[n] {
			t.Errorf("%s: %s %v, etcd %v", n, b.SubjectName, got.values[n], etcd.values[n])
		}
	}
	if !maps.Equal(got.codes, etcd.codes) {
		t.Errorf("metrics URL status codes: %s %v, etcd %v", b.SubjectName, got.codes, etcd.codes)
	}
	v := got.values
	if v["etcd_server_proposals_applied_total"] < 1 || v["etcd_server_proposals_committed_total"] < v["etcd_server_proposals_applied_total"] ||
		v["etcd_mvcc_db_total_size_in_use_in_bytes"] > v["etcd_mvcc_db_total_size_in_bytes"] || v["etcd_mvcc_db_total_size_in_bytes"] <= 0 ||
		v["etcd_disk_wal_fsync_duration_seconds_count"] < 1 || v["etcd_network_client_grpc_received_bytes_total"] <= 0 ||
		v["etcd_network_client_grpc_sent_bytes_total"] <= 0 {
		t.Errorf("implausible values: %v", v)
	}
	if b.SubjectName != "strata" {
		return
	}
	// strata's own: every write went through each stage at least once.
	for _, n := range []string{
		"strata_proposer_batch_requests_count", "strata_proposer_batch_bytes_count",
		`strata_pipeline_stage_duration_seconds_count{stage="queue"}`,
		`strata_pipeline_stage_duration_seconds_count{stage="append"}`,
		`strata_pipeline_stage_duration_seconds_count{stage="apply"}`,
		`strata_pipeline_stage_duration_seconds_count{stage="commit"}`,
	} {
		if v[n] < 4 {
			t.Errorf("%s = %v, want at least the 4 writes", n, v[n])
		}
	}
	for _, n := range []string{"strata_network_peer_sent_uncompressed_bytes_total", "strata_network_peer_compression_ratio"} {
		if !family(v, n) {
			t.Errorf("strata does not serve %s", n)
		}
	}
}
