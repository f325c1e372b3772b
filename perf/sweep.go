package perf

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// SweepParams are the parameters Sweep can vary.
var SweepParams = []string{"clients", "conns", "rate", "val-size", "key-space", "watchers"}

// setParam sets the parameter named as its flag to v in c.
func setParam(c *Config, name, v string) error {
	num := func() (int, error) {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("--values: %q is not a count for %s", v, name)
		}
		return n, nil
	}
	var err error
	switch name {
	case "clients":
		c.Clients, err = num()
	case "conns":
		c.Conns, err = num()
	case "val-size":
		c.ValSize, err = num()
	case "key-space":
		c.KeySpace, err = num()
	case "watchers":
		c.Watchers, err = num()
	case "rate":
		c.Rate, err = strconv.ParseFloat(v, 64)
		if err != nil || c.Rate < 0 {
			err = fmt.Errorf("--values: %q is not a rate", v)
		}
	default:
		err = fmt.Errorf("--param %q: want one of %v", name, SweepParams)
	}
	return err
}

// SweepPoint is one value of a sweep and its result.
type SweepPoint struct {
	Value  string
	Result *Result
	// Power is throughput over p99 latency (ops/s per ms): Kleinrock's
	// power, whose maximum is the knee of the throughput/latency curve —
	// past it, more load buys less throughput than it costs in latency.
	Power float64
}

// Sweep runs cfg once per value of param, each under its own prefix, and
// returns the points with the index of the knee (the point of greatest
// power).
func Sweep(ctx context.Context, cfg Config, param string, values []string, progress io.Writer) ([]SweepPoint, int, error) {
	if len(values) == 0 {
		return nil, 0, fmt.Errorf("--values: name at least one value of %s", param)
	}
	var pts []SweepPoint
	for _, v := range values {
		run := cfg
		if err := setParam(&run, param, v); err != nil {
			return nil, 0, err
		}
		if err := run.Validate(); err != nil {
			return nil, 0, fmt.Errorf("%s=%s: %w", param, v, err)
		}
	}
	knee := 0
	for i, v := range values {
		run := cfg
		_ = setParam(&run, param, v)
		run.Prefix = fmt.Sprintf("%s/sweep-%s-%s", cfg.Prefix, param, v)
		res, err := Run(ctx, run, progress)
		if err != nil {
			return nil, 0, fmt.Errorf("%s=%s: %w", param, v, err)
		}
		res.Label = fmt.Sprintf("%s=%s", param, v)
		p := SweepPoint{Value: v, Result: res}
		if res.LatencyMs.P99 > 0 {
			p.Power = res.OpsPerSec / res.LatencyMs.P99
		}
		pts = append(pts, p)
		if p.Power > pts[knee].Power {
			knee = i
		}
	}
	return pts, knee, nil
}

// PrintSweep writes a sweep as a table, marking the knee.
func PrintSweep(w io.Writer, param string, pts []SweepPoint, knee int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tops/s\tp50 ms\tp99 ms\tserver CPU ms/1000\tpower\t\t\n", param)
	for i, p := range pts {
		mark := ""
		if i == knee {
			mark = "<- knee"
		}
		r := p.Result
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.3f\t%.1f\t%.0f\t%s\t\n", p.Value, r.OpsPerSec, r.LatencyMs.P50, r.LatencyMs.P99, r.ServerCPUMsPer1000, p.Power, mark)
	}
	tw.Flush()
}
