// Package readernode holds what makes a reader member: a raft learner that
// applies the replication stream into bbolt and serves reads, linearizable
// ones included, watches and writes (forwarded to the leader).
//
// A reader runs the member composition writers run (writernode, with
// Config.Reader and its engine opener), since a raft learner already
// forwards proposals and ReadIndex to the leader. What is its own is here:
// BoltEngine (applier.Engine on bbolt, bolt.go), one bucket holding the
// applier's key space byte for byte as Pebble holds it on writers, so
// HashKV, Range and the watch events read back agree across the two engines
// (tested). Commits skip fsync as on writers; OpenBoltRepairing moves a
// file that fails to open or fails the integrity walk aside, and the member
// then seeds a new one from the leader (writernode/seed.go), as it does
// when a periodic HashKV comparison with the leader fails
// (writernode/hashcheck.go).
//
// # A reader without a raft WAL: what has to give
//
// A reader's raft log need not survive it for the cluster's sake (learners
// do not vote, and every entry it holds is on a quorum of writers). But
// raft's leader never moves a follower's next index below its match index
// + 1 (tracker.Progress.MaybeDecrTo treats a rejection at or below match as
// stale): a learner that acknowledged entries and then lost them in a
// restart is sent appends from past its log forever. A learner acknowledges
// entries as soon as it has stored them, and under load it always holds
// some it has not applied (the commit index reaches it one round later), so
// after a kill it has nearly always lost acknowledged entries.
//
// Holding acknowledgements until entries are applied does not work either:
// heartbeats carry min(commit, match), so a learner whose match does not
// move never learns the commit index once appends stop.
//
// So a reader without a WAL needs a repair path at every restart: pull the
// missing committed entries from a writer, or a whole snapshot. The
// snapshot form exists (writernode/seed.go: a reader whose state machine is
// empty, lost or corrupt seeds it from the leader, which first applies
// what the reader's old incarnation acknowledged); re-seeding on every
// restart would cost far more than the WAL saves. Readers therefore keep
// the WAL for now; dropping it waits for an entry-level repair.
package readernode
