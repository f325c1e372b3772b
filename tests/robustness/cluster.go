//go:build linux

package robustness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/stratakv/strata/internal/failpoint"
	"github.com/stratakv/strata/internal/loopback"
	"github.com/stratakv/strata/tests/robustness/faultproxy"
)

// Member is one strata process with a proxy in front of its client URL and
// one in front of its peer URL: every member and client reaches it only
// through them, so blackholing both cuts it off.
type Member struct {
	Name string
	// Reader is set for a reader (a raft learner on bbolt, --role=reader).
	Reader                 bool
	Dir                    string
	ClientProxy, PeerProxy *faultproxy.Proxy
	clientPort, peerPort   int
	// failpointPort serves gofail's HTTP endpoint (GOFAIL_HTTP).
	failpointPort int
	args          []string
	bin           string
	env           []string
	// onceEnv is added to the environment of the next start only.
	onceEnv []string
	// Lost counts the bytes the member's crashes lost (data written but
	// not yet fsynced).
	Lost   int64
	cmd    *exec.Cmd
	exited chan struct{}
	log    *os.File
	conn   *grpc.ClientConn
}

// Endpoint is the member's client address, through its proxy.
func (m *Member) Endpoint() string { return m.ClientProxy.Addr() }

// Cluster is a set of writers, and readers, started behind proxies.
type Cluster struct {
	Members []*Member
	dir     string
	seed    uint64
	initial []string // name=peer URL of every member
}

