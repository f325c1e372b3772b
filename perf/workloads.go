package perf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// workload is one kind of load. op performs one operation for a worker;
// the optional hooks prepare shared state before the measured phase
// (setup), per-worker state (newWorker), and release it (closeWorker).
type workload struct {
	name, help  string
	setup       func(ctx context.Context, e *env) error
	newWorker   func(ctx context.Context, e *env, w *worker) error
	closeWorker func(w *worker)
	op          func(ctx context.Context, w *worker) error
	// headline names the RPC kind whose latency is the result's latency
	// (the watch workloads report put-to-event latency); "" is the
	// operations' own.
	headline string
}

var workloads []*workload

func register(w *workload) { workloads = append(workloads, w) }

func lookupWorkload(name string) *workload {
	for _, w := range workloads {
		if w.name == name {
			return w
		}
	}
	return nil
}

// WorkloadNames lists the workloads, in the order they are documented.
func WorkloadNames() []string {
	var out []string
	for _, w := range workloads {
		out = append(out, w.name)
	}
	return out
}

// WorkloadHelp describes each workload in a line.
func WorkloadHelp() [][2]string {
	var out [][2]string
	for _, w := range workloads {
		out = append(out, [2]string{w.name, w.help})
	}
	return out
}

func init() {
	register(&workload{name: "put", help: "Put of --val-size bytes to keys drawn from the key space",
		op: func(ctx context.Context, w *worker) error {
			k := w.keys.Key(w.keys.Next())
			return w.call("put", func() error {
				_, err := w.c.kv.Put(ctx, &pb.PutRequest{Key: k, Value: w.value()})
				return err
			})
		}})
	register(&workload{name: "range", help: "single-key Range (--consistency l or s) over a preloaded key space",
		setup: preload,
		op: func(ctx context.Context, w *worker) error {
			k := w.keys.Key(w.keys.Next())
			return w.call("range", func() error {
				_, err := w.c.kv.Range(ctx, &pb.RangeRequest{Key: k, Serializable: w.cfg.Consistency == "s"})
				return err
			})
		}})
	register(&workload{name: "txn-put", help: "compare-and-swap: Txn(mod_revision == last seen) Put, else Range; contended keys fail and retry",
		newWorker: newCASWorker,
		op: func(ctx context.Context, w *worker) error {
			n := w.keys.Next()
			k := w.keys.Key(n)
			_, err := cas(ctx, w, "txn", n, k, w.state.(map[int]int64)[n], put(k, w.value()))
			return err
		}})
	register(&workload{name: "delete", help: "DeleteRange of keys from a preloaded key space (sequential: each key once)",
		setup: preload,
		op: func(ctx context.Context, w *worker) error {
			k := w.keys.Key(w.keys.Next())
			return w.call("delete", func() error {
				_, err := w.c.kv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: k})
				return err
			})
		}})
	register(&workload{name: "watch", help: "puts to the key space watched by --watchers watchers on --watch-streams streams; latency is put-to-event",
		setup: func(ctx context.Context, e *env) error { return startWatchers(ctx, e, e.cfg.Prefix, false) },
		op: func(ctx context.Context, w *worker) error {
			k := w.keys.Key(w.keys.Next())
			return w.call("put", func() error {
				r, err := w.c.kv.Put(ctx, &pb.PutRequest{Key: k, Value: w.stampedValue()})
				if err == nil {
					w.env.wrote(r.Header.Revision)
				}
				return err
			})
		},
		headline: "event"})
	register(&workload{name: "lease", help: "LeaseGrant (--lease-ttl), then --keepalives-per-grant keep-alives on it, then LeaseRevoke; one RPC per operation",
		newWorker: newLeaseWorker,
		closeWorker: func(w *worker) {
			if s := w.state.(*leaseState).stream; s != nil {
				s.CloseSend()
			}
		},
		op: leaseOp})
	registerScenarios()
}

// value returns a value of the configured size; its bytes are random
// letters (so compression is not flattered) and it is reused by the next
// call.
func (w *worker) value() []byte {
	if w.val == nil {
		w.val = make([]byte, w.cfg.ValSize)
		for i := range w.val {
			w.val[i] = 'a' + byte(w.rng.IntN(26))
		}
	}
	return w.val
}

// stampedValue is value() with the operation's start in its first 8
// bytes, from which watchers measure put-to-event latency (under --rate,
// the scheduled start: a put sent late counts its lateness).
func (w *worker) stampedValue() []byte {
	v := w.value()
	if len(v) < 8 {
		v = append(v[:0], make([]byte, 8)...)
		w.val = v
	}
	binary.BigEndian.PutUint64(v, uint64(w.opStart.UnixNano()))
	return v
}

// newSetupRand is the random source of a workload's setup.
func newSetupRand(c Config) *rand.Rand { return rand.New(rand.NewPCG(c.Seed, 1<<62)) }

