// This file is copied into etcd's tests module (robustness/validate) by
// tests/etcdrobustness/run.sh; it is not part of strata's build.

package validate

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"go.uber.org/zap/zaptest"

	"go.etcd.io/etcd/tests/v3/robustness/model"
	"go.etcd.io/etcd/tests/v3/robustness/report"
)

// TestStrataRevalidate checks the linearizability of a report the suite
// saved (STRATA_REPORT: the directory holding client-*/ and the members'
// data), after one sound reduction: it drops each write whose outcome the
// client never learned (its request failed) when the members' log shows
// it was a transaction whose compare failed, whose failure branch only
// reads, and whose compares are on mod revisions that no key holds at the
// end of the log. Such a transaction changed nothing and nobody saw its
// answer; linearized at the very end of any linearization of the rest,
// its compare fails there too. Porcupine cannot prune these: each may
// linearize anywhere from its call on, and a long run of successful reads
// after them multiplies the orders it must try.
func TestStrataRevalidate(t *testing.T) {
	path := os.Getenv("STRATA_REPORT")
	if path == "" {
		t.Skip("STRATA_REPORT names no report")
	}
	lg := zaptest.NewLogger(t)
	reports, err := report.LoadClientReports(path)
	if err != nil {
		t.Fatal(err)
	}
	persisted, err := report.LoadClusterPersistedRequests(lg, path)
	if err != nil {
		t.Fatal(err)
	}
	lin, _, _ := prepareAndCategorizeOperations(reports)
	lin = patchLinearizableOperations(lin, reports, persisted)

	resps, final := model.LogReplay(persisted)
	failed := map[model.PutOptions]bool{}
	for i, r := range persisted {
		if r.Type != model.Txn || resps[i].Txn == nil || !resps[i].Txn.Failure {
			continue
		}
		for _, o := range r.Txn.OperationsOnSuccess {
			if o.Type == model.PutOperation {
				failed[model.PutOptions{Key: o.Put.Key, Value: o.Put.Value}] = true
			}
		}
	}
	noop := func(req model.EtcdRequest) bool {
		if req.Type != model.Txn || len(req.Txn.Conditions) == 0 || len(req.Txn.OperationsOnSuccess) == 0 {
			return false
		}
		for _, c := range req.Txn.Conditions {
			v, _ := final.GetValue(c.Key)
			if c.ExpectedRevision <= 0 || c.ExpectedVersion != 0 || (v != nil && v.ModRevision == c.ExpectedRevision) {
				return false
			}
		}
		for _, o := range req.Txn.OperationsOnFailure {
			if o.Type != model.RangeOperation {
				return false
			}
		}
		for _, o := range req.Txn.OperationsOnSuccess {
			if o.Type != model.PutOperation || !failed[model.PutOptions{Key: o.Put.Key, Value: o.Put.Value}] {
				return false
			}
		}
		return true
	}
	var kept []porcupine.Operation
	for _, op := range lin {
		resp := op.Output.(model.MaybeEtcdResponse)
		if resp.Persisted && resp.PersistedRevision == 0 && noop(op.Input.(model.EtcdRequest)) {
			continue
		}
		kept = append(kept, op)
	}
	t.Logf("%d linearizable operations; dropped %d unanswered transactions the log shows failed their compare", len(lin), len(lin)-len(kept))
	res := validateLinearizableOperationsAndVisualize(lg, model.ModelKeys(kept), kept, 5*time.Minute)
	if res.Status != Success {
		if err := res.Visualize(lg, filepath.Join(path, "history-reduced.html")); err != nil {
			t.Log(err)
		}
		t.Fatalf("linearization of the reduced history: %v %s", res.Status, res.Message)
	}
}
