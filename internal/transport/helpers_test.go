package transport

import (
	"context"
	"crypto/sha256"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stratakv/strata/internal/clock"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
)

// testTimeout bounds every wait in these tests; reaching it is a failure,
// never a synchronization point.
const testTimeout = 10 * time.Second

// recorder is a Handler that records what the transport did.
type recorder struct {
	msgs        chan *raftpb.Message
	unreachable chan uint64
	snapshots   chan raft.SnapshotStatus
	// block, when not nil, is received from before each Process.
	block chan struct{}
}

func newRecorder() *recorder {
	return &recorder{
		msgs:        make(chan *raftpb.Message, 1<<16),
		unreachable: make(chan uint64, 1024),
		snapshots:   make(chan raft.SnapshotStatus, 16),
	}
}

func (r *recorder) Process(ctx context.Context, m *raftpb.Message) error {
	if r.block != nil {
		select {
		case <-r.block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.msgs <- m
	return nil
}

func (r *recorder) ReportUnreachable(id uint64) {
	select {
	case r.unreachable <- id:
	default: // already told
	}
}

func (r *recorder) ReportSnapshot(_ uint64, s raft.SnapshotStatus) { r.snapshots <- s }

// next returns the next message processed, failing the test after testTimeout.
func (r *recorder) next(t testing.TB) *raftpb.Message {
	t.Helper()
	select {
	case m := <-r.msgs:
		return m
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for a message")
		return nil
	}
}

func (r *recorder) expectUnreachable(t testing.TB, id uint64) {
	t.Helper()
	select {
	case got := <-r.unreachable:
		if got != id {
			t.Fatalf("ReportUnreachable(%d), want %d", got, id)
		}
	case <-time.After(testTimeout):
		t.Fatalf("timed out waiting for ReportUnreachable(%d)", id)
	}
}

func (r *recorder) nextSnapshotStatus(t testing.TB) raft.SnapshotStatus {
	t.Helper()
	select {
	case s := <-r.snapshots:
		return s
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for ReportSnapshot")
		return 0
	}
}

func (r *recorder) expectNoMessage(t testing.TB) {
	t.Helper()
	select {
	case m := <-r.msgs:
		t.Fatalf("unexpected message %v", m)
	default:
	}
}

// snapRecorder is a recorder that installs streamed snapshots by hashing them.
type snapRecorder struct {
	*recorder
	fail error
	mu   sync.Mutex
	sums [][sha256.Size]byte
	// installed is the number of bytes of each installed snapshot.
	installed []int64
}

func (r *snapRecorder) InstallSnapshot(m *raftpb.Message, rd io.Reader) error {
	h := sha256.New()
	n, err := io.Copy(h, rd)
	if err != nil {
		return err
	}
	if r.fail != nil {
		return r.fail
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sums = append(r.sums, [sha256.Size]byte(h.Sum(nil)))
	r.installed = append(r.installed, n)
	return nil
}

func (r *snapRecorder) Process(ctx context.Context, m *raftpb.Message) error {
	if m.GetType() == raftpb.MsgSnap {
		r.mu.Lock()
		ok := len(r.sums) > 0
		r.mu.Unlock()
		if !ok {
			panic("MsgSnap stepped before its snapshot was installed")
		}
	}
	return r.recorder.Process(ctx, m)
}

// signalClock is clock.Announcing with a test's bounded wait.
type signalClock struct{ *clock.Announcing }

func newSignalClock() *signalClock {
	return &signalClock{clock.NewAnnouncing(time.Unix(0, 0))}
}

func (c *signalClock) nextAfter(t testing.TB) time.Duration {
	t.Helper()
	select {
	case d := <-c.Afters:
		return d
	case <-time.After(testTimeout):
		t.Fatal("timed out waiting for the transport to wait on the clock")
		return 0
	}
}

func msgApp(from, to, index uint64, data []byte) *raftpb.Message {
	return &raftpb.Message{
		Type:    new(raftpb.MsgApp),
		From:    new(from),
		To:      new(to),
		Term:    new(uint64(1)),
		Index:   new(index),
		Commit:  new(index),
		Entries: []*raftpb.Entry{{Index: new(index + 1), Term: new(uint64(1)), Data: data}},
	}
}

// goroutinesIn returns the stacks of live goroutines whose stack mentions fn,
// once none is left or testTimeout passed. A goroutine that signalled it is
// done (closed a channel, a WaitGroup) may still be on its way out, so, as
// goleak does, the check retries rather than sample once.
func goroutinesIn(fn string) []string {
	deadline := time.Now().Add(testTimeout)
	for {
		gs := goroutinesNow(fn)
		if len(gs) == 0 || time.Now().After(deadline) {
			return gs
		}
		runtime.Gosched()
	}
}

func goroutinesNow(fn string) []string {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, fn) {
			out = append(out, g)
		}
	}
	return out
}
