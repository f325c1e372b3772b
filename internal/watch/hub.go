package watch

import (
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/clock"
	"github.com/stratakv/strata/internal/plantedbug"
)

// Source reads past events back from storage (applier.Applier.Events).
type Source interface {
	Events(from int64, maxEvents, maxBytes int, withPrev bool) (applier.EventRange, error)
}

// Config configures a Hub.
type Config struct {
	Source Source
	// Rev and Compacted are the state machine's revisions when the hub
	// starts (applier.Applier.Rev).
	Rev, Compacted int64
	// ProgressInterval is --watch-progress-notify-interval: how often
	// watchers created with progress_notify hear the revision when no
	// event went out. 0: 10 minutes.
	ProgressInterval time.Duration
	// RingEvents bounds the recent events kept in memory for watchers
	// catching up; 0: 4096. RingBytes bounds their keys and values; 0:
	// 16 MiB.
	RingEvents, RingBytes int
	// MaxPending bounds the events queued for one synced watcher before
	// it falls back to catching up; 0: 1000. MaxPendingBytes bounds their
	// keys and values; 0: 1 MiB. Together with the batch limits below
	// they bound the memory a slow watcher holds.
	MaxPending, MaxPendingBytes int
	// BatchEvents and BatchBytes bound one catch-up read and so one
	// response (whole revisions, at least one); 0: 1000 and 1 MiB.
	BatchEvents, BatchBytes int
	// Clock drives the progress timers; nil: the wall clock.
	Clock clock.Clock
}

func (c *Config) fill() {
	if c.ProgressInterval <= 0 {
		c.ProgressInterval = 10 * time.Minute
	}
	if c.RingEvents <= 0 {
		c.RingEvents = 4096
	}
	if c.RingBytes <= 0 {
		c.RingBytes = 16 << 20
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1000
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = 1 << 20
	}
	if c.BatchEvents <= 0 {
		c.BatchEvents = 1000
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = 1 << 20
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
}

// Hub fans the state machine's events out to watchers. Commit (the
// applier's OnCommit hook) feeds it in revision order; each Stream drains
// its own watchers. See doc.go.
type Hub struct {
	cfg Config

	mu sync.Mutex
	// rev is the newest revision fed; compacted the compacted revision.
	rev, compacted int64
	// synced holds the watchers that receive events from Commit.
	synced *index
	// ring holds the events of revisions [ringFrom, rev], oldest first.
	ring      []*mvccpb.Event
	ringFrom  int64
	ringBytes int
	// touched is Commit's scratch list of watchers given events of the
	// current revision.
	touched []*watcher
	// streams counts open streams; watchers the watchers they hold.
	streams, watchers int
}

// New returns a hub at cfg.Rev.
func New(cfg Config) *Hub {
	cfg.fill()
	return &Hub{cfg: cfg, rev: cfg.Rev, compacted: cfg.Compacted, synced: newIndex(), ringFrom: cfg.Rev + 1}
}

// Rev returns the newest revision the hub has been fed.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// Stats reports the hub's size.
type Stats struct {
	Streams, Watchers, Synced, RingEvents int
}

// Stats returns the hub's current size.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Streams: h.streams, Watchers: h.watchers, Synced: h.synced.n, RingEvents: len(h.ring)}
}

// Commit feeds a committed batch: its events go to every synced watcher
// they match, one whole revision at a time. A watcher whose queue would
// overflow leaves the synced set at that revision and catches up from the
// ring or storage instead; apply never waits for a watcher.
func (h *Hub) Commit(c applier.Commit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.Restored {
		h.restoreLocked(c)
		return
	}
	for i := 0; i < len(c.Events); {
		rev := c.Events[i].Kv.ModRevision
		j := i
		for j < len(c.Events) && c.Events[j].Kv.ModRevision == rev {
			if !(rev%100 == 0 && plantedbug.On(plantedbug.DropWatchEvent)) {
				h.fanOut(rev, c.Events[j])
			}
			j++
		}
		h.settle(rev)
		i = j
	}
	h.rev, h.compacted = c.Rev, c.Compacted
	h.remember(c.Events)
}

// fanOut queues ev (of revision rev) for the synced watchers it matches.
// Watchers that did not ask for prev_kv share one copy of ev without it.
func (h *Hub) fanOut(rev int64, ev *mvccpb.Event) {
	var bare *mvccpb.Event
	h.synced.match(ev.Kv.Key, func(w *watcher) {
		if rev < w.next || w.filtered(ev) {
			return
		}
		if w.revStart < 0 {
			w.revStart = len(w.pending)
			h.touched = append(h.touched, w)
		}
		e := ev
		if !w.prevKV && ev.PrevKv != nil {
			if bare == nil {
				bare = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
			}
			e = bare
		}
		w.pending = append(w.pending, e)
		w.pendingBytes += eventSize(e)
	})
}

