package loopback

import (
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
)

// The ports handed out lie below the kernel's ephemeral range (Linux
// defaults to 32768–60999) and below the 20000+ block etcd's own test
// suites use. A port taken from the ephemeral range can be reused as the
// local port of any outgoing connection as soon as its listener closes, so
// a member restarted on its old port would sometimes find it taken ("bind:
// address already in use"); a port outside that range can only be taken by
// another listener.
const (
	portLow  = 10000
	portHigh = 20000
)

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// FreePorts reserves n distinct loopback ports, none of them handed out
// before by this process, checks each is free by listening on it, then
// releases them for the caller's processes to take. Another process may
// take one first; callers that start servers on them report the bind error.
func FreePorts(n int) ([]int, error) {
	mu.Lock()
	defer mu.Unlock()
	if len(issued)+n > (portHigh-portLow)/2 {
		clear(issued) // a long-lived process (perf sweeps): start over
	}
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries > 50*n+1000 {
			return nil, errors.New("loopback: no free port left in [" + strconv.Itoa(portLow) + ", " + strconv.Itoa(portHigh) + ")")
		}
		p := portLow + rand.IntN(portHigh-portLow)
		if issued[p] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		issued[p] = true
		ls = append(ls, l)
		ports = append(ports, p)
	}
	return ports, nil
}
