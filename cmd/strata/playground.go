package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// playground starts a local three-writer cluster on loopback, each member a
// child process of this binary, with data under one directory, and with
// --readers N as many readers, each added as a learner once the writers
// serve (and once the reader before it has started), then started with
// --role=reader. It prints the endpoints and a few etcdctl commands, and
// stops the members with SIGTERM on Ctrl-C (or SIGTERM), waiting for them to
// exit.
//
// Ports follow etcd's Procfile: members listen for clients on 2379, 22379
// and 32379 and for peers on 2380, 22380 and 32380 (--base-port moves them);
// readers on 42379, 42389, ... (peers one above each).
func playground(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata playground", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "playground.strata", "directory holding the members' data dirs and logs")
	basePort := fs.Int("base-port", 2379, "client port of the first member; others use +20000 and +30000, readers +40000, +40010, ...; peers +1")
	readers := fs.Int("readers", 0, "reader members (raft learners on bbolt) to add to the three writers")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	last := *basePort + 30001
	if *readers > 0 {
		last = *basePort + 40000 + 10*(*readers-1) + 1
	}
	if *basePort < 1 || *readers < 0 || last > 65535 {
		fmt.Fprintf(stderr, "strata playground: --base-port %d with --readers %d leaves no room for the members (the last peer port is %d, at most 65535)\n", *basePort, *readers, last)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "strata playground: %v\n", err)
		return 1
	}
	if err := os.MkdirAll(*dataDir, 0o700); err != nil {
		fmt.Fprintf(stderr, "strata playground: %v\n", err)
		return 1
	}
	var ms []*member
	var initial []string
	for i, off := range []int{0, 20000, 30000} {
		m := &member{
			name:   fmt.Sprintf("infra%d", i+1),
			client: fmt.Sprintf("http://127.0.0.1:%d", *basePort+off),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", *basePort+off+1),
		}
		ms = append(ms, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	writers := len(ms)
	stopAll := func() {
		for _, m := range ms {
			if m.cmd != nil && m.cmd.Process != nil {
				m.cmd.Process.Signal(syscall.SIGTERM)
			}
		}
		for _, m := range ms {
			if m.cmd != nil {
				m.cmd.Wait()
			}
			if m.log != nil {
				m.log.Close()
			}
		}
	}
	for _, m := range ms {
		if err := m.start(self, filepath.Join(*dataDir, m.name),
			"--initial-cluster="+strings.Join(initial, ","),
			"--initial-cluster-token=strata-playground",
			"--initial-cluster-state=new",
		); err != nil {
			fmt.Fprintf(stderr, "strata playground: %v\n", err)
			stopAll()
			return 1
		}
	}
	// Ctrl-C while readers are being added stops everything too.
	startCtx, stopStart := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopStart()
	for i := range *readers {
		off := 40000 + 10*i
		r := &member{
			name:   fmt.Sprintf("reader%d", i+1),
			client: fmt.Sprintf("http://127.0.0.1:%d", *basePort+off),
			peer:   fmt.Sprintf("http://127.0.0.1:%d", *basePort+off+1),
		}
		ms = append(ms, r)
		if err := startReader(startCtx, r, ms[:writers], filepath.Join(*dataDir, r.name), self); err != nil {
			stopAll()
			if startCtx.Err() != nil {
				fmt.Fprintln(stdout, "strata playground: stopping")
				return 0
			}
			fmt.Fprintf(stderr, "strata playground: %s: %v\n", r.name, err)
			return 1
		}
	}
	var endpoints []string
	for _, m := range ms {
		endpoints = append(endpoints, strings.TrimPrefix(m.client, "http://"))
	}
	eps := strings.Join(endpoints, ",")
	fmt.Fprintf(stdout, `strata playground: %d writers and %d readers, data and logs in %s
  endpoints: %s

Try (any etcdctl v3.7; this repository pins one in tests/tools):
  etcdctl --endpoints=%s put greeting hello
  etcdctl --endpoints=%s get greeting
  etcdctl --endpoints=%s endpoint status -w table
  etcdctl --endpoints=%s member list -w table

Ctrl-C stops the cluster; run it again to restart it with the same data.
`, writers, len(ms)-writers, *dataDir, eps, eps, eps, eps, eps)

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
	// A signal from here on reaches sigc too; one that came after the last
	// reader started reached only the start context.
	if startCtx.Err() != nil {
		stopAll()
		fmt.Fprintln(stdout, "strata playground: stopping")
		return 0
	}
	stopStart() // (which cancels startCtx)
	exited := make(chan string, len(ms))
	for _, m := range ms {
		go func() {
			m.cmd.Wait()
			exited <- m.name
		}()
	}
	running := len(ms)
	select {
	case <-sigc:
		fmt.Fprintln(stdout, "strata playground: stopping")
	case name := <-exited:
		running--
		fmt.Fprintf(stderr, "strata playground: member %s exited; see its log in %s; stopping the others\n", name, *dataDir)
	}
	for _, m := range ms {
		m.cmd.Process.Signal(syscall.SIGTERM) // an exited member just errs
	}
	timeout := time.After(30 * time.Second)
	for ; running > 0; running-- {
		select {
		case <-exited:
		case <-timeout:
			for _, m := range ms {
				m.cmd.Process.Kill()
			}
			fmt.Fprintln(stderr, "strata playground: members did not stop within 30s; killed")
			return 1
		}
	}
	for _, m := range ms {
		m.log.Close()
	}
	return 0
}

// member is one child process of the playground.
type member struct {
	name, client, peer string
	cmd                *exec.Cmd
	log                *os.File
}

// start runs the member with its data dir, URLs and the extra flags, its
// output in <data dir>.log.
func (m *member) start(self, dataDir string, extra ...string) error {
	return m.startWith(self, dataDir, nil, extra...)
}

// startWith is start with the child's process attributes.
func (m *member) startWith(self, dataDir string, attr *syscall.SysProcAttr, extra ...string) error {
	var err error
	if m.log, err = os.OpenFile(dataDir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		return err
	}
	m.cmd = exec.Command(self, append([]string{
		"--name=" + m.name,
		"--data-dir=" + dataDir,
		"--listen-client-urls=" + m.client, "--advertise-client-urls=" + m.client,
		"--listen-peer-urls=" + m.peer, "--initial-advertise-peer-urls=" + m.peer,
	}, extra...)...)
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	m.cmd.SysProcAttr = attr
	if err := m.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", m.name, err)
	}
	return nil
}

