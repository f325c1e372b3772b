//go:build linux

package robustness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/stratakv/strata/tests/robustness/model"
)

// Write is one event of the cluster's history: a put or delete of Key at
// Revision (a put's Lease, if attached to one).
type Write struct {
	Revision int64
	Key      string
	Value    string
	Delete   bool
	Lease    int64
}

// errWatchBehind: no watch reaches a revision the cluster reached.
var errWatchBehind = errors.New("no watch stream delivers every event up to the cluster's last revision")

// appliedWrites are the writes the cluster applied through rev: the
// events of the first of the run's watchers (they all watch every traffic
// key from revision 2, resuming broken streams) to have them all, src's
// if it does; failing that, of a new watcher on src from revision 2 (it
// catches up from the history, not from the live stream). Only the
// traffic writes, so every revision from 2 to rev has events.
func appliedWrites(ctx context.Context, watchers []*Watcher, src *Member, rev int64) ([]Write, error) {
	slices.SortStableFunc(watchers, func(a, b *Watcher) int {
		switch {
		case a.m == src:
			return -1
		case b.m == src:
			return 1
		}
		return 0
	})
	through := func(w *Watcher) []Write {
		// Through rev: a write a client gave up on may still be
		// applied after it.
		return slices.DeleteFunc(w.Events(), func(e Write) bool { return e.Revision > rev })
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, w := range watchers {
			if w.next() > rev {
				return through(w), nil
			}
		}
		time.Sleep(50 * time.Millisecond) // polls the watchers
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w := Watch(wctx, src)
	w.waitFor(rev, 30*time.Second)
	cancel()
	<-w.done
	if w.next() > rev {
		return through(w), nil
	}
	return nil, fmt.Errorf("%w: the run's watchers and a new one on %s stop before revision %d", errWatchBehind, src.Name, rev)
}

// wrote reports whether op's response says it changed the store, with
// the key it wrote (a revocation is not counted: its response does not
// say whether it deleted anything).
func wrote(op porcupine.Operation) bool {
	req, resp := op.Input.(model.Request), op.Output.(model.Response)
	if resp.Unknown || resp.LeaseNotFound {
		return false
	}
	switch req.Kind {
	case model.Put, model.PutLease:
		return true
	case model.CAS:
		return resp.Succeeded
	case model.Delete, model.CASDelete:
		return resp.Deleted > 0
	}
	return false
}

func isDelete(k model.Kind) bool { return k == model.Delete || k == model.CASDelete }

// checkWrites checks the applied writes against themselves and against
// what the clients were told: revisions from 2 on, in order and without
// gaps, one event each but for a revocation's deletes, which share one;
// every value written once (no entry applied twice); and every
// acknowledged put, successful swap and delete at the revision its
// response named. A watch that dropped or invented an event fails here.
func checkWrites(ops []porcupine.Operation, writes []Write) error {
	byRev := map[int64][]Write{}
	seen := map[string]int64{}
	prev := Write{Revision: 1}
	for i, w := range writes {
		shared := w.Revision == prev.Revision && w.Delete && prev.Delete && i > 0
		if w.Revision != prev.Revision+1 && !shared {
			return fmt.Errorf("applied writes: event %d is at revision %d after revision %d (a gap, a repeat or out of order)", i, w.Revision, prev.Revision)
		}
		if !w.Delete {
			if r, ok := seen[w.Value]; ok {
				return fmt.Errorf("applied writes: value %q written at revisions %d and %d (applied twice)", w.Value, r, w.Revision)
			}
			seen[w.Value] = w.Revision
		}
		byRev[w.Revision] = append(byRev[w.Revision], w)
		prev = w
	}
	for _, op := range ops {
		if !wrote(op) {
			continue
		}
		req, resp := op.Input.(model.Request), op.Output.(model.Response)
		ws, ok := byRev[resp.Revision]
		if !ok {
			return fmt.Errorf("acknowledged %v of %s at revision %d is not among the applied writes", req.Kind, req.Key, resp.Revision)
		}
		if !slices.ContainsFunc(ws, func(w Write) bool {
			return w.Key == req.Key && w.Delete == isDelete(req.Kind) && (w.Delete || (w.Value == req.Value && w.Lease == req.Lease))
		}) {
			return fmt.Errorf("acknowledged %v of %s=%q at revision %d, but revision %d applied %+v", req.Kind, req.Key, req.Value, resp.Revision, resp.Revision, ws)
		}
	}
	return nil
}

// patch resolves the writes whose outcome the clients lost, from the
// writes the cluster applied (checked by checkWrites), so that the checker
// need not try both outcomes of each:
//   - a put or compare-and-swap whose (unique) value was written at
//     revision R happened there; one whose value was never written changed
//     nothing (a swap may have failed its compare; that changes nothing
//     either) and leaves the history;
//   - the deletes at one revision of the keys attached to lease L (the
//     traffic's lease keys, which nothing else deletes) are L's
//     revocation: an unknown revocation of L with such a revision happened
//     there, one without changed no key and leaves the history (its
//     client never used L again, so whether L still exists is never seen);
//   - a delete event of key K at revision R that no acknowledged delete
//     accounts for was made by an unknown delete of K: the events of K are
//     matched, in revision order, to K's unknown deletes in call order
//     (the earliest call is the least constrained choice, since an unknown
//     operation's only bound is its call). K's unknown deletes left over
//     deleted nothing or never ran, neither of which changes the store,
//     and leave the history;
//   - an unknown lease grant leaves the history: its client never used
//     the lease.
//
// This is what etcd's robustness tests do with their watch streams.
func patch(ops []porcupine.Operation, writes []Write) (_ []porcupine.Operation, resolved, dropped int) {
	at := map[string]int64{}
	for _, w := range writes {
		if !w.Delete {
			at[w.Value] = w.Revision
		}
	}
	acked := map[int64]bool{} // revisions of acknowledged deletes
	for _, op := range ops {
		req, resp := op.Input.(model.Request), op.Output.(model.Response)
		if isDelete(req.Kind) && wrote(op) {
			acked[resp.Revision] = true
		}
	}
	type deletion struct{ rev, mod int64 } // a delete event, and the key's mod_revision before it
	unclaimed := map[string][]deletion{}   // key -> deletes no acknowledged delete made
	revoked := map[int64]int64{}           // lease -> revision its keys were deleted at
	lease := map[string]int64{}            // key -> lease of its last put
	mod := map[string]int64{}              // key -> revision of its last put
	for _, w := range writes {
		switch {
		case !w.Delete:
			lease[w.Key], mod[w.Key] = w.Lease, w.Revision
		case lease[w.Key] != 0:
			revoked[lease[w.Key]] = w.Revision
		case !acked[w.Revision]:
			unclaimed[w.Key] = append(unclaimed[w.Key], deletion{w.Revision, mod[w.Key]})
		}
	}
	// Unknown deletes per key, in call order.
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ops[a].Call, ops[b].Call) })
	candidates := map[string][]int{} // key -> its unknown deletes, in call order
	for _, i := range order {
		req, resp := ops[i].Input.(model.Request), ops[i].Output.(model.Response)
		if isDelete(req.Kind) && resp.Unknown {
			candidates[req.Key] = append(candidates[req.Key], i)
		}
	}
	// Each delete event goes to the earliest-called unknown delete of its
	// key that could have made it: a conditional one only if its compare
	// held then.
	deleteAt := map[int]int64{} // op index -> revision it deleted at
	for key, dels := range unclaimed {
		for _, d := range dels {
			for _, i := range candidates[key] {
				req := ops[i].Input.(model.Request)
				if _, taken := deleteAt[i]; taken || (req.Kind == model.CASDelete && req.Expect != d.mod) {
					continue
				}
				deleteAt[i] = d.rev
				break
			}
		}
	}
	var out []porcupine.Operation
	for i, op := range ops {
		req, resp := op.Input.(model.Request), op.Output.(model.Response)
		if !resp.Unknown || req.Kind == model.Get || req.Kind == model.List {
			out = append(out, op)
			continue
		}
		var rev int64
		var ok bool
		switch req.Kind {
		case model.Delete, model.CASDelete:
			rev, ok = deleteAt[i]
		case model.LeaseRevoke:
			rev, ok = revoked[req.Lease]
		case model.LeaseGrant:
		default:
			rev, ok = at[req.Value]
		}
		if !ok {
			dropped++
			continue
		}
		switch req.Kind {
		case model.Delete:
			op.Output = model.Response{Revision: rev, Deleted: 1}
		case model.CASDelete:
			op.Output = model.Response{Revision: rev, Deleted: 1, Succeeded: true}
		case model.LeaseRevoke:
			op.Output = model.Response{Revision: rev}
		default:
			op.Output = model.Response{Revision: rev, Succeeded: req.Kind == model.CAS}
		}
		out = append(out, op)
		resolved++
	}
	return out, resolved, dropped
}
