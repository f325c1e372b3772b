package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stratakv/strata/internal/loopback"
)

// ReadyLine is what etcd (and strata) print once a member serves clients.
const ReadyLine = "ready to serve client requests"

const (
	// readyTimeout bounds how long a member may take to print ReadyLine.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds how long a member may take to exit after SIGTERM.
	stopTimeout = 10 * time.Second
)

// FreePorts returns n distinct TCP ports on 127.0.0.1 that were free a moment
// ago. All n listeners are open at once so the ports differ; the caller
// retries if a port is taken before it binds it.
func FreePorts(n int) ([]int, error) { return loopback.FreePorts(n) }

// MemberConfig describes one member of a cluster started with StartCluster.
type MemberConfig struct {
	Binary string // path of the server binary (etcd or strata)
	// ExtraArgs are appended to the standard flags (e.g. --max-txn-ops=4).
	ExtraArgs []string
	// Env is added to the child's environment, which otherwise holds only
	// PATH (so ETCD_* variables of the caller never leak in).
	Env []string
	// HTTPS makes the client and peer URLs https; ExtraArgs must then
	// carry the certificate flags.
	HTTPS bool
	// Prepare, when set, runs for each member after its (empty) data
	// dir is made and before it starts, with the cluster's
	// --initial-cluster and --initial-cluster-token values (to restore a
	// backup into it, for instance).
	Prepare func(m *Member, initialCluster, token string) error
}

// Member is one server process. Its data dir and arguments survive Kill and
// Stop, so Restart brings back the same member.
type Member struct {
	tb         testing.TB
	Name       string
	Binary     string
	DataDir    string
	ClientPort int
	PeerPort   int
	Scheme     string   // of the client and peer URLs: "http" (or "") or "https"
	Args       []string // full argument list, without the binary
	env        []string
	logPath    string

	mu   sync.Mutex
	proc *proc // the current (or last) incarnation
	runs int
}

// proc is one incarnation of a member process.
type proc struct {
	cmd      *exec.Cmd
	stdout   syncBuffer
	stderr   syncBuffer
	combined syncBuffer
	done     chan struct{} // closed when Wait returned
	state    *os.ProcessState
	waitErr  error
}

// syncBuffer is a bytes.Buffer safe for one writer and many readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// Endpoint is the member's client address in etcdctl's --endpoints form.
func (m *Member) Endpoint() string { return "127.0.0.1:" + strconv.Itoa(m.ClientPort) }

// ClientURL is the member's client URL.
func (m *Member) ClientURL() string { return m.scheme() + "://" + m.Endpoint() }

// PeerURL is the member's peer URL.
func (m *Member) PeerURL() string { return m.scheme() + "://127.0.0.1:" + strconv.Itoa(m.PeerPort) }

func (m *Member) scheme() string {
	if m.Scheme == "" {
		return "http"
	}
	return m.Scheme
}

