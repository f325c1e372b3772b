package writernode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/membershippb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/internal/clock"
	"github.com/stratakv/strata/internal/failpoint"
	"github.com/stratakv/strata/internal/lessor"
	"github.com/stratakv/strata/internal/transport"
	"github.com/stratakv/strata/internal/watch"
	"github.com/stratakv/strata/metrics"
	"github.com/stratakv/strata/pipeline"
	"github.com/stratakv/strata/proposer"
	"github.com/stratakv/strata/wal"
)

// Config configures a writer member.
type Config struct {
	Name    string
	DataDir string
	// ClientURLs are the advertised client URLs (MemberList).
	ClientURLs []string
	// PeerTLS is the client side of peer TLS, for every connection the
	// member opens to a peer with https URLs (raft links, snapshots, the
	// member list when joining, seeding, forwarded promotions). Nil: peers
	// have http URLs. The server side is the caller's: it wraps the peer
	// listeners.
	PeerTLS *tls.Config
	// InitialCluster maps member names to peer URLs (--initial-cluster);
	// used only when the data dir is new.
	InitialCluster      map[string][]string
	InitialClusterToken string
	// JoinExisting is --initial-cluster-state=existing: a new data dir
	// joins a running cluster (the member was added with MemberAdd)
	// instead of bootstrapping one.
	JoinExisting bool

	TickInterval  time.Duration // --heartbeat-interval
	ElectionTicks int           // --election-timeout / --heartbeat-interval
	// SnapshotCount is how many applied entries pass between making the
	// engine durable and releasing the WAL before it (--snapshot-count).
	SnapshotCount uint64
	// CompactionBatchLimit bounds the revisions one physical compaction
	// batch removes (--compaction-batch-limit); 0 is the applier's
	// default.
	CompactionBatchLimit int
	MaxRequestBytes      int
	MaxTxnOps            int
	// Batching bounds the proposer's entries (proposer.Config's
	// MaxEntryRequests, MaxEntryBytes and MaxInflightEntries); zeros
	// are its defaults.
	Batching      Batching
	QuotaBytes    int64
	UnsafeNoFsync bool
	// NoStrictReconfigCheck is etcd's --strict-reconfig-check=false.
	NoStrictReconfigCheck bool
	// PeerCompression compresses raft traffic to peers: "none", "s2" or
	// "zstd". LearnerCompression, when set, is used for links to
	// learners (readers) instead.
	PeerCompression, LearnerCompression string
	// WatchProgressInterval is --watch-progress-notify-interval.
	WatchProgressInterval time.Duration
	// OpenEngine opens the state machine's engine in the member's
	// directory; nil: Pebble (a writer's). A reader passes bbolt.
	OpenEngine func(dir string) (applier.Engine, error)
	// NewReplacementEngine, if set, makes a raft snapshot install into a
	// new engine that replaces the current one once it is complete (a
	// reader's new bbolt file): reads go on from the current engine
	// during the install, and a failed install changes nothing. nil:
	// snapshots install in place, the state machine unavailable while
	// they stream (writers).
	NewReplacementEngine func(dir string) (ReplacementEngine, error)
	// Reader is --role=reader: the member must have been added as a
	// learner, and stays one.
	Reader bool
	// HashCheckInterval is how often a reader compares its HashKV with
	// the leader's (hashcheck.go), and a writer, while leading, every
	// member's with its own (corruptcheck.go); 0: never.
	HashCheckInterval time.Duration
	// InitialCorruptCheck compares the state machine with the peers'
	// before serving (corruptcheck.go; etcd's feature gate).
	InitialCorruptCheck bool
	// CompactHashCheckInterval is how often the leader compares the
	// members' hashes at the compacted revision (corruptcheck.go); 0:
	// never.
	CompactHashCheckInterval time.Duration
	// AutoCompaction is etcd's auto compaction (autocompact.go); the
	// zero value disables it.
	AutoCompaction AutoCompaction

	Versions api.Versions
	Logger   *zap.Logger
	Clock    clock.Clock
	// Metrics, when set, hears the stages' events (etcd's metrics and
	// strata's own) and the client gRPC server's calls; nil: none.
	Metrics *metrics.Registry
	// Tracer, when set, traces the write path of requests that arrive
	// with a sampled span (proposer.Config.Tracer).
	Tracer trace.Tracer
	// GRPCServerOptions are added to the client gRPC server's options
	// (tracing's stats handler).
	GRPCServerOptions []grpc.ServerOption
	// Auth is etcd's authentication (--auth-token and friends).
	Auth Auth
}

