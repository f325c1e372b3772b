package perf

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
)

// SchemaVersion is the version of Result's JSON form (docs/perf.md).
const SchemaVersion = 1

// Result is one run's outcome; its JSON form is the --out file.
type Result struct {
	Schema int `json:"schema"`
	// Label names the run in reports (--label; default the workload
	// and target).
	Label  string `json:"label"`
	Params Config `json:"params"`
	// Driven are the endpoints the run drove: Params.Endpoints filtered
	// by Params.Target.
	Driven []string  `json:"driven"`
	Start  time.Time `json:"start"`
	// DurationSec is the measured phase, from the first operation's
	// start to the last one's end.
	DurationSec float64 `json:"duration_sec"`
	Ops         int64   `json:"ops"`
	OpsPerSec   float64 `json:"ops_per_sec"`
	// Errors counts failed operations; ErrorsByCode by gRPC code.
	Errors       int64            `json:"errors"`
	ErrorsByCode map[string]int64 `json:"errors_by_code"`
	// ErrorSamples holds one error message of each code.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// LatencyMs summarises the headline latency: the operations' own
	// (from their scheduled start under --rate), or for the watch
	// workloads the put-to-event latency.
	LatencyMs Latency `json:"latency_ms"`
	// OpLatencyMs is the operations' latency when the headline is
	// another kind's.
	OpLatencyMs *Latency `json:"op_latency_ms,omitempty"`
	// ByKind has the latency of each kind of RPC the workload made.
	ByKind map[string]KindResult `json:"by_kind"`
	// Distribution is the headline latency's percentile spectrum.
	Distribution []Percentile `json:"distribution"`
	// Throughput is operations completed in each second of the run.
	Throughput []int64 `json:"throughput_per_sec"`
	// HarnessCPUUsPerOp is this process's CPU per operation.
	HarnessCPUUsPerOp float64 `json:"harness_cpu_us_per_op"`
	// Servers are the local server processes' figures; ServerCPUMsPer1000
	// is their CPU per 1,000 operations, summed over them.
	Servers            []ServerStats `json:"servers,omitempty"`
	ServerCPUMsPer1000 float64       `json:"server_cpu_ms_per_1000_ops,omitempty"`
	// RaftEntries is how many raft entries the cluster committed during
	// the measured phase (the highest RaftIndex the driven members'
	// Status reports, after less before; 0 when unknown): against Ops,
	// how many requests share an entry.
	RaftEntries int64 `json:"raft_entries,omitempty"`
	// ServerFlags are the flags of the servers a sweep started for this
	// run (strata perf sweep --launch), beyond their addresses.
	ServerFlags []string `json:"server_flags,omitempty"`
	// Extra holds workload counters (txn_conflicts, ...).
	Extra map[string]float64 `json:"extra,omitempty"`
}

