package perf

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	gen "github.com/stratakv/strata/perf/workload"
)

// registerScenarios registers the scenario mixes, modelled on strata's
// users, after the single-operation workloads. Each operation is one step
// of the user's pattern; by_kind breaks them down.
func registerScenarios() {
	register(&workload{name: "kubernetes",
		help: "kube-apiserver's pattern on pod objects (JSON, ~2.5 KiB): creates and updates as mod_revision CAS, gets, " +
			"paginated lists (--page-size, pinned to the first page's revision), deletes; --watchers prev_kv watchers on the prefix; " +
			"compaction every --compact-every; the key space is the number of pods",
		setup:     kubeSetup,
		newWorker: newCASWorker,
		op:        kubeOp})
	register(&workload{name: "batch-scheduler",
		help: "a Kueue-like queue: small txns on a hot range (--key-dist=zipf recommended) that CAS a workload's status " +
			"and write its queue position in one txn",
		newWorker: newCASWorker,
		op:        batchOp})
	register(&workload{name: "fleet-config",
		help: "read-heavy configuration: 98% reads (--consistency) of a preloaded key space, 2% puts, " +
			"--watchers watchers spread over all connections (so over readers too); latency is the operations'",
		setup: func(ctx context.Context, e *env) error {
			if err := preload(ctx, e); err != nil {
				return err
			}
			return startWatchers(ctx, e, e.cfg.Prefix, false)
		},
		op: fleetOp})
}

// newCASWorker gives a worker the mod_revisions it has seen, by key number.
func newCASWorker(_ context.Context, _ *env, w *worker) error {
	w.state = map[int]int64{}
	return nil
}

// kubeKey is pod n's key: /registry/pods/<namespace>/<name>, ten
// namespaces.
func kubeKey(prefix string, n int) []byte {
	return fmt.Appendf(nil, "%s/registry/pods/ns-%d/pod-%08d", prefix, n%10, n)
}

// kubeValue is a pod object with its operation's start in front (8 bytes), from
// which the watchers measure put-to-event latency.
func kubeValue(w *worker) []byte {
	v := make([]byte, 8, 2600)
	binary.BigEndian.PutUint64(v, uint64(w.opStart.UnixNano()))
	return append(v, gen.PodJSON(w.rng)...)
}

func kubeSetup(ctx context.Context, e *env) error {
	// Half the pods exist when the run starts.
	rng := newSetupRand(e.cfg)
	vals := make([][]byte, 64)
	for i := range vals {
		vals[i] = gen.PodJSON(rng)
	}
	if err := parallel(ctx, 16, e.cfg.KeySpace/2, func(i int) error {
		c := e.conns[i%len(e.conns)]
		_, err := c.kv.Put(ctx, &pb.PutRequest{Key: kubeKey(e.cfg.Prefix, 2*i), Value: vals[i%len(vals)]})
		return err
	}); err != nil {
		return err
	}
	if err := startWatchers(ctx, e, e.cfg.Prefix+"/registry/pods/", true); err != nil {
		return err
	}
	if e.cfg.CompactEvery > 0 {
		e.background(func(ctx context.Context, rec *recorder) { compactor(ctx, e, rec) })
	}
	return nil
}

// compactor compacts every CompactEvery to the revision it saw the time
// before, as kube-apiserver does (so a watcher is at most one interval
// behind what it may still read).
func compactor(ctx context.Context, e *env, rec *recorder) {
	t := time.NewTicker(e.cfg.CompactEvery)
	defer t.Stop()
	var prev int64
	c := e.conns[0]
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r, err := c.kv.Range(ctx, &pb.RangeRequest{Key: []byte(e.cfg.Prefix + "/compact_rev_key"), Serializable: true})
		if err != nil {
			continue
		}
		if prev > 0 {
			start := time.Now()
			_, err := c.kv.Compact(ctx, &pb.CompactionRequest{Revision: prev})
			if ctx.Err() == nil {
				rec.rpc("compact", time.Since(start), err)
			}
		}
		prev = r.Header.Revision
	}
}

// kubeOp is one step of kube-apiserver's traffic: 10% creates, 45%
// updates, 25% gets, 10% deletes, 10% paginated lists of a namespace.
func kubeOp(ctx context.Context, w *worker) error {
	n := w.keys.Next()
	key := kubeKey(w.cfg.Prefix, n)
	switch p := w.rng.IntN(100); {
	case p < 10: // create: only if absent
		_, err := cas(ctx, w, "create", n, key, 0, put(key, kubeValue(w)))
		return err
	case p < 55: // update: GuaranteedUpdate's CAS on the last seen mod_revision
		seen, err := w.known(ctx, n, key)
		if err != nil || seen == 0 {
			return err // not there (deleted): nothing to update
		}
		_, err = cas(ctx, w, "update", n, key, seen, put(key, kubeValue(w)))
		return err
	case p < 80:
		return w.call("get", func() error { return w.refresh(ctx, n, key) })
	case p < 90:
		seen, err := w.known(ctx, n, key)
		if err != nil || seen == 0 {
			return err
		}
		_, err = cas(ctx, w, "delete", n, key, seen,
			&pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key}}})
		return err
	default:
		return kubeList(ctx, w, n%10)
	}
}

