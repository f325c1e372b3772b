package watch

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
)

const compactedReason = "etcdserver: mvcc: required revision has been compacted"

func TestCreateResponses(t *testing.T) {
	e := newEnv(t, Config{})
	rev := e.apply(put("a", "1")) // 2
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()

	create(s, &wreq{Key: []byte("a")})                                        // auto: 0
	create(s, &wreq{Key: []byte("a"), WatchId: 2})                            // chosen: 2
	create(s, &wreq{Key: []byte("a")})                                        // auto: 1
	create(s, &wreq{Key: []byte("a")})                                        // auto: 3 (2 taken)
	create(s, &wreq{Key: []byte("a"), WatchId: 3})                            // duplicate
	create(s, &wreq{Key: []byte("b"), RangeEnd: []byte("a")})                 // empty range
	create(s, &wreq{Key: []byte("b"), RangeEnd: []byte("b")})                 // empty range
	create(s, &wreq{Key: []byte("a"), StartRevision: -1})                     // compacted
	create(s, &wreq{})                                                        // auto: 4, key "\x00"
	create(s, &wreq{RangeEnd: []byte{0}, WatchId: 10})                        // every key
	create(s, &wreq{Key: []byte("a"), RangeEnd: []byte{0}, StartRevision: 1}) // auto: 5, from the past

	type exp struct {
		id       int64
		canceled bool
		reason   string
	}
	exps := []exp{
		{0, false, ""}, {2, false, ""}, {1, false, ""}, {3, false, ""},
		{-1, true, "mvcc: duplicate watch ID provided on the WatchStream"},
		{-1, true, "mvcc: watcher range is empty"},
		{-1, true, "mvcc: watcher range is empty"},
		{-1, true, compactedReason},
		{4, false, ""}, {10, false, ""}, {5, false, ""},
	}
	resps := nextN(t, s, len(exps))
	for i, x := range exps {
		r := resps[i]
		if r.WatchId != x.id || !r.Created || r.Canceled != x.canceled || r.CancelReason != x.reason ||
			r.Header.GetRevision() != rev || len(r.Events) != 0 || r.CompactRevision != 0 || r.Fragment {
			t.Errorf("response %d = %v, want id %d created canceled=%v reason %q at revision %d", i, r, x.id, x.canceled, x.reason, rev)
		}
	}
	// The watcher from the past gets its event once created.
	var past []*pb.WatchResponse
	if len(resps) > len(exps) {
		past = resps[len(exps):]
	} else {
		past = next(t, s)
	}
	if len(past) != 1 || past[0].WatchId != 5 || len(past[0].Events) != 1 || string(past[0].Events[0].Kv.Key) != "a" {
		t.Fatalf("watcher from the past got %v", past)
	}
	nothingDue(t, s)

	// An empty key watches "\x00".
	rev = e.apply(put("\x00", "zero"))
	resps = drainEvents(t, s, map[int64]int{4: 1, 10: 1})
	for _, r := range resps {
		if r.WatchId != 4 && r.WatchId != 10 || r.Header.GetRevision() != rev || string(r.Events[0].Kv.Key) != "\x00" {
			t.Errorf("after a put of \\x00: %v", r)
		}
	}
	nothingDue(t, s)

	// IDs are per stream; a refused create takes no ID.
	s2 := e.hub.NewStream(StreamOptions{})
	defer s2.Close()
	create(s2, &wreq{Key: []byte("b"), RangeEnd: []byte("a")})
	create(s2, &wreq{Key: []byte("a")})
	resps = nextN(t, s2, 2)
	if resps[0].WatchId != -1 || resps[1].WatchId != 0 || resps[1].Canceled {
		t.Fatalf("second stream: %v", resps)
	}
	if st := e.hub.Stats(); st.Streams != 2 || st.Watchers != 8 {
		t.Fatalf("stats %+v, want 2 streams, 8 watchers", st)
	}
	s2.Close()
	if st := e.hub.Stats(); st.Streams != 1 || st.Watchers != 7 || st.Synced != 7 {
		t.Fatalf("stats after a close %+v, want 1 stream, 7 synced watchers", st)
	}
}

