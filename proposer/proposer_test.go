package proposer

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/clock"
)

// fakeRaft records proposed entries; each entry is "applied" (its requests
// answered) when the test releases it.
type fakeRaft struct {
	mu      sync.Mutex
	entries [][]*pb.InternalRaftRequest
	arrived chan int // number of entries so far, after each proposal
	err     error
	// term is the leader term Propose reports (0: forwarded).
	term uint64
}

func newFakeRaft() *fakeRaft { return &fakeRaft{arrived: make(chan int, 1024)} }

func (f *fakeRaft) ProposeConfChange(context.Context, raftpb.ConfChangeI) error { return f.err }

func (f *fakeRaft) Propose(_ context.Context, data []byte) (uint64, error) {
	if f.err != nil {
		return 0, f.err
	}
	reqs, err := applier.DecodeEntry(data)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	f.entries = append(f.entries, reqs)
	n := len(f.entries)
	term := f.term
	f.mu.Unlock()
	f.arrived <- n
	return term, nil
}

func (f *fakeRaft) setTerm(term uint64) {
	f.mu.Lock()
	f.term = term
	f.mu.Unlock()
}

// apply answers every request of entry i with a PutResponse whose header
// revision is the request's position, so callers can check they got their
// own answer.
func (f *fakeRaft) apply(p *Proposer, i int) {
	f.mu.Lock()
	reqs := f.entries[i]
	f.mu.Unlock()
	for _, r := range reqs {
		p.Notify(r.ID, applier.Result{Resp: &pb.PutResponse{Header: &pb.ResponseHeader{Revision: int64(len(r.Put.Value))}}})
	}
}

func (f *fakeRaft) waitEntries(t *testing.T, n int) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case got := <-f.arrived:
			if got >= n {
				return
			}
		case <-timeout:
			t.Fatalf("never saw %d entries", n)
		}
	}
}

func newTestProposer(r Raft, clk clock.Clock, mut func(*Config)) *Proposer {
	cfg := Config{Raft: r, MemberID: 1, Clock: clk, MaxRequestBytes: 1 << 20, MaxInflightEntries: 1}
	if mut != nil {
		mut(&cfg)
	}
	return New(cfg)
}

func put(n int) *pb.InternalRaftRequest {
	return &pb.InternalRaftRequest{Put: &pb.PutRequest{Key: []byte("k"), Value: make([]byte, n)}}
}

func TestLoneRequestProposedAtOnce(t *testing.T) {
	f := newFakeRaft()
	// A manual clock that never moves: nothing may wait on a timer.
	p := newTestProposer(f, clock.NewManual(time.Unix(0, 0)), nil)
	defer p.Stop()
	done := make(chan applier.Result, 1)
	go func() {
		res, err := p.Propose(context.Background(), put(3))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	f.waitEntries(t, 1)
	f.apply(p, 0)
	res := <-done
	if got := res.Resp.(*pb.PutResponse).Header.Revision; got != 3 {
		t.Fatalf("got the answer for another request: %d", got)
	}
}

func TestConcurrentRequestsShareAnEntry(t *testing.T) {
	f := newFakeRaft()
	p := newTestProposer(f, clock.NewManual(time.Unix(0, 0)), nil)
	defer p.Stop()
	const n = 50
	var wg sync.WaitGroup
	results := make([]int64, n+1)
	propose := func(i int) {
		defer wg.Done()
		res, err := p.Propose(context.Background(), put(i))
		if err != nil {
			t.Error(err)
			return
		}
		results[i] = res.Resp.(*pb.PutResponse).Header.Revision
	}
	wg.Add(1)
	go propose(0)
	f.waitEntries(t, 1)
	// With the only inflight slot taken, everything that arrives now queues
	// and must travel together in the next entry.
	wg.Add(n)
	for i := 1; i <= n; i++ {
		go propose(i)
	}
	waitQueued(t, p, n)
	f.apply(p, 0)
	f.waitEntries(t, 2)
	f.mu.Lock()
	second := len(f.entries[1])
	f.mu.Unlock()
	if second != n {
		t.Fatalf("second entry carries %d requests, want %d", second, n)
	}
	f.apply(p, 1)
	wg.Wait()
	for i := range results {
		if results[i] != int64(i) {
			t.Fatalf("request %d got answer %d", i, results[i])
		}
	}
}

func waitQueued(t *testing.T, p *Proposer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		q := len(p.mu.queue)
		p.mu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d requests queued", q, n)
		}
		runtime.Gosched()
	}
}