// Batching is a writer's group commit (docs/tuning.md): one raft entry
// carries at most MaxRequests requests and MaxBytes bytes of them (a larger
// request goes alone), and at most MaxInflight entries are proposed and not
// yet applied; requests that arrive meanwhile queue for the next entry.
type Batching struct {
	MaxRequests, MaxBytes, MaxInflight int
}

// maxApplyLag is how far apply may fall behind commit before writes are
// refused with "too many requests" (etcd's maxGapBetweenApplyAndCommitIndex).
const maxApplyLag = 5000

// Member is a running writer member: a thin composition of its stages.
type Member struct {
	cfg  Config
	lg   *zap.Logger
	id   *identity
	eng  applier.Engine
	wal  *wal.WAL
	app  *applier.Applier
	node *pipeline.Node
	prop *proposer.Proposer
	grpc *grpc.Server
	// hub serves watches from the applier's events.
	hub *watch.Hub
	// self is a client of the member's own gRPC server, which the Lock
	// and Election services work through.
	self *api.SelfClient
	// lessor follows the applied lease table; the leader's expires leases
	// (leases.go).
	lessor *lessor.Lessor
	// auth is the auth store the state machine applies to and the
	// member's token provider (authn.go).
	auth *authState
	// promoteMu serialises promotions of the lessor (leases.go).
	promoteMu sync.Mutex
	// leaderConns reaches the leader's client URL for forwarded lease
	// calls (leaseapi.go).
	leaderConns leaderConns
	// raisingNoSpace is set while a NOSPACE alarm of this member is being
	// proposed (backend.checkQuota), so that only one is.
	raisingNoSpace atomic.Bool
	// size is the engine's size as the quota check last read it, at
	// sizeAt (Unix nanoseconds; 0: never).
	size, sizeAt atomic.Int64

	peers    *transport.GRPCTransport
	peerGRPC *grpc.Server
	// pinned are engine snapshots raft asked for, awaiting streaming to
	// followers (peers.go).
	pinned struct {
		sync.Mutex
		snaps []pinnedSnapshot
	}

	ready chan struct{}
	stop  chan struct{}
	// installMu serializes snapshot installs into a replacement engine.
	installMu sync.Mutex

	// bootstrapCS is non-nil while the initial membership is applied,
	// before raft runs: conf changes then accumulate into it locally.
	bootstrapCS *raftpb.ConfState
	// lastConf is the ConfState the peer links were last set up for. Only
	// the apply goroutine touches it after Start.
	lastConf *raftpb.ConfState
	// linked are the peers the transport links to (refreshPeers).
	linked []uint64
	// lastRelease is the applied index at which the WAL was last released.
	// Only the apply goroutine touches it.
	lastRelease uint64

	// bg runs the member's own goroutines (the lease goroutine).
	bg sync.WaitGroup

	stopOnce sync.Once
}