func TestLiveEvents(t *testing.T) {
	e := newEnv(t, Config{})
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	reqs := map[int64]*wreq{
		0: {Key: []byte("k"), PrevKv: true},
		1: {Key: []byte("k")},
		2: {Key: []byte("k"), RangeEnd: []byte("l"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}, PrevKv: true},
		3: {Key: []byte("k"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}},
		4: {Key: []byte("t"), RangeEnd: []byte("u"), PrevKv: true},
		5: {Key: []byte("k"), Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT, pb.WatchCreateRequest_NODELETE}},
	}
	for id := range int64(len(reqs)) {
		create(s, reqs[id])
	}
	nextN(t, s, len(reqs))
	from := e.rev() + 1

	e.apply(put("k", "v1"))                              // 2
	e.apply(put("k", "v2"))                              // 3
	e.apply(put("j", "x"), put("kk", "y"))               // 4, 5
	e.apply(del("k", ""))                                // 6
	e.apply(txnPuts("t1", "a", "t2", "b", "t3", "c"))    // 7
	e.apply(txnPuts("t1", "a2", "k", "v3", "t\xff", "")) // 8
	resps := drainEvents(t, s, map[int64]int{0: 4, 1: 4, 2: 1, 3: 3, 4: 5})
	nothingDue(t, s)

	all := e.allEvents()
	for id, r := range reqs {
		got := eventsOf(t, resps, id)
		sameEvents(t, fmt.Sprintf("watcher %d", id), got, want(r, all, from))
	}
	// Watcher 0 has the previous versions, watcher 1 the same events
	// without (on copies: watcher 0's are intact).
	ev0, ev1 := eventsOf(t, resps, 0), eventsOf(t, resps, 1)
	if ev0[0].PrevKv != nil || string(ev0[1].PrevKv.GetValue()) != "v1" || string(ev0[2].PrevKv.GetValue()) != "v2" || ev0[2].Type != mvccpb.DELETE {
		t.Errorf("watcher 0 events %v", ev0)
	}
	for _, ev := range ev1 {
		if ev.PrevKv != nil {
			t.Errorf("watcher 1 without prev_kv got %v", ev)
		}
	}
	// A txn's events come in one response.
	ev4 := eventsOf(t, resps, 4)
	for _, r := range resps {
		if r.WatchId == 4 && r.Events[0].Kv.ModRevision == 7 && (len(r.Events) < 3 || r.Events[2].Kv.ModRevision != 7) {
			t.Fatalf("txn split over responses: %v", r)
		}
	}
	if p := ev4[3].PrevKv; string(ev4[3].Kv.Key) != "t1" || string(p.GetValue()) != "a" {
		t.Fatalf("txn put over t1: %v", ev4[3])
	}
}

// TestCatchUp: watchers starting in the past read storage (a ring of two
// events) or the ring, in small batches, and get exactly what the store's
// history says; also while writes continue.
func TestCatchUp(t *testing.T) {
	for _, ring := range []int{2, 0} {
		t.Run(fmt.Sprintf("ring=%d", ring), func(t *testing.T) {
			e := newEnv(t, Config{RingEvents: ring, BatchEvents: 3})
			for i := range 40 {
				switch i % 5 {
				case 0, 1:
					e.apply(put(fmt.Sprintf("k%d", i%7), fmt.Sprint(i)))
				case 2:
					e.apply(txnPuts(fmt.Sprintf("k%d", i%7), "t", fmt.Sprintf("k%d", (i+1)%7), "u"))
				case 3:
					e.apply(del(fmt.Sprintf("k%d", i%3), ""))
				case 4:
					e.apply(put("other", fmt.Sprint(i)))
				}
			}
			rev := e.rev()
			s := e.hub.NewStream(StreamOptions{})
			defer s.Close()
			reqs := []*wreq{
				{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 1, PrevKv: true},
				{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 10},
				{Key: []byte("k3"), StartRevision: 20, PrevKv: true},
				{Key: []byte("\x00"), RangeEnd: []byte{0}, StartRevision: rev - 1, PrevKv: true},
				{Key: []byte("\x00"), RangeEnd: []byte{0}, StartRevision: rev},
				{Key: []byte("k"), RangeEnd: []byte("l"), StartRevision: 2, Filters: []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}},
			}
			for _, r := range reqs {
				create(s, r)
			}
			all := e.allEvents()
			wantN := map[int64]int{}
			for i, r := range reqs {
				wantN[int64(i)] = len(want(r, all, r.StartRevision))
			}
			resps := drainEvents(t, s, wantN)
			nothingDue(t, s)
			for i, r := range reqs {
				sameEvents(t, fmt.Sprintf("watcher %d", i), eventsOf(t, resps, int64(i)), want(r, all, r.StartRevision))
			}
			if st := e.hub.Stats(); st.Synced != len(reqs) {
				t.Fatalf("after catching up: %+v", st)
			}

			// Catching up while writes go on: no gap, no repeat.
			const writes = 300
			s2 := e.hub.NewStream(StreamOptions{})
			defer s2.Close()
			everything := &wreq{Key: []byte("\x00"), RangeEnd: []byte{0}, StartRevision: 1, PrevKv: true}
			create(s2, everything)
			done := make(chan int64, 1)
			go func() {
				var rev int64
				for i := range writes {
					var err error
					if rev, err = e.tryApply(put(fmt.Sprintf("c%d", i%11), fmt.Sprint(i))); err != nil {
						t.Error(err)
						break
					}
				}
				done <- rev
			}()
			var got []*pb.WatchResponse
			for n := 0; n < len(all)+writes; {
				for _, r := range next(t, s2) {
					n += len(r.Events)
					got = append(got, r)
				}
			}
			<-done
			all = e.allEvents()
			sameEvents(t, "watcher catching up during writes", eventsOf(t, got, 0), want(everything, all, 1))
			nothingDue(t, s2)
		})
	}
}

