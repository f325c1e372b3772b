//go:build linux

package robustness

import (
	"context"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

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

// collectWrites watches every key of the traffic from revision 2 on m
// until it has seen the events up to rev: the writes the cluster applied.
// Only the traffic writes, so every revision from 2 to rev is an event.
func collectWrites(ctx context.Context, m *Member, rev int64) ([]Write, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	w, err := pb.NewWatchClient(m.conn).Watch(ctx)
	if err != nil {
		return nil, err
	}
	if err := w.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("key"), RangeEnd: []byte("kez"), StartRevision: 2}}}); err != nil {
		return nil, err
	}
	var out []Write
	for rev > 1 && (len(out) == 0 || out[len(out)-1].Revision < rev) {
		r, err := w.Recv()
		if err != nil {
			return nil, fmt.Errorf("watch on %s: %w (after %d events)", m.Name, err, len(out))
		}
		if r.Canceled {
			return nil, fmt.Errorf("watch on %s canceled: %s", m.Name, r.CancelReason)
		}
		for _, e := range r.Events {
			out = append(out, Write{Revision: e.Kv.ModRevision, Key: string(e.Kv.Key), Value: string(e.Kv.Value), Delete: e.Type == mvccpb.DELETE})
		}
	}
	return out, nil
}

// patch resolves the writes whose outcome the clients lost, from the
// writes the cluster applied: a put or compare-and-swap whose (unique)
// value was written at revision R happened there; one whose value was
// never written changed nothing (a swap may have failed its compare; that
// changes nothing either) and leaves the history. Unknown deletes stay
// unknown. This is what etcd's robustness tests do with their watch
// streams; a watch that dropped an event makes the patched history fail
// the check, not pass it.
func patch(ops []porcupine.Operation, writes []Write) []porcupine.Operation {
	at := map[string]int64{}
	for _, w := range writes {
		if !w.Delete {
			at[w.Value] = w.Revision
		}
	}
	var out []porcupine.Operation
	for _, op := range ops {
		req, resp := op.Input.(model.Request), op.Output.(model.Response)
		if !resp.Unknown || req.Kind == model.Delete || req.Kind == model.Get {
			out = append(out, op)
			continue
		}
		rev, ok := at[req.Value]
		if !ok {
			continue
		}
		op.Output = model.Response{Revision: rev, Succeeded: req.Kind == model.CAS}
		out = append(out, op)
	}
	return out
}
