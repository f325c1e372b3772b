package perf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// worker is one client of a run: its connection, random source, key
// generator and recorder. Workloads keep their per-worker state in state.
type worker struct {
	id   int
	cfg  Config
	c    *conn
	rng  *rand.Rand
	keys *keyGen
	rec  *recorder
	env  *env
	val  []byte
	// opStart is the current operation's (scheduled) start.
	opStart time.Time
	state   any
}

// call times one RPC of kind and records it.
func (w *worker) call(kind string, f func() error) error {
	t := time.Now()
	err := f()
	w.rec.rpc(kind, time.Since(t), err)
	return err
}

// Run performs one run and returns its result. progress, if not nil,
// receives a line a second while the run goes.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	wl := lookupWorkload(cfg.Workload)
	d, err := newDialer(cfg)
	if err != nil {
		return nil, err
	}
	eps, err := selectEndpoints(ctx, d, cfg)
	if err != nil {
		return nil, err
	}
	conns := make([]*conn, cfg.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.close()
			}
		}
	}()
	for i := range conns {
		if conns[i], err = d.dial(ctx, eps[i%len(eps)]); err != nil {
			return nil, err
		}
	}
	env := &env{cfg: cfg, conns: conns}
	if wl.setup != nil {
		sctx, cancel := context.WithCancel(ctx)
		defer cancel()
		if err := wl.setup(sctx, env); err != nil {
			return nil, fmt.Errorf("workload %s: setup: %w", cfg.Workload, err)
		}
	}
	servers := newServerSampler(eps)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	recs := make([]*recorder, len(conns))
	for i := range recs {
		recs[i] = newRecorder(time.Time{})
	}
	workers := make([]*worker, cfg.Clients)
	for i := range workers {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)))
		workers[i] = &worker{id: i, cfg: cfg, c: conns[i%len(conns)], rng: rng,
			keys: newKeyGen(cfg, i, rng), rec: recs[i%len(conns)], env: env}
		if wl.newWorker != nil {
			if err := wl.newWorker(runCtx, env, workers[i]); err != nil {
				return nil, fmt.Errorf("workload %s: %w", cfg.Workload, err)
			}
		}
	}
	// One connection to each driven endpoint (the first len(eps) dial
	// them in turn) tells the raft index.
	indexConns := conns[:min(len(eps), len(conns))]
	index0, indexOK := raftIndex(ctx, indexConns, cfg.DialTimeout)
	// The measured phase starts once every worker is ready (a lease
	// worker's keep-alive stream, say): its schedule, its deadline and
	// its per-second buckets count from here.
	start := time.Now()
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	for _, r := range recs {
		r.start = start
	}
	var remaining atomic.Int64
	remaining.Store(cfg.Total)
	var done atomic.Int64
	stopProgress := startProgress(progress, start, &done, cfg)
	cpu0 := selfCPU()
	servers.begin()
	env.begin(start)
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { drive(runCtx, wl, w, cfg, start, deadline, &remaining, &done) })
	}
	wg.Wait()
	end := time.Now()
	cpu := selfCPU() - cpu0
	srv := servers.end()
	stopProgress()
	cancel()
	extra := env.finish()

	total := newRecorder(start)
	for _, w := range workers {
		if wl.closeWorker != nil {
			wl.closeWorker(w)
		}
	}
	for _, r := range recs {
		total.merge(r)
	}
	total.merge(extra)
	if total.ops.TotalCount() == 0 {
		return nil, errors.New("no operation completed")
	}
	res := newResult(cfg, wl, eps, total, start, end, cpu, srv)
	if index1, ok := raftIndex(ctx, indexConns, cfg.DialTimeout); ok && indexOK && index1 > index0 {
		res.RaftEntries = int64(index1 - index0)
	}
	return res, nil
}

// raftIndex is the highest committed raft index the members of conns
// report: the leader's, when it is among them (a follower may not yet know
// of the last commits).
func raftIndex(ctx context.Context, conns []*conn, timeout time.Duration) (uint64, bool) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var index uint64
	ok := false
	for _, c := range conns {
		st, err := c.maint.Status(ctx, &pb.StatusRequest{})
		if err != nil {
			continue
		}
		index, ok = max(index, st.RaftIndex), true
	}
	return index, ok
}

// drive is one worker's loop: closed-loop, or following the schedule when
// cfg.Rate is set (latency then counts from the scheduled start).
func drive(ctx context.Context, wl *workload, w *worker, cfg Config, start, deadline time.Time, remaining, done *atomic.Int64) {
	var interval time.Duration
	next := start
	if cfg.Rate > 0 {
		interval = time.Duration(float64(cfg.Clients) / cfg.Rate * float64(time.Second))
		// Workers' schedules interleave rather than fire together.
		next = start.Add(interval * time.Duration(w.id) / time.Duration(cfg.Clients))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	<-timer.C
	for ctx.Err() == nil {
		if cfg.Total > 0 && remaining.Add(-1) < 0 {
			return
		}
		opStart := time.Now()
		if interval > 0 {
			if wait := time.Until(next); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			}
			opStart = next
			next = next.Add(interval)
		}
		if !deadline.IsZero() && opStart.After(deadline) {
			return
		}
		w.opStart = opStart
		err := wl.op(ctx, w)
		if ctx.Err() != nil {
			return // stopped mid-operation: not a result, whatever it returned
		}
		w.rec.op(opStart, time.Now(), err)
		done.Add(1)
	}
}

// selfCPU is the process's user+system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startProgress prints a line a second to w until the returned function is
// called.
func startProgress(w io.Writer, start time.Time, done *atomic.Int64, cfg Config) func() {
	if w == nil {
		return func() {}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var last int64
		for {
			select {
			case <-stop:
				fmt.Fprintln(w)
				return
			case <-t.C:
			}
			n := done.Load()
			el := time.Since(start).Truncate(time.Second)
			line := fmt.Sprintf("\r%s %8s  %10d ops  %9d ops/s", cfg.Workload, el, n, n-last)
			if cfg.Total > 0 {
				line += fmt.Sprintf("  %s", bar(float64(n)/float64(cfg.Total)))
			} else if cfg.Duration > 0 {
				line += fmt.Sprintf("  %s", bar(float64(el)/float64(cfg.Duration)))
			}
			fmt.Fprint(w, line)
			last = n
		}
	})
	return func() { close(stop); wg.Wait() }
}

func bar(f float64) string {
	const width = 30
	f = min(max(f, 0), 1)
	n := int(f * width)
	return fmt.Sprintf("[%s%s] %3.0f%%", strings.Repeat("=", n), strings.Repeat(" ", width-n), f*100)
}