// TestSlowWatcher: a watcher whose client does not read falls behind after
// MaxPending events and catches up later with everything, once, in order.
func TestSlowWatcher(t *testing.T) {
	e := newEnv(t, Config{MaxPending: 3, RingEvents: 10, BatchEvents: 4})
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	reqs := []*wreq{
		{Key: []byte("a"), RangeEnd: []byte("z"), PrevKv: true},
		{Key: []byte("b")},
	}
	for _, r := range reqs {
		create(s, r)
	}
	nextN(t, s, 2)
	from := e.rev() + 1
	for i := range 60 {
		if i%4 == 0 {
			e.apply(txnPuts("a", fmt.Sprint(i), "b", fmt.Sprint(i)))
		} else {
			e.apply(put(string(rune('a'+i%5)), fmt.Sprint(i)))
		}
	}
	if st := e.hub.Stats(); st.Synced != 0 || st.Watchers != 2 {
		t.Fatalf("after 60 revisions unread: %+v, want no synced watcher", st)
	}
	all := e.allEvents()
	resps := drainEvents(t, s, map[int64]int{0: len(want(reqs[0], all, from)), 1: len(want(reqs[1], all, from))})
	nothingDue(t, s)
	for i, r := range reqs {
		sameEvents(t, fmt.Sprintf("watcher %d", i), eventsOf(t, resps, int64(i)), want(r, all, from))
	}
	if st := e.hub.Stats(); st.Synced != 2 {
		t.Fatalf("after draining: %+v", st)
	}
	// Live again.
	rev := e.apply(put("b", "live"))
	resps = drainEvents(t, s, map[int64]int{0: 1, 1: 1})
	for _, r := range resps {
		if r.Header.GetRevision() != rev || r.Events[0].Kv.ModRevision != rev {
			t.Fatalf("live event after catching up: %v", r)
		}
	}

	// The byte bound too.
	e2 := newEnv(t, Config{MaxPendingBytes: 100})
	s2 := e2.hub.NewStream(StreamOptions{})
	defer s2.Close()
	r := &wreq{Key: []byte("k")}
	create(s2, r)
	next(t, s2)
	for i := range 10 {
		e2.apply(put("k", strings.Repeat("v", 30+i)))
	}
	if st := e2.hub.Stats(); st.Synced != 0 {
		t.Fatalf("after 10 puts of 30 bytes unread: %+v", st)
	}
	all = e2.allEvents()
	resps = drainEvents(t, s2, map[int64]int{0: 10})
	sameEvents(t, "byte-bounded watcher", eventsOf(t, resps, 0), want(r, all, 1))
}

// TestCompaction: a watcher that starts below the compacted revision is
// created, then canceled with the compacted revision; its ID stays taken
// until the client cancels it.
func TestCompaction(t *testing.T) {
	for _, ring := range []int{1, 0} {
		t.Run(fmt.Sprintf("ring=%d", ring), func(t *testing.T) {
			e := newEnv(t, Config{RingEvents: ring})
			for i := range 10 {
				e.apply(put("k", fmt.Sprint(i))) // 2..11
			}
			rev := e.apply(compact(6))
			s := e.hub.NewStream(StreamOptions{})
			defer s.Close()
			create(s, &wreq{Key: []byte("k"), StartRevision: 3, WatchId: 7})
			create(s, &wreq{Key: []byte("k"), StartRevision: 6})
			resps := nextN(t, s, 2)
			for _, r := range resps[:2] {
				if !r.Created || r.Canceled || r.Header.GetRevision() != rev {
					t.Fatalf("create below / at the compacted revision: %v", r)
				}
			}
			var compacted *pb.WatchResponse
			resps = drain(t, s, func(resps []*pb.WatchResponse) bool {
				compacted = nil
				for _, r := range resps {
					if r.WatchId == 7 {
						if compacted != nil {
							t.Fatalf("second response to the compacted watcher: %v", r)
						}
						compacted = r
					}
				}
				return compacted != nil && len(eventsOf(t, resps, 0)) == 6
			})
			if compacted == nil || !compacted.Canceled || compacted.CompactRevision != 6 || len(compacted.Events) != 0 ||
				compacted.Header.GetRevision() != 0 || compacted.Created || compacted.CancelReason != "" {
				t.Fatalf("compacted watcher got %v", compacted)
			}
			if ev := eventsOf(t, resps, 0); ev[0].Kv.ModRevision != 6 {
				t.Fatalf("watcher at the compacted revision starts at %v", ev[0])
			}
			nothingDue(t, s)
			if st := e.hub.Stats(); st.Watchers != 1 {
				t.Fatalf("stats %+v: the compacted watcher still counts", st)
			}
			// Its ID is taken until canceled.
			create(s, &wreq{Key: []byte("k"), WatchId: 7})
			if r := next(t, s); len(r) != 1 || r[0].WatchId != -1 || r[0].CancelReason != ErrWatcherDuplicateID.Error() {
				t.Fatalf("create on the compacted watcher's ID: %v", r)
			}
			// A progress request is not answered while it holds the ID
			// (it is not synced, as in etcd).
			requestProgress(s)
			nothingDue(t, s)
			cancelWatch(s, 7)
			if r := next(t, s); len(r) != 1 || r[0].WatchId != 7 || !r[0].Canceled || r[0].Created {
				t.Fatalf("cancel of the compacted watcher: %v", r)
			}
			create(s, &wreq{Key: []byte("k"), WatchId: 7})
			requestProgress(s)
			r := nextN(t, s, 2)
			if r[0].WatchId != 7 || r[0].Canceled || r[1].WatchId != -1 || r[1].Header.GetRevision() != rev {
				t.Fatalf("create and progress after the cancel: %v", r)
			}
			// Compacting past a watcher that is synced does not cancel it.
			rev = e.apply(put("k", "x"))
			e.apply(compact(rev))
			rev = e.apply(put("k", "y"))
			resps = drainEvents(t, s, map[int64]int{0: 2, 7: 2})
			for _, r := range resps {
				if r.Canceled {
					t.Fatalf("synced watcher canceled by a compaction: %v", r)
				}
			}
		})
	}
}

