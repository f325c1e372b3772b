package faultproxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Faults are the faults a proxy applies; the zero value forwards as is.
type Faults struct {
	// Blackhole passes nothing in either direction until cleared.
	Blackhole bool
	// Delay holds each chunk this long before forwarding it, plus up to
	// Jitter more; chunks keep their order.
	Delay, Jitter time.Duration
	// Loss is the probability that a chunk is held LossPenalty more, as
	// a lost and retransmitted packet would be.
	Loss        float64
	LossPenalty time.Duration
}

// DefaultLossPenalty is Faults.LossPenalty's default: Linux's minimum
// TCP retransmission timeout.
const DefaultLossPenalty = 200 * time.Millisecond

// Proxy forwards the TCP connections it accepts to a target address.
type Proxy struct {
	ln net.Listener

	mu struct {
		sync.Mutex
		target string
		faults Faults
		// changed is closed and replaced whenever the faults change
		// or the proxy closes, waking whoever waits out a blackhole.
		changed chan struct{}
		links   map[*link]struct{}
		closed  bool
		rng     *rand.Rand
	}
	wg sync.WaitGroup
}

// link is one proxied connection pair.
type link struct {
	client net.Conn
	done   chan struct{} // closed with the link
	mu     sync.Mutex
	server net.Conn
	closed bool
}

// close ends both sides of the link.
func (l *link) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	close(l.done)
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

// setServer records the dialed side; false (and s closed) if the link was
// closed first.
func (l *link) setServer(s net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		s.Close()
		return false
	}
	l.server = s
	return true
}

// Listen starts a proxy on addr (host:port; port 0 picks one) forwarding
// to target. seed makes its random choices (jitter, loss) reproducible.
func Listen(addr, target string, seed uint64) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln}
	p.mu.target = target
	p.mu.changed = make(chan struct{})
	p.mu.links = map[*link]struct{}{}
	p.mu.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	p.wg.Go(p.accept)
	return p, nil
}

// Addr is the address the proxy listens on.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address it forwards to.
func (p *Proxy) Target() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.target
}

// SetTarget points the connections accepted from now on at target.
func (p *Proxy) SetTarget(target string) {
	p.mu.Lock()
	p.mu.target = target
	p.mu.Unlock()
}

// Set replaces the proxy's faults, for open connections and new ones.
func (p *Proxy) Set(f Faults) {
	if f.Loss > 0 && f.LossPenalty == 0 {
		f.LossPenalty = DefaultLossPenalty
	}
	p.mu.Lock()
	p.mu.faults = f
	p.wakeLocked()
	p.mu.Unlock()
}

// wakeLocked wakes everyone waiting on the current faults.
// REQUIRES: p.mu held.
func (p *Proxy) wakeLocked() {
	close(p.mu.changed)
	p.mu.changed = make(chan struct{})
}

// Faults returns the proxy's current faults.
func (p *Proxy) Faults() Faults {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.faults
}

// Heal removes every fault.
func (p *Proxy) Heal() { p.Set(Faults{}) }

// Reset closes every open connection (both of its sides see it end); new
// connections are proxied as before.
func (p *Proxy) Reset() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.mu.links))
	for l := range p.mu.links {
		links = append(links, l)
	}
	p.mu.Unlock()
	for _, l := range links {
		l.close()
	}
}

// Close stops the proxy and closes its connections; it returns once every
// goroutine of the proxy has ended (a dial in progress may take its 5 s
// timeout).
func (p *Proxy) Close() error {
	p.mu.Lock()
	p.mu.closed = true
	p.wakeLocked()
	p.mu.Unlock()
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		l := &link{client: c, done: make(chan struct{})}
		p.mu.Lock()
		if p.mu.closed {
			p.mu.Unlock()
			c.Close()
			return
		}
		p.mu.links[l] = struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() {
			p.serve(l)
			p.mu.Lock()
			delete(p.mu.links, l)
			p.mu.Unlock()
		})
	}
}

// serve dials the target once no blackhole is in the way, and forwards
// both directions until both end or the link is closed.
func (p *Proxy) serve(l *link) {
	defer l.close()
	if !p.waitPassable(l) {
		return
	}
	s, err := net.DialTimeout("tcp", p.Target(), 5*time.Second)
	if err != nil {
		return // the client sees its connection end, as a refused one would
	}
	if !l.setServer(s) {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { p.forward(l, l.client, s) })
	wg.Go(func() { p.forward(l, s, l.client) })
	wg.Wait()
}

// waitPassable waits while a blackhole is set; false once the link or the
// proxy is closed.
func (p *Proxy) waitPassable(l *link) bool {
	for {
		p.mu.Lock()
		blackhole, closed, changed := p.mu.faults.Blackhole, p.mu.closed, p.mu.changed
		p.mu.Unlock()
		if closed {
			return false
		}
		select {
		case <-l.done:
			return false
		default:
		}
		if !blackhole {
			return true
		}
		select {
		case <-changed:
		case <-l.done:
			return false
		}
	}
}

// hold is how long a chunk read now waits before it is written.
func (p *Proxy) hold() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.mu.faults
	d := f.Delay
	if f.Jitter > 0 {
		d += time.Duration(p.mu.rng.Int64N(int64(f.Jitter)))
	}
	if f.Loss > 0 && p.mu.rng.Float64() < f.Loss {
		d += f.LossPenalty
	}
	return d
}

// chunk is what one read brought, and when it may be written.
type chunk struct {
	b  []byte
	at time.Time
}

// forward copies src to dst through the faults: this goroutine reads and
// stamps chunks, a writer writes each at its time. Both wait out a
// blackhole. The queue between them is bounded, so a slow link pushes
// back on the sender as a real one does. At src's EOF it half-closes dst
// (the other direction may still carry data); on any other end it closes
// the link.
func (p *Proxy) forward(l *link, src, dst net.Conn) {
	q := make(chan chunk, 64)
	wrote := make(chan error, 1)
	go func() {
		var werr error
		timer := time.NewTimer(0)
		<-timer.C
		for c := range q {
			if werr != nil {
				continue // drained, so the reader never blocks
			}
			if wait := time.Until(c.at); wait > 0 {
				timer.Reset(wait)
				<-timer.C
			}
			if !p.waitPassable(l) {
				werr = net.ErrClosed
				continue
			}
			if _, werr = dst.Write(c.b); werr != nil {
				l.close() // unblocks the reader
			}
		}
		wrote <- werr
	}()
	var rerr error
	for {
		b := make([]byte, 32<<10)
		n, err := src.Read(b)
		if n > 0 {
			if !p.waitPassable(l) {
				rerr = net.ErrClosed
				break
			}
			q <- chunk{b: b[:n], at: time.Now().Add(p.hold())}
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(q)
	werr := <-wrote
	if errors.Is(rerr, io.EOF) && werr == nil {
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
			return
		}
	}
	l.close()
}
