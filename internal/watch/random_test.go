package watch

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/stratakv/strata/applier/kvmodel"
)

// TestRandomized runs many watchers (random keys and ranges, start
// revisions in the past, now and ahead, prev_kv, filters, progress_notify),
// on several streams, some of them read slowly, under a random workload
// with concurrent creates, cancels, progress requests and progress ticks,
// and checks every watcher's responses against the store's history read
// back at the end:
//
//   - the created response first, nothing after the canceled one;
//   - exactly the events brute force selects (a prefix for a canceled
//     watcher), in order, each revision whole in one response;
//   - no event above its response's header revision, and by the end of a
//     response every event up to its header revision received;
//   - a progress notification (watch_id -1, or the watcher's own) only once
//     every event at or below its revision was received, by every watcher
//     of the stream (or that watcher), never below a start revision.
func TestRandomized(t *testing.T) {
	for seed := range int64(3) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runRandomized(t, seed) })
	}
}

// watchLog is what one stream's client did and received, in order.
type watchLog struct {
	creates []*wreq // in request order
	// entries: responses and the client's cancels, in order.
	entries []logEntry
}

type logEntry struct {
	resp   *pb.WatchResponse
	cancel int64 // a cancel request for this ID, when resp is nil
}

const (
	randStreams  = 4
	randWatchers = 12
	randEntries  = 300
)

