//go:build linux

package robustness

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Watcher watches every traffic key on one member from revision 2 for the
// whole run, asking for progress notifications as it goes, and resumes
// from the revision after its last event whenever its stream breaks (a
// killed member, a cut link). What it saw is checked against the writes
// the cluster applied (checkWatch).
type Watcher struct {
	m  *Member
	mu sync.Mutex
	// events are the events received, in order, over every stream.
	events []Write
	// progress are the progress notifications: the revision each
	// promised, and how many events had arrived by then.
	progress []progressMark
	// resumes counts streams opened after the first.
	resumes int
	done    chan struct{}
}

type progressMark struct {
	revision int64
	events   int
}

// Watch starts a watcher of m until ctx ends.
func Watch(ctx context.Context, m *Member) *Watcher {
	w := &Watcher{m: m, done: make(chan struct{})}
	go w.run(ctx)
	return w
}

func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	for ctx.Err() == nil {
		w.stream(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond): // before resuming on a broken stream
			w.mu.Lock()
			w.resumes++
			w.mu.Unlock()
		}
	}
}

// next is the revision a new stream starts from.
func (w *Watcher) next() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.events) == 0 {
		return 2
	}
	return w.events[len(w.events)-1].Revision + 1
}

// stream runs one watch stream until it breaks or ctx ends.
func (w *Watcher) stream(ctx context.Context) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := pb.NewWatchClient(w.m.conn).Watch(sctx)
	if err != nil {
		return
	}
	if err := s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("key"), RangeEnd: []byte("kez"), StartRevision: w.next()}}}); err != nil {
		return
	}
	go func() { // asks for progress every 300 ms while the stream lasts
		t := time.NewTicker(300 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			if s.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}}) != nil {
				return
			}
		}
	}()
	for {
		r, err := s.Recv()
		if err != nil || r.Canceled {
			return
		}
		w.mu.Lock()
		for _, e := range r.Events {
			w.events = append(w.events, Write{Revision: e.Kv.ModRevision, Key: string(e.Kv.Key), Value: string(e.Kv.Value),
				Delete: e.Type == mvccpb.DELETE, Lease: e.Kv.Lease})
		}
		if len(r.Events) == 0 && !r.Created && r.Header.GetRevision() > 0 {
			w.progress = append(w.progress, progressMark{revision: r.Header.GetRevision(), events: len(w.events)})
		}
		w.mu.Unlock()
	}
}

// Events returns the events received so far.
func (w *Watcher) Events() []Write {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.events)
}

// waitFor waits, up to timeout, until the watcher has the events up to
// rev.
func (w *Watcher) waitFor(rev int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for w.next() <= rev && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polls the watcher
	}
}

// check checks what a watcher saw against the applied writes (every
// event from revision 2 through rev): the same events in the same order,
// none missing, none twice (ordered, unique, reliable, and resumable
// across broken streams), through rev; and no progress notification ahead
// of the events delivered before it (bookmarkable): the first event not
// yet delivered when it came must be past its revision.
func (w *Watcher) check(writes []Write, rev int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, e := range w.events {
		if e.Revision > rev {
			break // applied after the run's last revision: not checked
		}
		if i >= len(writes) {
			return fmt.Errorf("watch on %s: event %d (%+v) beyond the %d applied writes", w.m.Name, i, e, len(writes))
		}
		if e != writes[i] {
			return fmt.Errorf("watch on %s: event %d is %+v, the cluster applied %+v (a gap, a repeat, out of order, or wrong content)", w.m.Name, i, e, writes[i])
		}
	}
	if len(w.events) < len(writes) {
		return fmt.Errorf("watch on %s: events up to revision %d, the cluster is at %d", w.m.Name, writes[len(w.events)].Revision-1, rev)
	}
	for _, p := range w.progress {
		if p.events < len(writes) && writes[p.events].Revision <= p.revision {
			return fmt.Errorf("watch on %s: progress notification at revision %d before the event at revision %d", w.m.Name, p.revision, writes[p.events].Revision)
		}
	}
	return nil
}
