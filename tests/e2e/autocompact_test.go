package e2e

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestPeriodicAutoCompaction: with --auto-compaction-retention=1s the
// history older than about a second is compacted away, on strata as on
// etcd v3.7.3 (run side by side): a read at an old revision fails with
// etcd's "required revision has been compacted", and the newest revisions
// stay readable.
func TestPeriodicAutoCompaction(t *testing.T) {
	b := needSubject(t)
	for _, bin := range []struct{ name, path string }{{"etcd", b.Etcd}, {b.SubjectName, b.Subject}} {
		t.Run(bin.name, func(t *testing.T) {
			ms := StartCluster(t, "ac", 1, MemberConfig{Binary: bin.path,
				ExtraArgs: []string{"--auto-compaction-mode=periodic", "--auto-compaction-retention=1s"}})
			c := newEndpointClient(t, ms[0])
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			first, err := c.Put(ctx, "k", "0")
			if err != nil {
				t.Fatal(err)
			}
			// Keep writing until the first revision is compacted
			// (bounded by ctx): the compactor samples every 100ms and
			// compacts a second after it started.
			var last int64
			for i := 0; ; i++ {
				resp, err := c.Put(ctx, "k", "v")
				if err != nil {
					t.Fatal(err)
				}
				last = resp.Header.Revision
				_, err = c.Get(ctx, "k", clientv3.WithRev(first.Header.Revision))
				if errors.Is(err, rpctypes.ErrCompacted) {
					break
				}
				if err != nil {
					t.Fatalf("read at revision %d: %v", first.Header.Revision, err)
				}
				time.Sleep(50 * time.Millisecond) // pacing the writes, not synchronisation
			}
			if _, err := c.Get(ctx, "k", clientv3.WithRev(last)); err != nil {
				t.Fatalf("the newest revision %d was compacted too: %v", last, err)
			}
		})
	}
}