// Latency is a latency summary in milliseconds.
type Latency struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean"`
	P50   float64 `json:"p50"`
	P90   float64 `json:"p90"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
}

// KindResult is one RPC kind's count, errors and latency.
type KindResult struct {
	Errors    int64   `json:"errors"`
	LatencyMs Latency `json:"latency_ms"`
}

// Percentile is a point of a percentile spectrum.
type Percentile struct {
	Percentile float64 `json:"percentile"`
	Ms         float64 `json:"ms"`
}

func us2ms(v int64) float64 { return float64(v) / 1000 }

func summarize(h *hdr.Histogram) Latency {
	return Latency{Count: h.TotalCount(), Mean: h.Mean() / 1000,
		P50: us2ms(h.ValueAtQuantile(50)), P90: us2ms(h.ValueAtQuantile(90)), P99: us2ms(h.ValueAtQuantile(99)),
		P999: us2ms(h.ValueAtQuantile(99.9)), Max: us2ms(h.Max())}
}

// spectrum samples the percentile spectrum at 0, 50, 75, 87.5, ... (halving
// the distance to 100) up to the largest recorded value.
func spectrum(h *hdr.Histogram) []Percentile {
	var out []Percentile
	for _, p := range []float64{0, 10, 20, 30, 40, 50, 60, 70, 75, 80, 85, 90, 92.5, 95, 96.25, 97.5, 98.125, 98.75, 99, 99.375, 99.5, 99.6875, 99.75, 99.84375, 99.9, 99.921875, 99.95, 99.97, 99.99, 99.999, 100} {
		out = append(out, Percentile{Percentile: p, Ms: us2ms(h.ValueAtQuantile(p))})
	}
	return out
}

func newResult(cfg Config, wl *workload, driven []string, r *recorder, start, end time.Time, cpu time.Duration, srv []ServerStats) *Result {
	ops := r.ops.TotalCount()
	d := end.Sub(start).Seconds()
	res := &Result{
		Schema: SchemaVersion, Label: cfg.Workload + "@" + cfg.Target, Params: cfg, Driven: driven, Start: start,
		DurationSec: d, Ops: ops, OpsPerSec: float64(ops) / d,
		ErrorsByCode: r.errs, ErrorSamples: r.samples, ByKind: map[string]KindResult{},
		Throughput: r.perSec, HarnessCPUUsPerOp: float64(cpu.Microseconds()) / float64(ops),
		Servers: srv, Extra: r.extra,
	}
	for _, n := range r.errs {
		res.Errors += n
	}
	for name, k := range r.kinds {
		res.ByKind[name] = KindResult{Errors: k.errs, LatencyMs: summarize(k.hist)}
	}
	head := r.ops
	if k := r.kinds[wl.headline]; wl.headline != "" && k != nil {
		head = k.hist
		l := summarize(r.ops)
		res.OpLatencyMs = &l
	}
	res.LatencyMs = summarize(head)
	res.Distribution = spectrum(head)
	var scpu float64
	for _, s := range srv {
		scpu += s.CPUSeconds
	}
	if len(srv) > 0 {
		res.ServerCPUMsPer1000 = scpu * 1e6 / float64(ops)
	}
	return res
}

// WriteJSON writes results as a JSON array (a single result too), the
// --out format.
func WriteJSON(path string, rs []*Result) error {
	b, err := json.MarshalIndent(rs, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadJSON reads a --out file.
func ReadJSON(path string) ([]*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var rs []*Result
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, r := range rs {
		if r.Schema != SchemaVersion {
			return nil, fmt.Errorf("%s: schema %d, this strata reads %d", path, r.Schema, SchemaVersion)
		}
	}
	return rs, nil
}

// PrintSummary writes a result as a terminal table.
func PrintSummary(w io.Writer, r *Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "%s: %d ops in %.2fs, %.0f ops/s, %d errors", r.Label, r.Ops, r.DurationSec, r.OpsPerSec, r.Errors)
	fmt.Fprintln(tw)
	for _, c := range slices.Sorted(maps.Keys(r.ErrorsByCode)) {
		fmt.Fprintf(tw, "  %d × %s: %s\n", r.ErrorsByCode[c], c, r.ErrorSamples[c])
	}
	fmt.Fprintln(tw, "latency (ms)\tcount\tmean\tp50\tp90\tp99\tp99.9\tmax")
	row := func(name string, l Latency) {
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\t%.3f\n", name, l.Count, l.Mean, l.P50, l.P90, l.P99, l.P999, l.Max)
	}
	head := "operation"
	if r.OpLatencyMs != nil {
		head = "headline"
	}
	row(head, r.LatencyMs)
	if r.OpLatencyMs != nil {
		row("operation", *r.OpLatencyMs)
	}
	for _, k := range slices.Sorted(maps.Keys(r.ByKind)) {
		row("  "+k, r.ByKind[k].LatencyMs)
	}
	tw.Flush()
	fmt.Fprintf(w, "harness CPU: %.1f µs/op", r.HarnessCPUUsPerOp)
	if len(r.Servers) > 0 {
		var parts []string
		for _, s := range r.Servers {
			parts = append(parts, fmt.Sprintf("%s pid %d %.2fs, rss %d MiB", s.Endpoint, s.PID, s.CPUSeconds, s.RSSMaxBytes>>20))
		}
		fmt.Fprintf(w, "; server CPU: %.1f ms per 1000 ops (%s)", r.ServerCPUMsPer1000, strings.Join(parts, "; "))
	}
	fmt.Fprintln(w)
	if r.RaftEntries > 0 {
		fmt.Fprintf(w, "raft entries: %d, %.1f ops per entry\n", r.RaftEntries, float64(r.Ops)/float64(r.RaftEntries))
	}
	if len(r.Extra) > 0 {
		for _, k := range slices.Sorted(maps.Keys(r.Extra)) {
			fmt.Fprintf(w, "%s: %.0f\n", k, r.Extra[k])
		}
	}
}
