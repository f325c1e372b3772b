package perf

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteHTML renders results as one self-contained HTML page: a summary
// table, side-by-side bars of throughput and p99 latency, each result's
// latency percentile spectrum and its throughput over time. Charts are
// inline SVG drawn here; the page loads nothing and runs no script.
func WriteHTML(w io.Writer, rs []*Result) error {
	if len(rs) == 0 {
		return fmt.Errorf("no results to report")
	}
	data := struct {
		Results                  []*Result
		OpsBars, P99Bars         template.HTML
		Spectrum, ThroughputPlot template.HTML
		Colors                   []string
	}{
		Results:        rs,
		OpsBars:        barChart(rs, "operations per second", func(r *Result) float64 { return r.OpsPerSec }, "%.0f"),
		P99Bars:        barChart(rs, "p99 latency (ms)", func(r *Result) float64 { return r.LatencyMs.P99 }, "%.2f"),
		Spectrum:       spectrumChart(rs),
		ThroughputPlot: throughputChart(rs),
		Colors:         palette,
	}
	return reportTmpl.Execute(w, data)
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

func color(i int) string { return palette[i%len(palette)] }

const (
	chartW, chartH = 600, 300
	padL, padR     = 70, 40
	padT, padB     = 30, 50
)

// svgOpen starts a chart of the standard size with a title.
func svgOpen(b *strings.Builder, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s">`,
		chartW, chartH, chartW, chartH, template.HTMLEscapeString(title))
	fmt.Fprintf(b, `<text x="%d" y="18" class="title">%s</text>`, padL, template.HTMLEscapeString(title))
}

func barChart(rs []*Result, title string, val func(*Result) float64, format string) template.HTML {
	var b strings.Builder
	svgOpen(&b, title)
	top := 0.0
	for _, r := range rs {
		top = math.Max(top, val(r))
	}
	top = niceCeil(top)
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	axes(&b, top, format, func(v float64) float64 { return float64(padT) + plotH*(1-v/top) })
	slot := plotW / float64(len(rs))
	bw := math.Min(slot*0.7, 80)
	for i, r := range rs {
		v := val(r)
		h := plotH * v / top
		x := float64(padL) + slot*float64(i) + (slot-bw)/2
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %s</title></rect>`,
			x, float64(padT)+plotH-h, bw, h, color(i), template.HTMLEscapeString(r.Label), fmt.Sprintf(format, v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="val" text-anchor="middle">%s</text>`, x+bw/2, float64(padT)+plotH-h-4, fmt.Sprintf(format, v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="lbl" text-anchor="middle">%s</text>`, x+bw/2, chartH-padB+18, template.HTMLEscapeString(shorten(r.Label, 24)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// axes draws the y axis with five ticks up to top and the x axis line.
func axes(b *strings.Builder, top float64, format string, y func(float64) float64) {
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" class="grid"/>`, padL, chartW-padR, y(v), y(v))
		fmt.Fprintf(b, `<text x="%d" y="%.1f" class="tick" text-anchor="end">%s</text>`, padL-6, y(v)+4, fmt.Sprintf(format, v))
	}
}

