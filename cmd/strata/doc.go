// Command strata runs a strata member. It takes etcd's server flags (and
// ETCD_* variables), so scripts and test frameworks written for an etcd
// binary drive it unchanged.
//
// Subcommands:
//
//	strata playground           a local cluster to try things on
//	strata perf ...             the performance harness (docs/perf.md)
//	strata dump-logs --data-dir a stopped member's WAL as JSON lines
package main
