package e2e

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// bins is set by TestMain; skipReason is set instead when the suite cannot
// run at all on this machine.
var (
	bins       *Binaries
	skipReason string
	repoRoot   string
	recordOnce sync.Once
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		return m.Run() // listing tests needs no binaries
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		skipReason = "e2e: the go command is not on PATH; it is needed to build etcd, etcdctl and strata"
		return m.Run()
	}
	root, err := RepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = root
	dir, err := os.MkdirTemp("", "strata-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	bins, err = Build(ctx, goBin, root, dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the binaries:", err)
		return 1
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built etcd, etcdctl and %s in %v (subject: %s)\n",
			bins.SubjectName, time.Since(start).Round(time.Millisecond), bins.SubjectName)
	}
	return m.Run()
}

// needEtcd skips the test if the suite cannot run here.
func needEtcd(t testing.TB) *Binaries {
	t.Helper()
	if skipReason != "" {
		t.Skip(skipReason)
	}
	recordOnce.Do(func() { RecordInputs(repoRoot) })
	return bins
}

// needSubject also requires the subject (strata) binary.
func needSubject(t testing.TB) *Binaries {
	t.Helper()
	b := needEtcd(t)
	if b.SubjectErr != nil {
		t.Fatalf("e2e: the strata binary did not build (set %s=etcd to run the suite etcd-vs-etcd):\n%v", SubjectEnv, b.SubjectErr)
	}
	return b
}

// pair starts a fresh single-member etcd and a fresh single-member subject
// with the same extra flags, concurrently.
func pair(t *testing.T, extra ...string) (etcd, subject *Member) {
	t.Helper()
	b := needSubject(t)
	var (
		sub    []*Member
		subErr error
		done   = make(chan struct{})
	)
	go func() {
		defer close(done)
		sub, subErr = StartClusterErr(t, "m", 1, MemberConfig{Binary: b.Subject, ExtraArgs: extra})
	}()
	e, err := StartClusterErr(t, "m", 1, MemberConfig{Binary: b.Etcd, ExtraArgs: extra})
	<-done
	if err != nil {
		t.Fatal(err)
	}
	if subErr != nil {
		t.Fatal(subErr)
	}
	return e[0], sub[0]
}

// transcript records etcd's normalised side of a scripted test. With
// STRATA_E2E_TRANSCRIPT=<dir> it is saved as <dir>/<TestName>.txt, to read
// what a script exercises.
type transcript struct {
	b strings.Builder
}

func newTranscript(t *testing.T) *transcript {
	tr := &transcript{}
	if dir := os.Getenv("STRATA_E2E_TRANSCRIPT"); dir != "" {
		t.Cleanup(func() {
			p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+".txt")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Error(err)
			}
			if err := os.WriteFile(p, []byte(tr.b.String()), 0o644); err != nil {
				t.Error(err)
			}
		})
	}
	return tr
}

func (tr *transcript) add(step, etcdSide string) {
	tr.b.WriteString("### " + step + "\n" + etcdSide)
}