// spectrumChart plots latency against percentile, the percentile axis
// logarithmic in 1/(1-p) (50, 90, 99, 99.9, 99.99 equally spaced), as
// HdrHistogram's plots do.
func spectrumChart(rs []*Result) template.HTML {
	var b strings.Builder
	svgOpen(&b, "latency by percentile (ms)")
	top := 0.0
	for _, r := range rs {
		for _, p := range r.Distribution {
			top = math.Max(top, p.Ms)
		}
	}
	top = niceCeil(top)
	const maxNines = 5.0 // 99.999
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	x := func(p float64) float64 {
		n := 0.0
		if p < 100 {
			n = math.Min(-math.Log10(1-p/100), maxNines)
		} else {
			n = maxNines
		}
		return float64(padL) + plotW*n/maxNines
	}
	y := func(v float64) float64 { return float64(padT) + plotH*(1-v/top) }
	axes(&b, top, "%.2f", y)
	for _, p := range []float64{0, 90, 99, 99.9, 99.99, 99.999} {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tick" text-anchor="middle">%g%%</text>`, x(p), chartH-padB+18, p)
	}
	for i, r := range rs {
		var pts []string
		for _, p := range r.Distribution {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(p.Percentile), y(p.Ms)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></polyline>`,
			strings.Join(pts, " "), color(i), template.HTMLEscapeString(r.Label))
	}
	legend(&b, rs)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// throughputChart plots operations completed in each second of each run.
func throughputChart(rs []*Result) template.HTML {
	var b strings.Builder
	svgOpen(&b, "operations per second over the run")
	top, secs := 0.0, 1
	for _, r := range rs {
		top = math.Max(top, r.OpsPerSec*1.2)
		for _, n := range r.Throughput {
			top = math.Max(top, float64(n))
		}
		secs = max(secs, len(r.Throughput))
	}
	top = niceCeil(top)
	plotW, plotH := float64(chartW-padL-padR), float64(chartH-padT-padB)
	x := func(s float64) float64 { return float64(padL) + plotW*s/float64(secs) }
	y := func(v float64) float64 { return float64(padT) + plotH*(1-v/top) }
	axes(&b, top, "%.0f", y)
	ticks := []int{0, secs / 4, secs / 2, 3 * secs / 4, secs}
	for i, s := range ticks {
		if i > 0 && s == ticks[i-1] {
			continue
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="tick" text-anchor="middle">%ds</text>`, x(float64(s)), chartH-padB+18, s)
	}
	for i, r := range rs {
		var pts []string
		for s, n := range r.Throughput {
			rate := float64(n)
			if frac := r.DurationSec - float64(s); s == len(r.Throughput)-1 && frac > 0.05 && frac < 1 {
				rate /= frac // the run's last, partial second, as a rate
			}
			px, py := x(float64(s)+0.5), y(rate)
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px, py))
			// A point as well as the line: a run of one second is a
			// single point.
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %ds, %d ops</title></circle>`,
				px, py, color(i), template.HTMLEscapeString(r.Label), s, n)
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"><title>%s</title></polyline>`,
			strings.Join(pts, " "), color(i), template.HTMLEscapeString(r.Label))
	}
	legend(&b, rs)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func legend(b *strings.Builder, rs []*Result) {
	for i, r := range rs {
		y := padT + 6 + 16*i
		fmt.Fprintf(b, `<rect x="%d" y="%d" width="12" height="12" fill="%s"/><text x="%d" y="%d" class="lbl">%s</text>`,
			padL+12, y, color(i), padL+30, y+10, template.HTMLEscapeString(shorten(r.Label, 40)))
	}
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten (1 for v <= 0).
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"color": color,
	"f":     func(format string, v float64) string { return fmt.Sprintf(format, v) },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>strata perf report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
table { border-collapse: collapse; margin-bottom: 24px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.swatch { display: inline-block; width: 10px; height: 10px; margin-right: 6px; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
svg { background: #fff; border: 1px solid #eee; }
svg .title { font-size: 14px; font-weight: 600; }
svg .tick, svg .lbl, svg .val { font-size: 11px; fill: #444; }
svg .grid { stroke: #eee; }
.params { font-family: monospace; font-size: 12px; color: #555; }
</style>
</head>
<body>
<h1>strata perf report</h1>
<table>
<tr><th>run</th><th>workload</th><th>ops</th><th>ops/s</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>errors</th><th>harness µs/op</th><th>server ms/1000 ops</th></tr>
{{range $i, $r := .Results}}<tr><td><span class="swatch" style="background:{{color $i}}"></span>{{$r.Label}}</td><td>{{$r.Params.Workload}}</td><td>{{$r.Ops}}</td><td>{{f "%.0f" $r.OpsPerSec}}</td><td>{{f "%.3f" $r.LatencyMs.P50}}</td><td>{{f "%.3f" $r.LatencyMs.P90}}</td><td>{{f "%.3f" $r.LatencyMs.P99}}</td><td>{{f "%.3f" $r.LatencyMs.P999}}</td><td>{{f "%.3f" $r.LatencyMs.Max}}</td><td>{{$r.Errors}}</td><td>{{f "%.1f" $r.HarnessCPUUsPerOp}}</td><td>{{if $r.Servers}}{{f "%.1f" $r.ServerCPUMsPer1000}}{{else}}—{{end}}</td></tr>
{{end}}</table>
<div class="charts">
{{.OpsBars}}
{{.P99Bars}}
{{.Spectrum}}
{{.ThroughputPlot}}
</div>
<h2>Parameters</h2>
{{range .Results}}<p class="params"><b>{{.Label}}</b>: {{.Params.Workload}} on {{.Driven}} — clients {{.Params.Clients}}, conns {{.Params.Conns}}, rate {{.Params.Rate}}, key size {{.Params.KeySize}}, key space {{.Params.KeySpace}} ({{.Params.KeyDist}}), value size {{.Params.ValSize}}, consistency {{.Params.Consistency}}; started {{.Start.Format "2006-01-02 15:04:05 MST"}}, {{f "%.2f" .DurationSec}} s</p>
{{end}}
</body>
</html>
`))
