package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"

	"github.com/stratakv/strata/perf"
)

// perfMain is `strata perf`: the workload harness (package perf).
func perfMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, perfUsage)
		return 2
	}
	switch args[0] {
	case "run":
		return perfRun(args[1:], stdout, stderr)
	case "report":
		return perfReport(args[1:], stdout, stderr)
	case "compare":
		return perfCompare(args[1:], stdout, stderr)
	case "sweep":
		return perfSweep(args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, perfUsage)
		return 0
	}
	fmt.Fprintf(stderr, "strata perf: unknown command %q\n%s", args[0], perfUsage)
	return 2
}

const perfUsage = `usage: strata perf <command> [flags]

commands:
  run      drive endpoints with a workload and report latency, throughput and CPU
  report   print result files (--out of run) as tables, or render them as HTML
  compare  run one workload against two targets in alternating rounds; print medians and ratios
  sweep    run one workload for each value of a parameter; find the knee of throughput against latency

Run 'strata perf <command> --help' for a command's flags.
`

// runFlags registers the flags of a run on fs, etcdctl's and etcd's
// benchmark tool's names where they have one.
func runFlags(fs *flag.FlagSet, c *perf.Config) (endpoints *string) {
	endpoints = fs.String("endpoints", "127.0.0.1:2379", "comma-separated gRPC endpoints")
	fs.StringVar(&c.Target, "target", "all", "which of the endpoints to drive, by role: all, leader, followers (voters not leading) or readers (learners)")
	fs.StringVar(&c.Workload, "workload", "put", "workload: "+strings.Join(perf.WorkloadNames(), ", "))
	fs.IntVar(&c.Clients, "clients", 1, "concurrent clients")
	fs.IntVar(&c.Conns, "conns", 1, "gRPC connections the clients share, spread over the endpoints")
	fs.Float64Var(&c.Rate, "rate", 0, "offered operations per second over all clients; 0 runs closed-loop (latency then counts from each operation's scheduled start)")
	fs.Int64Var(&c.Total, "total", 0, "operations to run (with --duration, the first reached ends the run)")
	fs.DurationVar(&c.Duration, "duration", 0, "length of the measured phase")
	fs.IntVar(&c.KeySize, "key-size", 8, "key length (keys are numbers zero-padded to it, after --prefix)")
	fs.IntVar(&c.KeySpace, "key-space", 1, "distinct keys")
	fs.StringVar(&c.KeyDist, "key-dist", "uniform", "how keys are drawn: sequential, uniform or zipf")
	fs.Float64Var(&c.ZipfS, "zipf-s", 1.1, "skew of --key-dist=zipf (more than 1)")
	fs.IntVar(&c.ValSize, "val-size", 8, "value size of writes, bytes")
	fs.StringVar(&c.Consistency, "consistency", "l", "read consistency: l (linearizable) or s (serializable)")
	fs.IntVar(&c.Watchers, "watchers", 10, "watchers of the watch workloads")
	fs.IntVar(&c.WatchStreams, "watch-streams", 1, "gRPC watch streams the watchers share")
	fs.IntVar(&c.KeepAlivesPerGrant, "keepalives-per-grant", 10, "keep-alives the lease workload sends per granted lease")
	fs.Int64Var(&c.LeaseTTL, "lease-ttl", 60, "TTL of granted leases, seconds")
	fs.IntVar(&c.PageSize, "page-size", 500, "limit of each page of the kubernetes workload's lists")
	fs.DurationVar(&c.CompactEvery, "compact-every", 0, "kubernetes workload: compact this often (0: never)")
	fs.StringVar(&c.Prefix, "prefix", "", "prefix of every key the run writes")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of generated keys and values")
	fs.StringVar(&c.CACert, "cacert", "", "verify servers with this CA bundle")
	fs.StringVar(&c.Cert, "cert", "", "client certificate (TLS)")
	fs.StringVar(&c.Key, "key", "", "client key (TLS)")
	fs.BoolVar(&c.InsecureSkipVerify, "insecure-skip-tls-verify", false, "accept any server certificate")
	fs.StringVar(&c.User, "user", "", "username[:password] for authentication")
	fs.StringVar(&c.Password, "password", "", "password, if not in --user")
	fs.DurationVar(&c.DialTimeout, "dial-timeout", perf.DefaultDialTimeout, "timeout of each connection's setup")
	fs.BoolVar(&c.GRPCGoKV, "grpc-go-kv", false, "send KV calls through grpc-go rather than the harness's own HTTP/2 framing (which costs less CPU per call)")
	return endpoints
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func perfRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata perf run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg perf.Config
	o := addOutputFlags(fs, "the result")
	label := fs.String("label", "", "name of the run in reports (default workload@target)")
	cpuProfile := fs.String("cpuprofile", "", "write the harness's own CPU profile to this file")
	ok, code := parseRun(fs, args, &cfg, stderr, "usage: strata perf run [flags]\n")
	if !ok {
		return code
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "strata perf run: %v\n", err)
		return 2
	}
	ctx, stop := runContext()
	defer stop()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "strata perf run: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "strata perf run: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	res, err := perf.Run(ctx, cfg, o.progressTo(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "strata perf run: %v\n", err)
		return 1
	}
	if *label != "" {
		res.Label = *label
	}
	perf.PrintSummary(stdout, res)
	if code := o.save("strata perf run", []*perf.Result{res}, stderr); code != 0 {
		return code
	}
	if res.Errors == res.Ops {
		fmt.Fprintf(stderr, "strata perf run: every operation on %v failed\n", res.Driven)
		return 1
	}
	return 0
}

