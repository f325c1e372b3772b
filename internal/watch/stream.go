package watch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/internal/clock"
)

// etcd's create refusals, by their cancel_reason text.
var (
	ErrEmptyWatcherRange  = errors.New("mvcc: watcher range is empty")
	ErrWatcherDuplicateID = errors.New("mvcc: duplicate watch ID provided on the WatchStream")
)

// InvalidWatchID is the watch_id of refused creates and of the answer to a
// progress request (client/v3's InvalidWatchID).
const InvalidWatchID = -1

// maxCtrl bounds the control responses (created, canceled, progress) a
// stream queues; Handle waits for room beyond it, as etcd's recvLoop waits
// on its control channel.
const maxCtrl = 64

// StreamOptions configures a Stream.
type StreamOptions struct {
	// Header returns a response header with the cluster ID, member ID and
	// raft term; the stream sets the revision. nil: an empty header.
	Header func() *pb.ResponseHeader
	// FragmentBytes is the response size from which a watcher created
	// with fragment=true has its responses split (etcd: max-request-bytes
	// + 512 KiB). 0: never.
	FragmentBytes int
}

// Stream is the server side of one Watch gRPC stream: the watchers it
// multiplexes and the responses they are due. Handle takes the client's
// requests (from the receiving goroutine), Next hands out the responses to
// send (to the sending goroutine), in an order that keeps etcd's promises:
// a watcher's created response before its events, its events in revision
// order with no gaps or repeats and whole revisions per response (unless
// fragmented), nothing after its canceled response, and a progress
// notification only once every event at or below its revision was handed
// out.
type Stream struct {
	h      *Hub
	opts   StreamOptions
	ticker clock.Ticker
	wake   chan struct{}

	// Guarded by h.mu.
	watchers  map[int64]*watcher
	nextID    int64
	readyList []*watcher
	ctrl      []ctrlItem
	room      *sync.Cond // signaled when ctrl drains
	closed    bool
}

// ctrlItem is a control response due, in request order.
type ctrlItem struct {
	resp *pb.WatchResponse // created, canceled or refused; nil for progress
	// w is the watcher a created response announces.
	w *watcher
	// progress: a progress request.
	progress bool
}

// NewStream opens a stream. It must be closed.
func (h *Hub) NewStream(opts StreamOptions) *Stream {
	s := &Stream{
		h: h, opts: opts, wake: make(chan struct{}, 1),
		watchers: map[int64]*watcher{},
		ticker:   h.cfg.Clock.NewTicker(h.jitter()),
	}
	s.room = sync.NewCond(&h.mu)
	h.mu.Lock()
	h.streams++
	h.mu.Unlock()
	return s
}

// Close removes the stream's watchers from the hub.
func (s *Stream) Close() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	for _, w := range s.watchers {
		s.dropLocked(w)
	}
	s.watchers = nil
	s.readyList = nil
	s.ctrl = nil
	h.streams--
	s.room.Broadcast()
	s.ticker.Stop()
}

// dropLocked takes w out of the hub. REQUIRES: h.mu.
func (s *Stream) dropLocked(w *watcher) {
	if w.dead {
		return
	}
	if w.synced {
		s.h.synced.remove(w)
		w.synced = false
	}
	w.dead = true
	clear(w.pending)
	w.pending, w.pendingBytes = nil, 0
	s.h.watchers--
}

// ready queues w for the sending side. REQUIRES: h.mu.
func (s *Stream) ready(w *watcher) {
	if w.queued || s.closed {
		return
	}
	w.queued = true
	s.readyList = append(s.readyList, w)
	s.signal()
}

func (s *Stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Handle takes one request of the client. It blocks only while the stream
// has maxCtrl control responses queued.
func (s *Stream) Handle(req *pb.WatchRequest) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(s.ctrl) >= maxCtrl && !s.closed {
		s.room.Wait()
	}
	if s.closed {
		return
	}
	switch u := req.RequestUnion.(type) {
	case *pb.WatchRequest_CreateRequest:
		s.createLocked(u.CreateRequest)
	case *pb.WatchRequest_CancelRequest:
		w := s.watchers[u.CancelRequest.WatchId]
		if w == nil {
			return // etcd answers nothing for an unknown ID
		}
		s.dropLocked(w)
		delete(s.watchers, w.id)
		s.push(ctrlItem{resp: &pb.WatchResponse{WatchId: w.id, Canceled: true, Header: &pb.ResponseHeader{Revision: h.rev}}})
	case *pb.WatchRequest_ProgressRequest:
		s.push(ctrlItem{progress: true})
	}
}

