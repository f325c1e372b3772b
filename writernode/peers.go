package writernode

import (
	"context"
	"errors"
	"fmt"
	"io"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/internal/failpoint"
	"github.com/stratakv/strata/internal/serve"
	"github.com/stratakv/strata/internal/transport"
	"github.com/stratakv/strata/snapshot"
)

// peerHandler is the Member as the peer transport sees it: received
// messages and failure reports go to the raft node.
type peerHandler Member

var _ transport.Handler = (*peerHandler)(nil)

func (h *peerHandler) Process(ctx context.Context, m *raftpb.Message) error {
	if h.app.IsRemoved(m.GetFrom()) {
		return transport.ErrSenderRemoved
	}
	return h.node.Step(ctx, m)
}

func (h *peerHandler) ReportUnreachable(id uint64) { h.node.ReportUnreachable(id) }

// InstallSnapshot replaces the state machine with a snapshot streamed from
// the leader. The transport steps the MsgSnap into raft only after this
// returned nil, so raft hears of the snapshot once the state is in place.
func (h *peerHandler) InstallSnapshot(m *raftpb.Message, r io.Reader) error {
	md := m.GetSnapshot().GetMetadata()
	h.lg.Info("installing snapshot from leader",
		zap.String("from", idString(m.GetFrom())), zap.Uint64("index", md.GetIndex()), zap.Uint64("term", md.GetTerm()))
	// Requests this member proposed may be inside the snapshot, answered
	// by no apply: from here on they must not be failed as lost. (Before
	// the restore: the apply stage may skip covered entries as soon as it
	// is done.)
	h.prop.Restored()
	// raft drops a message from an older term. A snapshot it will drop
	// must not be installed: the state machine would be ahead of a log
	// that never reaches it. Checked before the stream (the usual case:
	// the sender lost leadership meanwhile) and again once the data is in,
	// before the restore is published; a term change between that check
	// and raft stepping the message remains (etcd closes it by staging the
	// data until raft accepts the snapshot; so should strata).
	if term := h.node.Status().Term; m.GetTerm() < term {
		h.lg.Info("ignoring a snapshot from an older term", zap.Uint64("snapshot-term", m.GetTerm()), zap.Uint64("term", term))
		return nil
	}
	var info snapshot.Info
	install := func(e applier.Engine) error {
		var err error
		if info, err = snapshot.Install(r, e); err != nil {
			return err
		}
		if term := h.node.Status().Term; m.GetTerm() < term {
			return fmt.Errorf("the term moved to %d while the snapshot of term %d streamed in", term, m.GetTerm())
		}
		return nil
	}
	var err error
	failpoint.RaftBeforeApplySnap.Hit()
	if h.cfg.NewReplacementEngine != nil {
		err = (*Member)(h).installReplacement(md.GetIndex(), install)
	} else {
		err = h.app.Restore(md.GetIndex(), install)
	}
	if err == nil {
		failpoint.RaftAfterApplySnap.Hit()
	}
	if errors.Is(err, applier.ErrStaleSnapshot) {
		// The state machine is already past it; raft, stepping the
		// MsgSnap, ignores it as well and answers with its own progress.
		h.lg.Info("ignoring a snapshot the state machine is already past", zap.Error(err))
		return nil
	}
	if nr := (errNoRestart{}); errors.As(err, &nr) {
		return nr.error
	}
	if err != nil {
		// The engine may be half filled: stop rather than serve it.
		h.node.Stop()
		return err
	}
	h.lg.Info("installed snapshot", zap.Uint64("applied-index", info.AppliedIndex),
		zap.Int64("keys", info.Keys), zap.Int64("bytes", info.Bytes))
	return nil
}

// installReplacement installs a snapshot into a new engine beside the
// current one and swaps it in (applier.Swap), so the member serves reads
// from its current state while the snapshot streams and is unchanged if
// the stream fails. The new engine is promoted to be the one opened on
// restart before raft hears of the snapshot: a WAL that records the
// snapshot always finds an engine at or past it.
func (m *Member) installReplacement(index uint64, install func(applier.Engine) error) error {
	// One install at a time: a second one (a new leader's, while the
	// old leader's still streams) would share the replacement's file.
	m.installMu.Lock()
	defer m.installMu.Unlock()
	fresh, err := m.cfg.NewReplacementEngine(m.memberDir())
	if err != nil {
		return errNoRestart{fmt.Errorf("create an engine for the snapshot: %w", err)}
	}
	// The replaced engine closes once the reads still open on it end
	// (bbolt's Close would wait for them anyway).
	retire := func(old applier.Engine) {
		if err := old.Close(); err != nil {
			m.lg.Warn("close the replaced engine", zap.Error(err))
		}
	}
	if err := m.app.Swap(index, fresh, install, retire); err != nil {
		if derr := fresh.Discard(); derr != nil {
			m.lg.Warn("discard an unfinished snapshot engine", zap.Error(derr))
		}
		return errNoRestart{err}
	}
	if err := fresh.Promote(); err != nil {
		// The new state serves, but a restart would open the old
		// one under a WAL about to record the snapshot: the caller
		// stops the member.
		return fmt.Errorf("promote the snapshot's engine: %w", err)
	}
	m.lg.Info("swapped in a new engine for the snapshot")
	return nil
}

