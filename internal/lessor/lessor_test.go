package lessor

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stratakv/strata/internal/clock"
)

func newTest() (*Lessor, *clock.Manual) {
	clk := clock.NewManual(time.Unix(1000, 0))
	return New(Config{Clock: clk, CheckpointInterval: time.Minute, RevokeRetry: 3 * time.Second}), clk
}

func TestMinTTL(t *testing.T) {
	for _, c := range []struct {
		et   time.Duration
		want int64
	}{{time.Second, 2}, {500 * time.Millisecond, 1}, {1200 * time.Millisecond, 2}, {2 * time.Second, 3}} {
		if got := MinTTL(c.et); got != c.want {
			t.Errorf("MinTTL(%v) = %d, want %d", c.et, got, c.want)
		}
	}
}

func TestOnlyThePrimaryExpiresAndRenews(t *testing.T) {
	l, clk := newTest()
	l.Granted(1, 10)
	if _, err := l.Renew(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("Renew on a follower: %v", err)
	}
	clk.Advance(time.Hour)
	if got := l.Expired(10); got != nil {
		t.Fatalf("a follower expired %v", got)
	}
	if rem, granted, ok := l.TimeToLive(1); !ok || rem != 10 || granted != 10 {
		t.Fatalf("TimeToLive on a follower = %d %d %v", rem, granted, ok)
	}

	// Promoted: the full TTL plus the extension, from now.
	l.Promote(time.Second, 2)
	clk.Advance(10 * time.Second)
	if got := l.Expired(10); got != nil {
		t.Fatalf("expired within the extension: %v", got)
	}
	clk.Advance(time.Second)
	if got := l.Expired(10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("Expired = %v, want [1]", got)
	}
	// Offered once per retry interval until its revoke applies.
	if got := l.Expired(10); got != nil {
		t.Fatalf("offered again at once: %v", got)
	}
	if _, err := l.Renew(1); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Renew of an expired lease: %v", err)
	}
	clk.Advance(3 * time.Second)
	if got := l.Expired(10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("not offered again after the retry interval: %v", got)
	}
	l.Revoked(1)
	clk.Advance(time.Hour)
	if got := l.Expired(10); got != nil {
		t.Fatalf("revoked lease offered: %v", got)
	}

	l.Demote()
	l.Granted(2, 5)
	clk.Advance(time.Hour)
	if got := l.Expired(10); got != nil {
		t.Fatalf("demoted lessor expired %v", got)
	}
}

func TestRenewAndTimeToLive(t *testing.T) {
	l, clk := newTest()
	l.Promote(0, 2)
	l.Granted(1, 10)
	clk.Advance(7 * time.Second)
	if rem, _, _ := l.TimeToLive(1); rem != 3 {
		t.Fatalf("remaining %d after 7 s of 10, want 3", rem)
	}
	if ttl, err := l.Renew(1); err != nil || ttl != 10 {
		t.Fatalf("Renew = %d, %v", ttl, err)
	}
	if rem, granted, _ := l.TimeToLive(1); rem != 10 || granted != 10 {
		t.Fatalf("after renew: remaining %d granted %d", rem, granted)
	}
	if _, err := l.Renew(99); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("Renew of an unknown lease: %v", err)
	}
	if _, _, ok := l.TimeToLive(99); ok {
		t.Fatal("TimeToLive of an unknown lease")
	}
}

func TestExpiredIsBoundedAndOldestFirst(t *testing.T) {
	l, clk := newTest()
	l.Promote(0, 2)
	for id := int64(1); id <= 5; id++ {
		l.Granted(id, 10-id) // lease 5 expires first
	}
	clk.Advance(time.Hour)
	if got := l.Expired(2); !slices.Equal(got, []int64{5, 4}) {
		t.Fatalf("Expired(2) = %v, want [5 4]", got)
	}
	if got := l.Expired(10); !slices.Equal(got, []int64{3, 2, 1}) {
		t.Fatalf("Expired(10) = %v, want [3 2 1]", got)
	}
}

// TestRemainingTTLSurvivesLeaderChange: a checkpointed remaining TTL is what
// a new primary starts from, and a renewal asks to clear it.
func TestRemainingTTLSurvivesLeaderChange(t *testing.T) {
	old, clk := newTest()
	old.Promote(0, 2)
	old.Granted(1, 600)
	old.Granted(2, 30) // shorter than the checkpoint interval: never checkpointed
	clk.Advance(2 * time.Minute)
	cps := old.DueCheckpoints(10)
	if len(cps) != 1 || cps[0].ID != 1 || cps[0].Remaining_TTL != 480 {
		t.Fatalf("DueCheckpoints = %v, want lease 1 at 480", cps)
	}
	if again := old.DueCheckpoints(10); len(again) != 0 {
		t.Fatalf("checkpointed again at once: %v", again)
	}

	// A new leader loads the applied table (the checkpoint applied) and
	// is promoted.
	next := New(Config{Clock: clk, CheckpointInterval: time.Minute})
	next.Load([]State{{ID: 1, TTL: 600, RemainingTTL: 480}, {ID: 2, TTL: 30}})
	next.Promote(time.Second, 2)
	if rem, granted, _ := next.TimeToLive(1); rem != 481 || granted != 600 {
		t.Fatalf("lease 1 on the new leader: remaining %d granted %d, want 481 of 600", rem, granted)
	}
	next.Checkpointed(1, 480)
	if _, err := next.Renew(1); err != nil {
		t.Fatal(err)
	}
	cps = next.DueCheckpoints(10)
	if len(cps) != 1 || cps[0].ID != 1 || cps[0].Remaining_TTL != 0 {
		t.Fatalf("after renewing a checkpointed lease: %v, want a zero checkpoint", cps)
	}
}
