package lessor

import (
	"errors"
	"math"
	"sort"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/stratakv/strata/internal/clock"
)

var (
	// ErrNotPrimary is Renew's answer on a member that is not the leader.
	// etcd sends the same text ("not a primary lessor") and clients move
	// to another member.
	ErrNotPrimary = errors.New("not a primary lessor")
	// ErrLeaseNotFound is Renew's answer for an unknown or expired lease.
	ErrLeaseNotFound = errors.New("lease not found")
)

// Config configures a Lessor.
type Config struct {
	Clock clock.Clock
	// CheckpointInterval is how often the remaining TTL of a long lease is
	// checkpointed (etcd: 5 minutes); leases with a TTL below it are not.
	// 0: 5 minutes.
	CheckpointInterval time.Duration
	// RevokeRetry is how long an expired lease waits before it is offered
	// for revocation again (etcd: 3 s). 0: 3 s.
	RevokeRetry time.Duration
}

// State is a lease as the replicated table holds it.
type State struct {
	ID, TTL, RemainingTTL int64
}

// MinTTL is etcd's shortest lease TTL for an election timeout: one and a half
// election timeouts, in whole seconds, rounded up.
func MinTTL(electionTimeout time.Duration) int64 {
	return int64(math.Ceil((3 * electionTimeout / 2).Seconds()))
}

type lease struct {
	ttl int64
	// remaining is the checkpointed remaining TTL (0: none).
	remaining int64
	// expiry is when the lease expires; zero while not primary.
	expiry time.Time
	// offered is when Expired last offered the lease for revocation.
	offered time.Time
	// checkpointed is when the remaining TTL was last checkpointed (or
	// the lease's expiry last set); clearRemaining asks for a checkpoint
	// of 0 after a renewal of a checkpointed lease.
	checkpointed   time.Time
	clearRemaining bool
}

// Lessor tracks lease expiry. It is safe for concurrent use.
type Lessor struct {
	cfg Config
	mu  sync.Mutex
	// leases are the applied leases.
	leases map[int64]*lease
	// term is the raft term the lessor was promoted in; 0 while it is
	// not primary (raft terms start at 1).
	term uint64
}

// New returns a Lessor that is not primary and knows no lease.
func New(cfg Config) *Lessor {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = 5 * time.Minute
	}
	if cfg.RevokeRetry <= 0 {
		cfg.RevokeRetry = 3 * time.Second
	}
	return &Lessor{cfg: cfg, leases: map[int64]*lease{}}
}

func seconds(s int64) time.Duration { return time.Duration(s) * time.Second }

// Load replaces what the lessor knows with the applied table (at start, and
// after the state machine was restored from a snapshot). A primary lessor
// gives the leases their remaining time from now.
func (l *Lessor) Load(states []State) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Clock.Now()
	l.leases = make(map[int64]*lease, len(states))
	for _, s := range states {
		ls := &lease{ttl: s.TTL, remaining: s.RemainingTTL}
		if l.term != 0 {
			l.refresh(ls, now, 0)
		}
		l.leases[s.ID] = ls
	}
}

// refresh gives ls its remaining time plus extend from now. REQUIRES: l.mu.
func (l *Lessor) refresh(ls *lease, now time.Time, extend time.Duration) {
	left := ls.ttl
	if ls.remaining > 0 {
		left = ls.remaining
	}
	ls.expiry = now.Add(extend + seconds(left))
	ls.checkpointed = now
}

// Granted records an applied LeaseGrant.
func (l *Lessor) Granted(id, ttl int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := &lease{ttl: ttl}
	if l.term != 0 {
		l.refresh(ls, l.cfg.Clock.Now(), 0)
	}
	l.leases[id] = ls
}

// Revoked records an applied LeaseRevoke.
func (l *Lessor) Revoked(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.leases, id)
}

// Checkpointed records an applied LeaseCheckpoint of lease id.
func (l *Lessor) Checkpointed(id, remaining int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ls := l.leases[id]; ls != nil {
		ls.remaining = remaining
	}
}

