package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestStartup checks the command-line contract tools written for etcd rely
// on: --version, a bad flag, an unusable data dir, JSON logs, the readiness
// line, a clean SIGTERM and a restart on the same data dir.
func TestStartup(t *testing.T) {
	b := needSubject(t)
	run := func(t *testing.T, bin string, args ...string) Result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		r, err := Run(ctx, bin, "", nil, args...)
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, r)
		}
		return r
	}

	t.Run("Version", func(t *testing.T) {
		// etcd's e2e framework and Kubernetes' hack/lib/etcd.sh parse the
		// first line; the strata version may follow on its own line.
		we, ws := run(t, b.Etcd, "--version"), run(t, b.Subject, "--version")
		if ws.ExitCode != we.ExitCode {
			t.Errorf("--version exit code %d, etcd %d", ws.ExitCode, we.ExitCode)
		}
		if got, want := firstLine(ws.Stdout), "etcd Version: "+EtcdVersion; got != want {
			t.Errorf("--version first line %q, want %q (etcd prints %q)\n%s", got, want, firstLine(we.Stdout), ws)
		}
	})

	t.Run("BadFlag", func(t *testing.T) {
		const flag = "--no-such-flag-e2e"
		we, ws := run(t, b.Etcd, flag), run(t, b.Subject, flag)
		if we.ExitCode == 0 {
			t.Fatalf("etcd accepted %s:\n%s", flag, we)
		}
		if ws.ExitCode != we.ExitCode {
			t.Errorf("%s: exit code %d, etcd exits %d\n%s", flag, ws.ExitCode, we.ExitCode, ws)
		}
		checkOneLineError(t, ws, "no-such-flag-e2e")
	})

	t.Run("DataDirIsAFile", func(t *testing.T) {
		for _, bin := range []string{b.Etcd, b.Subject} {
			file := filepath.Join(t.TempDir(), "not-a-dir")
			if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			ports, err := FreePorts(2)
			if err != nil {
				t.Fatal(err)
			}
			c, p := "http://127.0.0.1:"+strconv.Itoa(ports[0]), "http://127.0.0.1:"+strconv.Itoa(ports[1])
			r := run(t, bin, "--name=m0", "--data-dir="+file,
				"--listen-client-urls="+c, "--advertise-client-urls="+c,
				"--listen-peer-urls="+p, "--initial-advertise-peer-urls="+p,
				"--initial-cluster=m0="+p, "--initial-cluster-state=new")
			if r.ExitCode == 0 {
				t.Errorf("%s started on a data dir that is a file:\n%s", filepath.Base(bin), r)
				continue
			}
			checkOneLineError(t, r, file)
		}
	})

	t.Run("LogsReadySigtermRestart", func(t *testing.T) {
		etcd, sub := pair(t)
		// No error-level lines while starting and serving (etcd itself logs
		// some at error level while shutting down, so those are not held
		// against the subject either).
		checkZapLog(t, sub.Stderr(), true)
		for _, m := range []*Member{etcd, sub} {
			if err := m.Stop(); err != nil {
				t.Errorf("%s: %v", filepath.Base(m.Binary), err)
			}
		}
		// Same number of readiness lines as etcd (one per client URL).
		we, ws := bytes.Count(etcd.Output(), []byte(ReadyLine)), bytes.Count(sub.Output(), []byte(ReadyLine))
		if we != ws {
			t.Errorf("%q printed %d times, etcd prints it %d times", ReadyLine, ws, we)
		}
		checkZapLog(t, sub.Stderr(), false)
		if out := sub.current().stdout.Bytes(); len(out) != 0 {
			t.Errorf("stdout should be empty (etcd logs to stderr), got:\n%s", tail(out, 10))
		}
		// Restart on the same data dir with the same (bootstrap) flags.
		if err := sub.Restart(); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := Etcdctl(ctx, b.Etcdctl, []string{sub.Endpoint()}, "", "put", "after-restart", "v")
		if err != nil || r.ExitCode != 0 {
			t.Errorf("put after restart: %v\n%s", err, r)
		}
		if err := sub.Stop(); err != nil {
			t.Error(err)
		}
	})
}

// checkOneLineError requires a failed start to explain itself on one line
// that mentions want (a flag or a path), without a Go panic.
func checkOneLineError(t *testing.T, r Result, want string) {
	t.Helper()
	all := string(r.Stdout) + string(r.Stderr)
	if strings.Contains(all, "panic:") || strings.Contains(all, "goroutine 1 [") {
		t.Errorf("output has a Go panic:\n%s", tail([]byte(all), 30))
	}
	for _, l := range strings.Split(all, "\n") {
		if strings.Contains(l, want) && !strings.Contains(l, `"msg":"Running: "`) {
			return
		}
	}
	t.Errorf("no line of the output explains the error with %q:\n%s", want, tail([]byte(all), 30))
}

// checkZapLog requires every stderr line to be a zap-style JSON object with
// level, ts, caller and msg, and with noErrors no line at level error or
// above.
func checkZapLog(t *testing.T, stderr []byte, noErrors bool) {
	t.Helper()
	bad := 0
	for i, l := range bytes.Split(bytes.TrimRight(stderr, "\n"), []byte("\n")) {
		var rec map[string]any
		if err := json.Unmarshal(l, &rec); err != nil {
			bad++
			if bad <= 5 {
				t.Errorf("stderr line %d is not a JSON object (%v): %s", i+1, err, l)
			}
			continue
		}
		for _, k := range []string{"level", "ts", "caller", "msg"} {
			if _, ok := rec[k]; !ok {
				bad++
				if bad <= 5 {
					t.Errorf("stderr line %d has no %q: %s", i+1, k, l)
				}
			}
		}
		switch rec["level"] {
		case "error", "dpanic", "panic", "fatal":
			if !noErrors {
				break
			}
			bad++
			if bad <= 5 {
				t.Errorf("stderr line %d logs at level %v in normal operation: %s", i+1, rec["level"], l)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d bad stderr lines in all", bad)
	}
}
