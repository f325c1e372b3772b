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
// snapshot of the local state machine, zstd-compressed.
//
// The engine snapshot holds the applier open, and Member.Stop closes the
// applier before the gRPC server (which is what ends a Send blocked on a
// client that stopped reading). So the snapshot is read on a goroutine of
// its own, through a pipe that is closed as soon as the member stops or
// the client goes away: the snapshot is then released at once, whatever
// the send in progress does.
func (b *backend) WriteSnapshot(ctx context.Context, w io.Writer) error {
	snap, err := b.app.Snapshot()
	if err != nil {
		return stoppedErr(err)
	}
	pr, pw := io.Pipe()
	written := make(chan error, 1)
	go func() {
		_, err := snapshot.Write(pw, snap, snapshot.WriteOptions{Compression: snapshot.CompressionZstd})
		snap.Close()
		pw.CloseWithError(err) // nil: the reader sees io.EOF
		written <- err
	}()
	copied := make(chan error, 1)
	go func() {
		_, err := io.Copy(w, pr)
		copied <- err
	}()
	done := false
	select {
	case err = <-copied:
		done = true
	case <-b.stop:
		err = rpctypes.ErrGRPCStopped
	case <-ctx.Done():
		err = ctx.Err()
	}
	// Ends the writer (and with it the snapshot) if it still runs.
	pr.CloseWithError(err)
	if werr := <-written; err == nil {
		err = werr
	}
	if !done {
		// The stream is not ours to leave while a send on it is in
		// progress; that send ends with the stream (the client gone,
		// or the member's gRPC server stopped, after the applier
		// closed: the snapshot no longer holds it).
		<-copied
	}
	return err
}
