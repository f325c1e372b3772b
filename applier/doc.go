// Package applier is the replicated state machine: it decodes committed raft
// entries and applies them to an MVCC key-value store with etcd v3.7's
// semantics, through the Engine interface.
//
// See mvcc.go for the key layout and apply.go for the apply contract.
package applier
