package loopback

import (
	"net"
	"strconv"
	"testing"
)

func TestFreePortsOutsideEphemeralRange(t *testing.T) {
	ports, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p < portLow || p >= portHigh {
			t.Errorf("port %d outside [%d, %d)", p, portLow, portHigh)
		}
		if seen[p] {
			t.Errorf("port %d handed out twice", p)
		}
		seen[p] = true
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d is not free after FreePorts: %v", p, err)
		}
		l.Close()
	}
	more, err := FreePorts(20)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range more {
		if seen[p] {
			t.Errorf("port %d handed out again", p)
		}
	}
}