func TestCancel(t *testing.T) {
	e := newEnv(t, Config{})
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	create(s, &wreq{Key: []byte("a")})
	create(s, &wreq{Key: []byte("a"), RangeEnd: []byte("b")})
	nextN(t, s, 2)
	rev := e.apply(put("a", "1"))
	cancelWatch(s, 0)
	// The canceled watcher's queued event is dropped; the other's comes.
	resps := nextN(t, s, 2)
	if len(resps) != 2 || resps[0].WatchId != 0 || !resps[0].Canceled || resps[0].Created || resps[0].Header.GetRevision() != rev ||
		resps[1].WatchId != 1 || len(resps[1].Events) != 1 {
		t.Fatalf("cancel with an event queued: %v", resps)
	}
	e.apply(put("a", "2"))
	resps = next(t, s)
	if len(resps) != 1 || resps[0].WatchId != 1 {
		t.Fatalf("after the cancel: %v", resps)
	}
	// Unknown IDs (and a second cancel) are answered with nothing.
	cancelWatch(s, 0)
	cancelWatch(s, 42)
	cancelWatch(s, -1)
	nothingDue(t, s)
	if st := e.hub.Stats(); st.Watchers != 1 || st.Synced != 1 {
		t.Fatalf("stats %+v", st)
	}
	// Auto IDs go on from where they were (0 asks for one), and a
	// canceled ID can be chosen again.
	create(s, &wreq{Key: []byte("a")})
	create(s, &wreq{Key: []byte("a"), WatchId: 0})
	cancelWatch(s, 1)
	create(s, &wreq{Key: []byte("a"), WatchId: 1})
	if r := nextN(t, s, 4); r[0].WatchId != 2 || r[1].WatchId != 3 || r[2].WatchId != 1 || !r[2].Canceled ||
		r[3].WatchId != 1 || !r[3].Created || r[3].Canceled {
		t.Fatalf("creates after the cancel: %v", r)
	}
}

// gatedSource holds catch-up reads until released.
type gatedSource struct {
	Source
	entered chan struct{}
	release chan struct{}
}

func (g *gatedSource) Events(from int64, maxEvents, maxBytes int, withPrev bool) (applier.EventRange, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.Source.Events(from, maxEvents, maxBytes, withPrev)
}

// TestCancelDuringCatchUp: a watcher canceled while its catch-up reads
// storage gets nothing from that read.
func TestCancelDuringCatchUp(t *testing.T) {
	g := &gatedSource{entered: make(chan struct{}, 1), release: make(chan struct{})}
	e := newEnv(t, Config{RingEvents: 1, Source: g})
	g.Source = e.a
	for i := range 5 {
		e.apply(put("a", fmt.Sprint(i)))
	}
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	create(s, &wreq{Key: []byte("a"), StartRevision: 1})
	next(t, s)
	type result struct {
		resps []*pb.WatchResponse
		err   error
	}
	done := make(chan result)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := s.Next(ctx)
		done <- result{r, err}
	}()
	<-g.entered
	cancelWatch(s, 0)
	close(g.release)
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	if len(res.resps) != 1 || res.resps[0].WatchId != 0 || !res.resps[0].Canceled {
		t.Fatalf("after a cancel during the catch-up: %v", res.resps)
	}
	nothingDue(t, s)
}

// TestProgressRequest: answered with watch_id -1 at the current revision
// when every watcher is synced, after their queued events; otherwise not
// at all.
func TestProgressRequest(t *testing.T) {
	e := newEnv(t, Config{RingEvents: 1, BatchEvents: 1})
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()

	// No watcher: nothing.
	requestProgress(s)
	nothingDue(t, s)

	// A watcher starting now: answered at once, even before any write (as
	// in etcd, where a start revision of 0 is never ahead of the store).
	create(s, &wreq{Key: []byte("a")})
	next(t, s)
	requestProgress(s)
	if r := next(t, s); len(r) != 1 || r[0].WatchId != -1 || r[0].Header.GetRevision() != e.rev() || len(r[0].Events) != 0 || r[0].Created || r[0].Canceled {
		t.Fatalf("progress with one synced watcher: %v", r)
	}

	// Queued events go first.
	e.apply(put("a", "1"))
	e.apply(put("x", "1"))
	rev := e.apply(put("a", "2"))
	requestProgress(s)
	r := nextN(t, s, 2)
	if len(r) != 2 || r[0].WatchId != 0 || len(r[0].Events) != 2 || r[1].WatchId != -1 || r[1].Header.GetRevision() != rev {
		t.Fatalf("progress with events queued: %v", r)
	}

	// A watcher catching up (storage, one event per batch): a request
	// made meanwhile is not answered.
	create(s, &wreq{Key: []byte("\x00"), RangeEnd: []byte{0}, StartRevision: 1})
	if r := next(t, s); !r[0].Created || len(r) != 1 {
		t.Fatalf("create from the past: %v", r)
	}
	if r := next(t, s); len(r) != 1 || len(r[0].Events) != 1 || r[0].Header.GetRevision() != 2 {
		t.Fatalf("first catch-up batch: %v", r)
	}
	requestProgress(s)
	got := 1
	for got < 3 {
		for _, r := range next(t, s) {
			if r.WatchId != 1 || len(r.Events) != 1 {
				t.Fatalf("while catching up: %v", r)
			}
			got++
		}
	}
	nothingDue(t, s)
	requestProgress(s)
	if r := next(t, s); len(r) != 1 || r[0].WatchId != -1 || r[0].Header.GetRevision() != rev {
		t.Fatalf("progress once caught up: %v", r)
	}

	// A watcher whose start revision lies ahead: not answered until the
	// store reaches it.
	create(s, &wreq{Key: []byte("f"), StartRevision: rev + 2})
	next(t, s)
	requestProgress(s)
	nothingDue(t, s)
	e.apply(put("y", "1"))
	requestProgress(s)
	if r := next(t, s); len(r) != 1 || r[0].WatchId != 1 {
		t.Fatalf("progress before the start revision: %v", r)
	}
	nothingDue(t, s)
	rev = e.apply(put("y", "2"))
	requestProgress(s)
	if r := next(t, s); len(r) != 2 || r[0].WatchId != 1 || r[1].WatchId != -1 || r[1].Header.GetRevision() != rev {
		t.Fatalf("progress once the start revision is reached: %v", r)
	}
	// Several requests, several answers.
	requestProgress(s)
	requestProgress(s)
	if r := nextN(t, s, 2); len(r) != 2 || r[0].WatchId != -1 || r[1].WatchId != -1 {
		t.Fatalf("two progress requests: %v", r)
	}
}

