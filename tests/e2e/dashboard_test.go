package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// dashboardFile is the Grafana dashboard shipped for operators, relative to
// the repository root.
const dashboardFile = "deploy/grafana/strata.json"

// dashboardDatasourceUID is what every panel's and target's datasource
// must name: the dashboard's datasource variable, so that the dashboard
// imports into any Grafana with any Prometheus.
const dashboardDatasourceUID = "${datasource}"

// dashboardScrapeDeadline bounds how long TestDashboardMetricsExist waits
// for every name to appear (some are observed only after a peer probe or
// the first batch).
const dashboardScrapeDeadline = 20 * time.Second

type dashboardDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboardTarget struct {
	RefID      string               `json:"refId"`
	Expr       string               `json:"expr"`
	Datasource *dashboardDatasource `json:"datasource"`
}

type dashboardPanel struct {
	ID         int                  `json:"id"`
	Type       string               `json:"type"`
	Title      string               `json:"title"`
	Datasource *dashboardDatasource `json:"datasource"`
	Targets    []dashboardTarget    `json:"targets"`
	Panels     []dashboardPanel     `json:"panels"` // a collapsed row's panels
}

type dashboardJSON struct {
	UID           string           `json:"uid"`
	SchemaVersion int              `json:"schemaVersion"`
	Panels        []dashboardPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// allPanels flattens the dashboard's panels, a collapsed row's included.
func (d *dashboardJSON) allPanels() []dashboardPanel {
	var out []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

func readDashboard(t *testing.T) *dashboardJSON {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, dashboardFile))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboardJSON
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return &d
}

// checkDashboard checks the dashboard's shape: variables, unique panel ids,
// a datasource naming the variable on every panel and target, and every
// series selector restricted to the chosen cluster and instances. It
// returns the metric names the targets use, as written.
func checkDashboard(t *testing.T, d *dashboardJSON) []string {
	t.Helper()
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want a Grafana 10 dashboard (>= 36)", d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
		if v.Name == "datasource" && (v.Type != "datasource" || v.Query != "prometheus") {
			t.Errorf("variable datasource: type %q query %v, want a prometheus datasource variable", v.Type, v.Query)
		}
	}
	for _, name := range []string{"datasource", "cluster", "instance"} {
		if _, ok := vars[name]; !ok {
			t.Errorf("no %q template variable", name)
		}
	}
	ids := map[int]string{}
	names := map[string]bool{}
	for _, p := range d.allPanels() {
		if p.ID == 0 {
			t.Errorf("panel %q has no id", p.Title)
		} else if other, ok := ids[p.ID]; ok {
			t.Errorf("panel id %d used by %q and %q", p.ID, other, p.Title)
		}
		ids[p.ID] = p.Title
		if p.Datasource == nil || p.Datasource.UID != dashboardDatasourceUID || p.Datasource.Type != "prometheus" {
			t.Errorf("panel %d %q: datasource %+v, want {prometheus %s}", p.ID, p.Title, p.Datasource, dashboardDatasourceUID)
		}
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %d %q has no targets", p.ID, p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource != nil && (tg.Datasource.UID != dashboardDatasourceUID || tg.Datasource.Type != "prometheus") {
				t.Errorf("panel %d %q target %s: datasource %+v, want {prometheus %s}", p.ID, p.Title, tg.RefID, tg.Datasource, dashboardDatasourceUID)
			}
			sels, err := promqlSelectors(tg.Expr)
			if err != nil {
				t.Errorf("panel %d %q target %s: %v", p.ID, p.Title, tg.RefID, err)
				continue
			}
			if len(sels) == 0 {
				t.Errorf("panel %d %q target %s selects no series: %s", p.ID, p.Title, tg.RefID, tg.Expr)
			}
			for _, s := range sels {
				names[s.Name] = true
				if !strings.Contains(s.Matchers, `job="$cluster"`) || !strings.Contains(s.Matchers, `instance=~"$instance"`) {
					t.Errorf("panel %d %q: %s{%s} is not restricted to $cluster and $instance", p.ID, p.Title, s.Name, s.Matchers)
				}
			}
		}
	}
	// The panels of etcd's mixin dashboard, and strata's own, must stay.
	for _, n := range []string{
		"etcd_server_has_leader", "etcd_server_leader_changes_seen_total", "grpc_server_started_total", "grpc_server_handled_total",
		"grpc_server_handling_seconds_bucket", "etcd_mvcc_db_total_size_in_bytes", "etcd_server_quota_backend_bytes",
		"etcd_disk_wal_fsync_duration_seconds_bucket", "etcd_disk_backend_commit_duration_seconds_bucket", "process_resident_memory_bytes",
		"etcd_network_client_grpc_received_bytes_total", "etcd_network_client_grpc_sent_bytes_total",
		"etcd_network_peer_received_bytes_total", "etcd_network_peer_sent_bytes_total", "etcd_network_peer_round_trip_time_seconds_bucket",
		"etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total", "etcd_server_proposals_pending",
		"etcd_server_proposals_failed_total", "strata_proposer_batch_requests_bucket", "strata_proposer_batch_bytes_bucket",
		"strata_pipeline_stage_duration_seconds_bucket", "strata_reader_lag_entries", "strata_network_peer_compression_ratio",
		"strata_network_peer_sent_uncompressed_bytes_total",
	} {
		if !names[n] {
			t.Errorf("no panel uses %s", n)
		}
	}
	return slices.Sorted(func(yield func(string) bool) {
		for n := range names {
			if !yield(n) {
				return
			}
		}
	})
}