// StartCluster starts n writers of bin, with env added to their
// environment (which otherwise holds only PATH) and data under dir; seed
// seeds the proxies' random choices.
func StartCluster(bin string, env []string, dir string, n int, seed uint64) (*Cluster, error) {
	ports, err := loopback.FreePorts(3 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, seed: seed}
	var initial []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i+1), Dir: filepath.Join(dir, fmt.Sprintf("m%d", i+1)),
			clientPort: ports[3*i], peerPort: ports[3*i+1], failpointPort: ports[3*i+2], bin: bin, env: env}
		if m.ClientProxy, err = faultproxy.Listen("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", m.clientPort), seed+uint64(2*i)); err != nil {
			c.Stop()
			return nil, err
		}
		if m.PeerProxy, err = faultproxy.Listen("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", m.peerPort), seed+uint64(2*i+1)); err != nil {
			m.ClientProxy.Close()
			c.Stop()
			return nil, err
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"=http://"+m.PeerProxy.Addr())
	}
	c.initial = initial
	for _, m := range c.Members {
		m.args = []string{"--name=" + m.Name, "--data-dir=" + m.Dir,
			"--advertise-client-urls=http://" + m.ClientProxy.Addr(),
			"--initial-advertise-peer-urls=http://" + m.PeerProxy.Addr(),
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-token=robustness", "--initial-cluster-state=new"}
		m.args = append(m.args, commonFlags...)
		if err := m.Start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, m := range c.Members {
		if m.conn, err = grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
			c.Stop()
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, m := range c.Members {
		if err := m.WaitUp(ctx); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// AddReader adds a reader: a learner added through the writers, started
// with --role=reader behind proxies of its own, once it answers.
func (c *Cluster) AddReader(ctx context.Context) (*Member, error) {
	ports, err := loopback.FreePorts(3)
	if err != nil {
		return nil, err
	}
	i := len(c.Members)
	m := &Member{Name: fmt.Sprintf("r%d", i+1), Dir: filepath.Join(c.dir, fmt.Sprintf("r%d", i+1)), Reader: true,
		clientPort: ports[0], peerPort: ports[1], failpointPort: ports[2], bin: c.Members[0].bin, env: c.Members[0].env}
	if m.ClientProxy, err = faultproxy.Listen("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", m.clientPort), c.seed+uint64(2*i)); err != nil {
		return nil, err
	}
	if m.PeerProxy, err = faultproxy.Listen("127.0.0.1:0", fmt.Sprintf("127.0.0.1:%d", m.peerPort), c.seed+uint64(2*i+1)); err != nil {
		m.ClientProxy.Close()
		return nil, err
	}
	c.Members = append(c.Members, m) // Stop closes its proxies from here on
	c.initial = append(c.initial, m.Name+"=http://"+m.PeerProxy.Addr())
	if m.conn, err = grpc.NewClient(m.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return nil, err
	}
	if _, err := c.Join(ctx, m); err != nil {
		return nil, err
	}
	return m, nil
}

// Join adds m (a reader, or a writer as a learner) to the cluster through
// MemberAdd, starts it on its (empty) data dir with
// --initial-cluster-state=existing, and waits until it answers. It
// returns the new member's ID.
func (c *Cluster) Join(ctx context.Context, m *Member) (uint64, error) {
	peerURL := "http://" + m.PeerProxy.Addr()
	var id uint64
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := c.clusterClient(m).MemberAdd(actx, &pb.MemberAddRequest{PeerURLs: []string{peerURL}, IsLearner: true})
		cancel()
		if err == nil {
			id = r.Member.GetID()
			break
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("adding %s as a learner: %w", m.Name, err)
		case <-time.After(200 * time.Millisecond): // the writers are still starting
		}
	}
	m.args = []string{"--name=" + m.Name, "--data-dir=" + m.Dir,
		"--advertise-client-urls=http://" + m.ClientProxy.Addr(),
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=" + strings.Join(c.initial, ","),
		"--initial-cluster-state=existing"}
	if m.Reader {
		m.args = append(m.args, "--role=reader")
	}
	m.args = append(m.args, commonFlags...)
	return id, m.Restart(ctx)
}

// clusterClient is a Cluster client of the first writer other than
// except that answers Status (member changes go through any writer).
func (c *Cluster) clusterClient(except *Member) pb.ClusterClient {
	for _, m := range c.Writers() {
		if m == except || !m.Running() {
			continue
		}
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := m.Maintenance().Status(sctx, &pb.StatusRequest{})
		cancel()
		if err == nil {
			return pb.NewClusterClient(m.conn)
		}
	}
	return pb.NewClusterClient(c.Members[0].conn)
}

// commonFlags are every member's: a short log between snapshots, so that
// the WAL is released (and a member that falls behind needs a snapshot)
// many times a run, and small physical compaction batches, so that a
// compaction takes several.
var commonFlags = []string{"--log-level=info", "--snapshot-count=50", "--compaction-batch-limit=20"}

// Writers and Readers split the members by role.
func (c *Cluster) Writers() []*Member { return c.role(false) }
func (c *Cluster) Readers() []*Member { return c.role(true) }

func (c *Cluster) role(reader bool) []*Member {
	var out []*Member
	for _, m := range c.Members {
		if m.Reader == reader {
			out = append(out, m)
		}
	}
	return out
}

// Start starts (or restarts) the member's process on its data dir.
func (m *Member) Start() error {
	var err error
	if m.log, err = os.OpenFile(m.Dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return err
	}
	listen := []string{fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", m.clientPort),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", m.peerPort)}
	m.cmd = exec.Command(m.bin, append(listen, m.args...)...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	m.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"),
		fmt.Sprintf("GOFAIL_HTTP=127.0.0.1:%d", m.failpointPort), "STRATA_SYNC_LEDGER=" + m.ledger()}, m.env...)
	m.cmd.Env = append(m.cmd.Env, m.onceEnv...)
	m.onceEnv = nil
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		m.log.Close()
		m.cmd = nil
		return err
	}
	exited := make(chan struct{})
	m.exited = exited
	cmd, log := m.cmd, m.log
	go func() {
		cmd.Wait()
		log.Close()
		close(exited)
	}()
	return nil
}

// Kill sends SIGKILL and waits for the process to end.
func (m *Member) Kill() {
	m.cmd.Process.Kill()
	<-m.exited
}

// Signal sends sig (SIGSTOP, SIGCONT) to the process.
func (m *Member) Signal(sig syscall.Signal) error { return m.cmd.Process.Signal(sig) }

// Running reports whether the process is started and has not exited.
func (m *Member) Running() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return false
	default:
		return true
	}
}

// Restart starts the member again and waits, up to a minute, until it
// answers Status (through its proxy, which must then pass traffic).
func (m *Member) Restart(ctx context.Context) error {
	if err := m.Start(); err != nil {
		return err
	}
	return m.WaitUp(ctx)
}

// WaitUp waits, up to a minute, until the started member answers Status.
// A member that could not bind one of its ports (another process took it
// since it was picked) is given new ones, behind the same proxies, and
// started again.
func (m *Member) WaitUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for rebinds := 0; ; {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		_, err := m.Maintenance().Status(sctx, &pb.StatusRequest{})
		scancel()
		if err == nil {
			return nil
		}
		if !m.Running() && rebinds < 3 && m.bindFailed() {
			rebinds++
			if err := m.rebind(); err != nil {
				return err
			}
			continue
		}
		if !m.Running() {
			return fmt.Errorf("%s exited on restart (see %s.log)", m.Name, m.Dir)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s does not answer after its restart: %v", m.Name, err)
		case <-time.After(100 * time.Millisecond): // polls the member
		}
	}
}

