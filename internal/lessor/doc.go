// Package lessor keeps lease expiry on the leader, as etcd's primary lessor
// does. It is bookkeeping only: the lease table itself is replicated state
// (applier/lease.go), and the lessor acts on the world solely through what
// its owner proposes from its answers — a LeaseRevoke for each expired
// lease, LeaseCheckpoints of remaining TTLs.
//
// Every member keeps a Lessor in step with the applied table (Load,
// Granted, Revoked, Checkpointed); only the leader's is primary (Promote,
// Demote). A primary lessor gives each lease an expiry: on promotion the
// remaining TTL (the checkpointed one if any, else the full TTL) plus an
// extension of one election timeout, so that leases do not expire merely
// because leadership moved; on grant or renewal the full TTL. A lessor that
// is not primary expires nothing and refuses renewals (ErrNotPrimary): the
// caller forwards keep-alives to the leader.
//
// Time comes from an injected clock; nothing here runs a goroutine.
package lessor
