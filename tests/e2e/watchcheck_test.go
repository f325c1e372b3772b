package e2e

import (
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// TestCheckWatchCatchesViolations feeds the watch checker logs that break
// each guarantee (and one that keeps them all): a checker that passes
// everything would make the cluster tests worthless.
func TestCheckWatchCatchesViolations(t *testing.T) {
	put := func(k string, rev int64) *mvccpb.Event {
		return &mvccpb.Event{Type: mvccpb.PUT, Kv: &mvccpb.KeyValue{Key: []byte(k), ModRevision: rev, CreateRevision: rev, Version: 1}}
	}
	// Revision 3 is a txn writing a and b.
	history := []*mvccpb.Event{put("a", 2), put("a", 3), put("b", 3), put("c", 4), put("a", 5)}
	rec := func(rev int64, evs ...*mvccpb.Event) WatchRecord { return WatchRecord{Rev: rev, Events: evs} }
	progress := func(rev int64) WatchRecord { return WatchRecord{Rev: rev, Progress: true} }
	for _, c := range []struct {
		name  string
		resps []WatchRecord
		want  string // "" for no violation
	}{
		{"all kept", []WatchRecord{rec(2, history[0]), rec(3, history[1], history[2]), progress(4), rec(5, history[4])}, ""},
		{"gap", []WatchRecord{rec(2, history[0]), rec(5, history[4])}, "gap"},
		{"duplicate", []WatchRecord{rec(2, history[0]), rec(2, history[0]), rec(3, history[1], history[2]), rec(5, history[4])}, "repeated"},
		{"out of order", []WatchRecord{rec(3, history[1], history[2]), rec(3, history[0]), rec(5, history[4])}, "out of order"},
		{"split revision", []WatchRecord{rec(2, history[0]), rec(3, history[1]), rec(3, history[2]), rec(5, history[4])}, "atomic"},
		{"progress ahead of events", []WatchRecord{rec(2, history[0]), progress(3), rec(3, history[1], history[2]), rec(5, history[4])}, "progress"},
		{"header behind events", []WatchRecord{rec(2, history[0]), rec(2, history[1], history[2]), rec(5, history[4])}, "header"},
		{"missing tail", []WatchRecord{rec(2, history[0]), rec(3, history[1], history[2])}, "received"},
		{"an equal copy of history", []WatchRecord{rec(2, history[0]), rec(3, history[1], history[2]), rec(5, put("a", 5))}, ""},
	} {
		l := &WatchLog{Name: c.name, Key: "a", End: "c", Start: 2, Resps: c.resps}
		err := CheckWatch(l, history, 5)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: got %v, want an error about %q", c.name, err, c.want)
		}
	}
	// An invented value differs from history.
	bad := put("a", 5)
	bad.Kv.Value = []byte("invented")
	l := &WatchLog{Name: "invented", Key: "a", End: "c", Start: 2, Resps: []WatchRecord{rec(2, history[0]), rec(3, history[1], history[2]), rec(5, bad)}}
	if err := CheckWatch(l, history, 5); err == nil || !strings.Contains(err.Error(), "wrong event") {
		t.Errorf("invented value: %v", err)
	}
}
