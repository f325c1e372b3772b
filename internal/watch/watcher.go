package watch

import (
	"bytes"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// watcher is one watch of a stream. Every field below the first group is
// guarded by the hub's mutex.
type watcher struct {
	s  *Stream
	id int64
	// key and end are the watched key or range [key, end).
	key     []byte
	end     bound
	isRange bool
	// The create request's options.
	noPut, noDelete, prevKV, progressNotify, fragment bool
	// startRev is the requested start revision; 0 (from the revision
	// after creation) stays 0, as in etcd, where a progress request never
	// waits for such a watcher's start.
	startRev int64

	// next: every event of w below next has been queued or sent. A synced
	// watcher takes events at or above next from Commit (next may lie in
	// the future); an unsynced one catches up from next.
	next   int64
	synced bool
	// group and slot locate a synced watcher in the index.
	group *group
	slot  int
	// pending are the events queued by Commit, whole revisions, not yet
	// sent; revStart marks the current revision's first one during a
	// Commit (-1 otherwise).
	pending      []*mvccpb.Event
	pendingBytes int
	revStart     int
	// queued: on the stream's ready list. created: the created response
	// has been handed out (events wait for it). dead: canceled, or
	// canceled by compaction (still holding its ID until the client
	// cancels it, as in etcd).
	queued, created, dead bool
	// progressDue is etcd's progress flag: no event went out since the
	// last tick.
	progressDue bool
}

// matches reports whether key lies in w's key or range.
func (w *watcher) matches(key []byte) bool {
	if !w.isRange {
		return bytes.Equal(key, w.key)
	}
	return bytes.Compare(key, w.key) >= 0 && w.end.after(key)
}

// filtered reports whether w's filters drop ev.
func (w *watcher) filtered(ev *mvccpb.Event) bool {
	if ev.Type == mvccpb.PUT {
		return w.noPut
	}
	return w.noDelete
}