// Start opens (or initialises) the member's data dir and starts its stages.
// The member serves nothing by itself: the caller serves GRPCServer() and
// waits for ReadyNotify().
func Start(cfg Config) (*Member, error) {
	lg := cfg.Logger
	if lg == nil {
		lg = zap.NewNop()
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.SnapshotCount == 0 {
		cfg.SnapshotCount = 10000
	}
	m := &Member{cfg: cfg, lg: lg, ready: make(chan struct{}), stop: make(chan struct{}),
		lessor: lessor.New(lessor.Config{Clock: cfg.Clock})}
	ok := false
	defer func() {
		if !ok {
			m.closeStorage()
		}
	}()
	if err := m.openStorage(); err != nil {
		return nil, err
	}
	hs, marker, ents, err := m.wal.ReadAll()
	if err != nil {
		return nil, err
	}
	if cfg.Reader && m.id.Joined && m.app.Applied().Index == 0 {
		// A new or wiped reader starts from the leader's snapshot
		// (seed.go), at least as far as its own log says was committed,
		// so that the log it kept (if only the state machine was lost)
		// continues the snapshot.
		if err := m.seed(context.Background(), max(marker.Index, hs.GetCommit())); err != nil {
			return nil, err
		}
	}
	start, err := m.recover(hs, ents)
	if err != nil {
		return nil, err
	}
	leases, err := m.app.Leases()
	if err != nil {
		return nil, err
	}
	m.lessor.Load(leaseStates(leases))
	m.prop = proposer.New(proposer.Config{
		Raft:               (*raftProxy)(m),
		MemberID:           m.id.MemberID,
		Clock:              cfg.Clock,
		MaxRequestBytes:    cfg.MaxRequestBytes,
		MaxEntryRequests:   cfg.Batching.MaxRequests,
		MaxEntryBytes:      cfg.Batching.MaxBytes,
		MaxInflightEntries: cfg.Batching.MaxInflight,
		RequestTimeout:     5*time.Second + 2*time.Duration(cfg.ElectionTicks)*cfg.TickInterval,
		Tracer:             cfg.Tracer,
		EventListener:      proposerEvents(cfg.Metrics),
	})
	m.lastConf = start.ConfState
	// New, not Start: the apply stage and the transport's goroutines
	// reach the node, so m.node must be set before either runs. The node
	// reaches the transport through peerSender, set up just after.
	m.node, err = pipeline.New(pipeline.Config{
		ID:            m.id.MemberID,
		TickInterval:  cfg.TickInterval,
		ElectionTicks: cfg.ElectionTicks,
		Clock:         cfg.Clock,
		Log:           walStore{m.wal, m.app},
		Start:         start,
		Apply:         m.apply,
		Transport:     (*peerSender)(m),
		Snapshot:      (*snapshotSource)(m).raftSnapshot,
		Logger:        lg,
		EventListener: pipelineEvents(cfg.Metrics),
	})
	if err != nil {
		m.prop.Stop()
		return nil, err
	}
	if err := m.startTransport(); err != nil {
		m.prop.Stop()
		return nil, err
	}
	if m.self, err = api.NewSelfClient(); err != nil {
		m.prop.Stop()
		return nil, err
	}
	m.node.Run()
	m.grpc = api.NewServer(api.ServerConfig{
		Backend:         (*backend)(m),
		Status:          (*backend)(m),
		Membership:      (*backend)(m),
		Leader:          (*backend)(m),
		Mover:           (*backend)(m),
		Leases:          (*backend)(m),
		Snapshots:       (*backend)(m),
		Watch:           api.WatchConfig{Hub: m.hub, LeaderCheck: m.electionTimeout()},
		Self:            m.self.Client,
		Versions:        cfg.Versions,
		Limits:          api.Limits{MaxTxnOps: cfg.MaxTxnOps, MaxRequestBytes: cfg.MaxRequestBytes},
		MaxRequestBytes: cfg.MaxRequestBytes,
		ServerOptions:   m.grpcServerOptions(),
		Auth:            m.auth.apiConfig(m),
	})
	if cfg.Metrics != nil {
		cfg.Metrics.InitializeGRPC(m.grpc)
	}
	m.self.Serve(m.grpc)
	go m.waitReady()
	m.bg.Go(m.runLeases)
	m.bg.Go(m.runTokenSweep)
	if cfg.Reader && cfg.HashCheckInterval > 0 {
		m.bg.Go(func() { m.runHashCheck(cfg.HashCheckInterval) })
	}
	if !cfg.Reader && cfg.HashCheckInterval > 0 {
		m.bg.Go(func() { m.runCorruptCheck(cfg.HashCheckInterval) })
	}
	if !cfg.Reader && cfg.CompactHashCheckInterval > 0 {
		m.bg.Go(func() { m.runCompactHashCheck(cfg.CompactHashCheckInterval) })
	}
	m.startAutoCompaction()
	ok = true
	return m, nil
}

func (m *Member) openStorage() error {
	dir := m.memberDir()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cannot access data directory: %w", err)
	}
	id, found, err := loadIdentity(dir)
	if err != nil {
		return err
	}
	if !found {
		if entries, _ := os.ReadDir(filepath.Join(dir, "wal")); len(entries) > 0 {
			return fmt.Errorf("data dir %s has a WAL but no %s: refusing to guess who this member is", m.cfg.DataDir, identityFile)
		}
		if m.cfg.JoinExisting {
			id, err = joinIdentity(context.Background(), m.cfg.PeerTLS, m.cfg.Name, m.cfg.InitialCluster, m.cfg.Reader)
		} else {
			id, err = newIdentity(m.cfg.Name, m.cfg.InitialCluster, m.cfg.InitialClusterToken)
		}
		if err != nil {
			return err
		}
		if err := id.save(dir); err != nil {
			return fmt.Errorf("write %s: %w", identityFile, err)
		}
	}
	m.id = id
	open := m.cfg.OpenEngine
	if open == nil {
		open = func(dir string) (applier.Engine, error) {
			return OpenPebble(filepath.Join(dir, "pebble"), PebbleOptions{})
		}
	}
	if m.eng, err = open(dir); err != nil {
		return fmt.Errorf("open state machine: %w", err)
	}
	if m.auth, err = newAuthState(m); err != nil {
		return err
	}
	m.app, err = applier.New(applier.Config{
		Auth:            m.auth.store,
		Tokens:          m.auth.tokens,
		Engine:          m.eng,
		Logger:          m.lg.Named("applier"),
		CompactionChunk: m.cfg.CompactionBatchLimit,
		ApplyConfChange: m.applyConfChange,
		Notify:          func(id uint64, res applier.Result) { m.prop.Notify(id, res) },
		OnLease:         m.onLease,
		OnRestore:       m.onRestore,
		// Set before any entry is applied (the bootstrap's included).
		OnCommit:      func(c applier.Commit) { m.hub.Commit(c) },
		EventListener: applierEvents(m.cfg.Metrics),
	})
	if err != nil {
		return fmt.Errorf("open state machine: %w", err)
	}
	rev, compacted := m.app.Rev()
	m.hub = watch.New(watch.Config{
		Source: m.app, Rev: rev, Compacted: compacted,
		ProgressInterval: m.cfg.WatchProgressInterval, Clock: m.cfg.Clock,
	})
	if m.wal, err = wal.Open(filepath.Join(dir, "wal"), wal.Options{
		NoSync: m.cfg.UnsafeNoFsync, Logger: m.lg.Named("wal"), EventListener: walEvents(m.cfg.Metrics),
	}); err != nil {
		return fmt.Errorf("open wal: %w", err)
	}
	return nil
}