// errNoRestart is a failed snapshot install that left the state machine as
// it was: the member goes on, and the leader sends the snapshot again.
type errNoRestart struct{ error }

func (e errNoRestart) Unwrap() error { return e.error }

// snapshotSource streams the state machine to a follower that needs a
// snapshot. raftSnapshot pins an engine snapshot when raft asks for one and
// describes it (its applied index, term and ConfState, read from the
// snapshot itself, so they match the data exactly); Open streams that
// pinned snapshot when the transport sends the MsgSnap.
type snapshotSource Member

// maxPinnedSnapshots bounds engine snapshots pinned for followers (one per
// follower catching up is the norm); the oldest is released first.
const maxPinnedSnapshots = 4

type pinnedSnapshot struct {
	index uint64
	snap  applier.Snapshot
}

func (s *snapshotSource) raftSnapshot() (*raftpb.Snapshot, error) {
	snap, err := s.app.Snapshot()
	if err != nil {
		return nil, err
	}
	as, err := applier.LoadApplied(snap)
	if err != nil {
		snap.Close()
		return nil, err
	}
	s.pinned.Lock()
	s.pinned.snaps = append(s.pinned.snaps, pinnedSnapshot{as.Index, snap})
	if len(s.pinned.snaps) > maxPinnedSnapshots {
		s.pinned.snaps[0].snap.Close()
		s.pinned.snaps = s.pinned.snaps[1:]
	}
	s.pinned.Unlock()
	return &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
		Index: new(as.Index), Term: new(as.Term), ConfState: as.ConfState,
	}}, nil
}