// settle ends revision rev's fan-out: a watcher whose queue overflowed
// gives the revision back and falls behind; the others are woken.
func (h *Hub) settle(rev int64) {
	for i, w := range h.touched {
		if len(w.pending) > h.cfg.MaxPending || w.pendingBytes > h.cfg.MaxPendingBytes {
			for _, ev := range w.pending[w.revStart:] {
				w.pendingBytes -= eventSize(ev)
			}
			clear(w.pending[w.revStart:])
			w.pending = w.pending[:w.revStart]
			h.unsync(w, rev)
		}
		w.revStart = -1
		w.s.ready(w)
		h.touched[i] = nil
	}
	h.touched = h.touched[:0]
}

// unsync moves w out of the synced set: it has everything below next.
func (h *Hub) unsync(w *watcher, next int64) {
	h.synced.remove(w)
	w.synced = false
	w.next = next
}

// remember appends events to the ring, dropping its oldest revisions
// beyond its bounds.
func (h *Hub) remember(evs []*mvccpb.Event) {
	for _, ev := range evs {
		h.ring = append(h.ring, ev)
		h.ringBytes += eventSize(ev)
	}
	drop := 0
	for drop < len(h.ring) && (len(h.ring)-drop > h.cfg.RingEvents || h.ringBytes > h.cfg.RingBytes) {
		rev := h.ring[drop].Kv.ModRevision
		for drop < len(h.ring) && h.ring[drop].Kv.ModRevision == rev {
			h.ringBytes -= eventSize(h.ring[drop])
			drop++
		}
		h.ringFrom = rev + 1
	}
	if drop > 0 {
		// Shift rather than reslice, so that the ring's array does not
		// grow without bound.
		n := copy(h.ring, h.ring[drop:])
		clear(h.ring[n:])
		h.ring = h.ring[:n]
	}
}

// restoreLocked handles a snapshot install: the revisions it skipped come
// only from storage, so every synced watcher falls back to catching up from
// where it stands, and the ring restarts empty.
func (h *Hub) restoreLocked(c applier.Commit) {
	var ws []*watcher
	for _, g := range h.synced.keys {
		ws = append(ws, g.ws...)
	}
	for _, g := range h.synced.ranges {
		ws = append(ws, g.ws...)
	}
	for _, w := range ws {
		h.unsync(w, max(w.next, h.rev+1))
		w.s.ready(w)
	}
	clear(h.ring)
	h.ring, h.ringBytes = h.ring[:0], 0
	h.rev, h.compacted = c.Rev, c.Compacted
	h.ringFrom = c.Rev + 1
}

// fromRing collects w's events of revisions [w.next, ...] from the ring,
// whole revisions up to the batch bounds, and returns them with the last
// revision covered. REQUIRES: h.mu; w.next >= h.ringFrom.
func (h *Hub) fromRing(w *watcher) (evs []*mvccpb.Event, through int64) {
	i := searchRev(h.ring, w.next)
	through, size, n := w.next-1, 0, 0
	for i < len(h.ring) {
		rev := h.ring[i].Kv.ModRevision
		if n > 0 && (n >= h.cfg.BatchEvents || size >= h.cfg.BatchBytes) {
			return evs, through
		}
		for ; i < len(h.ring) && h.ring[i].Kv.ModRevision == rev; i++ {
			ev := h.ring[i]
			n++
			size += eventSize(ev)
			if w.matches(ev.Kv.Key) && !w.filtered(ev) {
				evs = append(evs, ev)
			}
		}
		through = rev
	}
	return evs, h.rev
}

// searchRev returns the index of the first event at or after rev.
func searchRev(evs []*mvccpb.Event, rev int64) int {
	lo, hi := 0, len(evs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if evs[m].Kv.ModRevision < rev {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func eventSize(ev *mvccpb.Event) int {
	n := len(ev.Kv.Key) + len(ev.Kv.Value)
	if ev.PrevKv != nil {
		n += len(ev.PrevKv.Key) + len(ev.PrevKv.Value)
	}
	return n
}

// jitter returns the progress interval of a new stream: etcd adds up to a
// tenth, so that streams opened together do not tick together.
func (h *Hub) jitter() time.Duration {
	d := h.cfg.ProgressInterval
	return d + time.Duration(rand.Int64N(int64(d)/10+1))
}
