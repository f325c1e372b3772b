// Package failpoint holds strata's failpoints and its crash ledger, both of
// which exist only in a binary built with -tags strata_failpoints (the
// robustness suite builds one; so would an operator reproducing a report).
// In every other build a Point is an empty struct whose Hit the compiler
// drops, and the ledger functions do nothing.
//
// Failpoints are go.etcd.io/gofail's, named as etcd names the same
// boundaries, so etcd's own robustness suite drives them unchanged: the
// process serves gofail's HTTP endpoint on GOFAIL_HTTP (GET / lists them,
// PUT /name sets a term such as panic or sleep(100)), and GOFAIL_FAILPOINTS
// sets terms from the start.
//
// The crash ledger (STRATA_SYNC_LEDGER=path) records, before every fsync
// of the raft WAL and of Pebble's files, how much of the file the fsync
// makes durable, and every creation and rename: after a kill -9 the suite
// replays it and cuts every file back to what was durable, which the page
// cache otherwise keeps (tests/robustness, "power loss").
package failpoint