// promqlSelector is one series selector of a PromQL expression: a metric
// name and the text between the braces that follow it (empty when none).
type promqlSelector struct {
	Name     string
	Matchers string
}

// promqlGrouping are the keywords followed by a parenthesised list of label
// names, which are not metrics.
var promqlGrouping = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}

// promqlKeywords are the other bare words of PromQL that are not metrics.
var promqlKeywords = map[string]bool{"and": true, "or": true, "unless": true, "bool": true, "offset": true, "inf": true, "nan": true}

// promqlSelectors returns the series selectors of a PromQL expression as
// Grafana stores it: identifiers used as selectors, that is, neither a
// function or aggregation (followed by "(", or by "by" or "without"), nor a
// keyword, nor a label
// name (inside braces or a grouping list), nor a Grafana variable ($x,
// ${x}), nor inside a string or a range ("[5m]"). It is a tokenizer, not a
// parser: enough for the dashboard's expressions.
func promqlSelectors(expr string) ([]promqlSelector, error) {
	var out []promqlSelector
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			j, err := promqlSkipString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '{':
			// A selector without a metric name ({__name__=~"..."}): its
			// name is not known here.
			return nil, fmt.Errorf("selector without a metric name at %d: %s", i, expr)
		case c == '[':
			j, err := promqlClose(expr, i, ']')
			if err != nil {
				return nil, err
			}
			i = j
		case c == '$':
			i++
			if i < len(expr) && expr[i] == '{' {
				j, err := promqlClose(expr, i, '}')
				if err != nil {
					return nil, err
				}
				i = j
			} else {
				for i < len(expr) && promqlIdentChar(expr[i]) {
					i++
				}
			}
		case c >= '0' && c <= '9' || c == '.':
			// A number, or a duration after offset: 0.99, 1e3, 5m.
			for i < len(expr) && (promqlIdentChar(expr[i]) || expr[i] == '.') {
				i++
			}
		case promqlIdentStart(c):
			j := i
			for j < len(expr) && promqlIdentChar(expr[j]) {
				j++
			}
			word := expr[i:j]
			k := j
			for k < len(expr) && (expr[k] == ' ' || expr[k] == '\t' || expr[k] == '\n') {
				k++
			}
			var next byte
			if k < len(expr) {
				next = expr[k]
			}
			// An aggregation may put its grouping first: sum by (le) (...).
			l := k
			for l < len(expr) && promqlIdentChar(expr[l]) {
				l++
			}
			if w := strings.ToLower(expr[k:l]); w == "by" || w == "without" {
				next = '('
			}
			switch {
			case promqlGrouping[strings.ToLower(word)]:
				i = j
				if next == '(' {
					end, err := promqlClose(expr, k, ')')
					if err != nil {
						return nil, err
					}
					i = end
				}
			case promqlKeywords[strings.ToLower(word)], next == '(':
				i = j
			default:
				s := promqlSelector{Name: word}
				i = j
				if next == '{' {
					end, err := promqlClose(expr, k, '}')
					if err != nil {
						return nil, err
					}
					s.Matchers = expr[k+1 : end-1]
					i = end
				}
				out = append(out, s)
			}
		default:
			i++
		}
	}
	return out, nil
}

func promqlIdentStart(c byte) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func promqlIdentChar(c byte) bool { return promqlIdentStart(c) || c >= '0' && c <= '9' }