// Promote makes the lessor primary for raft term term: every lease gets its
// remaining TTL plus extend (etcd extends by one election timeout) from now.
func (l *Lessor) Promote(extend time.Duration, term uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.term = term
	now := l.cfg.Clock.Now()
	for _, ls := range l.leases {
		l.refresh(ls, now, extend)
		ls.offered = time.Time{}
	}
}

// Demote makes the lessor stop expiring and renewing leases.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.term = 0
	for _, ls := range l.leases {
		ls.expiry = time.Time{}
	}
}

// Primary reports whether the lessor is primary.
func (l *Lessor) Primary() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term != 0
}

// PrimaryTerm is the term the lessor was promoted in; 0 when not primary. A
// leader serves renewals only from a lessor promoted in its current term.
func (l *Lessor) PrimaryTerm() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.term
}

// Renew extends lease id by its TTL from now and returns the TTL. A lease
// that has expired cannot be renewed (its revoke is on its way).
func (l *Lessor) Renew(id int64) (int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == 0 {
		return 0, ErrNotPrimary
	}
	ls := l.leases[id]
	now := l.cfg.Clock.Now()
	if ls == nil || !now.Before(ls.expiry) {
		return 0, ErrLeaseNotFound
	}
	if ls.remaining > 0 {
		ls.clearRemaining = true
	}
	ls.remaining = 0
	l.refresh(ls, now, 0)
	return ls.ttl, nil
}

// TimeToLive returns lease id's remaining and granted TTL in seconds; ok is
// false for an unknown lease. On a lessor that is not primary the remaining
// TTL is the checkpointed one, or the full TTL.
func (l *Lessor) TimeToLive(id int64) (remaining, granted int64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ls := l.leases[id]
	if ls == nil {
		return 0, 0, false
	}
	if l.term == 0 {
		if ls.remaining > 0 {
			return ls.remaining, ls.ttl, true
		}
		return ls.ttl, ls.ttl, true
	}
	left := max(ls.expiry.Sub(l.cfg.Clock.Now()), 0)
	return int64(left / time.Second), ls.ttl, true
}

// Expired returns up to max leases that have expired and were not offered
// in the last RevokeRetry, oldest expiry first, and marks them offered. Its
// owner proposes a LeaseRevoke for each. A lessor that is not primary
// returns none.
func (l *Lessor) Expired(max int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == 0 {
		return nil
	}
	now := l.cfg.Clock.Now()
	type exp struct {
		id int64
		at time.Time
	}
	var out []exp
	for id, ls := range l.leases {
		if now.Before(ls.expiry) {
			continue
		}
		if !ls.offered.IsZero() && now.Sub(ls.offered) < l.cfg.RevokeRetry {
			continue
		}
		out = append(out, exp{id, ls.expiry})
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].at.Equal(out[j].at) {
			return out[i].at.Before(out[j].at)
		}
		return out[i].id < out[j].id
	})
	if len(out) > max {
		out = out[:max]
	}
	if len(out) == 0 {
		return nil
	}
	ids := make([]int64, len(out))
	for i, e := range out {
		l.leases[e.id].offered = now
		ids[i] = e.id
	}
	return ids
}

// DueCheckpoints returns up to max checkpoints its owner should propose:
// the remaining TTL of every lease longer than CheckpointInterval whose
// last checkpoint is that old, and a zero for every renewed lease that had
// one. A lessor that is not primary returns none.
func (l *Lessor) DueCheckpoints(max int) []*pb.LeaseCheckpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.term == 0 {
		return nil
	}
	now := l.cfg.Clock.Now()
	var ids []int64
	for id, ls := range l.leases {
		due := seconds(ls.ttl) > l.cfg.CheckpointInterval && now.Sub(ls.checkpointed) >= l.cfg.CheckpointInterval
		if ls.clearRemaining || (due && now.Before(ls.expiry)) {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if len(ids) > max {
		ids = ids[:max]
	}
	out := make([]*pb.LeaseCheckpoint, 0, len(ids))
	for _, id := range ids {
		ls := l.leases[id]
		rem := int64(0)
		if !ls.clearRemaining {
			rem = int64(ls.expiry.Sub(now) / time.Second)
		}
		ls.clearRemaining = false
		ls.checkpointed = now
		out = append(out, &pb.LeaseCheckpoint{ID: id, Remaining_TTL: rem})
	}
	return out
}
