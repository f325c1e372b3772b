// Package robustness is strata's fault-injection suite (issue 7): it
// starts real strata members on loopback behind fault-injecting proxies
// (faultproxy) on every peer and client link, drives them with concurrent
// clients that never retry a write, injects a fault chosen by a seed, and
// checks the recorded history for linearizability against etcd's KV
// semantics (model) and the members' HashKV for equality once healed.
//
// `go test ./tests/robustness/` runs a short gate (a few seeds). A failing
// run keeps its members' data directories and logs and porcupine's HTML
// view of the history, and names the seed:
//
//	STRATA_ROBUSTNESS_SEEDS=100 go test -run TestRobustness -timeout=2h ./tests/robustness/
//	STRATA_ROBUSTNESS_SEED=42 go test -run TestRobustness ./tests/robustness/   # one seed again
package robustness
