package perf

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ServerStats is what /proc says of one member served on this machine
// during the measured phase.
type ServerStats struct {
	Endpoint   string  `json:"endpoint"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpu_seconds"`
	// RSSMaxBytes is the largest resident set sampled (once a second and
	// at the end).
	RSSMaxBytes int64 `json:"rss_max_bytes"`
}

// serverSampler samples the processes serving the run's endpoints, those
// it can find: a local endpoint's listening socket, found in
// /proc/net/tcp{,6}, leads to the process holding it. Remote endpoints, or
// processes of another user, are left out.
type serverSampler struct {
	procs []*procSample
	stop  chan struct{}
	wg    sync.WaitGroup
}

type procSample struct {
	endpoint string
	pid      int
	cpu0     time.Duration
	rssMax   int64
}

func newServerSampler(endpoints []string) *serverSampler {
	s := &serverSampler{}
	seen := map[int]bool{}
	for _, ep := range endpoints {
		pid, ok := localPID(ep)
		if !ok || seen[pid] {
			continue
		}
		seen[pid] = true
		s.procs = append(s.procs, &procSample{endpoint: ep, pid: pid})
	}
	return s
}

func (s *serverSampler) begin() {
	for _, p := range s.procs {
		p.cpu0, _ = ProcCPU(p.pid)
	}
	s.stop = make(chan struct{})
	s.wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			s.sampleRSS()
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
		}
	})
}

func (s *serverSampler) sampleRSS() {
	for _, p := range s.procs {
		if rss, err := ProcRSS(p.pid); err == nil && rss > p.rssMax {
			p.rssMax = rss
		}
	}
}

func (s *serverSampler) end() []ServerStats {
	close(s.stop)
	s.wg.Wait()
	s.sampleRSS()
	var out []ServerStats
	for _, p := range s.procs {
		cpu, err := ProcCPU(p.pid)
		if err != nil {
			continue // it exited
		}
		out = append(out, ServerStats{Endpoint: p.endpoint, PID: p.pid,
			CPUSeconds: (cpu - p.cpu0).Seconds(), RSSMaxBytes: p.rssMax})
	}
	return out
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times (100 on
// every Linux platform Go supports).
const clockTicks = 100

// ProcCPU is a process's user+system time from /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing parenthesis (field 3, state).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad times", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// ProcRSS is a process's resident set from /proc/<pid>/status.
func ProcRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// localPID finds the process listening on a loopback or local endpoint.
func localPID(ep string) (int, bool) {
	t, err := target(ep)
	if err != nil || strings.HasPrefix(t, "unix://") {
		return 0, false
	}
	host, portStr, err := net.SplitHostPort(t)
	if err != nil {
		return 0, false
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return 0, false
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !isLocalIP(ip)) {
		return 0, false
	}
	inode, ok := listeningInode(port)
	if !ok {
		return 0, false
	}
	return socketOwner(inode)
}

func isLocalIP(ip net.IP) bool {
	if ip.IsLoopback() || ip.IsUnspecified() {
		return true
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

// listeningInode finds the inode of a socket listening on port in
// /proc/net/tcp or tcp6 (state 0A is LISTEN).
func listeningInode(port int) (string, bool) {
	want := fmt.Sprintf(":%04X", port)
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != "0A" || !strings.HasSuffix(f[1], want) {
				continue
			}
			return f[9], true
		}
	}
	return "", false
}

// socketOwner finds the process with a file descriptor on socket inode.
func socketOwner(inode string) (int, bool) {
	link := "socket:[" + inode + "]"
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, err := os.ReadDir(filepath.Join(p, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(p, "fd", fd.Name())); err == nil && l == link {
				pid, err := strconv.Atoi(filepath.Base(p))
				return pid, err == nil
			}
		}
	}
	return 0, false
}