// ReplacementEngine is an engine filled beside the member's own, to
// replace it (Config.NewReplacementEngine).
type ReplacementEngine interface {
	applier.Engine
	// Promote makes it the engine the member opens on restart, durably.
	// It stays open and in use.
	Promote() error
	// Discard closes it and removes its files.
	Discard() error
}

// memberDir is the directory of the member's identity, engine and WAL.
func (m *Member) memberDir() string { return filepath.Join(m.cfg.DataDir, "member") }

func (m *Member) closeStorage() {
	if m.wal != nil {
		m.wal.Close()
	}
	if m.app != nil {
		m.app.Close()
		m.app.Engine().Close()
	} else if m.eng != nil {
		m.eng.Close()
	}
}

// recover computes where raft restarts: the applied state of the engine
// and the WAL entries after it (hs and ents are the WAL's). A member whose engine holds nothing yet
// (new, or crashed before its bootstrap reached the engine) first applies
// the initial membership as entries 1..n of term 1 — the same entries on
// every member of the new cluster.
func (m *Member) recover(hs *raftpb.HardState, ents []*raftpb.Entry) (pipeline.StartState, error) {
	if m.app.Applied().Index == 0 && !m.id.Joined {
		if err := m.bootstrap(); err != nil {
			return pipeline.StartState{}, fmt.Errorf("bootstrap: %w", err)
		}
	}
	as := m.app.Applied()
	if (hs == nil || hs.GetCommit() == 0) && as.Index > 0 {
		// Bootstrapped but nothing logged yet: record the bootstrap
		// position, so the log and the engine agree on where raft starts.
		hs = &raftpb.HardState{Term: new(as.Term), Commit: new(as.Index)}
		if err := m.wal.Save(hs, nil); err != nil {
			return pipeline.StartState{}, err
		}
	}
	if hs.GetCommit() < as.Index {
		// A HardState that only advanced the commit index is not fsynced
		// (raft's MustSync), so the engine may be ahead of the durable
		// commit index; what it applied was committed all the same.
		hs = &raftpb.HardState{Term: hs.Term, Vote: hs.Vote, Commit: new(as.Index)}
	}
	var after []*raftpb.Entry
	for _, e := range ents {
		if e.GetIndex() > as.Index {
			after = append(after, e)
		}
	}
	if len(after) > 0 && after[0].GetIndex() != as.Index+1 {
		return pipeline.StartState{}, fmt.Errorf("wal starts at index %d but the state machine has applied only through %d: the log was released too early",
			after[0].GetIndex(), as.Index)
	}
	m.lastRelease = as.Index
	m.lg.Info("recovered member state",
		zap.String("member-id", idString(m.id.MemberID)),
		zap.String("cluster-id", idString(m.id.ClusterID)),
		zap.Uint64("applied-index", as.Index),
		zap.Uint64("commit-index", hs.GetCommit()),
		zap.Int("entries-to-replay", len(after)))
	return pipeline.StartState{
		AppliedIndex: as.Index,
		AppliedTerm:  as.Term,
		ConfState:    as.ConfState,
		HardState:    hs,
		Entries:      after,
	}, nil
}

