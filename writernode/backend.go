package writernode

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"go.etcd.io/raft/v3/raftpb"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/stratakv/strata/applier"
	"github.com/stratakv/strata/internal/api"
	"github.com/stratakv/strata/internal/plantedbug"
	"github.com/stratakv/strata/pipeline"
)

// backend is the Member as the API services see it: reads from the
// applier, writes through the proposer.
type backend Member

var (
	_ api.Backend      = (*backend)(nil)
	_ api.StatusSource = (*backend)(nil)
	_ api.Membership   = (*backend)(nil)
	_ api.LeaderSource = (*backend)(nil)
)

func (b *backend) Range(r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := b.refuseIfCorrupt(); err != nil {
		return nil, err
	}
	resp, err := b.app.Range(r)
	return resp, stoppedErr(err)
}

func (b *backend) ReadTxn(r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := b.refuseIfCorrupt(); err != nil {
		return nil, err
	}
	resp, err := b.app.ReadTxn(r)
	return resp, stoppedErr(err)
}

// stoppedErr turns the stages' "stopped" errors into etcd's, which clients
// know to retry on another member (Unavailable).
func stoppedErr(err error) error {
	if errors.Is(err, pipeline.ErrStopped) || errors.Is(err, applier.ErrClosed) {
		return rpctypes.ErrGRPCStopped
	}
	return err
}

// requestTimeout is etcd's ReqTimeout: 5s plus two election timeouts.
func (b *backend) requestTimeout() time.Duration {
	return 5*time.Second + 2*time.Duration(b.cfg.ElectionTicks)*b.cfg.TickInterval
}

func (b *backend) WaitCompaction(ctx context.Context, rev int64) error {
	return stoppedErr(b.app.WaitCompaction(ctx, rev))
}

func (b *backend) HashKV(rev int64) (applier.HashKVResult, error) { return b.app.HashKV(rev) }

func (b *backend) Defragment(ctx context.Context) error {
	err := b.app.Defragment(ctx)
	b.sizeAt.Store(0) // the quota check reads the size anew
	return stoppedErr(err)
}

func (b *backend) Hash() (uint32, int64, error) {
	h, rev, err := b.app.Hash()
	return h, rev, stoppedErr(err)
}

// LinearizableBarrier waits for a ReadIndex round and for the applier to
// catch up with it, for at most etcd's request timeout: a read that cannot
// be confirmed (no leader) fails with "request timed out" rather than
// waiting as long as the client does.
func (b *backend) LinearizableBarrier(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, b.requestTimeout())
	defer cancel()
	err := b.barrier(tctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return rpctypes.ErrGRPCTimeout
	}
	return stoppedErr(err)
}

func (b *backend) barrier(ctx context.Context) error {
	if b.cfg.Reader && plantedbug.On(plantedbug.StaleReaderRead) {
		return nil
	}
	idx, err := b.node.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return b.app.WaitApplied(ctx, idx)
}

func (b *backend) Propose(ctx context.Context, r *pb.InternalRaftRequest) (applier.Result, error) {
	st := b.node.Status()
	if st.Lead == 0 {
		return applier.Result{}, rpctypes.ErrGRPCNoLeader
	}
	if st.Commit > st.Applied+maxApplyLag {
		return applier.Result{}, rpctypes.ErrGRPCRequestTooManyRequests
	}
	if err := b.checkQuota(r); err != nil {
		return applier.Result{}, err
	}
	return b.prop.Propose(ctx, r)
}

// checkQuota is etcd's quota check, made by the member a request reaches
// before it proposes it: a request that takes space (applier.TakesSpace)
// while the member's state machine is past --quota-backend-bytes raises
// the NOSPACE alarm for the member, through the log, and is refused with
// etcd's "etcdserver: mvcc: database space exceeded". The alarm then
// refuses such requests on every member until it is disarmed.
func (b *backend) checkQuota(r *pb.InternalRaftRequest) error {
	if b.cfg.QuotaBytes <= 0 || !applier.TakesSpace(r) || b.engineSize() <= b.cfg.QuotaBytes {
		return nil
	}
	if !b.app.AlarmActive(b.id.MemberID, pb.AlarmType_NOSPACE) && b.raisingNoSpace.CompareAndSwap(false, true) {
		b.lg.Warn("the state machine is past its quota; raising the NOSPACE alarm",
			zap.Int64("size", b.app.Stats().SizeBytes), zap.Int64("quota", b.cfg.QuotaBytes))
		go func() {
			defer b.raisingNoSpace.Store(false)
			ctx, cancel := context.WithTimeout(context.Background(), b.requestTimeout())
			defer cancel()
			_, err := b.prop.Propose(ctx, &pb.InternalRaftRequest{Alarm: &pb.AlarmRequest{
				Action: pb.AlarmRequest_ACTIVATE, MemberID: b.id.MemberID, Alarm: pb.AlarmType_NOSPACE}})
			if err != nil {
				b.lg.Warn("cannot raise the NOSPACE alarm", zap.Error(err))
			}
		}()
	}
	return rpctypes.ErrGRPCNoSpace
}

func (b *backend) Header() *pb.ResponseHeader {
	rev, _ := b.app.Rev()
	return &pb.ResponseHeader{
		ClusterId: b.id.ClusterID,
		MemberId:  b.id.MemberID,
		RaftTerm:  b.node.Status().Term,
		Revision:  rev,
	}
}

