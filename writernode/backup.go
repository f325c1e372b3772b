package writernode

import (
	"context"
	"io"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/snapshot"
)

var _ api.Snapshotter = (*backend)(nil)

// WriteSnapshot streams a backup (Maintenance.Snapshot): one consistent
// snapshot of the local state machine, zstd-compressed. The snapshot holds
// the applier open, so the write stops as soon as the client goes away or
// the member begins to stop, rather than holding up Stop for as long as a
// slow client reads.
func (b *backend) WriteSnapshot(ctx context.Context, w io.Writer) error {
	snap, err := b.app.Snapshot()
	if err != nil {
		return stoppedErr(err)
	}
	defer snap.Close()
	_, err = snapshot.Write(stopWriter{ctx: ctx, stop: b.stop, w: w}, snap, snapshot.WriteOptions{Compression: snapshot.CompressionZstd})
	if err != nil {
		// The writer's own errors come back wrapped: answer with
		// etcd's.
		select {
		case <-b.stop:
			return rpctypes.ErrGRPCStopped
		default:
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return err
}

// stopWriter fails writes once ctx is done or stop is closed.
type stopWriter struct {
	ctx  context.Context
	stop <-chan struct{}
	w    io.Writer
}

func (s stopWriter) Write(p []byte) (int, error) {
	select {
	case <-s.stop:
		return 0, rpctypes.ErrGRPCStopped
	case <-s.ctx.Done():
		return 0, s.ctx.Err()
	default:
	}
	return s.w.Write(p)
}
