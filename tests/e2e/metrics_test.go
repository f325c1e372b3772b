package e2e

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
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

// TestMetricsMatchEtcdNames: /metrics on the client URL serves, under
// etcd's names, the member gauges dashboards and alerts read, as etcd
// v3.7.3 does (run side by side): each is present on both, and the values
// agree where they must (a healthy single member leads, is no learner,
// saw one leader, has applied what it committed).
func TestMetricsMatchEtcdNames(t *testing.T) {
	b := needSubject(t)
	names := []string{
		"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner",
		"etcd_server_leader_changes_seen_total", "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
		"etcd_server_quota_backend_bytes", "etcd_mvcc_db_total_size_in_bytes",
		"etcd_mvcc_db_total_size_in_use_in_bytes", `etcd_server_version{server_version="3.7.3"}`,
		"go_goroutines", "process_resident_memory_bytes",
	}
	scrape := func(t *testing.T, binary string) map[string]float64 {
		ms := StartCluster(t, "mt", 1, MemberConfig{Binary: binary})
		c := newEndpointClient(t, ms[0])
		if _, err := c.Put(t.Context(), "k", "v"); err != nil {
			t.Fatal(err)
		}
		text, err := httpGet(ms[0], "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return metricValues(t, text)
	}
	var etcd, got map[string]float64
	t.Run("etcd", func(t *testing.T) { etcd = scrape(t, b.Etcd) })
	t.Run(b.SubjectName, func(t *testing.T) { got = scrape(t, b.Subject) })
	for _, n := range names {
		if _, ok := etcd[n]; !ok {
			t.Errorf("etcd does not serve %s: the test's list is wrong", n)
		}
		if _, ok := got[n]; !ok {
			t.Errorf("%s does not serve %s", b.SubjectName, n)
		}
	}
	for _, n := range []string{"etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_is_learner", "etcd_server_quota_backend_bytes",
		"etcd_server_leader_changes_seen_total"} {
		if got[n] != etcd[n] {
			t.Errorf("%s: %s %v, etcd %v", n, b.SubjectName, got[n], etcd[n])
		}
	}
	if got["etcd_server_proposals_applied_total"] < 1 || got["etcd_server_proposals_committed_total"] < got["etcd_server_proposals_applied_total"] ||
		got["etcd_mvcc_db_total_size_in_use_in_bytes"] > got["etcd_mvcc_db_total_size_in_bytes"] || got["etcd_mvcc_db_total_size_in_bytes"] <= 0 {
		t.Errorf("implausible values: %v", got)
	}
}
