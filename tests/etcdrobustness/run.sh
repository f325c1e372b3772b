#!/usr/bin/env bash
# Runs etcd's own robustness suite (go.etcd.io/etcd/tests/v3/robustness,
# v3.7.3, from the Go module proxy) against strata: a scratch copy of etcd's
# tests module, its --bin-dir holding strata (built with -tags
# strata_failpoints, so the gofail endpoint the suite looks for answers) as
# `etcd` and the real etcdctl v3.7.3. docs/reliability.md reports the
# results and the patch the suite needs (it reads each member's WAL from the
# data dir: strata's is read through `strata dump-logs`). The three-member
# scenarios need peer TLS (issue 9).
#
#   tests/etcdrobustness/run.sh                         # the single-member exploratory scenarios
#   RUN='TestRobustnessRegression/Issue14370' tests/etcdrobustness/run.sh
#   tests/etcdrobustness/run.sh -count=3                # extra flags go to go test
#   ORACLE=etcd tests/etcdrobustness/run.sh             # the same against etcd v3.7.3
#   FAILPOINT=raftAfterSave=sleep tests/etcdrobustness/run.sh   # pin the failpoint
#   STRATA_REPORT=DIR tests/etcdrobustness/run.sh       # recheck a saved report, reduced
#                                                       # (testdata/strata_revalidate_test.go)
#
# STRATA_ETCD_SUITE_DIR keeps the scratch module (default: a new temp dir);
# RESULTS_DIR is where the suite writes the reports of failed scenarios.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
here="$root/tests/etcdrobustness"
version=v3.7.3
work=${STRATA_ETCD_SUITE_DIR:-$(mktemp -d /tmp/strata-etcd-robustness-XXXXXX)}
export GOTOOLCHAIN=local GOWORK=off GOFLAGS=-mod=mod

src=$(go mod download -json "go.etcd.io/etcd/tests/v3@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
mkdir -p "$work"
rm -rf "$work/tests"
cp -r "$src" "$work/tests"
chmod -R u+w "$work/tests"
cd "$work/tests"
# The module's replace directives point into etcd's repository; the
# published modules of the same version stand in for them.
for m in api/v3 cache/v3 client/pkg/v3 client/v3 etcdctl/v3 etcdutl/v3 pkg/v3 server/v3; do
	go mod edit -dropreplace="go.etcd.io/etcd/$m"
done
# go.etcd.io/etcd/cache/v3 was never published at this version; only an
# integration test (not the robustness suite) imports it.
go mod edit -droprequire=go.etcd.io/etcd/cache/v3 -toolchain=none
rm integration/cache_test.go
cp "$here/testdata/strata_wal.go" robustness/report/strata_wal.go
cp "$here/testdata/strata_log.go" robustness/model/strata_log.go
cp "$here/testdata/strata_revalidate_test.go" robustness/validate/strata_revalidate_test.go
patch -s -p1 <"$here/testdata/report-wal.patch"
patch -s -p1 <"$here/testdata/pick-failpoint.patch"
go mod tidy

mkdir -p "$work/bin"
go build -C "$root/tests/tools" -o "$work/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3
if [ "${ORACLE:-}" = etcd ]; then
	# etcd itself, its failpoints enabled the way etcd's Makefile does
	# (gofail enable rewrites the `// gofail:` comments into code): the
	# same scenarios on the same machine, for comparison.
	srv=$(go mod download -json "go.etcd.io/etcd/server/v3@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	rm -rf "$work/server"
	cp -r "$srv" "$work/server"
	chmod -R u+w "$work/server"
	for m in api/v3 client/pkg/v3 client/v3 pkg/v3; do
		go mod edit -C "$work/server" -dropreplace="go.etcd.io/etcd/$m"
	done
	(cd "$work/server" &&
		go run go.etcd.io/gofail@v0.2.0 enable $(grep -rl '// gofail:' --include='*.go' . | xargs -n1 dirname | sort -u) &&
		go get go.etcd.io/gofail@v0.2.0 && go mod tidy && go build -o "$work/bin/etcd" .)
	unset STRATA_DUMP_LOGS
else
	go build -C "$root" -tags strata_failpoints -o "$work/bin/etcd" ./cmd/strata
	export STRATA_DUMP_LOGS="$work/bin/etcd"
fi
export RESULTS_DIR=${RESULTS_DIR:-$work/results}
echo "scratch module: $work/tests; binaries: $work/bin; reports: $RESULTS_DIR" >&2
if [ -n "${STRATA_REPORT:-}" ]; then
	export STRATA_REPORT
	exec go test ./robustness/validate -run TestStrataRevalidate -v -timeout=20m "$@"
fi
go test ./robustness -run "${RUN:-TestRobustnessExploratory/.*/ClusterOfSize1}" -v -timeout=90m "$@" \
	-args --bin-dir="$work/bin"