// startReader starts reader r of the cluster of writers: the first time
// (no data dir yet) it is added as a learner through the writers, once they
// serve; then it runs with --role=reader. It returns once the reader
// serves, so that the next one may be added (etcd's learner bound counts
// the learners not yet started).
func startReader(ctx context.Context, r *member, writers []*member, dataDir, self string) error {
	var eps []string
	initial := []string{r.name + "=" + r.peer}
	for _, w := range writers {
		eps = append(eps, strings.TrimPrefix(w.client, "http://"))
		initial = append(initial, w.name+"="+w.peer)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
		c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer c.Close()
		for {
			_, err = c.MemberAddAsLearner(ctx, []string{r.peer})
			if err == nil || errors.Is(err, rpctypes.ErrPeerURLExist) {
				break // added now, or by an earlier run that stopped before the reader started
			}
			if ctx.Err() != nil {
				return fmt.Errorf("add as a learner: %w", err)
			}
			select { // the writers are still starting
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	if err := r.start(self, dataDir, "--role=reader", "--initial-cluster="+strings.Join(initial, ","), "--initial-cluster-state=existing"); err != nil {
		return err
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{strings.TrimPrefix(r.client, "http://")}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	for {
		if _, err := c.Status(ctx, c.Endpoints()[0]); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("not serving after a minute: %w", err)
		}
		select { // polls the reader's status
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}