func (s *Stream) push(c ctrlItem) {
	s.ctrl = append(s.ctrl, c)
	s.signal()
}

// Refuse answers a create request the caller refused (etcd's answer to a
// watch its caller may not read: created and canceled, watch ID -1, with
// reason). Call it from the goroutine that calls Handle, in the place of
// the Handle of that request, so that the answers keep the requests' order.
func (s *Stream) Refuse(reason string) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for len(s.ctrl) >= maxCtrl && !s.closed {
		s.room.Wait()
	}
	if !s.closed {
		s.refuse(reason)
	}
}

// refuse queues etcd's answer to a create it refuses.
func (s *Stream) refuse(reason string) {
	s.push(ctrlItem{resp: &pb.WatchResponse{
		WatchId: InvalidWatchID, Created: true, Canceled: true, CancelReason: reason,
		Header: &pb.ResponseHeader{Revision: s.h.rev},
	}})
}

func (s *Stream) createLocked(r *pb.WatchCreateRequest) {
	h := s.h
	if r.StartRevision < 0 {
		s.refuse(rpctypes.ErrorDesc(rpctypes.ErrGRPCCompacted))
		return
	}
	w := &watcher{s: s, key: r.Key, startRev: r.StartRevision, slot: -1, revStart: -1, progressDue: true}
	if len(w.key) == 0 {
		w.key = []byte{0}
	}
	switch {
	case len(r.RangeEnd) == 0:
	case len(r.RangeEnd) == 1 && r.RangeEnd[0] == 0:
		w.isRange, w.end = true, bound{inf: true}
	default:
		w.isRange, w.end = true, bound{key: r.RangeEnd}
		if !w.end.after(w.key) {
			s.refuse(ErrEmptyWatcherRange.Error())
			return
		}
	}
	for _, f := range r.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDelete = true
		}
	}
	w.prevKV, w.progressNotify, w.fragment = r.PrevKv, r.ProgressNotify, r.Fragment
	if r.WatchId != 0 {
		if s.watchers[r.WatchId] != nil {
			s.refuse(ErrWatcherDuplicateID.Error())
			return
		}
		w.id = r.WatchId
	} else {
		for s.watchers[s.nextID] != nil {
			s.nextID++
		}
		w.id = s.nextID
		s.nextID++
	}
	s.watchers[w.id] = w
	h.watchers++
	// A start revision of 0 stays 0 (etcd's startRev): such a watcher is
	// never ahead of the store, so progress reaches it at once.
	w.next = w.startRev
	if w.startRev == 0 {
		w.next = h.rev + 1
	}
	if w.next > h.rev {
		w.synced = true
		h.synced.add(w)
	}
	s.push(ctrlItem{w: w, resp: &pb.WatchResponse{
		WatchId: w.id, Created: true, Header: &pb.ResponseHeader{Revision: h.rev},
	}})
}

// Next blocks until responses are due and returns them, in the order they
// must be sent. It fails only when ctx ends or storage fails.
func (s *Stream) Next(ctx context.Context) ([]*pb.WatchResponse, error) {
	for {
		out, catchUp := s.collect()
		if catchUp != nil {
			// One catch-up step on every pass that handed out no control
			// response, even when events are due: a stream whose synced
			// watchers are busy must not starve its watchers that are
			// behind. (Control responses go out on their own first, so
			// that a created response does not wait for storage.)
			more, err := s.catchUp(catchUp)
			if err != nil {
				return nil, err
			}
			out = append(out, more...)
		}
		if len(out) > 0 {
			return s.finish(out), nil
		}
		if catchUp != nil {
			// A catch-up step found nothing for the watcher: go on
			// reading (bounded steps), unless the stream is gone.
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-s.wake:
		case <-s.ticker.C():
			if out := s.progressTick(); len(out) > 0 {
				return s.finish(out), nil
			}
		}
	}
}

// finish fills the headers the stream owes.
func (s *Stream) finish(out []*pb.WatchResponse) []*pb.WatchResponse {
	for _, r := range out {
		var h *pb.ResponseHeader
		if s.opts.Header != nil {
			h = s.opts.Header()
		} else {
			h = &pb.ResponseHeader{}
		}
		if r.Header != nil {
			h.Revision = r.Header.Revision
		}
		r.Header = h
	}
	return out
}