func (b *backend) HasLeader() bool { return b.node.Status().Lead != 0 }

func (b *backend) Status() api.MemberStatus {
	st := b.node.Status()
	es := b.app.Stats()
	ms := api.MemberStatus{
		Leader:           st.Lead,
		RaftIndex:        st.Commit,
		RaftAppliedIndex: st.Applied,
		RaftTerm:         st.Term,
		DBSize:           es.SizeBytes,
		DBSizeInUse:      es.LiveBytes,
		DBSizeQuota:      b.cfg.QuotaBytes,
	}
	if cs := b.app.Applied().ConfState; cs != nil && slices.Contains(cs.GetLearners(), b.id.MemberID) {
		ms.IsLearner = true
	}
	if st.Lead == 0 {
		ms.Errors = append(ms.Errors, rpctypes.ErrNoLeader.Error())
	}
	for _, a := range b.app.Alarms() {
		ms.Errors = append(ms.Errors, a.String()) // etcd's text: "memberID:<id> alarm:NOSPACE "
	}
	return ms
}

// quotaSizeTTL is how long the engine size the quota check uses may be
// stale: asking Pebble for its metrics on every write would cost the
// write path more than the check is worth, and a quota is approximate.
const quotaSizeTTL = 100 * time.Millisecond

// engineSize is the state machine's size on disk, refreshed at most every
// quotaSizeTTL.
func (b *backend) engineSize() int64 {
	now := b.cfg.Clock.Now().UnixNano()
	if at := b.sizeAt.Load(); at != 0 && now-at < int64(quotaSizeTTL) {
		return b.size.Load()
	}
	size := b.app.Stats().SizeBytes
	b.size.Store(size)
	b.sizeAt.Store(now)
	return size
}

func (b *backend) Members() ([]*pb.Member, error) {
	ms, err := b.app.Members()
	return ms, stoppedErr(err)
}

func (b *backend) ProposeConfChange(ctx context.Context, cc *raftpb.ConfChange) error {
	res, err := b.prop.ProposeConfChange(ctx, cc)
	if err != nil {
		return stoppedErr(err)
	}
	return res.Err
}

// NewMemberID derives a new member's ID like etcd: from its peer URLs, the
// cluster token and the time, so that re-adding the same URLs later gets
// a fresh ID.
func (b *backend) NewMemberID(peerURLs []string) uint64 {
	return MemberID(peerURLs, b.cfg.InitialClusterToken+strconv.FormatInt(b.cfg.Clock.Now().Unix(), 10))
}

// learnerReadyFraction is etcd's readiness threshold for promotion: the
// learner's log matches at least 90% of the leader's.
const learnerReadyFraction = 0.9

func (b *backend) LearnerReady(id uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), b.requestTimeout())
	defer cancel()
	match, ok, err := b.node.Progress(ctx)
	if err != nil {
		return stoppedErr(err)
	}
	if !ok {
		return rpctypes.ErrGRPCNotLeader
	}
	lm, found := match[id]
	if !found {
		return rpctypes.ErrGRPCMemberNotFound
	}
	if float64(lm) < learnerReadyFraction*float64(match[b.id.MemberID]) {
		return rpctypes.ErrGRPCLearnerNotReady
	}
	return nil
}

// PromoteOnLeader implements api.Membership: the promotion goes to the
// Cluster service the leader serves on its peer URL.
func (b *backend) PromoteOnLeader(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	lead := b.node.Status().Lead
	if lead == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	members, err := b.Members()
	if err != nil {
		return nil, err
	}
	var urls []string
	for _, m := range members {
		if m.ID == lead {
			urls = m.PeerURLs
		}
	}
	if len(urls) == 0 {
		return nil, rpctypes.ErrGRPCNoLeader
	}
	ctx, cancel := context.WithTimeout(ctx, b.requestTimeout())
	defer cancel()
	ctx = forwardCtx(ctx, b.id.MemberID) // with the caller's token: the leader checks it again
	var lastErr error
	for _, u := range urls {
		resp, err := callPeerCluster(ctx, b.cfg.PeerTLS, u, func(c pb.ClusterClient) (*pb.MemberPromoteResponse, error) {
			return c.MemberPromote(ctx, r)
		})
		if err == nil {
			return resp, nil
		}
		if status.Code(err) == codes.DeadlineExceeded {
			return nil, rpctypes.ErrGRPCTimeout
		}
		if _, ok := status.FromError(err); ok && status.Code(err) != codes.Unavailable {
			return nil, err // the leader's answer, etcd's error as it gave it
		}
		lastErr = err
	}
	return nil, lastErr
}

func (b *backend) StrictReconfigCheck() bool { return !b.cfg.NoStrictReconfigCheck }

func (b *backend) MoveLeader(ctx context.Context, target uint64) error {
	if st := b.node.Status(); !st.IsLeader {
		return rpctypes.ErrGRPCNotLeader
	}
	members, err := b.app.Members()
	if err != nil {
		return stoppedErr(err)
	}
	voter := false
	for _, m := range members {
		voter = voter || m.ID == target && !m.IsLearner
	}
	if !voter {
		return rpctypes.ErrGRPCBadLeaderTransferee
	}
	tctx, cancel := context.WithTimeout(ctx, b.requestTimeout())
	defer cancel()
	err = b.node.MoveLeader(tctx, target)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		return api.ErrTimeoutLeaderTransfer
	}
	return stoppedErr(err)
}
