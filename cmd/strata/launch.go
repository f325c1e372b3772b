package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/stratakv/strata/internal/config"
	"github.com/stratakv/strata/internal/loopback"
	"github.com/stratakv/strata/perf"
)

// launchReadyTimeout bounds how long a launched cluster may take to elect a
// leader on every member.
const launchReadyTimeout = time.Minute

// launcher returns a perf.Launcher that starts n members of binary on
// loopback, on free ports, with data in a new temporary directory: a new
// cluster each time (the sweep's points do not share state). It returns
// once every member reports a leader. The stop function sends SIGTERM,
// waits (killing after 30 seconds) and removes the data.
func launcher(binary string, n int) perf.Launcher {
	return func(ctx context.Context, flags []string) ([]string, func(), error) {
		dir, err := os.MkdirTemp("", "strata-perf-launch-")
		if err != nil {
			return nil, nil, err
		}
		ms, err := launchMembers(binary, n, dir, flags)
		stop := func() {
			stopMembers(ms)
			os.RemoveAll(dir)
		}
		if err == nil {
			err = waitLeader(ctx, ms, dir)
		}
		if err != nil {
			stop()
			return nil, nil, err
		}
		var eps []string
		for _, m := range ms {
			eps = append(eps, strings.TrimPrefix(m.client, "http://"))
		}
		return eps, stop, nil
	}
}

// launched is a member a launcher started; exited closes when it exits.
type launched struct {
	*member
	exited chan struct{}
}

// launchMembers starts n members named s1..sn; it returns those it
// started, for stopMembers, with any error.
func launchMembers(binary string, n int, dir string, flags []string) ([]launched, error) {
	ports, err := loopback.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var initial []string
	for i := range n {
		initial = append(initial, fmt.Sprintf("s%d=http://127.0.0.1:%d", i+1, ports[2*i+1]))
	}
	var ms []launched
	for i := range n {
		m := launched{member: &member{
			name:   fmt.Sprintf("s%d", i+1),
			client: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
		}, exited: make(chan struct{})}
		args := append([]string{
			"--initial-cluster=" + strings.Join(initial, ","),
			"--initial-cluster-token=strata-perf-launch",
			"--initial-cluster-state=new",
		}, flags...)
		if err := m.startWith(binary, filepath.Join(dir, m.name), orphanKill(), args...); err != nil {
			if m.log != nil {
				m.log.Close()
			}
			return ms, err
		}
		go func() {
			m.cmd.Wait()
			close(m.exited)
		}()
		ms = append(ms, m)
	}
	return ms, nil
}

// waitLeader polls every member's Status until each reports a leader. A
// member that exits meanwhile ends the wait with the end of its log (a
// server that refuses a swept flag says why there).
func waitLeader(ctx context.Context, ms []launched, dir string) error {
	ctx, cancel := context.WithTimeout(ctx, launchReadyTimeout)
	defer cancel()
	for _, m := range ms {
		ep := strings.TrimPrefix(m.client, "http://")
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		err = func() error {
			defer c.Close()
			for {
				sctx, scancel := context.WithTimeout(ctx, time.Second)
				st, err := c.Status(sctx, ep)
				scancel()
				if err == nil && st.Leader != 0 {
					return nil
				}
				for _, e := range ms {
					select {
					case <-e.exited:
						return fmt.Errorf("member %s exited: %s", e.name, logTail(filepath.Join(dir, e.name+".log")))
					default:
					}
				}
				select {
				case <-ctx.Done():
					if errors.Is(ctx.Err(), context.Canceled) {
						return ctx.Err()
					}
					return fmt.Errorf("member %s has no leader after %v: %s", m.name, launchReadyTimeout, logTail(filepath.Join(dir, m.name+".log")))
				case <-time.After(100 * time.Millisecond): // polls the member's status
				}
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// logTail is what a member's log says about why it stopped: its first
// line (where etcd puts a flag error, before its usage) and its last three
// (where strata puts its own).
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	if len(lines) > 4 {
		lines = append(lines[:1:1], append([][]byte{[]byte("...")}, lines[len(lines)-3:]...)...)
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// stopMembers stops started members: SIGTERM, then SIGKILL for any still
// running after 30 seconds.
func stopMembers(ms []launched) {
	for _, m := range ms {
		m.cmd.Process.Signal(syscall.SIGTERM)
	}
	deadline := time.After(30 * time.Second)
	for _, m := range ms {
		select {
		case <-m.exited:
		case <-deadline:
			for _, m := range ms {
				m.cmd.Process.Kill()
			}
			<-m.exited
		}
		m.log.Close()
	}
}

// checkOwnFlags checks server flags the way this binary's members, which
// inherit this environment, will parse them.
func checkOwnFlags(flags []string) error {
	_, err := config.Parse(flags, os.Environ())
	if errors.Is(err, config.ErrHelp) || errors.Is(err, config.ErrVersion) {
		return errors.New("--help and --version start no server")
	}
	return err
}

// launcherFlags are the flags the launcher sets on every member; a sweep
// may not set them too (the last one given would win, and the harness
// would drive the wrong cluster or none).
var launcherFlags = []string{"name", "data-dir", "listen-client-urls", "advertise-client-urls", "listen-peer-urls",
	"initial-advertise-peer-urls", "initial-cluster", "initial-cluster-token", "initial-cluster-state"}

// checkNotLauncherFlag refuses a flag (--name or --name=value) that the
// launcher sets itself.
func checkNotLauncherFlag(flag string) error {
	name := strings.TrimLeft(flag, "-")
	if i := strings.IndexByte(name, '='); i >= 0 {
		name = name[:i]
	}
	if slices.Contains(launcherFlags, name) {
		return fmt.Errorf("--%s is set by the launcher for each member (one of %s)", name, strings.Join(launcherFlags, ", "))
	}
	return nil
}