func runRandomized(t *testing.T, seed int64) {
	const interval = time.Minute
	e := newEnv(t, Config{
		RingEvents: 40, RingBytes: 400, MaxPending: 4, BatchEvents: 5, BatchBytes: 200, ProgressInterval: interval,
	})
	gen := kvmodel.NewGenerator(seed, kvmodel.GenOptions{Leases: []int64{7, 8}, LeasePercent: 5, CompactPercent: -1})
	// A step applies one to four entries of one to three requests in
	// one Apply: the hub hears of several revisions in one Commit.
	stepRng := rand.New(rand.NewPCG(uint64(seed), 3))
	step := func() (int64, error) {
		rev, _ := e.a.Rev()
		var ents [][]*pb.InternalRaftRequest
		for range 1 + stepRng.IntN(4) {
			var reqs []*pb.InternalRaftRequest
			for range 1 + stepRng.IntN(3) {
				reqs = append(reqs, gen.Next(rev, -1))
			}
			ents = append(ents, reqs)
		}
		return e.tryApplyEntries(ents...)
	}
	for range 100 {
		if _, err := step(); err != nil {
			t.Fatal(err)
		}
	}
	rev0 := e.rev()
	rng := rand.New(rand.NewPCG(uint64(seed), 7))
	newReq := func(rng *rand.Rand, cur int64, future bool) *wreq {
		keys := kvmodel.DefaultKeys
		r := &wreq{Key: []byte(keys[rng.IntN(len(keys))])}
		switch n := rng.IntN(10); {
		case n < 4:
		case n < 6:
			r.RangeEnd = []byte{0}
		case n < 7:
			r.Key, r.RangeEnd = nil, []byte{0}
		default:
			// Another key of the space above it, or its prefix end.
			var above []string
			for _, k := range keys {
				if k > string(r.Key) {
					above = append(above, k)
				}
			}
			if len(above) == 0 || rng.IntN(3) == 0 {
				r.RangeEnd = []byte(clientv3.GetPrefixRangeEnd(string(r.Key)))
			} else {
				r.RangeEnd = []byte(above[rng.IntN(len(above))])
			}
		}
		switch n := rng.IntN(10); {
		case n < 4:
		case n < 8 || !future:
			r.StartRevision = 1 + rng.Int64N(cur)
		default:
			r.StartRevision = cur + 1 + rng.Int64N(100)
		}
		r.PrevKv = rng.IntN(2) == 0
		if n := rng.IntN(10); n < 2 {
			r.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}
		} else if n < 4 {
			r.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}
		}
		r.ProgressNotify = rng.IntN(3) == 0
		return r
	}

	streams := make([]*Stream, randStreams)
	logs := make([]*watchLog, randStreams)
	nextChosen := int64(1000)
	for i := range streams {
		streams[i] = e.hub.NewStream(StreamOptions{})
		defer streams[i].Close()
		logs[i] = &watchLog{}
		for range randWatchers {
			r := newReq(rng, rev0, true)
			if rng.IntN(4) == 0 {
				r.WatchId = nextChosen
				nextChosen++
			}
			logs[i].creates = append(logs[i].creates, r)
			create(streams[i], r)
		}
	}

	runCtx, stop := context.WithTimeout(t.Context(), 30*time.Second)
	defer stop()
	writerDone := make(chan struct{})
	kicks := make([]chan struct{}, randStreams)
	for i := range kicks {
		kicks[i] = make(chan struct{}, 1)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		defer close(writerDone)
		defer stop()
		for i := 0; i < randEntries || e.rev() <= rev0+101; i++ {
			if _, err := step(); err != nil {
				t.Error(err)
				return
			}
			if i%25 == 0 {
				e.clk.Advance(interval*11/10 + time.Nanosecond)
			}
			if i%20 == 0 {
				for _, k := range kicks {
					select {
					case k <- struct{}{}:
					default:
					}
				}
			}
		}
	}()
	for i := range streams {
		wg.Add(1)
		go func() { // a client
			defer wg.Done()
			s, log := streams[i], logs[i]
			rng := rand.New(rand.NewPCG(uint64(seed), uint64(100+i)))
			slow := i%2 == 1
			ids := map[int64]bool{} // created (answered), cancel not asked
			record := func(resps []*pb.WatchResponse) {
				for _, r := range resps {
					log.entries = append(log.entries, logEntry{resp: r})
					if r.Created && !r.Canceled {
						ids[r.WatchId] = true
					}
				}
			}
			active := func() []int64 {
				var out []int64
				for id := range ids {
					out = append(out, id)
				}
				slices.Sort(out)
				return out
			}
			for {
				resps, err := s.Next(runCtx)
				if err != nil {
					break
				}
				record(resps)
				switch n := rng.IntN(100); {
				case n < 10:
					requestProgress(s)
				case n < 13:
					if act := active(); len(act) > 0 {
						id := act[rng.IntN(len(act))]
						log.entries = append(log.entries, logEntry{cancel: id})
						delete(ids, id)
						cancelWatch(s, id)
					}
				case n < 16:
					r := newReq(rng, e.rev(), false)
					log.creates = append(log.creates, r)
					create(s, r)
				}
				if slow {
					select {
					case <-kicks[i]:
					case <-writerDone:
					}
				}
			}
			<-writerDone
			// Drain what is left without blocking, then every watcher is
			// synced: a progress request is answered at the final
			// revision.
			for {
				resps := tryNext(t, s)
				if len(resps) == 0 {
					break
				}
				record(resps)
			}
			requestProgress(s)
			for {
				resps := tryNext(t, s)
				if len(resps) == 0 {
					break
				}
				record(resps)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	final := e.rev()
	all := e.allEvents()
	watchers, events, progress := 0, 0, 0
	for i, log := range logs {
		w, ev, p := checkLog(t, fmt.Sprintf("stream %d", i), log, all, final)
		watchers, events, progress = watchers+w, events+ev, progress+p
	}
	t.Logf("%d revisions, %d watchers, %d events and %d progress notifications delivered", final-rev0, watchers, events, progress)
}

// tryNext is Next without waiting: what is due now, or nothing.
func tryNext(t *testing.T, s *Stream) []*pb.WatchResponse {
	for {
		out, c := s.collect()
		if c != nil {
			more, err := s.catchUp(c)
			if err != nil {
				t.Error(err)
				return nil
			}
			out = append(out, more...)
		}
		if len(out) > 0 {
			return s.finish(out)
		}
		if c == nil {
			return nil
		}
	}
}

type logWatcher struct {
	req      *wreq
	want     []*mvccpb.Event
	got      []*mvccpb.Event
	canceled bool
	// cancelAsked: the client asked for the cancel (the responses
	// before the canceled one may still come).
	cancelAsked bool
}

// checkLog checks one stream's log (see TestRandomized) and returns the
// watchers, events and progress notifications it holds.
func checkLog(t *testing.T, name string, log *watchLog, all []*mvccpb.Event, final int64) (nw, nev, nprog int) {
	t.Helper()
	ws := map[int64]*logWatcher{}
	creates := 0
	lastProgress := int64(0)
	countUpTo := func(evs []*mvccpb.Event, rev int64) int {
		return sort.Search(len(evs), func(i int) bool { return evs[i].Kv.ModRevision > rev })
	}
	// synced checks that w has every event up to rev.
	synced := func(id int64, w *logWatcher, rev int64, what string) {
		t.Helper()
		if n := countUpTo(w.want, rev); len(w.got) != n {
			t.Fatalf("%s: %s at revision %d: watcher %d (%v) has %d events, %d due up to there", name, what, rev, id, w.req, len(w.got), n)
		}
	}
	finalProgress := false
	for i, en := range log.entries {
		if en.resp == nil {
			if w := ws[en.cancel]; w != nil {
				w.cancelAsked = true
			}
			continue
		}
		r := en.resp
		rev := r.Header.GetRevision()
		switch {
		case r.Created:
			if creates >= len(log.creates) {
				t.Fatalf("%s: entry %d: more created responses than creates", name, i)
			}
			req := log.creates[creates]
			creates++
			if r.Canceled || r.WatchId == -1 {
				t.Fatalf("%s: create %v refused: %v", name, req, r)
			}
			if req.WatchId != 0 && r.WatchId != req.WatchId {
				t.Fatalf("%s: create with ID %d answered for %d", name, req.WatchId, r.WatchId)
			}
			if ws[r.WatchId] != nil && !ws[r.WatchId].canceled {
				t.Fatalf("%s: ID %d created twice", name, r.WatchId)
			}
			from := req.StartRevision
			if from == 0 {
				from = rev + 1
			}
			ws[r.WatchId] = &logWatcher{req: req, want: want(req, all, from)}
			nw++
		case r.Canceled:
			w := ws[r.WatchId]
			if w == nil || w.canceled || !w.cancelAsked || r.CompactRevision != 0 {
				t.Fatalf("%s: entry %d: unexpected cancel %v", name, i, r)
			}
			w.canceled = true
		case r.WatchId == -1:
			if len(r.Events) != 0 {
				t.Fatalf("%s: events for watch ID -1: %v", name, r)
			}
			if rev < lastProgress {
				t.Fatalf("%s: progress at revision %d after one at %d", name, rev, lastProgress)
			}
			lastProgress = rev
			for id, w := range ws {
				if w.canceled {
					continue
				}
				if rev < w.req.StartRevision {
					t.Fatalf("%s: progress at revision %d below watcher %d's start %d", name, rev, id, w.req.StartRevision)
				}
				synced(id, w, rev, "progress")
			}
			finalProgress = finalProgress || rev == final
			nprog++
		default:
			w := ws[r.WatchId]
			if w == nil || w.canceled {
				t.Fatalf("%s: entry %d: response for watcher %d not active: %v", name, i, r.WatchId, r)
			}
			if r.Fragment || r.CompactRevision != 0 {
				t.Fatalf("%s: unexpected %v", name, r)
			}
			if len(r.Events) == 0 {
				if !w.req.ProgressNotify || rev < w.req.StartRevision {
					t.Fatalf("%s: progress notification to watcher %d (%v) at %d", name, r.WatchId, w.req, rev)
				}
				synced(r.WatchId, w, rev, "periodic progress")
				nprog++
				continue
			}
			if n := len(w.got); n > 0 && r.Events[0].Kv.ModRevision <= w.got[n-1].Kv.ModRevision {
				t.Fatalf("%s: watcher %d: response from revision %d after revision %d", name, r.WatchId, r.Events[0].Kv.ModRevision, w.got[n-1].Kv.ModRevision)
			}
			for _, ev := range r.Events {
				if ev.Kv.ModRevision > rev {
					t.Fatalf("%s: watcher %d: event at revision %d in a response at %d", name, r.WatchId, ev.Kv.ModRevision, rev)
				}
			}
			n := len(w.got)
			w.got = append(w.got, r.Events...)
			nev += len(r.Events)
			if len(w.got) > len(w.want) {
				t.Fatalf("%s: watcher %d (%v): %d events, want %d", name, r.WatchId, w.req, len(w.got), len(w.want))
			}
			sameEvents(t, fmt.Sprintf("%s: watcher %d (%v) from event %d", name, r.WatchId, w.req, n), w.got[n:], w.want[n:len(w.got)])
			synced(r.WatchId, w, rev, "event response")
		}
	}
	if creates != len(log.creates) {
		t.Fatalf("%s: %d created responses for %d creates", name, creates, len(log.creates))
	}
	if !finalProgress {
		t.Fatalf("%s: no progress at the final revision %d", name, final)
	}
	for id, w := range ws {
		if !w.canceled && len(w.got) != len(w.want) {
			t.Fatalf("%s: watcher %d (%v): %d events, want %d", name, id, w.req, len(w.got), len(w.want))
		}
	}
	return nw, nev, nprog
}
