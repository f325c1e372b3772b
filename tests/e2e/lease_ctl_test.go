package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	reLeaseGranted = regexp.MustCompile(`lease ([0-9a-f]+) granted`)
	// Remaining TTLs depend on when the command ran.
	reRemaining = regexp.MustCompile(`remaining\((-?\d+)s\)`)
	reJSONTTL   = regexp.MustCompile(`"ttl":-?\d+`)
)

// TestEtcdctlLeaseCommandsMatchEtcd runs etcdctl's lease commands against a
// single-member etcd and a single-member strata: grant, a key on the lease,
// list, timetolive with and without keys, keep-alive --once, revoke (twice),
// and timetolive of the revoked lease. Lease IDs are random on both sides
// and remaining TTLs depend on timing: they are normalised; all else must
// match.
func TestEtcdctlLeaseCommandsMatchEtcd(t *testing.T) {
	b := needSubject(t)
	etcd, sub := pair(t)
	type side struct {
		m     *Member
		lease string
	}
	sides := []*side{{m: etcd}, {m: sub}}
	steps := []func(s *side) []string{
		func(s *side) []string { return []string{"lease", "grant", "600"} },
		func(s *side) []string { return []string{"put", "lk", "v", "--lease=" + s.lease} },
		func(s *side) []string { return []string{"lease", "list"} },
		func(s *side) []string { return []string{"lease", "timetolive", s.lease} },
		func(s *side) []string { return []string{"lease", "timetolive", s.lease, "--keys"} },
		func(s *side) []string { return []string{"lease", "timetolive", s.lease, "-w", "json"} },
		func(s *side) []string { return []string{"lease", "keep-alive", "--once", s.lease} },
		func(s *side) []string { return []string{"get", "lk", "-w", "fields"} },
		func(s *side) []string { return []string{"lease", "revoke", s.lease} },
		func(s *side) []string { return []string{"lease", "revoke", s.lease} },
		func(s *side) []string { return []string{"lease", "timetolive", s.lease} },
		func(s *side) []string { return []string{"lease", "keep-alive", "--once", s.lease} },
		func(s *side) []string { return []string{"get", "lk"} },
		func(s *side) []string { return []string{"lease", "list"} },
	}
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
			if m := reLeaseGranted.FindSubmatch(r.Stdout); m != nil && s.lease == "" {
				s.lease = string(m[1])
			}
			n := NewNormaliser(s.m)
			text := fmt.Sprintf("exit code %d\n--- stdout\n%s\n--- stderr\n%s\n", r.ExitCode, n.Stdout(string(r.Stdout)), n.Text(string(r.Stderr)))
			if s.lease != "" {
				text = strings.ReplaceAll(text, s.lease, "<lease>")
				var id int64
				fmt.Sscanf(s.lease, "%x", &id)
				text = strings.ReplaceAll(text, fmt.Sprint(id), "<lease>")
			}
			text = reRemaining.ReplaceAllString(text, "remaining(<ttl>s)")
			text = reJSONTTL.ReplaceAllString(text, `"ttl":<ttl>`)
			out[j] = text
		}
		if d := Diff("etcd", out[0], b.SubjectName, out[1]); d != "" {
			t.Errorf("step %d: etcdctl %s\n%s", i, desc, d)
		}
	}
}
