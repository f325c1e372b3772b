package main

import (
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
)

// playground starts a local three-writer cluster on loopback, each member a
// child process of this binary, with data under one directory. It prints
// the endpoints and a few etcdctl commands, and stops the members with
// SIGTERM on Ctrl-C (or SIGTERM), waiting for them to exit.
//
// Ports follow etcd's Procfile: members listen for clients on 2379, 22379
// and 32379 and for peers on 2380, 22380 and 32380 (--base-port moves them).
func playground(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("strata playground", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "playground.strata", "directory holding the members' data dirs and logs")
	basePort := fs.Int("base-port", 2379, "client port of the first member; others use +20000 and +30000, peers +1")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *basePort < 1 || *basePort+30001 > 65535 {
		fmt.Fprintf(stderr, "strata playground: --base-port %d leaves no room for three members (the last peer port is base+30001 <= 65535)\n", *basePort)
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
	type member struct {
		name, client, peer string
		cmd                *exec.Cmd
		log                *os.File
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
		m.log, err = os.Create(filepath.Join(*dataDir, m.name+".log"))
		if err != nil {
			fmt.Fprintf(stderr, "strata playground: %v\n", err)
			stopAll()
			return 1
		}
		m.cmd = exec.Command(self,
			"--name="+m.name,
			"--data-dir="+filepath.Join(*dataDir, m.name),
			"--listen-client-urls="+m.client, "--advertise-client-urls="+m.client,
			"--listen-peer-urls="+m.peer, "--initial-advertise-peer-urls="+m.peer,
			"--initial-cluster="+strings.Join(initial, ","),
			"--initial-cluster-token=strata-playground",
			"--initial-cluster-state=new",
		)
		m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
		if err := m.cmd.Start(); err != nil {
			fmt.Fprintf(stderr, "strata playground: start %s: %v\n", m.name, err)
			stopAll()
			return 1
		}
	}
	var endpoints []string
	for _, m := range ms {
		endpoints = append(endpoints, strings.TrimPrefix(m.client, "http://"))
	}
	eps := strings.Join(endpoints, ",")
	fmt.Fprintf(stdout, `strata playground: 3 writer members, data and logs in %s
  endpoints: %s

Try (any etcdctl v3.7; this repository pins one in tests/tools):
  etcdctl --endpoints=%s put greeting hello
  etcdctl --endpoints=%s get greeting
  etcdctl --endpoints=%s endpoint status -w table
  etcdctl --endpoints=%s member list -w table

Ctrl-C stops the cluster; run it again to restart it with the same data.
`, *dataDir, eps, eps, eps, eps, eps)

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigc)
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