func (m *Member) bootstrap() error {
	m.bootstrapCS = &raftpb.ConfState{}
	defer func() { m.bootstrapCS = nil }()
	ents, err := m.id.bootstrapEntries()
	if err != nil {
		return err
	}
	if err := m.app.Apply(ents); err != nil {
		return err
	}
	return m.app.Sync()
}

// bootstrapEntries are the entries a member of a new cluster applies
// before raft starts, without logging them: one ConfChangeAddNode per
// initial member at term 1, indexes 1..n, as etcd logs them. A member that
// joined has none.
func (id *identity) bootstrapEntries() ([]*raftpb.Entry, error) {
	if id.Joined {
		return nil, nil
	}
	ents := make([]*raftpb.Entry, 0, len(id.Members))
	for i, mem := range id.Members {
		cc := &raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(mem.ID),
			Context: applier.MemberContext(&pb.Member{ID: mem.ID, PeerURLs: mem.PeerURLs})}
		data, err := proto.Marshal(cc)
		if err != nil {
			return nil, err
		}
		ents = append(ents, &raftpb.Entry{
			Type: raftpb.EntryConfChange.Enum(), Term: new(uint64(1)), Index: new(uint64(i + 1)), Data: data,
		})
	}
	return ents, nil
}

// BootstrapEntries reads the identity in the member directory dir
// (<data-dir>/member) and returns its bootstrap entries (for tools:
// strata dump-logs shows them where etcd's log has them). A member that
// joined an existing cluster, or a directory without an identity, has
// none.
func BootstrapEntries(dir string) ([]*raftpb.Entry, error) {
	id, ok, err := loadIdentity(dir)
	if err != nil || !ok {
		return nil, err
	}
	return id.bootstrapEntries()
}

// applyConfChange is the applier's hook for committed conf changes. During
// bootstrap there is no raft yet and the initial voters are added one by one.
func (m *Member) applyConfChange(cc raftpb.ConfChangeI) (*raftpb.ConfState, error) {
	if cs := m.bootstrapCS; cs != nil {
		// All bootstrap entries go to the applier in one batch, so its
		// Applied() is stale here: accumulate the voters ourselves.
		for _, c := range cc.AsV2().GetChanges() {
			cs.Voters = append(cs.Voters, c.GetNodeId())
		}
		return proto.Clone(cs).(*raftpb.ConfState), nil
	}
	return m.node.ApplyConfChange(cc)
}

