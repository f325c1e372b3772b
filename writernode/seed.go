package writernode

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/snapshot"
)

// Seeding: a reader that starts with an empty state machine (a new one, or
// one whose data dir was wiped) pulls a snapshot of the leader's state
// machine over the peer API before raft starts, instead of waiting for raft
// to send one.
//
// It must: raft never moves a follower's next index below its match index
// + 1, so a wiped member whose old incarnation had acknowledged entries up
// to M is sent appends after M forever (an empty log rejects them, and the
// leader takes the rejection as stale; raft even panics on a commit index
// past the empty log). The leader therefore waits until it has applied M
// before it takes the snapshot: the reader starts raft at an index at or
// past M, where the appends fit. A new member has M = 0. A reader that lost
// only its state machine and kept its log also gives a floor, the index its
// log says was committed (or released): the snapshot must reach it so that
// the log continues it. The leader that answers knows the asker (it has
// applied the asker's MemberAdd), or it answers Unavailable and the asker
// tries again.
//
// The seed service, on the peer URLs:
//
//	service Seed {
//	  // Snapshot streams the state machine (snapshot package format) in
//	  // chunks. The request is 16 bytes: the asking member's ID and the
//	  // floor, big endian. Only the leader answers; the others fail with
//	  // FailedPrecondition.
//	  rpc Snapshot(BytesValue) returns (stream BytesValue);
//	}
const (
	seedService = "strata.member.Seed"
	seedMethod  = "/" + seedService + "/Snapshot"
)

// seedDesc is the Seed service without protoc.
var seedDesc = grpc.ServiceDesc{
	ServiceName: seedService,
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Snapshot",
		ServerStreams: true,
		Handler: func(srv any, s grpc.ServerStream) error {
			req := new(wrapperspb.BytesValue)
			if err := s.RecvMsg(req); err != nil {
				return err
			}
			if len(req.GetValue()) != 16 {
				return status.Errorf(codes.InvalidArgument, "seed request of %d bytes, want 16", len(req.GetValue()))
			}
			id, floor := binary.BigEndian.Uint64(req.Value), binary.BigEndian.Uint64(req.Value[8:])
			return srv.(*seedServer).snapshot(id, floor, s)
		},
	}},
	Metadata: "strata/writernode/seed.go",
}

// seedChunk is the size of one streamed chunk.
const seedChunk = 1 << 20

// seedServer serves Seed on a member's peer gRPC server.
type seedServer Member

func (s *seedServer) snapshot(id, floor uint64, stream grpc.ServerStream) error {
	m := (*Member)(s)
	ctx := stream.Context()
	match, leader, err := m.node.Progress(ctx)
	if err != nil {
		return stoppedErr(err)
	}
	if !leader {
		return status.Error(codes.FailedPrecondition, rpctypes.ErrNotLeader.Error())
	}
	mi, ok := match[id]
	if !ok {
		// Not applied the asker's MemberAdd yet: a snapshot now would not
		// hold the asker in its membership.
		return status.Errorf(codes.Unavailable, "member %s is not in this leader's configuration yet", idString(id))
	}
	// The snapshot must reach past what the asker's old incarnation
	// acknowledged and what its kept log needs (see above): wait for
	// that to be applied here. Both are committed, so the wait ends.
	if need := max(mi, floor); need > 0 {
		wctx, cancel := context.WithTimeout(ctx, (*backend)(m).requestTimeout())
		err := m.app.WaitApplied(wctx, need)
		cancel()
		if err != nil {
			return status.Errorf(codes.Unavailable, "waiting to apply index %d: %v", need, err)
		}
	}
	snap, err := m.app.Snapshot()
	if err != nil {
		return stoppedErr(err)
	}
	defer snap.Close()
	as, err := applier.LoadApplied(snap)
	if err != nil {
		return err
	}
	m.lg.Info("streaming a seed snapshot", zap.String("to", idString(id)), zap.Uint64("index", as.Index))
	w := &chunkSender{stream: stream}
	if _, err := snapshot.Write(w, snap, snapshot.WriteOptions{Compression: snapshot.CompressionZstd}); err != nil {
		return err
	}
	return w.flush()
}

