package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	reMemberAdded = regexp.MustCompile(`Member +([0-9a-f]+) added`)
	// etcdctl prints IDs with %16x: shorter IDs are padded with spaces.
	rePaddedID = regexp.MustCompile(` +<(id|learner)>`)
	reHexID    = regexp.MustCompile(`\b[0-9a-f]{10,16}\b`)
)

// TestMemberCommandsMatchEtcd runs etcdctl's membership commands against a
// single-member etcd and a single-member strata: adding a learner, the
// too-many-learners and peer-URL-in-use refusals, promoting a learner that
// never started (not in sync), updating its peer URLs, removing it, and
// removing it again. Member and cluster IDs differ by design (a new
// member's ID includes the time, as in etcd) and are normalised; all else
// must match.
func TestMemberCommandsMatchEtcd(t *testing.T) {
	b := needSubject(t)
	etcd, sub := pair(t)
	ports, err := FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	url1 := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	url2 := fmt.Sprintf("http://127.0.0.1:%d", ports[1])

	steps := []func(s *ctlSide) []string{
		func(s *ctlSide) []string {
			return []string{"member", "add", "newbie", "--learner", "--peer-urls=" + url1}
		},
		func(s *ctlSide) []string { return []string{"member", "list", "-w", "table"} },
		func(s *ctlSide) []string {
			return []string{"member", "add", "second", "--learner", "--peer-urls=" + url2}
		},
		// A peer URL in use. (Re-adding url1 would race etcd's clock: a
		// new ID hashes the URLs with the time in seconds, so within the
		// same second etcd answers "member ID already exist" instead.)
		func(s *ctlSide) []string {
			return []string{"member", "add", "dup", "--learner", "--peer-urls=" + s.m.PeerURL()}
		},
		func(s *ctlSide) []string { return []string{"member", "promote", s.id} },
		func(s *ctlSide) []string { return []string{"member", "update", s.id, "--peer-urls=" + url2} },
		func(s *ctlSide) []string { return []string{"member", "list", "-w", "json"} },
		func(s *ctlSide) []string { return []string{"member", "promote", "1234"} },
		func(s *ctlSide) []string { return []string{"member", "remove", s.id} },
		func(s *ctlSide) []string { return []string{"member", "remove", s.id} },
		func(s *ctlSide) []string { return []string{"member", "update", "1234", "--peer-urls=" + url1} },
		func(s *ctlSide) []string { return []string{"member", "list"} },
	}
	sides := compareCtlSteps(t, b, etcd, sub, steps, reMemberAdded, func(s *ctlSide, r Result) string {
		n := NewNormaliser(s.m).WithSimpleCols(0)
		text := fmt.Sprintf("exit code %d\n--- stdout\n%s\n--- stderr\n%s\n", r.ExitCode, sortMembers(n.Stdout(sortMembersJSON(string(r.Stdout)))), n.Text(string(r.Stderr)))
		if s.id != "" {
			text = strings.ReplaceAll(text, s.id, "<learner>")
		}
		return rePaddedID.ReplaceAllString(reHexID.ReplaceAllString(text, "<id>"), " <$1>")
	})
	if sides[0].id == "" || sides[1].id == "" {
		t.Fatalf("no learner was added: %q", []string{sides[0].id, sides[1].id})
	}
}

// ctlSide is one server of a side-by-side etcdctl comparison, with the ID
// (a learner's, a lease's) its first command of interest printed.
type ctlSide struct {
	m  *Member
	id string
}

// compareCtlSteps runs each step's etcdctl command on etcd and then on the
// subject, captures each side's id from the first output capture matches,
// renders both results with render and reports where they differ.
func compareCtlSteps(t *testing.T, b *Binaries, etcd, sub *Member, steps []func(*ctlSide) []string,
	capture *regexp.Regexp, render func(*ctlSide, Result) string) [2]*ctlSide {
	t.Helper()
	sides := [2]*ctlSide{{m: etcd}, {m: sub}}
	for i, step := range steps {
		var out [2]string
		var desc string
		for j, s := range sides {
			args := step(s)
			desc = strings.Join(args, " ")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r, err := Etcdctl(ctx, b.Etcdctl, []string{s.m.Endpoint()}, "", args...)
			cancel()
			if err != nil {
				t.Fatalf("step %d on %s: %v", i, s.m.Binary, err)
			}
			if m := capture.FindSubmatch(r.Stdout); m != nil && s.id == "" {
				s.id = string(m[1])
			}
			out[j] = render(s, r)
		}
		if d := Diff("etcd", out[0], b.SubjectName, out[1]); d != "" {
			t.Errorf("step %d: etcdctl %s\n%s", i, desc, d)
		}
	}
	return sides
}

// sortMembers puts normalised member listings in a canonical order. Both
// servers list members by ID, but a new member's ID depends on the time it
// was added, so the order of two members differs between runs; their
// contents must not.
func sortMembers(s string) string {
	// ETCD_INITIAL_CLUSTER="a=...,b=..."
	s = reInitialCluster.ReplaceAllStringFunc(s, func(m string) string {
		inner := strings.TrimSuffix(strings.TrimPrefix(m, `ETCD_INITIAL_CLUSTER="`), `"`)
		parts := strings.Split(inner, ",")
		slices.Sort(parts)
		return `ETCD_INITIAL_CLUSTER="` + strings.Join(parts, ",") + `"`
	})
	// Tables and simple output: sort each run of member rows.
	lines := strings.Split(s, "\n")
	isRow := func(l string) bool {
		return strings.Contains(l, "started") || strings.Contains(l, "unstarted")
	}
	for i := 0; i < len(lines); {
		j := i
		for j < len(lines) && isRow(lines[j]) {
			j++
		}
		slices.Sort(lines[i:j])
		if j == i {
			j++
		}
		i = j
	}
	return strings.Join(lines, "\n")
}

// sortMembersJSON sorts the members of raw `member list -w json` output by
// name and learner flag (the same on both sides, unlike IDs and ports).
func sortMembersJSON(s string) string {
	if !strings.HasPrefix(s, "{") {
		return s
	}
	var v map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber() // keep 64-bit IDs exact
	if err := dec.Decode(&v); err != nil {
		return s
	}
	ms, ok := v["members"].([]any)
	if !ok {
		return s
	}
	key := func(m any) string {
		mm := m.(map[string]any)
		return fmt.Sprint(mm["name"], mm["isLearner"])
	}
	slices.SortFunc(ms, func(a, b any) int { return strings.Compare(key(a), key(b)) })
	out, err := json.Marshal(v)
	if err != nil {
		return s
	}
	return string(out) + "\n"
}

var reInitialCluster = regexp.MustCompile(`ETCD_INITIAL_CLUSTER="[^"]*"`)
