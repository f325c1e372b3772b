package writernode

import (
	"context"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/stratakv/strata/internal/transport"
)

// peerHandler is the Member as the peer transport sees it: received
// messages and failure reports go to the raft node.
type peerHandler Member

var _ transport.Handler = (*peerHandler)(nil)

func (h *peerHandler) Process(ctx context.Context, m *raftpb.Message) error {
	return h.node.Step(ctx, m)
}

func (h *peerHandler) ReportUnreachable(id uint64) { h.node.ReportUnreachable(id) }

func (h *peerHandler) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	h.node.ReportSnapshot(id, status)
}

// startTransport creates the peer transport and its gRPC server, with a link
// to every other initial member.
func (m *Member) startTransport() error {
	t, err := transport.NewGRPC(transport.GRPCConfig{
		LocalID:     m.id.MemberID,
		ClusterID:   m.id.ClusterID,
		Handler:     (*peerHandler)(m),
		Compression: transport.Compression(m.cfg.PeerCompression),
		Logger:      m.lg.Named("transport"),
		Clock:       m.cfg.Clock,
		OnPeerError: func(id uint64, err error) {
			m.lg.Debug("peer link error", zap.String("peer", idString(id)), zap.Error(err))
		},
	})
	if err != nil {
		return err
	}
	m.peers = t
	m.peerGRPC = grpc.NewServer(t.ServerOptions()...)
	t.Register(m.peerGRPC)
	for _, im := range m.id.Members {
		if im.ID != m.id.MemberID {
			t.AddPeer(im.ID, im.PeerURLs)
		}
	}
	return nil
}

// PeerGRPCServer is the gRPC server to serve on the peer URLs.
func (m *Member) PeerGRPCServer() *grpc.Server { return m.peerGRPC }
