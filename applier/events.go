package applier

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// Watch events.
//
// The applier is the watch hub's only source of events, in two ways:
//
//   - Live: with Config.OnCommit set, every write of a committed batch
//     becomes an mvccpb.Event (with the key's previous version, which the
//     write read anyway), handed over in revision order before the batch's
//     index is published. A PUT carries the new KeyValue; a DELETE carries
//     only the key and the deleting revision as ModRevision, as etcd's do.
//   - Catch-up: Events reads the events of a range of revisions back from
//     the revision index and history, for a watcher that starts in the past
//     or fell behind.
//
// Both give the same events for the same revision, so a watcher may switch
// from one to the other at any revision boundary.

// Commit describes a committed batch (or a restore) to Config.OnCommit.
type Commit struct {
	// Rev is the current revision after the batch; Compacted the
	// compacted revision (-1 before the first compaction).
	Rev, Compacted int64
	// Events are the batch's writes, in revision order (sub-revision
	// order within a revision); the callee owns them.
	Events []*mvccpb.Event
	// Restored reports that the whole state was replaced by a snapshot:
	// no events are given for the revisions between the previous Rev and
	// this one, which only Events can supply.
	Restored bool
}

// emitPut records the watch event of a put of key (new version m, value),
// whose previous live version was prev when found. The event's previous
// version is the key as of the revision before, as etcd reads it: none for
// a creation (version 1), and never a version written earlier in the same
// txn (a key is put at most once per txn, so a put that is not a creation
// replaces a version from before the txn).
func (t *txnCtx) emitPut(key []byte, m kvMeta, value []byte, prev kvMeta, prevValue []byte, found bool) {
	if t.events == nil {
		return
	}
	ev := &mvccpb.Event{Type: mvccpb.PUT, Kv: newKeyValue(key, m, value)}
	if found && m.version > 1 {
		ev.PrevKv = newKeyValue(key, prev, prevValue)
	}
	*t.events = append(*t.events, ev)
}

// emitDelete records the watch event of the deletion of key at revision
// rev, with the key as of the revision before. live is the key's live
// version when the caller has it (a DeleteRange read it); otherwise it is
// read here.
func (t *txnCtx) emitDelete(key []byte, rev int64, live *mvccpb.KeyValue) error {
	if t.events == nil {
		return nil
	}
	ev := &mvccpb.Event{Type: mvccpb.DELETE, Kv: &mvccpb.KeyValue{Key: append([]byte(nil), key...), ModRevision: rev}}
	if live == nil {
		prev, prevValue, found, err := getLatest(t.r, key, t.kbuf)
		if err != nil {
			return err
		}
		if found {
			live = newKeyValue(key, prev, prevValue)
		}
	}
	if live != nil && live.ModRevision == rev {
		// Put earlier in this txn: the previous version is older.
		var err error
		if ev.PrevKv, err = versionBefore(t.r, key, rev); err != nil {
			return err
		}
	} else {
		ev.PrevKv = live
	}
	*t.events = append(*t.events, ev)
	return nil
}

// versionBefore returns key's version live at revision rev-1, or nil.
func versionBefore(r Reader, key []byte, rev int64) (*mvccpb.KeyValue, error) {
	var kv *mvccpb.KeyValue
	err := visitAt(r, spanOf(key, nil), rev-1, func(k []byte, m kvMeta, value []byte) (bool, error) {
		kv = newKeyValue(k, m, value)
		return false, nil
	})
	return kv, err
}

// EventRange is what Events read.
type EventRange struct {
	// Events are those of revisions [from, Through], in revision order,
	// whole revisions only.
	Events []*mvccpb.Event
	// Through is the last revision covered; Rev the current revision
	// of the state read; Compacted its compacted revision.
	Through, Rev, Compacted int64
}

