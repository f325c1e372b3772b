package e2e

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDowngradeMatchesEtcd: Downgrade's validation answers are etcd
// v3.7.3's, side by side, but for the one target etcd accepts (3.6, one
// minor below): strata has no older version and refuses it as an invalid
// target (docs/compat.md).
func TestDowngradeMatchesEtcd(t *testing.T) {
	b := needSubject(t)
	type call struct {
		action  clientv3.DowngradeAction
		version string
	}
	calls := []call{
		{clientv3.DowngradeValidate, "bad"},
		{clientv3.DowngradeValidate, "3"},
		{clientv3.DowngradeValidate, "3.5"},
		{clientv3.DowngradeValidate, "3.7"},
		{clientv3.DowngradeValidate, "3.8.0"},
		{clientv3.DowngradeEnable, "2.x"},
		{clientv3.DowngradeEnable, "3.5.0"},
		{clientv3.DowngradeCancel, ""},
	}
	answers := func(t *testing.T, binary string) []string {
		ms := StartCluster(t, "dg", 1, MemberConfig{Binary: binary})
		c := newEndpointClient(t, ms[0])
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out []string
		for _, cl := range calls {
			resp, err := c.Downgrade(ctx, cl.action, cl.version)
			if err == nil {
				out = append(out, "ok "+resp.Version)
				continue
			}
			out = append(out, errString(err))
		}
		_, err := c.Downgrade(ctx, clientv3.DowngradeValidate, "3.6")
		out = append(out, errString(err))
		return out
	}
	var want, got []string
	t.Run("etcd", func(t *testing.T) { want = answers(t, b.Etcd) })
	t.Run(b.SubjectName, func(t *testing.T) { got = answers(t, b.Subject) })
	for i, cl := range calls {
		if got[i] != want[i] {
			t.Errorf("Downgrade(%v, %q): %s %q, etcd %q", cl.action, cl.version, b.SubjectName, got[i], want[i])
		}
	}
	if n := len(calls); want[n] != "ok" || got[n] != "etcdserver: invalid downgrade target version" {
		t.Errorf("Downgrade(VALIDATE, 3.6): etcd %q, %s %q", want[n], b.SubjectName, got[n])
	}
}

func errString(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}
