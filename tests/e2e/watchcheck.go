package e2e

import (
	"bytes"
	"fmt"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
)

// WatchLog is what one watcher of a test received, response by response.
type WatchLog struct {
	Name string
	// Key and End are the watched key or range (End "" for one key,
	// "\x00" for every key from Key on); Start the start revision.
	Key, End string
	Start    int64
	PrevKV   bool
	Resps    []WatchRecord
}

// WatchRecord is one received response.
type WatchRecord struct {
	Rev      int64 // header revision
	Events   []*mvccpb.Event
	Progress bool
	Canceled bool
	Err      error
}

// Record appends a client/v3 response to the log.
func (l *WatchLog) Record(r clientv3.WatchResponse) {
	rec := WatchRecord{Rev: r.Header.Revision, Progress: r.IsProgressNotify(), Canceled: r.Canceled, Err: r.Err()}
	for _, ev := range r.Events {
		rec.Events = append(rec.Events, (*mvccpb.Event)(ev))
	}
	l.Resps = append(l.Resps, rec)
}

// Reached returns the highest revision the watcher knows it has seen all
// events through: its last event's or progress notification's.
func (l *WatchLog) Reached() int64 {
	var r int64
	for _, rec := range l.Resps {
		if rec.Progress {
			r = max(r, rec.Rev)
		}
		for _, ev := range rec.Events {
			r = max(r, ev.Kv.ModRevision)
		}
	}
	return r
}

func (l *WatchLog) contains(k []byte) bool {
	switch {
	case l.End == "":
		return string(k) == l.Key
	case l.End == "\x00":
		return bytes.Compare(k, []byte(l.Key)) >= 0
	}
	return bytes.Compare(k, []byte(l.Key)) >= 0 && bytes.Compare(k, []byte(l.End)) < 0
}

// CheckWatch verifies etcd's watch guarantees for l against history, the
// complete event history (with previous versions) through revision
// through:
//   - ordered and unique: events come in revision order, none twice;
//   - reliable: no event of the watched range between the start revision
//     and through is missing, and none is invented (each equals history's,
//     previous version included when asked for, absent otherwise);
//   - atomic: a response holds every event of each revision it touches;
//   - progress: after a progress notification at revision P no event at or
//     below P arrives, and a response's header revision is never below its
//     events'.
func CheckWatch(l *WatchLog, history []*mvccpb.Event, through int64) error {
	want := map[int64][]*mvccpb.Event{}
	var wantAll []*mvccpb.Event
	for _, ev := range history {
		rev := ev.Kv.ModRevision
		if rev < l.Start || rev > through || !l.contains(ev.Kv.Key) {
			continue
		}
		if !l.PrevKV {
			ev = &mvccpb.Event{Type: ev.Type, Kv: ev.Kv}
		}
		want[rev] = append(want[rev], ev)
		wantAll = append(wantAll, ev)
	}
	var (
		got      int   // events received so far
		lastRev  int64 // revision of the last event
		progress int64 // highest progress notification
	)
	for i, rec := range l.Resps {
		if rec.Err != nil {
			return fmt.Errorf("%s: response %d: %v", l.Name, i, rec.Err)
		}
		if rec.Progress {
			progress = max(progress, rec.Rev)
			continue
		}
		for j := 0; j < len(rec.Events); {
			rev := rec.Events[j].Kv.ModRevision
			if rev > through {
				return nil // past the checked history
			}
			if rev <= lastRev {
				return fmt.Errorf("%s: response %d: event at revision %d after revision %d (out of order or repeated)", l.Name, i, rev, lastRev)
			}
			if rev <= progress {
				return fmt.Errorf("%s: response %d: event at revision %d after a progress notification at %d", l.Name, i, rev, progress)
			}
			if rev > rec.Rev {
				return fmt.Errorf("%s: response %d: header revision %d below its event at %d", l.Name, i, rec.Rev, rev)
			}
			k := j
			for k < len(rec.Events) && rec.Events[k].Kv.ModRevision == rev {
				k++
			}
			exp := want[rev]
			if len(exp) != k-j {
				return fmt.Errorf("%s: response %d: %d events of revision %d, history has %d (not atomic, or invented)", l.Name, i, k-j, rev, len(exp))
			}
			for _, ev := range rec.Events[j:k] {
				if got >= len(wantAll) || !proto.Equal(ev, wantAll[got]) {
					var w *mvccpb.Event
					if got < len(wantAll) {
						w = wantAll[got]
					}
					return fmt.Errorf("%s: response %d: event %d is %v, history says %v (a gap or a wrong event)", l.Name, i, got, ev, w)
				}
				got++
			}
			lastRev = rev
			j = k
		}
	}
	if got != len(wantAll) {
		return fmt.Errorf("%s: received %d of the %d events through revision %d; first missing: %v", l.Name, got, len(wantAll), through, wantAll[got])
	}
	return nil
}
