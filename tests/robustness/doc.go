// Package robustness is strata's fault-injection suite (issue 7): it
// starts real strata members (built with -tags strata_failpoints) on
// loopback behind fault-injecting proxies (faultproxy) on every peer and
// client link, drives them with concurrent clients that never retry a
// write (an etcd-style mix with leases, or a Kubernetes-style one),
// injects a fault chosen by a seed (kills and pauses, partitions and slow
// links, crashes at storage failpoints that lose unsynced data, snapshot
// lag, member replacement), and checks the recorded history for
// linearizability against etcd's KV semantics (model), the watch streams
// of every member against the applied writes, and HashKV once healed.
//
// `go test ./tests/robustness/` runs a short gate (one seed per fault). A
// failing run keeps its members' data directories, logs and crash
// ledgers and porcupine's HTML view of the history, and names the seed;
// docs/reliability.md has the long mode and its latest results:
//
//	STRATA_ROBUSTNESS_PER=20 STRATA_ROBUSTNESS_PARALLEL=1 go test -run 'TestRobustness$' -parallel 2 -timeout=170m ./tests/robustness/
//	STRATA_ROBUSTNESS_SEED=42 go test -run 'TestRobustness$' ./tests/robustness/   # one seed again
package robustness