// apply is the pipeline's apply stage: the applier, then log housekeeping.
func (m *Member) apply(ents []*raftpb.Entry) error {
	m.prop.ApplyStarting()
	if err := m.app.Apply(ents); err != nil {
		return err
	}
	// Requests proposed as leader in an older term and still unanswered
	// are lost now; their callers hear so at once.
	m.prop.AppliedTerm(ents[len(ents)-1].GetTerm())
	cs := m.app.Applied().ConfState
	if cs != nil && !inConfState(cs, m.id.MemberID) {
		// As etcd: a removed member stops rather than serve a cluster
		// that no longer counts it.
		return ErrMemberRemoved
	}
	if cs != nil && !proto.Equal(cs, m.lastConf) {
		m.lastConf = cs
		m.refreshPeers()
	}
	return m.maybeReleaseLog()
}

// ErrMemberRemoved is returned (and stops the member) when the member
// applies its own removal from the cluster.
var ErrMemberRemoved = errors.New("the member has been permanently removed from the cluster")

func inConfState(cs *raftpb.ConfState, id uint64) bool {
	return slices.Contains(cs.Voters, id) || slices.Contains(cs.Learners, id) ||
		slices.Contains(cs.VotersOutgoing, id) || slices.Contains(cs.LearnersNext, id)
}

// maybeReleaseLog makes the engine durable and lets the WAL drop what the
// engine now holds, every SnapshotCount entries. Invariant 4: the log is
// never released past what the engine has made durable.
func (m *Member) maybeReleaseLog() error {
	as := m.app.Applied()
	if as.Index-m.lastRelease < m.cfg.SnapshotCount {
		return nil
	}
	if err := m.app.Sync(); err != nil {
		return err
	}
	if err := m.wal.SaveSnapshot(wal.SnapshotMarker{Index: as.Index, Term: as.Term, ConfState: as.ConfState}); err != nil {
		return err
	}
	if err := m.wal.ReleaseTo(as.Index); err != nil {
		return err
	}
	failpoint.RaftAfterWALRelease.Hit()
	m.node.CompactLog(as.Index, as.ConfState)
	m.lastRelease = as.Index
	return nil
}

// waitReady closes ready once the member has a leader, has applied
// everything committed before it, and has published its name and client
// URLs through raft — etcd's "ready to serve client requests".
func (m *Member) waitReady() {
	checked := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Duration(m.cfg.ElectionTicks)*m.cfg.TickInterval)
		err := (*backend)(m).LinearizableBarrier(ctx)
		if err == nil && m.cfg.InitialCorruptCheck && !checked {
			checked = true
			if cerr := m.initialCorruptCheck(ctx); cerr != nil {
				cancel()
				go m.node.Fail(cerr)
				return
			}
		}
		if err == nil {
			err = m.publish(ctx)
		}
		cancel()
		if err == nil {
			close(m.ready)
			return
		}
		select {
		case <-m.stop:
			return
		case <-m.node.Done():
			return
		default:
		}
	}
}

// publish records this member's name and client URLs in the replicated
// member list, unless they are there already.
func (m *Member) publish(ctx context.Context) error {
	members, err := m.app.Members()
	if err != nil {
		return err
	}
	for _, mem := range members {
		if mem.ID == m.id.MemberID && mem.Name == m.id.Name && slices.Equal(mem.ClientURLs, m.cfg.ClientURLs) {
			return nil
		}
	}
	res, err := m.prop.Propose(ctx, &pb.InternalRaftRequest{ClusterMemberAttrSet: &membershippb.ClusterMemberAttrSetRequest{
		Member_ID:        m.id.MemberID,
		MemberAttributes: &membershippb.Attributes{Name: m.id.Name, ClientUrls: m.cfg.ClientURLs},
	}})
	if err == nil {
		err = res.Err
	}
	if err == nil {
		m.lg.Info("published local member to cluster through raft",
			zap.String("local-member-id", idString(m.id.MemberID)),
			zap.String("name", m.id.Name), zap.Strings("client-urls", m.cfg.ClientURLs))
	}
	return err
}

// ReadyNotify is closed once the member can serve client requests.
func (m *Member) ReadyNotify() <-chan struct{} { return m.ready }

// Done is closed when the member's raft node stopped (by Stop or failure).
func (m *Member) Done() <-chan struct{} { return m.node.Done() }

// Err is the failure that stopped the member, if any.
func (m *Member) Err() error { return m.node.Err() }

