package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// EtcdVersion is the etcd release the suite uses as its oracle; it must match
// tests/tools/go.mod.
const EtcdVersion = "3.7.3"

// SubjectEnv names the environment variable that picks what the "strata"
// side of each test runs: unset or "strata" builds ./cmd/strata; "etcd" runs
// the etcd binary on both sides (used to validate the harness).
const SubjectEnv = "STRATA_E2E_SUBJECT"

// Binaries are the executables a test run uses.
type Binaries struct {
	Dir     string // the per-run directory holding them
	Etcd    string // etcd v3.7.3 server
	Etcdctl string // etcdctl v3.7.3

	// Subject is the binary under test: strata, or etcd when SubjectEnv=etcd.
	Subject string
	// SubjectName is "strata" or "etcd".
	SubjectName string
	// SubjectErr is the reason Subject could not be built (then Subject is
	// empty). Tests that need the subject fail with it; the others still run.
	SubjectErr error
}

// RepoRoot finds the root of the strata module by walking up from the
// working directory to the go.mod that declares github.com/stratakv/strata.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/stratakv/strata\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("e2e: cannot find the github.com/stratakv/strata module root above the working directory")
		}
		dir = parent
	}
}

// Build builds etcd, etcdctl and the subject into dir. goBin is the go
// command. An error building etcd or etcdctl is returned; an error building
// strata is recorded in SubjectErr.
func Build(ctx context.Context, goBin, root, dir string) (*Binaries, error) {
	b := &Binaries{
		Dir:     dir,
		Etcd:    filepath.Join(dir, "etcd"),
		Etcdctl: filepath.Join(dir, "etcdctl"),
	}
	tools := filepath.Join(root, "tests", "tools")
	subject := os.Getenv(SubjectEnv)
	switch subject {
	case "", "strata":
		b.SubjectName = "strata"
	case "etcd":
		b.SubjectName = "etcd"
	default:
		return nil, fmt.Errorf("e2e: %s=%q: want strata or etcd", SubjectEnv, subject)
	}

	type job struct {
		out  string
		args []string
		err  error
	}
	jobs := []*job{
		{out: b.Etcdctl, args: []string{"build", "-C", tools, "-o", b.Etcdctl, "go.etcd.io/etcd/etcdctl/v3"}},
		{out: b.Etcd, args: []string{"build", "-C", tools, "-o", b.Etcd, "go.etcd.io/etcd/server/v3"}},
	}
	var strataJob *job
	if b.SubjectName == "strata" {
		strataJob = &job{out: filepath.Join(dir, "strata"), args: []string{"build", "-C", root, "-o", filepath.Join(dir, "strata"), "./cmd/strata"}}
		jobs = append(jobs, strataJob)
	}
	var wg sync.WaitGroup
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.CommandContext(ctx, goBin, j.args...)
			// The tools module must not be pulled into a go.work of the
			// caller's; it resolves its own dependencies.
			cmd.Env = append(os.Environ(), "GOWORK=off")
			out, err := cmd.CombinedOutput()
			if err != nil {
				j.err = fmt.Errorf("go %s: %v\n%s", strings.Join(j.args, " "), err, out)
			}
		}()
	}
	wg.Wait()
	for _, j := range jobs {
		if j.err != nil && j != strataJob {
			return nil, j.err
		}
	}
	if err := checkVersion(ctx, b.Etcd); err != nil {
		return nil, err
	}
	switch {
	case strataJob == nil:
		b.Subject = b.Etcd
	case strataJob.err != nil:
		b.SubjectErr = strataJob.err
	default:
		b.Subject = strataJob.out
	}
	return b, nil
}

func checkVersion(ctx context.Context, etcd string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, etcd, "--version").Output()
	if err != nil {
		return fmt.Errorf("e2e: %s --version: %v", etcd, err)
	}
	first, _, _ := strings.Cut(string(out), "\n")
	if want := "etcd Version: " + EtcdVersion; first != want {
		return fmt.Errorf("e2e: %s --version printed %q, want %q", etcd, first, want)
	}
	return nil
}

// RecordInputs tells go test's result cache what the suite depends on
// beyond its own code: it stats every Go source, go.mod and go.sum of the
// repository (a build of ./cmd/strata and of tests/tools depends on them),
// opens every directory (so an added file counts) and reads the suite's
// environment variables. Without this a changed strata would not invalidate
// a cached pass. It must run inside m.Run (testing only logs file and
// environment accesses while tests run), so tests call it through needEtcd.
func RecordInputs(root string) {
	for _, v := range []string{SubjectEnv, "STRATA_E2E_LOGDIR", "STRATA_E2E_SEED", "STRATA_E2E_TRANSCRIPT", "PATH", "GOFLAGS"} {
		_ = os.Getenv(v)
	}
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			if f, err := os.Open(path); err == nil {
				f.Close()
			}
			return nil
		}
		name := d.Name()
		if strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum" {
			_, _ = os.Stat(path)
		}
		return nil
	})
}

// firstLine returns the first line of b without its newline.
func firstLine(b []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(b))
	if sc.Scan() {
		return sc.Text()
	}
	return ""
}