// collect takes what is due without reading storage: control responses,
// then the queued events of ready watchers. It also returns one watcher
// that must catch up (the others stay on the ready list for the next
// passes).
func (s *Stream) collect() (out []*pb.WatchResponse, catchUp *watcher) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return nil, nil
	}
	ctrl := len(s.ctrl) > 0
	if ctrl {
		for i, c := range s.ctrl {
			switch {
			case c.progress:
				out = s.progressAllLocked(out)
			case c.w != nil:
				c.w.created = true
				out = append(out, c.resp)
				if !c.w.dead && (len(c.w.pending) > 0 || !c.w.synced) {
					s.ready(c.w)
				}
			default:
				out = append(out, c.resp)
			}
			s.ctrl[i] = ctrlItem{}
		}
		s.ctrl = s.ctrl[:0]
		s.room.Broadcast()
	}
	ready := s.readyList
	s.readyList = nil
	for i, w := range ready {
		ready[i] = nil
		w.queued = false
		if w.dead || !w.created {
			continue
		}
		if len(w.pending) > 0 {
			out = s.takePendingLocked(out, w)
			if !w.synced {
				s.ready(w) // catch up once the queue is out
			}
			continue
		}
		if !w.synced {
			if catchUp == nil && !ctrl {
				catchUp = w
			} else {
				s.ready(w)
			}
		}
	}
	return out, catchUp
}

// takePendingLocked hands out w's queued events, at the revision through
// which w then has everything: the hub's, or for a watcher that fell behind
// the one before its next. REQUIRES: h.mu.
func (s *Stream) takePendingLocked(out []*pb.WatchResponse, w *watcher) []*pb.WatchResponse {
	evs := w.pending
	w.pending, w.pendingBytes = nil, 0
	rev := s.h.rev
	if !w.synced {
		rev = w.next - 1
	}
	return s.events(out, w, evs, rev)
}

// events appends the responses carrying evs to w, at header revision rev.
func (s *Stream) events(out []*pb.WatchResponse, w *watcher, evs []*mvccpb.Event, rev int64) []*pb.WatchResponse {
	if len(evs) == 0 {
		return out
	}
	w.progressDue = false
	if !w.prevKV && slices.ContainsFunc(evs, func(ev *mvccpb.Event) bool { return ev.PrevKv != nil }) {
		// Events are shared between watchers: strip the previous
		// version on a copy (queued events come stripped already; those
		// read back for catch-up may not).
		stripped := make([]mvccpb.Event, len(evs))
		cp := make([]*mvccpb.Event, len(evs))
		for i, ev := range evs {
			stripped[i] = mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
			cp[i] = &stripped[i]
		}
		evs = cp
	}
	resp := &pb.WatchResponse{WatchId: w.id, Events: evs, Header: &pb.ResponseHeader{Revision: rev}}
	if !w.fragment || s.opts.FragmentBytes <= 0 || len(evs) < 2 {
		return append(out, resp)
	}
	// Measure with the header finish fills in, as etcd measures what it
	// sends.
	if s.opts.Header != nil {
		resp.Header = s.opts.Header()
		resp.Header.Revision = rev
	}
	if proto.Size(resp) < s.opts.FragmentBytes {
		return append(out, resp)
	}
	return append(out, fragments(resp, s.opts.FragmentBytes)...)
}

// fragments splits resp into pieces below limit bytes (at least one event
// each), all but the last marked fragment, as etcd does.
func fragments(resp *pb.WatchResponse, limit int) []*pb.WatchResponse {
	var out []*pb.WatchResponse
	evs := resp.Events
	for len(evs) > 0 {
		piece := &pb.WatchResponse{WatchId: resp.WatchId, Header: resp.Header, Fragment: true}
		size := proto.Size(piece)
		n := 0
		for n < len(evs) {
			es := proto.Size(evs[n]) + 8
			if n > 0 && size+es > limit {
				break
			}
			size += es
			n++
		}
		piece.Events = evs[:n:n]
		evs = evs[n:]
		out = append(out, piece)
	}
	out[len(out)-1].Fragment = false
	return out
}

// progressAllLocked answers a progress request: when every watcher of the
// stream is synced (and has reached its start revision), its queued events
// and then one response with watch_id -1 at the hub's revision; otherwise
// nothing, as etcd (the client asks again). REQUIRES: h.mu.
func (s *Stream) progressAllLocked(out []*pb.WatchResponse) []*pb.WatchResponse {
	h := s.h
	n := 0
	for _, w := range s.watchers {
		if !w.created {
			continue
		}
		if w.dead || !w.synced || h.rev < w.startRev {
			return out
		}
		n++
	}
	if n == 0 {
		return out
	}
	for _, w := range s.watchers {
		if w.created && len(w.pending) > 0 {
			out = s.takePendingLocked(out, w)
		}
	}
	return append(out, &pb.WatchResponse{WatchId: InvalidWatchID, Header: &pb.ResponseHeader{Revision: h.rev}})
}

