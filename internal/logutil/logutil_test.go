package logutil

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

var tsPattern = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$`)

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestJSONShape decodes lines written by New and checks etcd's keys and
// value formats.
func TestJSONShape(t *testing.T) {
	path := filepath.Join(t.TempDir(), "strata.log")
	lg, err := New("info", "json", []string{path})
	if err != nil {
		t.Fatal(err)
	}
	before := time.Now().UTC().Truncate(time.Microsecond)
	lg.Info("ready to serve client requests", zap.String("address", "127.0.0.1:2379"))
	lg.Named("raft").Warn("lost leader", zap.Error(errors.New("boom")), zap.Duration("took", 1500*time.Millisecond))
	lg.Error("failed", zap.Error(errors.New("disk full")))
	lg.Debug("not written at info level")
	_ = lg.Sync()
	after := time.Now().UTC()

	lines := readLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3: %v", len(lines), lines)
	}

	info := lines[0]
	wantKeys := []string{"level", "ts", "caller", "msg", "address"}
	if len(info) != len(wantKeys) {
		t.Errorf("info line keys = %v, want %v", info, wantKeys)
	}
	if info["level"] != "info" || info["msg"] != "ready to serve client requests" || info["address"] != "127.0.0.1:2379" {
		t.Errorf("info line = %v", info)
	}
	ts, _ := info["ts"].(string)
	if !tsPattern.MatchString(ts) {
		t.Errorf("ts %q does not match etcd's layout in UTC", ts)
	}
	if at, err := time.Parse(timeLayout, ts); err != nil || at.Before(before) || at.After(after) {
		t.Errorf("ts %q (%v) not within [%v, %v]: %v", ts, at, before, after, err)
	}
	if caller, _ := info["caller"].(string); !regexp.MustCompile(`^logutil/logutil_test\.go:\d+$`).MatchString(caller) {
		t.Errorf("caller = %q, want short form logutil/logutil_test.go:N", caller)
	}
	if _, ok := info["stacktrace"]; ok {
		t.Error("stacktrace on an info line")
	}

	warn := lines[1]
	if warn["level"] != "warn" || warn["logger"] != "raft" || warn["error"] != "boom" || warn["took"] != "1.5s" {
		t.Errorf("warn line = %v", warn)
	}

	errLine := lines[2]
	if errLine["level"] != "error" || errLine["error"] != "disk full" {
		t.Errorf("error line = %v", errLine)
	}
	if st, _ := errLine["stacktrace"].(string); !strings.Contains(st, "TestJSONShape") {
		t.Errorf("error line stacktrace = %q", st)
	}

	// The key order is etcd's: level, ts, [logger], caller, msg, fields.
	raw, _ := os.ReadFile(path)
	first := strings.SplitN(string(raw), "\n", 2)[0]
	if !strings.HasPrefix(first, `{"level":"info","ts":"`) || !strings.Contains(first, `","caller":"logutil/`) {
		t.Errorf("line layout = %s", first)
	}
}

func TestSampling(t *testing.T) {
	var buf bytes.Buffer
	lg, err := NewWithWriter("info", "json", &buf)
	if err != nil {
		t.Fatal(err)
	}
	for range 250 {
		lg.Info("same message")
	}
	lg.Info("other message")
	// Within one second: entries 1-100 and 200, then the other message.
	if got := strings.Count(buf.String(), "\n"); got != 102 {
		t.Errorf("wrote %d lines, want 102", got)
	}
}

func TestLevels(t *testing.T) {
	for _, tt := range []struct {
		level string
		debug bool
		warn  bool
	}{
		{"debug", true, true},
		{"info", false, true},
		{"warn", false, true},
		{"error", false, false},
		{"", false, true}, // info
	} {
		var buf bytes.Buffer
		lg, err := NewWithWriter(tt.level, "json", &buf)
		if err != nil {
			t.Fatalf("%q: %v", tt.level, err)
		}
		lg.Debug("d")
		lg.Warn("w")
		if got := strings.Contains(buf.String(), `"msg":"d"`); got != tt.debug {
			t.Errorf("level %q: debug written = %v", tt.level, got)
		}
		if got := strings.Contains(buf.String(), `"msg":"w"`); got != tt.warn {
			t.Errorf("level %q: warn written = %v", tt.level, got)
		}
	}
}

func TestConsoleFormat(t *testing.T) {
	var buf bytes.Buffer
	lg, err := NewWithWriter("info", "console", &buf)
	if err != nil {
		t.Fatal(err)
	}
	lg.Info("hello", zap.Int("n", 1))
	line := buf.String()
	if !strings.Contains(line, "\tinfo\t") || !strings.Contains(line, "\thello\t") || !strings.Contains(line, `{"n": 1}`) {
		t.Errorf("console line = %q", line)
	}
}

func TestErrors(t *testing.T) {
	for _, tt := range []struct {
		level, format string
		outputs       []string
		want          string
	}{
		{"loud", "json", nil, `log level "loud" is not valid; use debug, info, warn, error, panic or fatal`},
		{"info", "xml", nil, "unknown log format: xml, supported values json, console"},
		{"info", "json", []string{"default", "stdout"}, `multi logoutput for "default" is not supported yet`},
	} {
		_, err := New(tt.level, tt.format, tt.outputs)
		if err == nil || err.Error() != tt.want {
			t.Errorf("New(%q, %q, %q) error = %v, want %q", tt.level, tt.format, tt.outputs, err, tt.want)
		}
	}
}

func TestOutputPaths(t *testing.T) {
	for _, tt := range []struct {
		in   []string
		want []string
	}{
		{nil, []string{"stderr"}},
		{[]string{"default"}, []string{"stderr"}},
		{[]string{"stderr", "stdout", "stderr"}, []string{"stderr", "stdout"}},
		{[]string{"systemd/journal"}, []string{"stderr"}},
		{[]string{"/var/log/strata.log", "stderr"}, []string{"/var/log/strata.log", "stderr"}},
		{[]string{"stdout", "/dev/null"}, []string{"/dev/null"}},
	} {
		got, err := outputPaths(tt.in)
		if err != nil || strings.Join(got, ",") != strings.Join(tt.want, ",") {
			t.Errorf("outputPaths(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}
