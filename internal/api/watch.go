package api

import (
	"context"
	"errors"
	"io"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"

	"github.com/stratakv/strata/internal/auth"
	"github.com/stratakv/strata/internal/failpoint"
	"github.com/stratakv/strata/internal/watch"
)

// WatchConfig configures the Watch service.
type WatchConfig struct {
	Hub *watch.Hub
	// LeaderCheck is how often a stream opened with hasleader=true checks
	// that the member still knows a leader (etcd: the election timeout);
	// after three failed checks in a row the stream ends with "no leader".
	LeaderCheck time.Duration
}

// maxNoLeaderChecks is etcd's maxNoLeaderCnt.
const maxNoLeaderChecks = 3

// Watch implements etcdserverpb.WatchServer over a watch hub.
type Watch struct {
	pb.UnimplementedWatchServer
	b      Backend
	leader LeaderSource
	cfg    WatchConfig
	z      authz
	// fragmentBytes is where fragmenting watchers' responses split.
	fragmentBytes int
}

// NewWatch returns the Watch service.
func NewWatch(b Backend, leader LeaderSource, cfg WatchConfig, maxRequestBytes int) *Watch {
	return &Watch{b: b, leader: leader, cfg: cfg, fragmentBytes: maxRequestBytes + grpcOverheadBytes}
}

// Watch serves one watch stream: a goroutine takes the client's requests
// while this one sends what the hub says is due. The stream ends when the
// client goes away (etcd's "watch canceled"), when the member loses its
// leader under hasleader=true ("no leader"), or on a receive error. A
// client's half-close does not end it: events keep coming, as in etcd.
func (s *Watch) Watch(stream pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancelCause(stream.Context())
	defer cancel(nil)
	ws := s.cfg.Hub.NewStream(watch.StreamOptions{Header: s.b.Header, FragmentBytes: s.fragmentBytes})
	defer ws.Close()

	if requiresLeader(ctx) && s.leader != nil && s.cfg.LeaderCheck > 0 {
		go s.monitorLeader(ctx, cancel)
	}
	go func() {
		for {
			req, err := stream.Recv()
			if err == io.EOF {
				return
			}
			if err != nil {
				cancel(err)
				return
			}
			if cr := req.GetCreateRequest(); cr != nil {
				a, _, err := s.z.accessNow(ctx)
				if err == nil {
					err = auth.CheckWatchCreate(a, cr)
				}
				if err != nil {
					ws.Refuse(auth.WatchCancelReason(err))
					continue
				}
			}
			ws.Handle(req)
		}
	}()
	for {
		out, err := ws.Next(ctx)
		if err != nil {
			return watchEnd(ctx, stream.Context(), err)
		}
		for _, r := range out {
			failpoint.BeforeSendWatchResponse.Hit()
			if err := stream.Send(r); err != nil {
				return err
			}
		}
	}
}

// watchEnd is the status a stream ends with, as etcd's.
func watchEnd(ctx, streamCtx context.Context, err error) error {
	cause := context.Cause(ctx)
	switch {
	case errors.Is(cause, rpctypes.ErrGRPCNoLeader):
		return rpctypes.ErrGRPCNoLeader
	case streamCtx.Err() != nil:
		return rpctypes.ErrGRPCWatchCanceled
	case ctx.Err() != nil:
		return cause // a receive error
	}
	return togRPCError(err)
}

func requiresLeader(ctx context.Context) bool {
	vs := metadata.ValueFromIncomingContext(ctx, rpctypes.MetadataRequireLeaderKey)
	return len(vs) > 0 && vs[0] == rpctypes.MetadataHasLeader
}

// monitorLeader cancels the stream with "no leader" once the member has
// known none for maxNoLeaderChecks checks in a row.
func (s *Watch) monitorLeader(ctx context.Context, cancel context.CancelCauseFunc) {
	t := time.NewTicker(s.cfg.LeaderCheck)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.leader.HasLeader() {
			missed = 0
			continue
		}
		if missed++; missed >= maxNoLeaderChecks {
			cancel(rpctypes.ErrGRPCNoLeader)
			return
		}
	}
}
