// Package tests holds strata's cross-process test suites. It has no code of
// its own; the suites live in subdirectories.
//
//   - tests/e2e: end-to-end compatibility tests. Each test starts real server
//     processes on 127.0.0.1 and drives them with real etcd clients (etcdctl,
//     go.etcd.io/etcd/client/v3, raw etcdserverpb gRPC). The oracle is a real
//     etcd v3.7.3: every compatibility test runs the same script against a
//     fresh etcd and a fresh strata and requires the same answers.
//   - tests/robustness: the fault-injection suite (issue 7): real members
//     behind fault proxies (faultproxy), seeded faults (failpoints at
//     storage boundaries among them, internal/failpoint), clients that
//     never retry a write, porcupine's linearizability check against
//     etcd's KV model (model), watch checks, and planted bugs
//     (internal/plantedbug) it must catch; docs/reliability.md.
//   - tests/tools: a nested Go module (its own go.mod, so `go test ./...` at
//     the repository root neither builds nor tests it) that pins the etcd
//     binaries used as clients and as the oracle.
//
// # Building the oracle binaries
//
// tests/tools/go.mod uses Go 1.24+ `tool` directives:
//
//	tool (
//		go.etcd.io/etcd/etcdctl/v3
//		go.etcd.io/etcd/server/v3
//	)
//
// with both modules required at v3.7.3 (go.sum beside it). The e2e TestMain
// builds, from the Go module proxy and into a per-run temp directory:
//
//	GOWORK=off go build -C <root>/tests/tools -o <bindir>/etcdctl go.etcd.io/etcd/etcdctl/v3
//	GOWORK=off go build -C <root>/tests/tools -o <bindir>/etcd    go.etcd.io/etcd/server/v3
//	go build -C <root> -o <bindir>/strata ./cmd/strata
//
// The server module's main package is its module root (server/main.go calls
// etcdmain.Main), so `go.etcd.io/etcd/server/v3` names the etcd binary. The
// replace directives in etcd's own go.mod files do not apply to a dependent
// module; building through a module of our own that requires the published
// v3.7.3 modules resolves every dependency by minimal version selection and
// needs no replace. `etcd --version` then prints
//
//	etcd Version: 3.7.3
//	Git SHA: Not provided (use ./build instead of go build)
//
// (the SHA is stamped only by etcd's ./build script). TestMain checks the
// first line. A cold build takes about 70 s of CPU on two cores; after that the
// Go build cache makes each run's rebuild a matter of seconds (linking).
//
// To update the pinned version: in tests/tools run
// `go get -tool go.etcd.io/etcd/etcdctl/v3@vX.Y.Z go.etcd.io/etcd/server/v3@vX.Y.Z`
// and change EtcdVersion in tests/e2e/build.go.
//
// # The e2e tests
//
// Each compatibility test starts a fresh single-member etcd and a fresh
// single-member strata with the same flags and compares them:
//
//   - TestEtcdctlSessionMatchesEtcd: a scripted etcdctl session (put, get,
//     del, txn from stdin, compaction, limit errors, endpoint
//     status/health/hashkv, member list, alarm list, version, GET /version
//     and /health); stdout, stderr and exit code must be byte-identical
//     after the normalisation listed in tests/e2e/compare.go.
//   - TestClientV3MatchesEtcd: the same idea through client/v3 (Get, Put,
//     Delete, Txn with nested txns and range compares, Compact, leases with
//     a client-chosen ID); responses proto.Equal with header IDs and
//     raft_term zeroed, errors equal by rpctypes identity and by the gRPC
//     code and message on the wire.
//   - TestRandomOpsMatchEtcd: random Range/Put/DeleteRange/Txn/Compact
//     sequences over raw etcdserverpb gRPC from applier/kvmodel's generator
//     and from a local one; every response must match.
//   - TestKill9KeepsAcknowledgedWrites (strata only): concurrent writers,
//     kill -9, restart with the same flags; no acknowledged put lost,
//     revisions never go backwards.
//   - TestStartup: --version, a bad flag, a data dir that is a file, zap JSON
//     logs, the readiness line, SIGTERM and restart.
//
// The random test never sends a txn that deletes with range_end "\x00" (all
// keys from key): etcd v3.7.3's duplicate-key check misses a put inside
// such a delete, and the resulting same-revision tombstone and put make etcd
// die with "range failed to find revision pair" on a Range at that
// revision once it is compacted (see avoidFromKeyDeletes).
//
// # Running
//
//	go test ./tests/e2e/ -run . -v
//
// Environment:
//
//   - STRATA_E2E_SUBJECT=etcd runs the "strata" side of every test against the
//     etcd binary instead (etcd-vs-etcd), which validates the harness itself.
//   - STRATA_E2E_LOGDIR=<dir> keeps every server's combined log there.
//   - STRATA_E2E_SEED=<n> fixes the seed of TestRandomOpsMatchEtcd.
//   - STRATA_E2E_TRANSCRIPT=<dir> saves etcd's (normalised) side of each
//     scripted or random test there, to read what a script exercises.
//
// The e2e tests are skipped only when the go command is not on PATH.
package tests