// TestProgressNotify: the periodic notification goes to synced
// progress_notify watchers that sent no event since the last tick.
func TestProgressNotify(t *testing.T) {
	const interval = time.Minute
	e := newEnv(t, Config{ProgressInterval: interval, RingEvents: 1})
	tick := func() { e.clk.Advance(interval*11/10 + time.Nanosecond) }
	for i := range 5 {
		e.apply(put("old", fmt.Sprint(i)))
	}
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	create(s, &wreq{Key: []byte("a"), ProgressNotify: true})
	create(s, &wreq{Key: []byte("b"), ProgressNotify: true})
	create(s, &wreq{Key: []byte("c")})
	nextN(t, s, 3)
	rev := e.rev()

	progressOf := func(resps []*pb.WatchResponse) map[int64]int64 {
		t.Helper()
		m := map[int64]int64{}
		for _, r := range resps {
			if len(r.Events) != 0 || r.Created || r.Canceled {
				t.Fatalf("progress notification %v", r)
			}
			m[r.WatchId] = r.Header.GetRevision()
		}
		return m
	}
	// No write since creation: both notified at the current revision.
	tick()
	if p := progressOf(next(t, s)); len(p) != 2 || p[0] != rev || p[1] != rev {
		t.Fatalf("first tick: %v, want watchers 0 and 1 at %d", p, rev)
	}
	// Watcher 0 sent an event: skipped once.
	e.apply(put("a", "1"))
	rev = e.apply(put("c", "1"))
	resps := drainEvents(t, s, map[int64]int{0: 1, 2: 1})
	if len(resps) != 2 {
		t.Fatalf("events: %v", resps)
	}
	tick()
	if p := progressOf(next(t, s)); len(p) != 1 || p[1] != rev {
		t.Fatalf("tick after an event of watcher 0: %v, want watcher 1 at %d", p, rev)
	}
	tick()
	if p := progressOf(next(t, s)); len(p) != 2 || p[0] != rev || p[1] != rev {
		t.Fatalf("next tick: %v, want watchers 0 and 1 at %d", p, rev)
	}
	// Both sent events: nothing at this tick.
	e.apply(put("a", "2"))
	e.apply(put("b", "2"))
	drainEvents(t, s, map[int64]int{0: 1, 1: 1})
	tick()
	nothingDue(t, s)

	// A watcher catching up sends events: no notification at the next
	// tick; one whose start revision lies ahead gets none either.
	s2 := e.hub.NewStream(StreamOptions{})
	defer s2.Close()
	create(s2, &wreq{Key: []byte("old"), StartRevision: 1, ProgressNotify: true})
	create(s2, &wreq{Key: []byte("z"), StartRevision: e.rev() + 5, ProgressNotify: true}) // ahead
	nextN(t, s2, 2)
	drainEvents(t, s2, map[int64]int{0: 5})
	tick()
	nothingDue(t, s2)
	tick()
	if p := progressOf(next(t, s2)); len(p) != 1 || p[0] != e.rev() {
		t.Fatalf("tick after the catch-up: %v, want watcher 0 at %d", p, e.rev())
	}
}

