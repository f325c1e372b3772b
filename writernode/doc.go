// Package writernode composes a voting member: the Pebble engine, the WAL,
// the proposer, the raft pipeline, the applier and the etcd API services.
// It holds wiring only; every stage is constructible and testable alone.
package writernode