// known returns the mod_revision this worker knows for key n, reading the
// key (a "get") when it knows none, as kube-apiserver reads an object it
// has not cached before updating it.
func (w *worker) known(ctx context.Context, n int, key []byte) (int64, error) {
	if seen := w.state.(map[int]int64)[n]; seen != 0 {
		return seen, nil
	}
	err := w.call("get", func() error { return w.refresh(ctx, n, key) })
	return w.state.(map[int]int64)[n], err
}

// refresh reads key n and remembers its mod_revision (0 if absent).
func (w *worker) refresh(ctx context.Context, n int, key []byte) error {
	r, err := w.c.kv.Range(ctx, &pb.RangeRequest{Key: key})
	if err != nil {
		return err
	}
	seen := w.state.(map[int]int64)
	seen[n] = 0
	if len(r.Kvs) > 0 {
		seen[n] = r.Kvs[0].ModRevision
	}
	return nil
}

// kubeList lists namespace ns in pages of PageSize, every page at the
// first page's revision, as kube-apiserver paginates.
func kubeList(ctx context.Context, w *worker, ns int) error {
	from := fmt.Appendf(nil, "%s/registry/pods/ns-%d/", w.cfg.Prefix, ns)
	end := []byte(clientv3.GetPrefixRangeEnd(string(from)))
	var rev int64
	for {
		var r *pb.RangeResponse
		err := w.call("list-page", func() (err error) {
			r, err = w.c.kv.Range(ctx, &pb.RangeRequest{Key: from, RangeEnd: end, Limit: int64(w.cfg.PageSize), Revision: rev})
			return err
		})
		if err != nil {
			return err
		}
		if rev == 0 {
			rev = r.Header.Revision
		}
		if !r.More || len(r.Kvs) == 0 {
			return nil
		}
		from = append(append([]byte(nil), r.Kvs[len(r.Kvs)-1].Key...), 0)
	}
}

func put(key, val []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: val}}}
}

// cas runs ops if key n's mod_revision (cmp) is still seen (0: absent),
// else reads cmp; it keeps the worker's view of the revision and counts
// conflicts.
func cas(ctx context.Context, w *worker, kind string, n int, cmp []byte, seen int64, ops ...*pb.RequestOp) (bool, error) {
	var resp *pb.TxnResponse
	err := w.call(kind, func() (err error) {
		resp, err = w.c.kv.Txn(ctx, &pb.TxnRequest{
			Compare: []*pb.Compare{{Key: cmp, Target: pb.Compare_MOD, Result: pb.Compare_EQUAL,
				TargetUnion: &pb.Compare_ModRevision{ModRevision: seen}}},
			Success: ops,
			Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: cmp}}}},
		})
		return err
	})
	if err != nil {
		return false, err
	}
	known := w.state.(map[int]int64)
	if resp.Succeeded {
		if ops[0].GetRequestDeleteRange() != nil {
			known[n] = 0
		} else {
			known[n] = resp.Header.Revision
		}
		w.env.wrote(resp.Header.Revision)
		w.rec.add("txn_succeeded", 1)
		return true, nil
	}
	w.rec.add("txn_conflicts", 1)
	known[n] = 0
	if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
		known[n] = rr.Kvs[0].ModRevision
	}
	return false, nil
}

// batchOp is one scheduling step of a Kueue-like queue: a txn that moves a
// workload's status on (CAS on its mod_revision) and writes its position in
// the queue, both small.
func batchOp(ctx context.Context, w *worker) error {
	n := w.keys.Next()
	key := w.keys.Key(n)
	status := append(append([]byte(nil), key...), "/status"...)
	pos := fmt.Appendf(nil, "%s/queue/%s", w.cfg.Prefix, key[len(w.cfg.Prefix):])
	_, err := cas(ctx, w, "txn", n, status, w.state.(map[int]int64)[n], put(status, w.value()), put(pos, w.value()))
	return err
}

// fleetOp reads a configuration key (98%) or writes one (2%); writes are
// stamped for the watchers.
func fleetOp(ctx context.Context, w *worker) error {
	key := w.keys.Key(w.keys.Next())
	if w.rng.IntN(100) < 2 {
		return w.call("put", func() error {
			r, err := w.c.kv.Put(ctx, &pb.PutRequest{Key: key, Value: w.stampedValue()})
			if err == nil {
				w.env.wrote(r.Header.Revision)
			}
			return err
		})
	}
	return w.call("range", func() error {
		_, err := w.c.kv.Range(ctx, &pb.RangeRequest{Key: key, Serializable: w.cfg.Consistency == "s"})
		return err
	})
}