// TestFragment: with fragment=true a response of FragmentBytes or more is
// split into pieces below it (one event at least), all but the last marked
// fragment; without fragment=true, or below the limit, it comes whole.
func TestFragment(t *testing.T) {
	const limit = 400
	e := newEnv(t, Config{RingEvents: 1})
	s := e.hub.NewStream(StreamOptions{FragmentBytes: limit})
	defer s.Close()
	reqs := []*wreq{
		{Key: []byte("f"), RangeEnd: []byte("g"), Fragment: true, PrevKv: true},
		{Key: []byte("f"), RangeEnd: []byte("g")},
	}
	for _, r := range reqs {
		create(s, r)
	}
	nextN(t, s, 2)
	from := e.rev() + 1
	v := strings.Repeat("x", 100)
	var kv []string
	for i := range 10 {
		kv = append(kv, fmt.Sprintf("f%d", i), v)
	}
	// pieces returns id's responses in resps grouped into the responses
	// they are pieces of, checking the marks and the sizes.
	pieces := func(resps []*pb.WatchResponse, id int64) [][]*pb.WatchResponse {
		t.Helper()
		var out [][]*pb.WatchResponse
		var cur []*pb.WatchResponse
		for _, r := range resps {
			if r.WatchId != id || r.Created {
				continue
			}
			if len(cur) > 0 && r.Header.GetRevision() != cur[0].Header.GetRevision() {
				t.Fatalf("watcher %d: pieces of one response at revisions %d and %d", id, cur[0].Header.GetRevision(), r.Header.GetRevision())
			}
			if len(r.Events) == 0 {
				t.Fatalf("watcher %d: empty piece %v", id, r)
			}
			if len(r.Events) > 1 && proto.Size(r) >= limit {
				t.Fatalf("watcher %d: piece of %d bytes (%d events), limit %d", id, proto.Size(r), len(r.Events), limit)
			}
			cur = append(cur, r)
			if !r.Fragment {
				out = append(out, cur)
				cur = nil
			}
		}
		if cur != nil {
			t.Fatalf("watcher %d: last piece marked fragment", id)
		}
		return out
	}
	for i, ent := range []*pb.InternalRaftRequest{txnPuts(kv...), txnPuts(kv...), put("f", "small")} {
		rev := e.apply(ent)
		resps := drainEvents(t, s, map[int64]int{0: len(ent.GetTxn().GetSuccess()) + i/2, 1: len(ent.GetTxn().GetSuccess()) + i/2})
		whole := eventsOf(t, resps, 1)
		for _, r := range resps {
			if r.WatchId == 1 && (r.Fragment || len(r.Events) != len(whole)) {
				t.Fatalf("revision %d: watcher without fragment got %v", rev, r)
			}
		}
		ps := pieces(resps, 0)
		if len(ps) != 1 {
			t.Fatalf("revision %d: %d responses for watcher 0", rev, len(ps))
		}
		var evs []*mvccpb.Event
		for _, p := range ps[0] {
			evs = append(evs, p.Events...)
		}
		full := &pb.WatchResponse{WatchId: 0, Header: ps[0][0].Header, Events: evs}
		if big := proto.Size(full) >= limit; big != (len(ps[0]) > 1) {
			t.Fatalf("revision %d: response of %d bytes in %d pieces", rev, proto.Size(full), len(ps[0]))
		}
		if i < 2 && len(ps[0]) < 3 {
			t.Fatalf("revision %d: 10 events of over 100 bytes in %d pieces", rev, len(ps[0]))
		}
	}
	all := e.allEvents()
	// Watchers catching up (several revisions per response) are split
	// too.
	for i, r := range reqs {
		c := proto.Clone(r).(*wreq)
		c.StartRevision = from
		c.WatchId = int64(10 + i)
		create(s, c)
	}
	resps := drainEvents(t, s, map[int64]int{10: 21, 11: 21})
	for i, r := range reqs {
		sameEvents(t, fmt.Sprintf("watcher %d", i), eventsOf(t, resps, int64(10+i)), want(r, all, from))
	}
	for _, p := range pieces(resps, 10) {
		if len(p) < 2 {
			t.Fatalf("catch-up response of %d events in one piece", len(p[0].Events))
		}
	}
	for _, r := range resps {
		if r.WatchId == 11 && r.Fragment {
			t.Fatalf("catch-up response without fragment=true split: %v", r)
		}
	}
}

// TestFragmentSizes: pieces stay below the limit, and a response at or
// above it is split, counting the header the stream fills in (cluster and
// member ID, term), for limits around a response's size.
func TestFragmentSizes(t *testing.T) {
	e := newEnv(t, Config{})
	var kv []string
	for i := range 10 {
		kv = append(kv, fmt.Sprintf("f%d", i), strings.Repeat("x", 100))
	}
	e.apply(txnPuts(kv...))
	for limit := 300; limit < 1250; limit += 7 {
		s := e.hub.NewStream(StreamOptions{FragmentBytes: limit, Header: func() *pb.ResponseHeader {
			return &pb.ResponseHeader{ClusterId: math.MaxUint64, MemberId: math.MaxUint64, RaftTerm: 1 << 40}
		}})
		create(s, &wreq{Key: []byte("f"), RangeEnd: []byte("g"), Fragment: true, StartRevision: 2})
		resps := drainEvents(t, s, map[int64]int{0: 10})[1:]
		for _, r := range resps {
			if len(r.Events) > 1 && proto.Size(r) >= limit {
				t.Errorf("limit %d: piece of %d bytes, %d events", limit, proto.Size(r), len(r.Events))
			}
		}
		if len(resps) == 1 && proto.Size(resps[0]) >= limit {
			t.Errorf("limit %d: response of %d bytes not split", limit, proto.Size(resps[0]))
		}
		s.Close()
	}
}

