package perf

import (
	"context"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// Side is one target of a comparison.
type Side struct {
	Label     string
	Endpoints []string
}

// Comparison is the outcome of Compare: every round's result, and for each
// side the medians over its rounds.
type Comparison struct {
	Sides   [2]Side
	Rounds  [][2]*Result
	Medians [2]Summary
}

// Summary is the median of a side's rounds.
type Summary struct {
	OpsPerSec, P50Ms, P99Ms, ServerCPUMsPer1000, HarnessCPUUsPerOp float64
}

// Compare runs cfg against both sides, rounds times, alternating which goes
// first (A B, B A, A B, ...) so that a machine's drift over the comparison
// falls on both alike. Each run writes under its own prefix (cfg.Prefix +
// "/<label>/r<round>").
func Compare(ctx context.Context, cfg Config, sides [2]Side, rounds int, progress io.Writer) (*Comparison, error) {
	if rounds < 1 {
		return nil, fmt.Errorf("--rounds %d: want at least 1", rounds)
	}
	if sides[0].Label == sides[1].Label {
		return nil, fmt.Errorf("the two sides need different labels (both %q)", sides[0].Label)
	}
	c := &Comparison{Sides: sides}
	base := cfg.Prefix
	for r := range rounds {
		var pair [2]*Result
		order := []int{0, 1}
		if r%2 == 1 {
			order = []int{1, 0}
		}
		for _, i := range order {
			run := cfg
			run.Endpoints = sides[i].Endpoints
			run.Prefix = fmt.Sprintf("%s/%s/r%d", base, sides[i].Label, r)
			res, err := Run(ctx, run, progress)
			if err != nil {
				return nil, fmt.Errorf("%s, round %d: %w", sides[i].Label, r+1, err)
			}
			res.Label = fmt.Sprintf("%s r%d", sides[i].Label, r+1)
			pair[i] = res
		}
		c.Rounds = append(c.Rounds, pair)
	}
	for i := range 2 {
		c.Medians[i] = Summary{
			OpsPerSec:          c.median(i, func(r *Result) float64 { return r.OpsPerSec }),
			P50Ms:              c.median(i, func(r *Result) float64 { return r.LatencyMs.P50 }),
			P99Ms:              c.median(i, func(r *Result) float64 { return r.LatencyMs.P99 }),
			ServerCPUMsPer1000: c.median(i, func(r *Result) float64 { return r.ServerCPUMsPer1000 }),
			HarnessCPUUsPerOp:  c.median(i, func(r *Result) float64 { return r.HarnessCPUUsPerOp }),
		}
	}
	return c, nil
}

func (c *Comparison) median(side int, f func(*Result) float64) float64 {
	var v []float64
	for _, p := range c.Rounds {
		v = append(v, f(p[side]))
	}
	return Median(v)
}

// Median is the median of v (the mean of the middle two for an even count;
// 0 for none).
func Median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Results lists every round's results, side A's first in each round.
func (c *Comparison) Results() []*Result {
	var out []*Result
	for _, p := range c.Rounds {
		out = append(out, p[0], p[1])
	}
	return out
}

// Print writes the medians of both sides and their ratios (B / A).
func (c *Comparison) Print(w io.Writer) {
	a, b := c.Medians[0], c.Medians[1]
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "median of %d rounds\t%s\t%s\t%s / %s\t\n", len(c.Rounds), c.Sides[0].Label, c.Sides[1].Label, c.Sides[1].Label, c.Sides[0].Label)
	row := func(name, format string, x, y float64) {
		ratio := "—"
		if x != 0 {
			ratio = fmt.Sprintf("%.2f", y/x)
		}
		fmt.Fprintf(tw, "%s\t"+format+"\t"+format+"\t%s\t\n", name, x, y, ratio)
	}
	row("ops/s", "%.0f", a.OpsPerSec, b.OpsPerSec)
	row("p50 ms", "%.3f", a.P50Ms, b.P50Ms)
	row("p99 ms", "%.3f", a.P99Ms, b.P99Ms)
	if a.ServerCPUMsPer1000 > 0 || b.ServerCPUMsPer1000 > 0 {
		row("server CPU ms/1000 ops", "%.1f", a.ServerCPUMsPer1000, b.ServerCPUMsPer1000)
	}
	row("harness CPU µs/op", "%.1f", a.HarnessCPUUsPerOp, b.HarnessCPUUsPerOp)
	tw.Flush()
}