// progressTick sends the periodic progress notifications: to every synced
// watcher created with progress_notify that sent no event since the last
// tick and has nothing queued, at the hub's revision.
func (s *Stream) progressTick() []*pb.WatchResponse {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*pb.WatchResponse
	for _, w := range s.watchers {
		if !w.progressNotify || !w.created || w.dead {
			continue
		}
		if w.progressDue && w.synced && len(w.pending) == 0 && h.rev >= w.startRev {
			out = append(out, &pb.WatchResponse{WatchId: w.id, Header: &pb.ResponseHeader{Revision: h.rev}})
		}
		w.progressDue = true
	}
	return out
}

// catchUp moves w, which is behind the hub, forward: from the ring when it
// still holds w's next revision, else from storage. A watcher whose next
// revision has been compacted is canceled with the compacted revision.
func (s *Stream) catchUp(w *watcher) ([]*pb.WatchResponse, error) {
	h := s.h
	h.mu.Lock()
	if w.dead || w.synced || s.closed {
		h.mu.Unlock()
		return nil, nil
	}
	if out := s.compactedLocked(w, h.compacted); out != nil {
		h.mu.Unlock()
		return out, nil
	}
	if w.next > h.rev {
		s.syncLocked(w)
		h.mu.Unlock()
		return nil, nil
	}
	// The ring serves revisions above the compacted one; from the
	// compacted revision itself storage decides what survived compaction.
	if w.next >= h.ringFrom && w.next > h.compacted {
		evs, through := h.fromRing(w)
		out := s.advanceLocked(w, evs, through)
		h.mu.Unlock()
		return out, nil
	}
	from := w.next
	h.mu.Unlock()

	er, err := h.cfg.Source.Events(from, h.cfg.BatchEvents, h.cfg.BatchBytes, w.prevKV)
	h.mu.Lock()
	defer h.mu.Unlock()
	if w.dead || s.closed || w.next != from {
		return nil, nil
	}
	if errors.Is(err, rpctypes.ErrGRPCCompacted) {
		return s.compactedLocked(w, er.Compacted), nil
	}
	if err != nil {
		return nil, fmt.Errorf("watch: catching up from revision %d: %w", from, err)
	}
	// The read may have seen batches the applier committed but has not
	// yet handed to Commit: leave their revisions to Commit (w, synced at
	// the hub's revision, takes them from there), so that nothing goes out
	// ahead of the hub's revision, which a progress notification would
	// then fall below.
	through := min(er.Through, h.rev)
	evs := er.Events[:0]
	for _, ev := range er.Events {
		if ev.Kv.ModRevision > through {
			break
		}
		if w.matches(ev.Kv.Key) && !w.filtered(ev) {
			evs = append(evs, ev)
		}
	}
	return s.advanceLocked(w, evs, through), nil
}

// advanceLocked records that w has its events through revision through
// (evs), syncs it if that reaches the hub, and returns the responses at
// header revision through: w has had everything up to it (as etcd's
// responses to a watcher behind the store). REQUIRES: h.mu; through <=
// h.rev.
func (s *Stream) advanceLocked(w *watcher, evs []*mvccpb.Event, through int64) []*pb.WatchResponse {
	h := s.h
	w.next = through + 1
	if through >= h.rev {
		s.syncLocked(w)
	} else {
		s.ready(w)
	}
	return s.events(nil, w, evs, through)
}

func (s *Stream) syncLocked(w *watcher) {
	w.synced = true
	s.h.synced.add(w)
}

// compactedLocked cancels w if its next revision lies below compacted:
// etcd's response carries only the watch ID and the compacted revision (and
// canceled); the ID stays taken until the client cancels it. REQUIRES:
// h.mu.
func (s *Stream) compactedLocked(w *watcher, compacted int64) []*pb.WatchResponse {
	if w.next >= compacted {
		return nil
	}
	s.dropLocked(w)
	return []*pb.WatchResponse{{WatchId: w.id, CompactRevision: compacted, Canceled: true, Header: &pb.ResponseHeader{}}}
}
