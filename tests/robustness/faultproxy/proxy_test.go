package faultproxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echoServer echoes every connection until the test ends.
func echoServer(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T) *Proxy {
	p, err := Listen("127.0.0.1:0", echoServer(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

type client struct {
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, p *Proxy) *client {
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends line and reads it back, within timeout.
func (c *client) roundTrip(line string, timeout time.Duration) (string, error) {
	if _, err := c.c.Write([]byte(line + "\n")); err != nil {
		return "", err
	}
	c.c.SetReadDeadline(time.Now().Add(timeout))
	got, err := c.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return got[:len(got)-1], nil
}

func TestForwards(t *testing.T) {
	p := startProxy(t)
	c := dial(t, p)
	for _, s := range []string{"one", "two", "three"} {
		if got, err := c.roundTrip(s, 5*time.Second); err != nil || got != s {
			t.Fatalf("round trip %q: %q, %v", s, got, err)
		}
	}
}

// TestBlackholeHoldsThenDelivers: under a blackhole nothing passes, on an
// open connection or a new one; after Heal what was sent arrives, in order.
func TestBlackholeHoldsThenDelivers(t *testing.T) {
	p := startProxy(t)
	open := dial(t, p)
	if _, err := open.roundTrip("before", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Set(Faults{Blackhole: true})
	fresh := dial(t, p)
	for _, c := range []*client{open, fresh} {
		if got, err := c.roundTrip("during", 200*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("through a blackhole: %q, %v", got, err)
		}
		if _, err := c.c.Write([]byte("after\n")); err != nil {
			t.Fatal(err)
		}
	}
	p.Heal()
	for _, c := range []*client{open, fresh} {
		c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for _, want := range []string{"during", "after"} {
			got, err := c.r.ReadString('\n')
			if err != nil || got != want+"\n" {
				t.Fatalf("after heal: %q, %v; want %q", got, err, want)
			}
		}
	}
}

// TestDelay: every chunk waits the delay in each direction.
func TestDelay(t *testing.T) {
	p := startProxy(t)
	c := dial(t, p)
	const d = 50 * time.Millisecond
	p.Set(Faults{Delay: d, Jitter: 10 * time.Millisecond})
	start := time.Now()
	if _, err := c.roundTrip("slow", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rt := time.Since(start); rt < 2*d {
		t.Fatalf("round trip %v through a %v delay each way", rt, d)
	}
	p.Set(Faults{Loss: 1, LossPenalty: d})
	start = time.Now()
	if _, err := c.roundTrip("lost", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if rt := time.Since(start); rt < 2*d {
		t.Fatalf("round trip %v with every chunk lost once (%v each)", rt, d)
	}
}

// TestReset: open connections end; new ones work.
func TestReset(t *testing.T) {
	p := startProxy(t)
	c := dial(t, p)
	if _, err := c.roundTrip("x", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	p.Reset()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a reset connection: %v, want its end", err)
	}
	if got, err := dial(t, p).roundTrip("y", 5*time.Second); err != nil || got != "y" {
		t.Fatalf("new connection after reset: %q, %v", got, err)
	}
}

// TestCloseDuringBlackhole: Close returns while connections hang in a
// blackhole, and ends them.
func TestCloseDuringBlackhole(t *testing.T) {
	p := startProxy(t)
	c := dial(t, p)
	p.Set(Faults{Blackhole: true})
	if _, err := c.c.Write([]byte("held\n")); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- p.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hung on a blackholed connection")
	}
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadString('\n'); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after Close: %v, want the connection's end", err)
	}
}
