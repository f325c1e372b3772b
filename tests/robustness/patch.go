//go:build linux

package robustness

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/stratakv/strata/tests/robustness/model"
)

// Write is one event of the cluster's history: a put or delete of Key at
// Revision.
type Write struct {
	Revision int64
	Key      string
	Value    string
	Delete   bool
}

// appliedWrites are the writes the cluster applied through rev: the
// events of the first watcher (they all watch every traffic key from
// revision 2, resuming broken streams) to have them all, src's if it does.
// Only the traffic writes, so every revision from 2 to rev is an event.
func appliedWrites(watchers []*Watcher, src *Member, rev int64) ([]Write, error) {
	slices.SortStableFunc(watchers, func(a, b *Watcher) int {
		switch {
		case a.m == src:
			return -1
		case b.m == src:
			return 1
		}
		return 0
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, w := range watchers {
			if w.next() > rev {
				return w.Events(), nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no watcher has the events up to revision %d after 30 s", rev)
		}
		time.Sleep(50 * time.Millisecond) // polls the watchers
	}
}

// checkWrites checks the applied writes against themselves and against
// what the clients were told: one event per revision from 2 on, in order
// and without gaps; every value written once (no entry applied twice); and
// every acknowledged put, successful swap and delete at the revision its
// response named. A watch that dropped or invented an event fails here.
func checkWrites(ops []porcupine.Operation, writes []Write) error {
	byRev := map[int64]Write{}
	seen := map[string]int64{}
	for i, w := range writes {
		if w.Revision != int64(i)+2 {
			return fmt.Errorf("applied writes: event %d is at revision %d, want %d (a gap, a repeat or out of order)", i, w.Revision, i+2)
		}
		if !w.Delete {
			if r, ok := seen[w.Value]; ok {
				return fmt.Errorf("applied writes: value %q written at revisions %d and %d (applied twice)", w.Value, r, w.Revision)
			}
			seen[w.Value] = w.Revision
		}
		byRev[w.Revision] = w
	}
	for _, op := range ops {
		req, resp := op.Input.(model.Request), op.Output.(model.Response)
		if resp.Unknown {
			continue
		}
		wrote := req.Kind == model.Put || (req.Kind == model.CAS && resp.Succeeded) || (req.Kind == model.Delete && resp.Deleted > 0)
		if !wrote {
			continue
		}
		w, ok := byRev[resp.Revision]
		switch {
		case !ok:
			return fmt.Errorf("acknowledged %v of %s at revision %d is not among the applied writes", req.Kind, req.Key, resp.Revision)
		case w.Key != req.Key || w.Delete != (req.Kind == model.Delete) || (!w.Delete && w.Value != req.Value):
			return fmt.Errorf("acknowledged %v of %s=%q at revision %d, but revision %d applied %+v", req.Kind, req.Key, req.Value, resp.Revision, w.Revision, w)
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
//   - a delete event of key K at revision R that no acknowledged delete
//     accounts for was made by an unknown delete of K: the events of K are
//     matched, in revision order, to K's unknown deletes in call order
//     (the earliest call is the least constrained choice, since an unknown
//     operation's only bound is its call). K's unknown deletes left over
//     deleted nothing or never ran, neither of which changes the store,
//     and leave the history.
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
		if req.Kind == model.Delete && !resp.Unknown && resp.Deleted > 0 {
			acked[resp.Revision] = true
		}
	}
	unclaimed := map[string][]int64{} // key -> delete revisions no acknowledged delete made
	for _, w := range writes {
		if w.Delete && !acked[w.Revision] {
			unclaimed[w.Key] = append(unclaimed[w.Key], w.Revision)
		}
	}
	// Unknown deletes per key, in call order.
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ops[a].Call, ops[b].Call) })
	deleteAt := map[int]int64{} // op index -> revision it deleted at
	for _, i := range order {
		req, resp := ops[i].Input.(model.Request), ops[i].Output.(model.Response)
		if req.Kind != model.Delete || !resp.Unknown {
			continue
		}
		if revs := unclaimed[req.Key]; len(revs) > 0 {
			deleteAt[i] = revs[0]
			unclaimed[req.Key] = revs[1:]
		}
	}
	var out []porcupine.Operation
	for i, op := range ops {
		req, resp := op.Input.(model.Request), op.Output.(model.Response)
		if !resp.Unknown || req.Kind == model.Get {
			out = append(out, op)
			continue
		}
		var rev int64
		var ok bool
		if req.Kind == model.Delete {
			rev, ok = deleteAt[i]
		} else {
			rev, ok = at[req.Value]
		}
		if !ok {
			dropped++
			continue
		}
		switch req.Kind {
		case model.Delete:
			op.Output = model.Response{Revision: rev, Deleted: 1}
		default:
			op.Output = model.Response{Revision: rev, Succeeded: req.Kind == model.CAS}
		}
		out = append(out, op)
		resolved++
	}
	return out, resolved, dropped
}