func TestEntryBounds(t *testing.T) {
	f := newFakeRaft()
	p := newTestProposer(f, clock.NewManual(time.Unix(0, 0)), func(c *Config) {
		c.MaxEntryRequests = 4
		c.MaxInflightEntries = 100
	})
	defer p.Stop()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := p.Propose(context.Background(), put(i)); err != nil {
				t.Error(err)
			}
		}()
	}
	answered := 0
	for answered < 20 {
		f.waitEntries(t, 1)
		f.mu.Lock()
		ents := f.entries
		f.mu.Unlock()
		answered = 0
		for i, e := range ents {
			if len(e) > 4 {
				t.Fatalf("entry %d has %d requests, bound is 4", i, len(e))
			}
			answered += len(e)
		}
		if answered == 20 {
			for i := range ents {
				f.apply(p, i)
			}
		}
	}
	wg.Wait()
}

func TestRequestErrors(t *testing.T) {
	t.Run("too large", func(t *testing.T) {
		p := newTestProposer(newFakeRaft(), nil, func(c *Config) { c.MaxRequestBytes = 100 })
		defer p.Stop()
		if _, err := p.Propose(context.Background(), put(200)); !errors.Is(err, rpctypes.ErrGRPCRequestTooLarge) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("dropped means no leader", func(t *testing.T) {
		f := newFakeRaft()
		f.err = fmt.Errorf("wrapped: %w", raft.ErrProposalDropped)
		p := newTestProposer(f, nil, nil)
		defer p.Stop()
		res, err := p.Propose(context.Background(), put(1))
		if err != nil || !errors.Is(res.Err, rpctypes.ErrGRPCNoLeader) {
			t.Fatalf("got %v / %v", err, res.Err)
		}
	})
	t.Run("queue bound", func(t *testing.T) {
		f := newFakeRaft()
		p := newTestProposer(f, clock.NewManual(time.Unix(0, 0)), func(c *Config) { c.MaxQueuedBytes = 64 })
		defer p.Stop()
		go p.Propose(context.Background(), put(1)) // takes the inflight slot
		f.waitEntries(t, 1)
		go p.Propose(context.Background(), put(40)) // queues
		waitQueued(t, p, 1)
		if _, err := p.Propose(context.Background(), put(40)); !errors.Is(err, rpctypes.ErrGRPCRequestTooManyRequests) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestTimeoutReleasesInflightSlot(t *testing.T) {
	f := newFakeRaft()
	clk := newSignalClock()
	p := newTestProposer(f, clk, func(c *Config) { c.RequestTimeout = time.Second })
	defer p.Stop()
	errc := make(chan error, 1)
	go func() { _, err := p.Propose(context.Background(), put(1)); errc <- err }()
	f.waitEntries(t, 1)
	// The entry is never applied (say, leadership was lost): the caller
	// times out, and its slot must free up for the next request. The
	// request may be proposed before its caller starts the timeout, so
	// advance only once the timeout is waiting on the clock.
	clk.awaitAfter(t)
	clk.Advance(2 * time.Second)
	if err := <-errc; !errors.Is(err, rpctypes.ErrGRPCTimeout) {
		t.Fatalf("got %v", err)
	}
	go p.Propose(context.Background(), put(2))
	f.waitEntries(t, 2)
	f.apply(p, 1)
}

func TestIDsUniqueAcrossRestart(t *testing.T) {
	now := time.Unix(1700000000, 0)
	g1 := newIDGen(7, now)
	seen := map[uint64]bool{}
	for range 1000 {
		seen[g1.next()] = true
	}
	g2 := newIDGen(7, now.Add(time.Second))
	for range 1000 {
		if id := g2.next(); seen[id] {
			t.Fatalf("restarted generator reissued %x", id)
		}
	}
	if newIDGen(8, now).next()>>48 == g1.next()>>48 {
		t.Fatal("members share an ID prefix")
	}
}

func TestLeaderProposalLostToNewTermFailsAtOnce(t *testing.T) {
	f := newFakeRaft()
	// The clock never moves: the failure must not come from a timeout.
	p := newTestProposer(f, clock.NewManual(time.Unix(0, 0)), nil)
	defer p.Stop()
	propose := func(n int) <-chan error {
		errc := make(chan error, 1)
		go func() {
			res, err := p.Propose(context.Background(), put(n))
			if err == nil {
				err = res.Err
			}
			errc <- err
		}()
		return errc
	}

	// Appended as leader in term 3. Entries of term 3 applying say
	// nothing about it; the first entry of term 4 means it is lost.
	f.setTerm(3)
	errc := propose(1)
	f.waitEntries(t, 1)
	p.AppliedTerm(3)
	select {
	case err := <-errc:
		t.Fatalf("failed while its own term was still applying: %v", err)
	default:
	}
	p.AppliedTerm(4)
	if err := recvErr(t, errc); !errors.Is(err, rpctypes.ErrGRPCLeaderChanged) {
		t.Fatalf("lost proposal: %v, want ErrGRPCLeaderChanged", err)
	}

	// Its inflight slot was released (MaxInflightEntries is 1). A
	// forwarded proposal (term 0) is not failed by a new term: another
	// leader may still append it.
	f.setTerm(0)
	errc = propose(2)
	f.waitEntries(t, 2)
	p.AppliedTerm(5)
	f.apply(p, 1)
	if err := recvErr(t, errc); err != nil {
		t.Fatalf("forwarded proposal: %v", err)
	}

	// A later term applied before Propose returned: lost at once too.
	f.setTerm(5)
	p.AppliedTerm(6)
	errc = propose(3)
	if err := recvErr(t, errc); !errors.Is(err, rpctypes.ErrGRPCLeaderChanged) {
		t.Fatalf("proposal of a term already superseded: %v, want ErrGRPCLeaderChanged", err)
	}
}

// recvErr waits for a caller's outcome; the bound only turns a hang (the
// bug under test) into a failure.
func recvErr(t *testing.T, errc <-chan error) error {
	t.Helper()
	select {
	case err := <-errc:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the caller was never answered")
		return nil
	}
}

// signalClock is clock.Announcing with a test's bounded wait.
type signalClock struct{ *clock.Announcing }

func newSignalClock() *signalClock { return &signalClock{clock.NewAnnouncing(time.Unix(0, 0))} }

func (c *signalClock) awaitAfter(t *testing.T) {
	t.Helper()
	select {
	case <-c.Afters:
	case <-time.After(10 * time.Second):
		t.Fatal("the proposer never waited on the clock")
	}
}

// TestRestoredRequestsAreNotFailedAsLost: after the state machine is
// replaced by a snapshot, a leader-appended request may have committed
// inside it without being answered; a later term must not fail it.
func TestRestoredRequestsAreNotFailedAsLost(t *testing.T) {
	f := newFakeRaft()
	clk := newSignalClock()
	p := newTestProposer(f, clk, func(c *Config) { c.RequestTimeout = time.Second })
	defer p.Stop()
	f.setTerm(3)
	errc := make(chan error, 1)
	go func() {
		res, err := p.Propose(context.Background(), put(1))
		if err == nil {
			err = res.Err
		}
		errc <- err
	}()
	f.waitEntries(t, 1)
	clk.awaitAfter(t) // the caller waits
	p.Restored()
	p.AppliedTerm(4)
	select {
	case err := <-errc:
		t.Fatalf("failed after a restore: %v", err)
	default:
	}
	// It is answered by the timeout, whose error leaves the outcome open.
	clk.Advance(2 * time.Second)
	if err := recvErr(t, errc); !errors.Is(err, rpctypes.ErrGRPCTimeout) {
		t.Fatalf("got %v, want ErrGRPCTimeout", err)
	}
}
