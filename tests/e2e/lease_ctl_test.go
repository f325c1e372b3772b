package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
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
	steps := []func(s *ctlSide) []string{
		func(s *ctlSide) []string { return []string{"lease", "grant", "600"} },
		func(s *ctlSide) []string { return []string{"put", "lk", "v", "--lease=" + s.id} },
		func(s *ctlSide) []string { return []string{"lease", "list"} },
		func(s *ctlSide) []string { return []string{"lease", "timetolive", s.id} },
		func(s *ctlSide) []string { return []string{"lease", "timetolive", s.id, "--keys"} },
		func(s *ctlSide) []string { return []string{"lease", "timetolive", s.id, "-w", "json"} },
		func(s *ctlSide) []string { return []string{"lease", "keep-alive", "--once", s.id} },
		func(s *ctlSide) []string { return []string{"get", "lk", "-w", "fields"} },
		func(s *ctlSide) []string { return []string{"lease", "revoke", s.id} },
		func(s *ctlSide) []string { return []string{"lease", "revoke", s.id} },
		func(s *ctlSide) []string { return []string{"lease", "timetolive", s.id} },
		func(s *ctlSide) []string { return []string{"lease", "keep-alive", "--once", s.id} },
		func(s *ctlSide) []string { return []string{"get", "lk"} },
		func(s *ctlSide) []string { return []string{"lease", "list"} },
	}
	compareCtlSteps(t, b, etcd, sub, steps, reLeaseGranted, func(s *ctlSide, r Result) string {
		n := NewNormaliser(s.m)
		text := fmt.Sprintf("exit code %d\n--- stdout\n%s\n--- stderr\n%s\n", r.ExitCode, n.Stdout(string(r.Stdout)), n.Text(string(r.Stderr)))
		if s.id != "" {
			text = strings.ReplaceAll(text, s.id, "<lease>")
			var id int64
			fmt.Sscanf(s.id, "%x", &id)
			text = strings.ReplaceAll(text, fmt.Sprint(id), "<lease>")
		}
		text = reRemaining.ReplaceAllString(text, "remaining(<ttl>s)")
		return reJSONTTL.ReplaceAllString(text, `"ttl":<ttl>`)
	})
}