// promqlSkipString returns the index just past the string literal that
// starts at expr[i].
func promqlSkipString(expr string, i int) (int, error) {
	q := expr[i]
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && q != '`':
			j++
		case expr[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("unterminated string at %d: %s", i, expr)
}

// promqlClose returns the index just past the bracket closing the one at
// expr[i], skipping strings.
func promqlClose(expr string, i int, closer byte) (int, error) {
	for j := i + 1; j < len(expr); {
		switch c := expr[j]; {
		case c == '"' || c == '\'' || c == '`':
			k, err := promqlSkipString(expr, j)
			if err != nil {
				return 0, err
			}
			j = k
		case c == closer:
			return j + 1, nil
		default:
			j++
		}
	}
	return 0, fmt.Errorf("no %q closing %q at %d: %s", closer, expr[i], i, expr)
}

// TestDashboardPromQLTokenizer pins what promqlSelectors counts as a
// metric name.
func TestDashboardPromQLTokenizer(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`etcd_server_has_leader{job="$cluster"}`, []string{"etcd_server_has_leader"}},
		{`process_resident_memory_bytes`, []string{"process_resident_memory_bytes"}},
		{`histogram_quantile(0.99, sum by (instance, le) (rate(x_bucket{a="}", b=~"$i"}[$__rate_interval])))`, []string{"x_bucket"}},
		{`sum without(grpc_type) (rate(a_total{c=~"A|B"}[5m])) / sum(rate(b_total[5m])) by (job) > bool 1`, []string{"a_total", "b_total"}},
		{`count(up == 0) or vector(0)`, []string{"up"}},
		{`a - on(instance) group_left(To) b offset 5m and c`, []string{"a", "b", "c"}},
		{`rate(${datasource_x}[1m]) * 1e3 + inf`, nil},
	} {
		sels, err := promqlSelectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			got = append(got, s.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: %q, want %q", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`a{b="c}`, `rate(a[5m)`, `{__name__="a"}`} {
		if _, err := promqlSelectors(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// exposedSampleNames scrapes m's /metrics and returns the names of the
// samples it serves (a histogram's are name_bucket, name_sum and
// name_count).
func exposedSampleNames(ctx context.Context, m *Member) (map[string]bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL()+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s /metrics: status %d", m.Name, resp.StatusCode)
	}
	names := map[string]bool{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names, sc.Err()
}

// TestDashboardMetricsExist: every metric the Grafana dashboard
// (deploy/grafana/strata.json) queries is served by a real cluster. Three
// writers and a reader run with --metrics=extensive (which adds
// grpc_server_handling_seconds) and compressed peer links; the test writes
// through every member, keeps a watch and a lease keep-alive stream open
// on a writer and on the reader, then scrapes /metrics of every member
// until each name the dashboard uses is served by at least one of them
// (some exist only on a kind of member: reader lag on readers, WAL fsync
// on writers), or until dashboardScrapeDeadline. It also checks the
// dashboard's shape (checkDashboard).
func TestDashboardMetricsExist(t *testing.T) {
	d := readDashboard(t)
	want := checkDashboard(t, d)
	if len(want) == 0 {
		t.Fatal("the dashboard uses no metric")
	}
	t.Logf("the dashboard uses %d metric names: %s", len(want), strings.Join(want, " "))

	extra := []string{"--metrics=extensive", "--peer-compression=zstd"}
	b, ms, clients := startStrataCluster(t, "dash", extra...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	reader, _ := joinLearner(ctx, t, b, ms, clients[0], "dashreader", append(slices.Clone(fastRaft), append([]string{"--role=reader"}, extra...)...)...)
	members := append(slices.Clone(ms), reader)
	all := append(slices.Clone(clients), newEndpointClient(t, reader))
	rclient := all[len(all)-1]

	// Streams that stay open while the members are scraped.
	sctx, scancel := context.WithCancel(ctx)
	var streams sync.WaitGroup
	defer func() {
		scancel()
		streams.Wait()
	}()
	for _, c := range []*clientv3.Client{clients[1], rclient} {
		wch := c.Watch(sctx, "dash/", clientv3.WithPrefix())
		streams.Go(func() {
			for range wch {
			}
		})
		lease, err := c.Grant(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		ka, err := c.KeepAlive(sctx, lease.ID)
		if err != nil {
			t.Fatal(err)
		}
		streams.Go(func() {
			for range ka {
			}
		})
		if _, err := c.Put(ctx, fmt.Sprintf("dash/lease/%x", lease.ID), "v", clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
	}

	// Concurrent writes through every member (the reader forwards), so
	// that the leader batches several requests into one entry.
	var writers sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		writers.Go(func() {
			c := all[w%len(all)]
			for i := range 25 {
				if _, err := c.Put(ctx, fmt.Sprintf("dash/%d/%03d", w, i), strings.Repeat("x", 100)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	writers.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i, c := range all {
		if _, err := c.Get(ctx, "dash/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
			t.Fatalf("read on member %d: %v", i, err)
		}
	}

	// Scrape until every name is served or the deadline passes. A put per
	// round keeps entries flowing for metrics observed per entry.
	deadline := time.Now().Add(dashboardScrapeDeadline)
	var missing []string
	var scrapeErrs []error
	for round := 0; ; round++ {
		exposed := map[string]bool{}
		scrapeErrs = scrapeErrs[:0]
		for _, m := range members {
			names, err := exposedSampleNames(ctx, m)
			if err != nil {
				scrapeErrs = append(scrapeErrs, err)
				continue
			}
			for n := range names {
				exposed[n] = true
			}
		}
		missing = missing[:0]
		for _, n := range want {
			if !exposed[n] {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		if _, err := all[round%len(all)].Put(ctx, "dash/tick", fmt.Sprint(round)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond) // paces the polling; the condition is re-read from the members
	}
	if err := errors.Join(scrapeErrs...); err != nil {
		t.Errorf("scraping /metrics: %v", err)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%d of the %d metric names the dashboard uses are served by no member (3 writers, 1 reader) after %v:\n  %s",
			len(missing), len(want), dashboardScrapeDeadline, strings.Join(missing, "\n  "))
	}
}
