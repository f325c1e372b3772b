package clock

import (
	"sync"
	"time"
)

// Clock is the source of time for a component.
type Clock interface {
	Now() time.Time
	// NewTicker returns a ticker that fires every d.
	NewTicker(d time.Duration) Ticker
	// After returns a channel that receives once d has elapsed.
	After(d time.Duration) <-chan time.Time
}

// Ticker is the part of time.Ticker components use.
type Ticker interface {
	C() <-chan time.Time
	Stop()
}

// Real is the wall clock.
type Real struct{}

func (Real) Now() time.Time                         { return time.Now() }
func (Real) After(d time.Duration) <-chan time.Time { return time.After(d) }
func (Real) NewTicker(d time.Duration) Ticker       { return realTicker{time.NewTicker(d)} }

type realTicker struct{ t *time.Ticker }

func (r realTicker) C() <-chan time.Time { return r.t.C }
func (r realTicker) Stop()               { r.t.Stop() }

// Manual is a clock that moves only when Advance is called.
type Manual struct {
	mu struct {
		sync.Mutex
		now     time.Time
		waiters []*manualWaiter
	}
}

type manualWaiter struct {
	at     time.Time
	period time.Duration // 0 for one-shot
	c      chan time.Time
	dead   bool
}

// NewManual returns a manual clock starting at start.
func NewManual(start time.Time) *Manual {
	m := &Manual{}
	m.mu.now = start
	return m
}

func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.now
}

func (m *Manual) After(d time.Duration) <-chan time.Time {
	return m.add(d, 0).c
}

func (m *Manual) NewTicker(d time.Duration) Ticker {
	if d <= 0 {
		panic("clock: non-positive ticker period")
	}
	return manualTicker{m: m, w: m.add(d, d)}
}

func (m *Manual) add(d, period time.Duration) *manualWaiter {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := &manualWaiter{at: m.mu.now.Add(d), period: period, c: make(chan time.Time, 1)}
	m.mu.waiters = append(m.mu.waiters, w)
	return w
}

// Advance moves the clock forward by d and fires every timer and ticker that
// came due. A ticker that came due several times fires once (its channel has
// a buffer of one, like time.Ticker, which drops ticks for slow receivers).
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.now = m.mu.now.Add(d)
	live := m.mu.waiters[:0]
	for _, w := range m.mu.waiters {
		if w.dead {
			continue
		}
		if !w.at.After(m.mu.now) {
			select {
			case w.c <- m.mu.now:
			default:
			}
			if w.period == 0 {
				continue
			}
			for !w.at.After(m.mu.now) {
				w.at = w.at.Add(w.period)
			}
		}
		live = append(live, w)
	}
	m.mu.waiters = live
}

// Waiters is the number of timers and tickers that have not fired (a
// ticker counts until stopped): a test waits for the code under test to
// be waiting before it advances the clock.
func (m *Manual) Waiters() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, w := range m.mu.waiters {
		if !w.dead {
			n++
		}
	}
	return n
}

type manualTicker struct {
	m *Manual
	w *manualWaiter
}

func (t manualTicker) C() <-chan time.Time { return t.w.c }
func (t manualTicker) Stop() {
	t.m.mu.Lock()
	t.w.dead = true
	t.m.mu.Unlock()
}

// Announcing is a Manual clock that announces every After on Afters (the
// duration asked for), so that a test advances the clock only once the code
// under test waits on it. Afters holds 1024 announcements; After blocks
// beyond that until the test reads them.
type Announcing struct {
	*Manual
	Afters chan time.Duration
}

// NewAnnouncing returns an announcing manual clock starting at start.
func NewAnnouncing(start time.Time) *Announcing {
	return &Announcing{Manual: NewManual(start), Afters: make(chan time.Duration, 1024)}
}

// After implements Clock.
func (c *Announcing) After(d time.Duration) <-chan time.Time {
	ch := c.Manual.After(d)
	c.Afters <- d
	return ch
}