// outputFlags are the output flags of run, compare and sweep.
type outputFlags struct {
	out      *string
	progress *bool
}

func addOutputFlags(fs *flag.FlagSet, what string) outputFlags {
	return outputFlags{
		out:      fs.String("out", "", "write "+what+" as JSON to this file"),
		progress: fs.Bool("progress", isTerminal(os.Stderr), "print progress on stderr every second"),
	}
}

// progressTo is where runs print progress: stderr with --progress.
func (o outputFlags) progressTo(stderr io.Writer) io.Writer {
	if *o.progress {
		return stderr
	}
	return nil
}

// save writes rs to --out, if set, and returns the command's exit code.
func (o outputFlags) save(cmd string, rs []*perf.Result, stderr io.Writer) int {
	if *o.out == "" {
		return 0
	}
	if err := perf.WriteJSON(*o.out, rs); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", cmd, err)
		return 1
	}
	return 0
}

// runContext is the context of a perf command: cancelled by Ctrl-C or
// SIGTERM.
func runContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// parseRun parses a run's flags plus extra ones; ok is false when the
// command is over (help, or a bad flag, with its exit code in code).
func parseRun(fs *flag.FlagSet, args []string, cfg *perf.Config, stderr io.Writer, usage string) (ok bool, code int) {
	endpoints := runFlags(fs, cfg)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fmt.Fprintf(stderr, "\nworkloads:\n")
		for _, w := range perf.WorkloadHelp() {
			fmt.Fprintf(stderr, "  %-16s %s\n", w[0], w[1])
		}
		fmt.Fprintf(stderr, "\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return false, 0
		}
		return false, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return false, 2
	}
	cfg.Endpoints = splitList(*endpoints)
	return true, 0
}

func perfCompare(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata perf compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg perf.Config
	aEps := fs.String("a-endpoints", "", "endpoints of target A (comma-separated)")
	bEps := fs.String("b-endpoints", "", "endpoints of target B")
	aLabel := fs.String("a-label", "a", "name of target A")
	bLabel := fs.String("b-label", "b", "name of target B")
	rounds := fs.Int("rounds", 3, "rounds; each runs both targets, alternating which goes first")
	o := addOutputFlags(fs, "every round's result")
	ok, code := parseRun(fs, args, &cfg, stderr, "usage: strata perf compare --a-endpoints=... --b-endpoints=... [run flags]\n")
	if !ok {
		return code
	}
	sides := [2]perf.Side{{Label: *aLabel, Endpoints: splitList(*aEps)}, {Label: *bLabel, Endpoints: splitList(*bEps)}}
	for _, s := range sides {
		cfg.Endpoints = s.Endpoints
		if err := cfg.Validate(); err != nil {
			fmt.Fprintf(stderr, "strata perf compare: %s: %v\n", s.Label, strings.Replace(err.Error(), "--endpoints", "--a-endpoints/--b-endpoints", 1))
			return 2
		}
	}
	ctx, stop := runContext()
	defer stop()
	c, err := perf.Compare(ctx, cfg, sides, *rounds, o.progressTo(stderr))
	if err != nil {
		fmt.Fprintf(stderr, "strata perf compare: %v\n", err)
		return 1
	}
	c.Print(stdout)
	return o.save("strata perf compare", c.Results(), stderr)
}

