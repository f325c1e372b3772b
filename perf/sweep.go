package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
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

// A Launcher starts a cluster whose servers get flags beyond their
// addresses, and returns its client endpoints and a function that stops it
// and removes its data.
type Launcher func(ctx context.Context, flags []string) (endpoints []string, stop func(), err error)

// SweepOptions are Sweep's optional parts.
type SweepOptions struct {
	// Launch, when set, starts a fresh cluster for each point, whose
	// endpoints replace the config's. A parameter that is not one of
	// SweepParams is then a server flag, which each point's servers get
	// as --param=value: batching knobs such as --max-inflight-batches
	// (docs/tuning.md).
	Launch Launcher
	// ServerFlags go to every launched server.
	ServerFlags []string
	// CheckServerFlag, when set, checks a server flag before any point
	// runs (strata checks its own flags; another binary's are checked
	// when it starts).
	CheckServerFlag func(flag string) error
	// Progress, if not nil, receives each run's progress lines.
	Progress io.Writer
}

// Sweep runs cfg once per value of param, each under its own prefix, and
// returns the points with the index of the knee (the point of greatest
// power).
func Sweep(ctx context.Context, cfg Config, param string, values []string, o SweepOptions) ([]SweepPoint, int, error) {
	if len(values) == 0 {
		return nil, 0, fmt.Errorf("--values: name at least one value of %s", param)
	}
	server := !slices.Contains(SweepParams, param)
	if server && o.Launch == nil {
		return nil, 0, fmt.Errorf("--param %q: want one of %v, or a server flag with --launch (the sweep then starts a cluster for each value)", param, SweepParams)
	}
	if o.Launch != nil {
		if len(cfg.Endpoints) > 0 {
			return nil, 0, errors.New("--endpoints: a sweep with --launch drives the clusters it starts; leave --endpoints out")
		}
		cfg.Endpoints = []string{"launched"} // for Validate; each point's replace it
	}
	flagsAt := func(v string) []string {
		flags := slices.Clone(o.ServerFlags)
		if server {
			flags = append(flags, "--"+param+"="+v)
		}
		return flags
	}
	for _, v := range values {
		run := cfg
		if server {
			if o.CheckServerFlag != nil {
				if err := o.CheckServerFlag("--" + param + "=" + v); err != nil {
					return nil, 0, fmt.Errorf("--values: %w", err)
				}
			}
		} else if err := setParam(&run, param, v); err != nil {
			return nil, 0, err
		}
		if err := run.Validate(); err != nil {
			return nil, 0, fmt.Errorf("%s=%s: %w", param, v, err)
		}
	}
	knee := 0
	var pts []SweepPoint
	for i, v := range values {
		if err := ctx.Err(); err != nil {
			return nil, 0, err // interrupted: no further point starts
		}
		run := cfg
		if !server {
			_ = setParam(&run, param, v)
		}
		run.Prefix = fmt.Sprintf("%s/sweep-%s-%s", cfg.Prefix, param, v)
		var flags []string
		if o.Launch != nil {
			flags = flagsAt(v)
		}
		res, err := runPoint(ctx, run, o, flags)
		if err != nil {
			return nil, 0, fmt.Errorf("%s=%s: %w", param, v, err)
		}
		pts = append(pts, newSweepPoint(param, v, res, flags))
		if pts[i].Power > pts[knee].Power {
			knee = i
		}
	}
	return pts, knee, nil
}

// LaunchError is a launcher's failure to start a point's cluster.
type LaunchError struct{ Err error }

func (e *LaunchError) Error() string { return "starting the cluster: " + e.Err.Error() }
func (e *LaunchError) Unwrap() error { return e.Err }

// runPoint runs one point, on a cluster of its own when o launches one
// (stopped however the run ends).
func runPoint(ctx context.Context, run Config, o SweepOptions, flags []string) (*Result, error) {
	if o.Launch != nil {
		eps, stop, err := o.Launch(ctx, flags)
		if err != nil {
			return nil, &LaunchError{err}
		}
		defer stop()
		run.Endpoints = eps
	}
	res, err := Run(ctx, run, o.Progress)
	if err == nil && ctx.Err() != nil {
		return nil, ctx.Err() // an interrupted run's partial result is not a point
	}
	return res, err
}

func newSweepPoint(param, v string, res *Result, flags []string) SweepPoint {
	res.Label = fmt.Sprintf("%s=%s", param, v)
	res.ServerFlags = flags
	p := SweepPoint{Value: v, Result: res}
	if res.LatencyMs.P99 > 0 {
		p.Power = res.OpsPerSec / res.LatencyMs.P99
	}
	return p
}

// PrintSweep writes a sweep as a table, marking the knee.
func PrintSweep(w io.Writer, param string, pts []SweepPoint, knee int) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s\tops/s\tp50 ms\tp99 ms\tserver CPU ms/1000\tops/entry\tpower\t\t\n", param)
	for i, p := range pts {
		mark := ""
		if i == knee {
			mark = "<- knee"
		}
		r := p.Result
		perEntry := "-"
		if r.RaftEntries > 0 {
			perEntry = fmt.Sprintf("%.1f", float64(r.Ops)/float64(r.RaftEntries))
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.3f\t%.3f\t%.1f\t%s\t%.0f\t%s\t\n", p.Value, r.OpsPerSec, r.LatencyMs.P50, r.LatencyMs.P99, r.ServerCPUMsPer1000, perEntry, p.Power, mark)
	}
	tw.Flush()
}
