// Package watch is the watch hub: it serves etcd's Watch API from the
// events the state machine commits, on every member.
//
// # Sources of events
//
// The applier hands every committed batch to Hub.Commit (its OnCommit
// hook) in revision order, under its write lock and before the batch's
// index is published, so the hub's revision is never behind what a read
// that waited for that index saw. Events of the past are read back from
// storage (applier.Applier.Events, from the revision index and history),
// and the most recent ones are also kept in a bounded in-memory ring.
//
// # Synced and catching-up watchers
//
// A synced watcher is in the hub's index (by key, and by range with an
// interval tree) and takes events straight from Commit into its own queue,
// whole revisions at a time. A watcher that starts in the past, or whose
// queue would overflow because its client reads slowly, is unsynced: its
// stream catches it up from the ring or, further back, from storage, one
// bounded batch at a time, and puts it back in the index once a batch
// reaches the hub's revision (under the hub's lock, so no revision falls
// between). Apply never waits for a watcher and a watcher never waits for
// another; the memory a watcher holds is bounded by its queue (MaxPending
// events and MaxPendingBytes) and one batch. A watcher whose next revision
// has been compacted away is canceled with the compacted revision.
//
// Every watcher keeps next, the revision below which it has everything: a
// synced watcher takes only events at or above it. A catch-up read that saw
// newer state than the hub was fed keeps only the revisions the hub has
// (Commit brings the rest), so that no response runs ahead of the hub's
// revision, which a later progress notification carries.
//
// # Streams
//
// A Stream multiplexes the watchers of one gRPC stream: Handle takes the
// client's create, cancel and progress requests; Next, on the stream's
// sending goroutine, returns what to send, in an order that keeps etcd's
// guarantees (see Stream). Progress follows etcd v3.7 exactly: a progress
// request is answered with watch_id -1 at the hub's revision only when
// every watcher of the stream is synced, and otherwise not at all; the
// periodic notification (--watch-progress-notify-interval, plus up to a
// tenth of jitter per stream) goes to synced progress_notify watchers that
// sent no event since the last tick.
package watch
