package e2e

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/writernode"
)

// TestCorruptWriterIsFound: one writer's state machine is changed behind
// raft's back (a byte of a stored value flipped while it is stopped). On
// restart its start-up check finds it disagrees with its peers and it
// stops. Started without that check, it is found by the leader's periodic
// check, which raises the CORRUPT alarm for it: the cluster refuses
// writes, the corrupt member refuses reads, the others still serve them.
// Removing the member and disarming the alarm makes the cluster writable
// again (docs/operations.md).
func TestCorruptWriterIsFound(t *testing.T) {
	_, ms, clients := startStrataCluster(t, "cc", "--corrupt-check-time=300ms")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	_, victim := writeAndCorrupt(ctx, t, ms, clients)
	requireCorruptionFound(ctx, t, ms[2], clients[0], victim)
	if _, err := clients[0].Put(ctx, "/cc/after", "x"); err == nil || err.Error() != "etcdserver: corrupt cluster" {
		t.Fatalf("a write under CORRUPT: %v", err)
	}
	victimClient := newEndpointClient(t, ms[2])
	if _, err := victimClient.Get(ctx, "/cc/01", clientv3.WithSerializable()); err == nil || err.Error() != "etcdserver: corrupt cluster" {
		t.Fatalf("a read on the corrupt member: %v", err)
	}
	if got, err := clients[1].Get(ctx, "/cc/01"); err != nil || len(got.Kvs) != 1 {
		t.Fatalf("a read on a healthy member: %v, %v", got, err)
	}
	if h, err := httpGet(ms[0], "/health"); err != nil || !strings.Contains(h, "ALARM CORRUPT") {
		t.Fatalf("/health under CORRUPT: %q, %v", h, err)
	}
	// etcd's readiness check data_corruption fails on every member.
	if h, err := httpGet(ms[1], "/readyz?verbose"); err != nil || !strings.Contains(h, "status 503") || !strings.Contains(h, "[-]data_corruption failed") {
		t.Fatalf("/readyz under CORRUPT: %q, %v", h, err)
	}

	// Replace: remove the member, disarm; the cluster takes writes.
	if _, err := clients[0].MemberRemove(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[0].AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: victim, Alarm: pb.AlarmType_CORRUPT}); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[1].Put(ctx, "/cc/after", "y"); err != nil {
		t.Fatalf("a write after removing the corrupt member and disarming: %v", err)
	}
}

// TestCompactionHashCheckFindsCorruption: with the periodic check at its
// default (five minutes), a writer whose stored history was altered while
// it was stopped (started without the start-up check) is found by the
// compaction hash check (--compact-hash-check-time) once the history is
// compacted: the members' hashes at the compacted revision disagree.
func TestCompactionHashCheckFindsCorruption(t *testing.T) {
	_, ms, clients := startStrataCluster(t, "ch", "--compact-hash-check-time=300ms")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	last, victim := writeAndCorrupt(ctx, t, ms, clients)
	ms[2].Args = append(ms[2].Args, "--feature-gates=InitialCorruptCheck=false")
	if err := ms[2].Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := clients[0].Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	waitCorruptAlarm(ctx, t, clients[0], victim)
}

// writeAndCorrupt writes 20 keys, stops the third member and flips a byte
// of its stored history. It returns the last write's revision and the
// member's ID.
func writeAndCorrupt(ctx context.Context, t *testing.T, ms []*Member, clients []*clientv3.Client) (last int64, victim uint64) {
	t.Helper()
	for i := range 20 {
		resp, err := clients[i%3].Put(ctx, fmt.Sprintf("/cc/%02d", i), fmt.Sprintf("value-%d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	st, err := clients[2].Status(ctx, ms[2].Endpoint())
	if err != nil {
		t.Fatal(err)
	}
	requireEqualHashKV(ctx, t, clients, 0)
	if err := ms[2].Stop(); err != nil {
		t.Fatal(err)
	}
	flipStoredByte(t, filepath.Join(ms[2].DataDir, "member", "pebble"))
	return last, st.Header.MemberId
}

// waitCorruptAlarm waits (bounded by ctx) until c lists a CORRUPT alarm
// for member id.
func waitCorruptAlarm(ctx context.Context, t *testing.T, c *clientv3.Client, id uint64) {
	t.Helper()
	for {
		list, err := c.AlarmList(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(list.Alarms, func(a *pb.AlarmMember) bool {
			return a.MemberID == id && a.Alarm == pb.AlarmType_CORRUPT
		}) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("no CORRUPT alarm for %x: %v", id, list.Alarms)
		}
		time.Sleep(50 * time.Millisecond) // polling the cluster's state; bounded by ctx
	}
}

// flipStoredByte changes the last byte of the first version in a stopped
// writer's history, behind raft's back: a well-formed record (Pebble's
// checksums hold) with the wrong content.
func flipStoredByte(t *testing.T, dir string) {
	t.Helper()
	eng, err := writernode.OpenPebble(dir, writernode.PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	flipHistoryByte(t, eng)
	if err := eng.Sync(); err != nil {
		t.Fatal(err)
	}
}

// flipHistoryByte flips the last bit of the first history value (keys
// under "h/" in the applier's layout) in e, keeping the record well
// formed.
func flipHistoryByte(t *testing.T, e applier.Engine) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	it, err := b.NewIter([]byte("h/"), []byte("h0"))
	if err != nil {
		t.Fatal(err)
	}
	if !it.First() {
		t.Fatal("no history in the engine")
	}
	key, val := bytes.Clone(it.Key()), bytes.Clone(it.Value())
	it.Close()
	val[len(val)-1] ^= 0x01
	if err := b.Set(key, val); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptionChecksWorkWithAuth: with auth enabled, the members still
// compare hashes (over their peer URLs, where HashKV needs no root): the
// start-up check stops a corrupt writer, and the periodic check raises the
// alarm for it.
func TestCorruptionChecksWorkWithAuth(t *testing.T) {
	_, ms, clients := startStrataCluster(t, "ca", "--corrupt-check-time=300ms")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	enableAuth(ctx, t, clients[0])
	roots := make([]*clientv3.Client, len(ms))
	for i, m := range ms {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{m.Endpoint()}, Username: "root", Password: "root-pw", DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		roots[i] = c
	}
	_, victim := writeAndCorrupt(ctx, t, ms, roots)
	requireCorruptionFound(ctx, t, ms[2], roots[0], victim)
}

// requireCorruptionFound restarts the corrupted (stopped) member m: the
// start-up check (on by default) refuses to serve it; without it (etcd's
// default) the member serves until the periodic check raises the CORRUPT
// alarm for it, which c then lists.
func requireCorruptionFound(ctx context.Context, t *testing.T, m *Member, c *clientv3.Client, victim uint64) {
	t.Helper()
	if err := m.Restart(); err == nil || !strings.Contains(string(m.Output()), "found data inconsistency with peers") {
		t.Fatalf("the corrupt member restarted: %v\n%s", err, lastLines(m.Output(), 10))
	}
	m.Args = append(m.Args, "--feature-gates=InitialCorruptCheck=false")
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	waitCorruptAlarm(ctx, t, c, victim)
}