// TestRestore: after a snapshot install, synced watchers get the events of
// the revisions the snapshot skipped from storage, then live ones.
func TestRestore(t *testing.T) {
	leader := newEnv(t, Config{})
	e := newEnv(t, Config{RingEvents: 4})
	both := func(reqs ...func() *pb.InternalRaftRequest) {
		var a, b []*pb.InternalRaftRequest
		for _, r := range reqs {
			a, b = append(a, r()), append(b, r())
		}
		leader.apply(a...)
		e.apply(b...)
	}
	both(func() *pb.InternalRaftRequest { return put("a", "1") }, func() *pb.InternalRaftRequest { return put("b", "1") })
	both(func() *pb.InternalRaftRequest { return txnPuts("a", "2", "c", "2") })
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	reqs := []*wreq{
		{Key: []byte("a"), PrevKv: true},                             // synced, an event left queued
		{Key: []byte("\x00"), RangeEnd: []byte{0}, StartRevision: 2}, // caught up before the restore
		{Key: []byte("b"), StartRevision: 6},                         // ahead, inside the skipped revisions
		{Key: []byte("c"), StartRevision: 100},                       // ahead of the snapshot
	}
	for _, r := range reqs {
		create(s, r)
	}
	from := e.rev() + 1
	pre := drainEvents(t, s, map[int64]int{1: 4})
	both(func() *pb.InternalRaftRequest { return put("a", "3") }) // queued for watcher 0, 1
	// Only the leader goes on.
	for i := range 10 {
		leader.apply(put(string(rune('a'+i%3)), fmt.Sprint(i)))
	}
	leader.apply(del("a", ""))
	if err := e.a.Restore(leader.index, copyEngine(leader.eng)); err != nil {
		t.Fatal(err)
	}
	if e.rev() != leader.rev() || e.hub.Rev() != leader.rev() {
		t.Fatalf("after the restore: revision %d, hub at %d, leader at %d", e.rev(), e.hub.Rev(), leader.rev())
	}
	all := e.allEvents()
	sameEvents(t, "store after the restore", all, leader.allEvents())
	// Then live again.
	e.mu.Lock()
	e.index = leader.index
	e.mu.Unlock()
	e.apply(put("b", "live"), put("a", "live"))
	all = e.allEvents()
	wantN := map[int64]int{}
	starts := []int64{from, 2, 6, 100}
	for i, r := range reqs {
		wantN[int64(i)] = len(want(r, all, starts[i]))
	}
	wantN[1] -= 4
	resps := append(pre, drainEvents(t, s, wantN)...)
	nothingDue(t, s)
	for i, r := range reqs {
		sameEvents(t, fmt.Sprintf("watcher %d", i), eventsOf(t, resps, int64(i)), want(r, all, starts[i]))
	}
	if st := e.hub.Stats(); st.Synced != 4 {
		t.Fatalf("after catching up: %+v", st)
	}

	// A restore that compacted past a watcher cancels it.
	leader2 := newEnv(t, Config{})
	f := newEnv(t, Config{})
	for _, x := range []*testEnv{leader2, f} {
		x.apply(put("a", "1"))
	}
	s = f.hub.NewStream(StreamOptions{})
	defer s.Close()
	create(s, &wreq{Key: []byte("a")})
	next(t, s)
	for i := range 5 {
		leader2.apply(put("a", fmt.Sprint(i)))
	}
	leader2.apply(compact(leader2.rev()))
	if err := f.a.Restore(leader2.index, copyEngine(leader2.eng)); err != nil {
		t.Fatal(err)
	}
	r := next(t, s)
	if len(r) != 1 || r[0].WatchId != 0 || !r[0].Canceled || r[0].CompactRevision != leader2.rev() {
		t.Fatalf("watcher compacted away by a restore: %v", r)
	}
}

// copyEngine returns an install function copying src's whole state.
func copyEngine(src applier.Engine) func(applier.Engine) error {
	return func(dst applier.Engine) error {
		s := src.NewSnapshot()
		defer s.Close()
		it, err := s.NewIter(nil, nil)
		if err != nil {
			return err
		}
		defer it.Close()
		b := dst.NewBatch()
		defer b.Close()
		for ok := it.First(); ok; ok = it.Next() {
			if err := b.Set(bytes.Clone(it.Key()), bytes.Clone(it.Value())); err != nil {
				return err
			}
		}
		if err := it.Error(); err != nil {
			return err
		}
		return b.Commit()
	}
}

// TestCatchUpAheadOfHub: a catch-up read from storage may see a batch the
// applier committed but has not yet handed to the hub. The watcher must get
// those revisions once (live), and no progress notification may go out
// below an event already sent.
func TestCatchUpAheadOfHub(t *testing.T) {
	e := newEnv(t, Config{RingEvents: 1})
	for i := range 4 {
		e.apply(put("a", fmt.Sprint(i))) // 2..5
	}
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	create(s, &wreq{Key: []byte("a"), StartRevision: 2})
	next(t, s)

	// A write committed to the engine, held before the hub hears of it.
	hold := e.holdCommits()
	applied := make(chan error, 1)
	go func() {
		_, err := e.tryApply(put("a", "ahead")) // 6
		applied <- err
	}()
	<-hold.entered
	e.unhold()
	var got []*pb.WatchResponse
	for n := 0; n < 4; {
		for _, r := range next(t, s) {
			n += len(r.Events)
			got = append(got, r)
		}
	}
	requestProgress(s)
	pr := next(t, s)
	close(hold.release)
	if err := <-applied; err != nil {
		t.Fatal(err)
	}
	for _, r := range pr {
		if r.WatchId == -1 {
			for _, g := range got {
				for _, ev := range g.Events {
					if ev.Kv.ModRevision > r.Header.GetRevision() {
						t.Errorf("progress at revision %d after an event at %d", r.Header.GetRevision(), ev.Kv.ModRevision)
					}
				}
			}
		}
		got = append(got, r)
	}
	for len(eventsOf(t, got, 0)) < 5 {
		got = append(got, next(t, s)...)
	}
	nothingDue(t, s)
	sameEvents(t, "watcher", eventsOf(t, got, 0), want(&wreq{Key: []byte("a")}, e.allEvents(), 2))
}