// Events reads back the events of the revisions from from on, in order:
// whole revisions, at least one unless from is past the current revision,
// then more until maxEvents events or maxBytes of keys and values are
// reached. With withPrev each event carries the key's previous version,
// except when the revision before the event's is compacted (etcd's read of
// it then fails). A from below the compacted revision fails with
// rpctypes.ErrGRPCCompacted, and the EventRange then carries Compacted.
//
// At the compacted revision C itself only what compaction keeps is an
// event, as in etcd: a put that is its key's newest version at or below C.
// A delete at C, and a put that the same txn then deleted, are not events
// (compaction removes them, though the revision index keeps C's entries so
// that a watch can start there).
func (a *Applier) Events(from int64, maxEvents, maxBytes int, withPrev bool) (EventRange, error) {
	t, snap, err := a.readView()
	if err != nil {
		return EventRange{}, err
	}
	defer snap.Close()
	er := EventRange{Through: from - 1, Rev: t.beginRev, Compacted: t.compacted}
	if from < t.compacted {
		return er, rpctypes.ErrGRPCCompacted
	}
	if from > t.beginRev {
		er.Through = t.beginRev
		return er, nil
	}
	ri, err := snap.NewIter(revisionKey(nil, from, 0), revisionEnd)
	if err != nil {
		return EventRange{}, err
	}
	defer ri.Close()
	hi, err := snap.NewIter(prefixHistory, historyEnd)
	if err != nil {
		return EventRange{}, err
	}
	defer hi.Close()
	var (
		hk   []byte
		size int
		// atCompacted indexes the puts at the compacted revision by key,
		// to drop one its txn deleted again (its slot becomes nil).
		atCompacted map[string]int
	)
	done := func() EventRange {
		if atCompacted != nil {
			er.Events = slices.DeleteFunc(er.Events, func(ev *mvccpb.Event) bool { return ev == nil })
		}
		return er
	}
	for ok := ri.First(); ok; ok = ri.Next() {
		main, sub, err := splitRevisionKey(ri.Key())
		if err != nil {
			return EventRange{}, err
		}
		if main > t.beginRev {
			break
		}
		if main != er.Through {
			// A new revision: stop before it if the previous ones fill
			// the budget.
			if len(er.Events) > 0 && (len(er.Events) >= maxEvents || size >= maxBytes) {
				return done(), nil
			}
		}
		er.Through = main
		v := ri.Value()
		if len(v) == 0 {
			return EventRange{}, iterCorrupt(ri, errCorruptValue)
		}
		key := v[1:]
		compacted := main <= t.compacted
		ev := &mvccpb.Event{}
		switch v[0] {
		case kindPut:
			ev.Type = mvccpb.PUT
		case kindTombstone:
			if compacted {
				if i, ok := atCompacted[string(key)]; ok {
					er.Events[i] = nil
				}
				continue
			}
			ev.Type = mvccpb.DELETE
			ev.Kv = &mvccpb.KeyValue{Key: append([]byte(nil), key...), ModRevision: main}
		default:
			return EventRange{}, iterCorrupt(ri, errCorruptValue)
		}
		if ev.Type == mvccpb.PUT || withPrev {
			hk = historyKey(hk[:0], key, main, sub)
			found, err := eventVersions(hi, hk, key, main, ev, withPrev && main-1 >= t.compacted)
			if err != nil {
				return EventRange{}, fmt.Errorf("applier: events at revision %d: %w", main, err)
			}
			if !found {
				if !compacted {
					return EventRange{}, fmt.Errorf("applier: events at revision %d: %w", main, errMissingVersion)
				}
				continue // removed by compaction
			}
		}
		if compacted {
			if atCompacted == nil {
				atCompacted = map[string]int{}
			}
			atCompacted[string(key)] = len(er.Events)
		}
		size += len(ev.Kv.Key) + len(ev.Kv.Value)
		er.Events = append(er.Events, ev)
	}
	if err := ri.Error(); err != nil {
		return EventRange{}, err
	}
	er.Through = t.beginRev
	return done(), nil
}

// errMissingVersion reports a revision-index entry without its history
// version.
var errMissingVersion = errors.New("revision index names a version history lacks")

// eventVersions fills ev from history: the put's KeyValue (at hk) and,
// with withPrev, the key's version as of the revision before ev's (the
// first older history entry of the key below ev's main revision, when it
// is a put), except for a creation, as etcd does. It reports false when
// history has no version at hk: for a put, compaction removed it.
func eventVersions(hi Iterator, hk, key []byte, main int64, ev *mvccpb.Event, withPrev bool) (bool, error) {
	if !hi.SeekGE(hk) || !bytes.Equal(hi.Key(), hk) {
		if err := hi.Error(); err != nil {
			return false, err
		}
		// A tombstone needs nothing from history (compaction may have
		// removed it, and then nothing older is left either).
		return ev.Type == mvccpb.DELETE, nil
	}
	if ev.Type == mvccpb.PUT {
		kv, err := historyKV(hi.Value(), key)
		if err != nil {
			return false, err
		}
		ev.Kv = kv
		if kv.Version == 1 {
			return true, nil
		}
	}
	if !withPrev {
		return true, nil
	}
	prefix := hk[:len(hk)-revLen]
	for hi.Next() {
		k := hi.Key()
		if !bytes.HasPrefix(k, prefix) || len(k) != len(hk) {
			break
		}
		if _, m, _, err := splitHistoryKey(k); err != nil {
			return false, err
		} else if m == main {
			continue // an earlier write of the same txn
		}
		v := hi.Value()
		if len(v) == 0 || v[0] != kindPut {
			return true, nil
		}
		kv, err := historyKV(v, key)
		if err != nil {
			return false, err
		}
		ev.PrevKv = kv
		return true, nil
	}
	return true, hi.Error()
}

// historyKV decodes a history put value of key.
func historyKV(v, key []byte) (*mvccpb.KeyValue, error) {
	if len(v) == 0 || v[0] != kindPut {
		return nil, errCorruptValue
	}
	m, value, err := decodeKV(v[1:])
	if err != nil {
		return nil, err
	}
	return newKeyValue(key, m, value), nil
}
