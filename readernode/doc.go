// Package readernode composes a reader member: a raft learner that applies
// the replication stream into bbolt and serves reads and watches.
//
// What exists so far is its state machine's engine, BoltEngine
// (applier.Engine on bbolt, bolt.go): one bucket holding the applier's key
// space byte for byte as Pebble holds it on writers, so HashKV, Range and
// the watch events read back agree across the two engines (tested). Commits
// skip fsync as on writers; a file that fails bbolt's check after a power
// loss is to be replaced by a snapshot from a writer.
package readernode