// preload puts every key of the key space (values of --val-size) before
// the measured phase, from 16 goroutines over the run's connections.
func preload(ctx context.Context, e *env) error {
	val := make([]byte, e.cfg.ValSize)
	for i := range val {
		val[i] = 'a' + byte(i%26)
	}
	return parallel(ctx, 16, e.cfg.KeySpace, func(i int) error {
		c := e.conns[i%len(e.conns)]
		_, err := c.kv.Put(ctx, &pb.PutRequest{Key: appendKey(nil, e.cfg.Prefix, e.cfg.KeySize, i), Value: val})
		return err
	})
}

// parallel runs f(0..n-1) on g goroutines and returns the first error.
func parallel(ctx context.Context, g, n int, f func(i int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	next := make(chan int)
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					cancel(err)
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	return context.Cause(ctx)
}

// startWatchers opens --watch-streams streams on the first connections
// (round-robin) and --watchers watchers over them, all on the run's key
// prefix (with prev_kv when asked), before the measured phase; a
// background task per stream records, for each event, the time since the
// put was sent (from its stamped value) as kind "event".
func startWatchers(ctx context.Context, e *env, prefix string, prevKV bool) error {
	// The newest revision each watcher delivered, by stream and watch
	// ID: watchers on one stream are served apart (one may be catching
	// up while another is current), so each must reach the last write.
	type streamSeen struct {
		sync.Mutex
		watchers int
		rev      map[int64]int64
	}
	var seen []*streamSeen
	e.drained = func() bool {
		last := e.lastRev.Load()
		if last == 0 {
			return true // nothing written in the measured phase
		}
		for _, s := range seen {
			s.Lock()
			ok := len(s.rev) == s.watchers
			for _, r := range s.rev {
				ok = ok && r >= last
			}
			s.Unlock()
			if !ok {
				return false
			}
		}
		return true
	}
	end := []byte(clientv3.GetPrefixRangeEnd(prefix))
	for s := range e.cfg.WatchStreams {
		c := e.conns[s%len(e.conns)]
		sctx, cancel := context.WithCancel(context.Background())
		stream, err := c.watch.Watch(sctx)
		if err != nil {
			cancel()
			return err
		}
		n := e.cfg.Watchers / e.cfg.WatchStreams
		if s < e.cfg.Watchers%e.cfg.WatchStreams {
			n++
		}
		for range n {
			if err := stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
				Key: []byte(prefix), RangeEnd: end, PrevKv: prevKV}}}); err != nil {
				cancel()
				return err
			}
		}
		// Wait for the creations, so the measured phase starts with
		// every watcher in place.
		for created := 0; created < n; {
			r, err := stream.Recv()
			if err != nil {
				cancel()
				return err
			}
			if r.Canceled {
				cancel()
				return fmt.Errorf("watch refused: %s", r.CancelReason)
			}
			if r.Created {
				created++
			}
		}
		ss := &streamSeen{watchers: n, rev: map[int64]int64{}}
		seen = append(seen, ss)
		e.background(func(ctx context.Context, rec *recorder) {
			go func() { <-ctx.Done(); cancel() }()
			for {
				r, err := stream.Recv()
				if err != nil {
					return
				}
				if len(r.Events) > 0 {
					ss.Lock()
					ss.rev[r.WatchId] = max(ss.rev[r.WatchId], r.Events[len(r.Events)-1].Kv.ModRevision)
					ss.Unlock()
				}
				now := time.Now().UnixNano()
				for _, ev := range r.Events {
					if ev.Type != mvccpb.PUT || len(ev.Kv.Value) < 8 {
						continue
					}
					sent := int64(binary.BigEndian.Uint64(ev.Kv.Value))
					rec.rpc("event", time.Duration(now-sent), nil)
				}
			}
		})
	}
	_ = ctx
	return nil
}

type leaseState struct {
	stream pb.Lease_LeaseKeepAliveClient
	id     int64
	left   int // keep-alives left on id
}

func newLeaseWorker(ctx context.Context, _ *env, w *worker) error {
	s, err := w.c.lease.LeaseKeepAlive(ctx)
	if err != nil {
		return err
	}
	w.state = &leaseState{stream: s}
	return nil
}

func leaseOp(ctx context.Context, w *worker) error {
	st := w.state.(*leaseState)
	switch {
	case st.id == 0:
		return w.call("grant", func() error {
			r, err := w.c.lease.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: w.cfg.LeaseTTL})
			if err == nil {
				st.id, st.left = r.ID, w.cfg.KeepAlivesPerGrant
			}
			return err
		})
	case st.left > 0:
		st.left--
		return w.call("keepalive", func() error {
			if st.stream == nil {
				// The last one broke (a leader change, say): a new one.
				s, err := w.c.lease.LeaseKeepAlive(ctx)
				if err != nil {
					return err
				}
				st.stream = s
			}
			err := st.stream.Send(&pb.LeaseKeepAliveRequest{ID: st.id})
			var r *pb.LeaseKeepAliveResponse
			if err == nil {
				r, err = st.stream.Recv()
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			if err != nil {
				st.stream = nil
				return err
			}
			if r.TTL <= 0 {
				return errors.New("lease expired before its keep-alive")
			}
			return nil
		})
	default:
		id := st.id
		st.id = 0
		return w.call("revoke", func() error {
			_, err := w.c.lease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: id})
			return err
		})
	}
}