// StartCluster starts an n-member cluster of cfg.Binary on fresh 127.0.0.1
// ports and fresh data dirs, and waits until every member has printed
// ReadyLine. Members are named <prefix>0..<prefix>n-1. The processes are
// killed when the test ends. If a port was taken meanwhile, it retries with
// new ports.
func StartCluster(tb testing.TB, prefix string, n int, cfg MemberConfig) []*Member {
	tb.Helper()
	ms, err := StartClusterErr(tb, prefix, n, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return ms
}

// StartClusterErr is StartCluster returning its error instead of failing the
// test, so that it can run off the test goroutine.
func StartClusterErr(tb testing.TB, prefix string, n int, cfg MemberConfig) ([]*Member, error) {
	var lastErr error
	for range 3 {
		ms, err := startCluster(tb, prefix, n, cfg)
		if err == nil {
			return ms, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("e2e: starting a %d-member %s cluster: %w", n, filepath.Base(cfg.Binary), lastErr)
}

// logSeq makes log file names unique within a run.
var logSeq atomic.Int64

func startCluster(tb testing.TB, prefix string, n int, cfg MemberConfig) ([]*Member, error) {
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	base := tb.TempDir()
	ms := make([]*Member, n)
	var initial []string
	for i := range n {
		m := &Member{
			tb:         tb,
			Name:       fmt.Sprintf("%s%d", prefix, i),
			Binary:     cfg.Binary,
			ClientPort: ports[2*i],
			PeerPort:   ports[2*i+1],
			env:        append([]string{"PATH=" + os.Getenv("PATH")}, cfg.Env...),
		}
		if cfg.HTTPS {
			m.Scheme = "https"
		}
		m.DataDir = filepath.Join(base, m.Name+".data")
		// etcd's own e2e framework pre-creates the data dir; so do we.
		if err := os.Mkdir(m.DataDir, 0o700); err != nil {
			return nil, err
		}
		logDir := base
		if d := os.Getenv("STRATA_E2E_LOGDIR"); d != "" {
			logDir = d
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		m.logPath = filepath.Join(logDir, fmt.Sprintf("%s-%s-%s-%d.log",
			strings.ReplaceAll(tb.Name(), "/", "_"), filepath.Base(cfg.Binary), m.Name, logSeq.Add(1)))
		ms[i] = m
		initial = append(initial, m.Name+"="+m.PeerURL())
	}
	token := fmt.Sprintf("e2e-%d", ports[0])
	for _, m := range ms {
		m.Args = append([]string{
			"--name=" + m.Name,
			"--data-dir=" + m.DataDir,
			"--listen-client-urls=" + m.ClientURL(),
			"--advertise-client-urls=" + m.ClientURL(),
			"--listen-peer-urls=" + m.PeerURL(),
			"--initial-advertise-peer-urls=" + m.PeerURL(),
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-state=new",
			"--initial-cluster-token=" + token,
			"--log-level=info",
		}, cfg.ExtraArgs...)
	}
	for _, m := range ms {
		if cfg.Prepare != nil {
			if err := cfg.Prepare(m, strings.Join(initial, ","), token); err != nil {
				return nil, fmt.Errorf("e2e: preparing %s: %w", m.Name, err)
			}
		}
	}
	for _, m := range ms {
		if err := m.start(); err != nil {
			killAll(ms)
			return nil, err
		}
		m.registerCleanup()
	}
	for _, m := range ms {
		if err := m.waitReady(readyTimeout); err != nil {
			killAll(ms)
			return nil, err
		}
	}
	return ms, nil
}

func killAll(ms []*Member) {
	for _, m := range ms {
		if m != nil {
			m.kill()
		}
	}
}

func (m *Member) registerCleanup() {
	if m.runs != 1 {
		return
	}
	m.tb.Cleanup(func() {
		m.kill()
		if m.tb.Failed() {
			keep := ""
			if os.Getenv("STRATA_E2E_LOGDIR") == "" {
				keep = " (removed; set STRATA_E2E_LOGDIR=<dir> to keep logs)"
			}
			m.tb.Logf("e2e: %s (%s) log %s%s, last lines:\n%s", m.Name, filepath.Base(m.Binary), m.logPath, keep, tail(m.Output(), 20))
		}
	})
}

// start launches a new incarnation with m.Args.
func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.proc != nil && !m.proc.exited() {
		return fmt.Errorf("e2e: %s is already running", m.Name)
	}
	f, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	m.runs++
	fmt.Fprintf(f, "=== e2e: run %d: %s %s\n", m.runs, m.Binary, strings.Join(m.Args, " "))
	p := &proc{done: make(chan struct{})}
	cmd := exec.Command(m.Binary, m.Args...)
	cmd.Env = m.env
	cmd.Stdout = io.MultiWriter(&p.stdout, &p.combined, f)
	cmd.Stderr = io.MultiWriter(&p.stderr, &p.combined, f)
	cmd.WaitDelay = 5 * time.Second
	p.cmd = cmd
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	m.proc = p
	go func() {
		p.waitErr = cmd.Wait()
		p.state = cmd.ProcessState
		f.Close()
		close(p.done)
	}()
	return nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (m *Member) current() *proc {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proc
}

// waitReady polls the current incarnation's output for ReadyLine.
func (m *Member) waitReady(timeout time.Duration) error {
	p := m.current()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if bytes.Contains(p.combined.Bytes(), []byte(ReadyLine)) {
			return nil
		}
		select {
		case <-p.done:
			if bytes.Contains(p.combined.Bytes(), []byte(ReadyLine)) {
				return nil
			}
			return fmt.Errorf("e2e: %s exited (%v) before printing %q:\n%s", m.Name, p.waitErr, ReadyLine, tail(p.combined.Bytes(), 30))
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("e2e: %s did not print %q within %v:\n%s", m.Name, ReadyLine, timeout, tail(p.combined.Bytes(), 30))
		}
	}
}

// Exited reports whether the current incarnation has exited.
func (m *Member) Exited() bool {
	p := m.current()
	return p == nil || p.exited()
}

// Output is the combined stdout and stderr of the current incarnation.
func (m *Member) Output() []byte {
	if p := m.current(); p != nil {
		return p.combined.Bytes()
	}
	return nil
}

// Stderr is the stderr of the current incarnation.
func (m *Member) Stderr() []byte {
	if p := m.current(); p != nil {
		return p.stderr.Bytes()
	}
	return nil
}

// Stop sends SIGTERM and waits for a clean exit: status 0, status 143, or
// death by SIGTERM (etcd re-raises the signal after shutting down; etcd's
// own framework tolerates 143 for the same reason).
func (m *Member) Stop() error {
	p := m.current()
	if p == nil || p.exited() {
		return fmt.Errorf("e2e: %s is not running", m.Name)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		m.kill()
		return fmt.Errorf("e2e: %s did not exit within %v of SIGTERM:\n%s", m.Name, stopTimeout, tail(p.combined.Bytes(), 30))
	}
	if !cleanExit(p.state) {
		return fmt.Errorf("e2e: %s exited uncleanly after SIGTERM (%v):\n%s", m.Name, p.state, tail(p.combined.Bytes(), 30))
	}
	return nil
}

func cleanExit(st *os.ProcessState) bool {
	if st == nil {
		return false
	}
	if st.Exited() {
		return st.ExitCode() == 0 || st.ExitCode() == 143
	}
	ws, ok := st.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// Kill sends SIGKILL and waits for the process to be gone.
func (m *Member) Kill() { m.kill() }

// WaitOutput waits, up to timeout, for the member's output to contain s:
// what a member logs just after it reports ready (the end of a snapshot
// install, say) is not there yet when Start or Restart returns.
func (m *Member) WaitOutput(s string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(string(m.Output()), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // polls the member's log
	}
	return true
}

func (m *Member) kill() {
	p := m.current()
	if p == nil || p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Restart starts the member again with the same arguments and data dir and
// waits for ReadyLine. The member must have been stopped or killed.
func (m *Member) Restart() error {
	if err := m.start(); err != nil {
		return err
	}
	return m.waitReady(readyTimeout)
}

// Result is what a command printed and how it exited.
type Result struct {
	Stdout, Stderr []byte
	ExitCode       int // -1 if killed by a signal
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.ExitCode, r.Stdout, r.Stderr)
}

// Run runs bin with args to completion (bounded by ctx), feeding stdin,
// with an environment of PATH and env only.
func Run(ctx context.Context, bin string, stdin string, env []string, args ...string) (Result, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.ExitCode = exitErr.ExitCode()
	default:
		return res, err
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("e2e: %s %s: %w", filepath.Base(bin), strings.Join(args, " "), ctx.Err())
	}
	return res, nil
}

// Etcdctl runs etcdctl against the given endpoints. Command-level failures
// are reported in Result.ExitCode, not as an error.
func Etcdctl(ctx context.Context, etcdctl string, endpoints []string, stdin string, args ...string) (Result, error) {
	all := append([]string{"--endpoints=" + strings.Join(endpoints, ",")}, args...)
	return Run(ctx, etcdctl, stdin, nil, all...)
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