// TestHandleBackpressure: Handle waits while maxCtrl control responses are
// queued, until Next takes them or the stream closes.
func TestHandleBackpressure(t *testing.T) {
	e := newEnv(t, Config{})
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	for range maxCtrl {
		create(s, &wreq{Key: []byte("a")})
	}
	handled := make(chan struct{})
	go func() {
		create(s, &wreq{Key: []byte("b")})
		close(handled)
	}()
	select {
	case <-handled:
		t.Fatal("Handle did not wait with the control queue full")
	case <-time.After(50 * time.Millisecond):
	}
	if r := nextN(t, s, maxCtrl); len(r) != maxCtrl {
		t.Fatalf("%d responses, want %d", len(r), maxCtrl)
	}
	<-handled
	if r := next(t, s); len(r) != 1 || r[0].WatchId != maxCtrl || !r[0].Created {
		t.Fatalf("after the wait: %v", r)
	}

	// Close releases a waiting Handle and the stream's watchers.
	s2 := e.hub.NewStream(StreamOptions{})
	for range maxCtrl {
		create(s2, &wreq{Key: []byte("a")})
	}
	handled = make(chan struct{})
	go func() {
		create(s2, &wreq{Key: []byte("b")})
		close(handled)
	}()
	s2.Close()
	<-handled
	if st := e.hub.Stats(); st.Streams != 1 || st.Watchers != maxCtrl+1 || st.Synced != maxCtrl+1 {
		t.Fatalf("stats after a close: %+v", st)
	}
	e.apply(put("a", "1"))
	nothingDue(t, s2)
	s2.Close() // twice is fine
}

type failingSource struct{}

func (failingSource) Events(int64, int, int, bool) (applier.EventRange, error) {
	return applier.EventRange{}, fmt.Errorf("disk on fire")
}

// TestSourceError: a storage failure during a catch-up fails Next.
func TestSourceError(t *testing.T) {
	e := newEnv(t, Config{RingEvents: 1, Source: failingSource{}})
	e.apply(put("a", "1"))
	e.apply(put("a", "2"))
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	create(s, &wreq{Key: []byte("a"), StartRevision: 1})
	next(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := s.Next(ctx); err == nil || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Next over a failing source: %v", err)
	}
}

// TestResponseHeader: every response carries the stream's header (cluster,
// member, term) with the revision the hub chose.
func TestResponseHeader(t *testing.T) {
	e := newEnv(t, Config{})
	s := e.hub.NewStream(StreamOptions{Header: func() *pb.ResponseHeader {
		return &pb.ResponseHeader{ClusterId: 1, MemberId: 2, RaftTerm: 3, Revision: 99}
	}})
	defer s.Close()
	create(s, &wreq{Key: []byte("a")})
	rev := e.apply(put("a", "1"))
	cancelWatch(s, 0)
	create(s, &wreq{Key: []byte("b"), RangeEnd: []byte("a")})
	for _, r := range nextN(t, s, 3) {
		h := r.Header
		if h.ClusterId != 1 || h.MemberId != 2 || h.RaftTerm != 3 {
			t.Fatalf("header %v", h)
		}
		if want := map[bool]int64{true: 1, false: rev}[r.Created && r.WatchId == 0]; h.Revision != want {
			t.Fatalf("response %v: revision %d, want %d", r, h.Revision, want)
		}
	}
}

// TestCatchUpNotStarvedByBusyWatchers: a stream whose synced watcher gets
// an event on every pass still moves its watcher from the past forward
// (one catch-up step per pass), so it gets its events and the stream's
// progress requests are answered again.
func TestCatchUpNotStarvedByBusyWatchers(t *testing.T) {
	e := newEnv(t, Config{RingEvents: 1, BatchEvents: 1})
	for i := range 5 {
		e.apply(put("old", fmt.Sprint(i)))
	}
	s := e.hub.NewStream(StreamOptions{})
	defer s.Close()
	create(s, &wreq{Key: []byte("hot")})
	next(t, s)
	create(s, &wreq{Key: []byte("old"), StartRevision: 1})
	next(t, s)
	got := 0
	for round := 0; round < 50 && got < 5; round++ {
		e.apply(put("hot", fmt.Sprint(round)))
		for _, r := range next(t, s) {
			if r.WatchId == 1 {
				got += len(r.Events)
			}
		}
	}
	if got != 5 {
		t.Fatalf("the watcher from the past got %d of its 5 events while the other was busy", got)
	}
}