func (s *snapshotSource) Open(m *raftpb.Message) (io.ReadCloser, error) {
	idx := m.GetSnapshot().GetMetadata().GetIndex()
	s.pinned.Lock()
	var snap applier.Snapshot
	for i, p := range s.pinned.snaps {
		if p.index == idx {
			snap = p.snap
			s.pinned.snaps = append(s.pinned.snaps[:i], s.pinned.snaps[i+1:]...)
			break
		}
	}
	s.pinned.Unlock()
	if snap == nil {
		return nil, fmt.Errorf("no pinned snapshot at index %d", idx)
	}
	pr, pw := io.Pipe()
	go func() {
		defer snap.Close()
		_, err := snapshot.Write(pw, snap, snapshot.WriteOptions{})
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// releasePinned closes every pinned snapshot (on stop).
func (s *snapshotSource) releasePinned() {
	s.pinned.Lock()
	defer s.pinned.Unlock()
	for _, p := range s.pinned.snaps {
		p.snap.Close()
	}
	s.pinned.snaps = nil
}
func (h *peerHandler) ReportSnapshot(id uint64, status raft.SnapshotStatus) {
	h.node.ReportSnapshot(id, status)
}

// peerSender is the node's Transport: the peer transport, which is created
// after the node (its goroutines call into the node).
type peerSender Member

func (p *peerSender) Send(msgs []*raftpb.Message) { p.peers.Send(msgs) }

// startTransport creates the peer transport and its gRPC server, with a link
// to every other initial member.
func (m *Member) startTransport() error {
	t, err := transport.NewGRPC(transport.GRPCConfig{
		LocalID:     m.id.MemberID,
		ClusterID:   m.id.ClusterID,
		Handler:     (*peerHandler)(m),
		Compression: transport.Compression(m.cfg.PeerCompression),
		Snapshots:   (*snapshotSource)(m),
		Logger:      m.lg.Named("transport"),
		Clock:       m.cfg.Clock,
		TLS:         m.cfg.PeerTLS,
		OnRoundTrip: roundTripEvents(m.cfg.Metrics),
		OnPeerError: func(id uint64, err error) {
			m.lg.Debug("peer link error", zap.String("peer", idString(id)), zap.Error(err))
			if errors.Is(err, transport.ErrSenderRemoved) {
				// A peer knows we were removed; raft would never say.
				go m.node.Fail(ErrMemberRemoved)
			}
		},
	})
	if err != nil {
		return err
	}
	m.peers = t
	// Stop waits for the handlers (a snapshot install in progress), so the
	// storage is never closed under one.
	m.peerGRPC = grpc.NewServer(append(t.ServerOptions(), grpc.WaitForHandlers(true))...)
	t.Register(m.peerGRPC)
	// Joiners ask the peer URLs for the member list (join.go), readers
	// for a seed snapshot (seed.go).
	pb.RegisterClusterServer(m.peerGRPC, api.NewPeerCluster((*backend)(m), (*backend)(m), m.auth.apiConfig(m)))
	// Followers and readers forward keep-alives and TimeToLive to the
	// leader (leaseapi.go); members compare hashes (corruptcheck.go,
	// hashcheck.go).
	pb.RegisterLeaseServer(m.peerGRPC, api.NewPeerLease((*backend)(m), (*backend)(m)))
	pb.RegisterMaintenanceServer(m.peerGRPC, api.NewPeerMaintenance((*backend)(m), (*backend)(m), m.cfg.Versions))
	m.peerGRPC.RegisterService(&seedDesc, (*seedServer)(m))
	// Link to the members the state machine knows (those added since the
	// cluster began included: a restarted member hears of them through no
	// new conf change); before anything is applied, to the identity's.
	members, err := m.app.Members()
	if err != nil {
		return err
	}
	if len(members) == 0 {
		for _, im := range m.id.Members {
			members = append(members, &pb.Member{ID: im.ID, PeerURLs: im.PeerURLs})
		}
	}
	for _, mem := range members {
		if mem.ID != m.id.MemberID {
			m.addPeer(mem)
			m.linked = append(m.linked, mem.ID)
		}
	}
	return nil
}

// addPeer links to mem (a no-op for a known peer). Links to learners (the
// readers) use Config.LearnerCompression when it is set.
func (m *Member) addPeer(mem *pb.Member) {
	var opts transport.PeerOptions
	if mem.IsLearner && m.cfg.LearnerCompression != "" {
		opts.Compression = transport.Compression(m.cfg.LearnerCompression)
	}
	if err := m.peers.AddPeerWith(mem.ID, mem.PeerURLs, opts); err != nil {
		m.lg.Warn("cannot link to peer", zap.String("peer", idString(mem.ID)), zap.Strings("urls", mem.PeerURLs), zap.Error(err))
	}
}

// refreshPeers links to members added since, and unlinks removed ones,
// after a conf change was applied.
func (m *Member) refreshPeers() {
	members, err := m.app.Members()
	if err != nil {
		return
	}
	want := map[uint64]bool{}
	for _, mem := range members {
		if mem.ID == m.id.MemberID {
			continue
		}
		want[mem.ID] = true
		m.addPeer(mem)
	}
	for _, id := range m.linked {
		if !want[id] {
			m.peers.RemovePeer(id)
		}
	}
	m.linked = m.linked[:0]
	for id := range want {
		m.linked = append(m.linked, id)
	}
}

// PeerGRPCServer is the gRPC server to serve on the peer URLs.
func (m *Member) PeerGRPCServer() *grpc.Server { return m.peerGRPC }

// PeerProtocol is the raft message link protocol to serve on the peer
// listeners beside PeerGRPCServer (see internal/serve).
func (m *Member) PeerProtocol() *serve.Protocol {
	return &serve.Protocol{Preface: transport.RawPreface, Serve: m.peers.ServeConn}
}

// logLinkTotals logs what the member sent on each peer link since it
// started: what an operator (and the reader benchmarks) can tell the cost of
// a peer, a reader especially, by until metrics are exported.
func (m *Member) logLinkTotals() {
	learners := map[uint64]bool{}
	if members, err := m.app.Members(); err == nil {
		for _, mem := range members {
			learners[mem.ID] = mem.IsLearner
		}
	}
	for id, pm := range m.peers.Metrics().Peers {
		m.lg.Info("peer link totals", zap.String("peer", idString(id)), zap.Bool("learner", learners[id]),
			zap.Uint64("frames", pm.FramesSent), zap.Uint64("messages", pm.MessagesSent),
			zap.Uint64("body-bytes", pm.BodyBytesSent), zap.Uint64("wire-bytes", pm.WireBytesSent),
			zap.Uint64("dropped", pm.MessagesDropped), zap.Uint64("snapshots", pm.SnapshotsSent))
	}
}