// KV is a KV client of the member through its proxy.
func (m *Member) KV() pb.KVClient { return pb.NewKVClient(m.conn) }

// Maintenance is the member's maintenance client through its proxy.
func (m *Member) Maintenance() pb.MaintenanceClient { return pb.NewMaintenanceClient(m.conn) }

// Stop kills every member and closes the proxies and connections.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		if m.Running() {
			m.Signal(syscall.SIGCONT) // a paused member cannot die of SIGTERM
			m.Kill()
		}
		if m.conn != nil {
			m.conn.Close()
		}
		m.ClientProxy.Close()
		if m.PeerProxy != nil {
			m.PeerProxy.Close()
		}
	}
}

// Heal removes every proxy fault.
func (c *Cluster) Heal() {
	for _, m := range c.Members {
		m.ClientProxy.Heal()
		m.PeerProxy.Heal()
	}
}

// Leader returns the member the first answering member names leader.
func (c *Cluster) Leader(ctx context.Context) (*Member, error) {
	for {
		for _, m := range c.Members {
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := m.Maintenance().Status(sctx, &pb.StatusRequest{})
			cancel()
			if err != nil || st.Leader == 0 {
				continue
			}
			for _, l := range c.Members {
				lctx, cancel := context.WithTimeout(ctx, time.Second)
				ls, err := l.Maintenance().Status(lctx, &pb.StatusRequest{})
				cancel()
				if err == nil && ls.Header.GetMemberId() == st.Leader {
					return l, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("no leader: " + ctx.Err().Error())
		case <-time.After(100 * time.Millisecond): // polls the members' status
		}
	}
}

// ledger is the member's crash ledger (failpoint.LoseUnsynced).
func (m *Member) ledger() string { return m.Dir + ".ledger" }

// Crash kills the member (if it is not dead already: a failpoint may have
// crashed it) and then loses what its fsyncs had not made durable, as a
// power loss would: every file the crash ledger names is cut back to its
// last fsync.
func (m *Member) Crash() error {
	if m.Running() {
		m.Kill()
	}
	lost, err := failpoint.LoseUnsynced(m.ledger())
	if errors.Is(err, os.ErrNotExist) {
		return nil // it never fsynced anything
	}
	m.Lost += lost
	return err
}

// WaitExit waits, up to d, for the process to end by itself, and reports
// whether it did.
func (m *Member) WaitExit(d time.Duration) bool {
	select {
	case <-m.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// SetFailpoint sets failpoint name to term ("panic", "sleep(100)") through
// the member's gofail endpoint.
func (m *Member) SetFailpoint(name, term string) error {
	req, err := http.NewRequest(http.MethodPut, fmt.Sprintf("http://127.0.0.1:%d/%s", m.failpointPort, name), strings.NewReader(term))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: setting failpoint %s=%s: %s: %s", m.Name, name, term, resp.Status, body)
	}
	return nil
}

// LogCount counts the lines of the member's log (all its lives) that
// contain s.
func (m *Member) LogCount(s string) int {
	b, err := os.ReadFile(m.Dir + ".log")
	if err != nil {
		return 0
	}
	return strings.Count(string(b), s)
}

// bindFailed reports whether the member's last words were a port taken.
func (m *Member) bindFailed() bool {
	b, err := os.ReadFile(m.Dir + ".log")
	if err != nil {
		return false
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Contains(lines[len(lines)-1], "address already in use")
}

// rebind picks new ports for the member's listeners, points its proxies
// at them, and starts it again.
func (m *Member) rebind() error {
	ports, err := loopback.FreePorts(3)
	if err != nil {
		return err
	}
	m.clientPort, m.peerPort, m.failpointPort = ports[0], ports[1], ports[2]
	m.ClientProxy.SetTarget(fmt.Sprintf("127.0.0.1:%d", m.clientPort))
	m.PeerProxy.SetTarget(fmt.Sprintf("127.0.0.1:%d", m.peerPort))
	// Connections made before lead to the old ports, which another
	// process now holds: clients must reconnect.
	m.ClientProxy.Reset()
	m.PeerProxy.Reset()
	return m.Start()
}