// chunkSender turns a byte stream into BytesValue messages.
type chunkSender struct {
	stream grpc.ServerStream
	buf    []byte
}

func (w *chunkSender) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for len(w.buf) >= seedChunk {
		if err := w.stream.SendMsg(wrapperspb.Bytes(w.buf[:seedChunk])); err != nil {
			return 0, err
		}
		w.buf = append(w.buf[:0], w.buf[seedChunk:]...)
	}
	return len(p), nil
}

func (w *chunkSender) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	return w.stream.SendMsg(wrapperspb.Bytes(w.buf))
}

// chunkReader reads the chunks of a Seed stream as one byte stream.
type chunkReader struct {
	stream grpc.ClientStream
	buf    []byte
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		msg := new(wrapperspb.BytesValue)
		if err := r.stream.RecvMsg(msg); err != nil {
			return 0, err // io.EOF at the end
		}
		r.buf = msg.GetValue()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// seed fills the (empty) state machine from the leader's snapshot, at
// least as far as floor, asking every other member it knows of in turn
// until the leader answers. A failed transfer is retried (Restore empties
// the engine first); it gives up after seedTimeout.
func (m *Member) seed(ctx context.Context, floor uint64) error {
	ctx, cancel := context.WithTimeout(ctx, seedTimeout)
	defer cancel()
	peers := map[string]bool{}
	for _, im := range m.id.Members {
		if im.ID != m.id.MemberID {
			for _, u := range im.PeerURLs {
				peers[u] = true
			}
		}
	}
	for name, urls := range m.cfg.InitialCluster {
		if name != m.cfg.Name {
			for _, u := range urls {
				peers[u] = true
			}
		}
	}
	var lastErr error
	for ctx.Err() == nil {
		for u := range peers {
			err := m.seedFrom(ctx, u, floor)
			if err == nil {
				return nil
			}
			if !errors.Is(err, errSeedNotLeader) {
				lastErr = err
				m.lg.Warn("seeding the state machine failed; trying again", zap.String("peer-url", u), zap.Error(err))
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond): // no leader yet
		}
	}
	return fmt.Errorf("no leader sent a seed snapshot within %v: %v", seedTimeout, lastErr)
}

// seedTimeout bounds seeding: finding the leader and the transfer.
const seedTimeout = 30 * time.Minute

var (
	errSeedNotLeader = errors.New("not the leader")
	errSeedInstall   = errors.New("installing the seed snapshot")
)

func (m *Member) seedFrom(ctx context.Context, peerURL string, floor uint64) error {
	conn, err := dialPeer(m.cfg.PeerTLS, peerURL)
	if err != nil {
		return err
	}
	defer conn.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.NewStream(sctx, &seedDesc.Streams[0], seedMethod)
	if err != nil {
		return err
	}
	var req [16]byte
	binary.BigEndian.PutUint64(req[:], m.id.MemberID)
	binary.BigEndian.PutUint64(req[8:], floor)
	if err := stream.SendMsg(wrapperspb.Bytes(req[:])); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	r := &chunkReader{stream: stream}
	// Peek at the first chunk: a refusal comes before any data.
	if _, err := r.Read(nil); err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			return errSeedNotLeader
		}
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("empty seed stream from %s", peerURL)
		}
		return err
	}
	var info snapshot.Info
	// Restore refuses a snapshot not newer than what is applied; raft does
	// not run yet, and a retry after a transfer that failed (or fell
	// behind the floor) replaces whatever the last attempt left.
	err = m.app.Restore(m.app.Applied().Index+1, func(e applier.Engine) error {
		info, err = snapshot.Install(r, e)
		return err
	})
	if err != nil {
		return fmt.Errorf("%w from %s: %v", errSeedInstall, peerURL, err)
	}
	if info.AppliedIndex < floor {
		// Cannot happen with a leader that waited as asked.
		return fmt.Errorf("%w from %s: the snapshot at index %d is behind the floor %d", errSeedInstall, peerURL, info.AppliedIndex, floor)
	}
	m.lg.Info("seeded the state machine from the leader", zap.String("peer-url", peerURL),
		zap.Uint64("applied-index", info.AppliedIndex), zap.Int64("keys", info.Keys), zap.Int64("bytes", info.Bytes))
	return nil
}