func perfSweep(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata perf sweep", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg perf.Config
	param := fs.String("param", "clients", "parameter to vary: "+strings.Join(perf.SweepParams, ", ")+", or with --launch a server flag (max-batch-requests, max-batch-bytes, max-inflight-batches, ...)")
	values := fs.String("values", "1,2,4,8,16,32,64,128,256", "comma-separated values of --param")
	launch := fs.Bool("launch", false, "start a fresh local cluster for each value (instead of --endpoints), its servers given --param=value when param is a server flag")
	launchMembers := fs.Int("launch-members", 3, "members of each launched cluster")
	launchBinary := fs.String("launch-binary", "", "server binary to launch (default this strata; etcd works too, with etcd's flags)")
	launchFlags := fs.String("launch-flags", "", "more flags for every launched server, space-separated (e.g. \"--unsafe-no-fsync\")")
	o := addOutputFlags(fs, "every point's result")
	ok, code := parseRun(fs, args, &cfg, stderr, "usage: strata perf sweep --param=clients --values=1,4,16,64 [run flags]\n       strata perf sweep --launch --param=max-inflight-batches --values=1,2,4,8 [run flags]\n")
	if !ok {
		return code
	}
	so := perf.SweepOptions{Progress: o.progressTo(stderr)}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !*launch {
		for _, f := range []string{"launch-members", "launch-binary", "launch-flags"} {
			if set[f] {
				fmt.Fprintf(stderr, "strata perf sweep: --%s needs --launch\n", f)
				return 2
			}
		}
	} else {
		if !set["endpoints"] {
			cfg.Endpoints = nil // the default's; the launched clusters' replace it
		}
		if *launchMembers < 1 {
			fmt.Fprintf(stderr, "strata perf sweep: --launch-members %d: want at least 1\n", *launchMembers)
			return 2
		}
		so.ServerFlags = strings.Fields(*launchFlags)
		for _, f := range append([]string{"--" + *param}, so.ServerFlags...) {
			if err := checkNotLauncherFlag(f); err != nil {
				fmt.Fprintf(stderr, "strata perf sweep: %v\n", err)
				return 2
			}
		}
		bin := *launchBinary
		if bin == "" {
			self, err := os.Executable()
			if err != nil {
				fmt.Fprintf(stderr, "strata perf sweep: %v\n", err)
				return 1
			}
			bin = self
			if err := checkOwnFlags(so.ServerFlags); err != nil {
				fmt.Fprintf(stderr, "strata perf sweep: --launch-flags: %v\n", err)
				return 2
			}
			so.CheckServerFlag = func(f string) error { return checkOwnFlags(append(slices.Clone(so.ServerFlags), f)) }
		}
		so.Launch = launcher(bin, *launchMembers)
	}
	ctx, stop := runContext()
	defer stop()
	pts, knee, err := perf.Sweep(ctx, cfg, *param, splitList(*values), so)
	if err != nil {
		code := 1
		var le *perf.LaunchError
		if strings.Contains(err.Error(), "--") && !errors.As(err, &le) && ctx.Err() == nil {
			code = 2 // a flag's value is at fault
		}
		fmt.Fprintf(stderr, "strata perf sweep: %v\n", err)
		return code
	}
	perf.PrintSweep(stdout, *param, pts, knee)
	var rs []*perf.Result
	for _, p := range pts {
		rs = append(rs, p.Result)
	}
	return o.save("strata perf sweep", rs, stderr)
}

func perfReport(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata perf report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	html := fs.String("html", "", "render the results as a self-contained HTML report in this file")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: strata perf report FILE.json... [--html OUT.html]\n\n")
		fs.PrintDefaults()
	}
	files, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(files) == 0 {
		fmt.Fprintln(stderr, "strata perf report: name at least one result file")
		return 2
	}
	var all []*perf.Result
	for _, f := range files {
		rs, err := perf.ReadJSON(f)
		if err != nil {
			fmt.Fprintf(stderr, "strata perf report: %v\n", err)
			return 1
		}
		all = append(all, rs...)
	}
	if *html == "" {
		for _, r := range all {
			perf.PrintSummary(stdout, r)
			fmt.Fprintln(stdout)
		}
		return 0
	}
	f, err := os.Create(*html)
	if err != nil {
		fmt.Fprintf(stderr, "strata perf report: %v\n", err)
		return 1
	}
	if err := perf.WriteHTML(f, all); err != nil {
		f.Close()
		fmt.Fprintf(stderr, "strata perf report: %v\n", err)
		return 1
	}
	if err := f.Close(); err != nil {
		fmt.Fprintf(stderr, "strata perf report: %v\n", err)
		return 1
	}
	return 0
}

// parseInterleaved parses args with fs, allowing flags after positional
// arguments (`report a.json b.json --html out.html`), and returns the
// positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// isTerminal reports whether f is a terminal (a character device).
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