// GRPCServer is the member's gRPC server with etcd's services.
func (m *Member) GRPCServer() *grpc.Server { return m.grpc }

// ID returns the member and cluster IDs.
func (m *Member) ID() (member, cluster uint64) { return m.id.MemberID, m.id.ClusterID }

// Health reports whether the member can serve: it has a leader and a
// linearizable read succeeds. serializable skips the leader round trip.
func (m *Member) Health(ctx context.Context, serializable bool) error {
	b := (*backend)(m)
	if !serializable {
		if !b.HasLeader() {
			return rpctypes.ErrNoLeader
		}
		if err := b.LinearizableBarrier(ctx); err != nil {
			return err
		}
	}
	_, err := m.app.Range(&pb.RangeRequest{Key: []byte("health"), KeysOnly: true, Limit: 1})
	return err
}

// HasLeader reports whether the member knows a leader.
func (m *Member) HasLeader() bool { return (*backend)(m).HasLeader() }

// Alarms returns the cluster's active alarms.
func (m *Member) Alarms() []*pb.AlarmMember { return m.app.Alarms() }

// IsLearner reports whether the member is a raft learner now.
func (m *Member) IsLearner() bool { return (*backend)(m).Status().IsLearner }

// Stop stops the member. Callers of its services get etcd's "server
// stopped": the proposer fails waiting writes, the node fails waiting reads,
// the applier wakes everything waiting on it; then the gRPC server waits for
// its handlers to return, and only then is the storage closed, so no read
// runs against a closed engine. HTTP handlers must be stopped by the caller
// first (they read the applier too).
func (m *Member) Stop() {
	m.stopOnce.Do(func() {
		close(m.stop)
		// A leader hands over first, as etcd does on SIGTERM, so the
		// cluster does not wait out an election timeout.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Duration(m.cfg.ElectionTicks)*m.cfg.TickInterval)
		if err := m.node.TransferLeadership(ctx); err != nil {
			m.lg.Warn("leadership transfer on stop failed", zap.Error(err))
		}
		cancel()
		m.prop.Stop()
		m.node.Stop()
		m.bg.Wait()
		m.peerGRPC.Stop()
		m.logLinkTotals()
		m.peers.Close()
		(*snapshotSource)(m).releasePinned()
		m.app.Close()
		// The self client goes first: a Lock or Campaign waiting when
		// the server stops cleans up through it with the client's own
		// context, which only closing the client ends; grpc.Stop waits
		// for that handler.
		m.self.Close()
		m.grpc.Stop()
		m.leaderConns.close()
		if err := m.app.Sync(); err != nil {
			m.lg.Warn("sync state machine on stop", zap.Error(err))
		}
		m.closeStorage()
	})
}

// idString renders a member or cluster ID as etcd prints it.
func idString(id uint64) string { return fmt.Sprintf("%x", id) }

// raftProxy lets the proposer reach the node, which is created after it.
type raftProxy Member

func (r *raftProxy) Propose(ctx context.Context, data []byte) (uint64, error) {
	return r.node.ProposeTerm(ctx, data)
}

func (r *raftProxy) ProposeConfChange(ctx context.Context, cc raftpb.ConfChangeI) error {
	return r.node.ProposeConfChange(ctx, cc)
}

// walStore adapts the WAL to the pipeline's LogStore.
type walStore struct {
	w   *wal.WAL
	app *applier.Applier
}

func (s walStore) SaveSnapshot(snap *raftpb.Snapshot) error {
	md := snap.GetMetadata()
	if applied := s.app.Applied().Index; applied < md.GetIndex() {
		// The transport installs a snapshot's data before raft sees it;
		// a snapshot without its data would leave the state machine
		// silently behind the log.
		return fmt.Errorf("raft snapshot at index %d, but the state machine holds only %d: its data never arrived", md.GetIndex(), applied)
	}
	return s.w.SaveSnapshot(wal.SnapshotMarker{Index: md.GetIndex(), Term: md.GetTerm(), ConfState: md.GetConfState()})
}

func (s walStore) Save(hs *raftpb.HardState, ents []*raftpb.Entry, mustSync bool) error {
	if mustSync {
		return s.w.Save(hs, ents)
	}
	_, err := s.w.Append(hs, ents)
	return err
}
