#!/usr/bin/env bash
# cluster-compare.sh: strata and etcd side by side, three members each on
# loopback, driven by etcd's own benchmark tool; prints the tool's summary
# and each member's CPU (user+system from /proc) and voluntary context
# switches for the run. The numbers in docs/performance.md come from it.
#
# usage: cluster-compare.sh <label> <benchmark args...>
#   e.g. cluster-compare.sh s put --key-size=8 --sequential-keys --total=2000 --val-size=256
#
# Environment:
#   SERVER       the server binary to run (strata or etcd; same flags)
#   BENCHMARK    etcd's tools/benchmark binary
#   ETCDCTL      etcdctl (to find the leader)
#   CONNS, CLIENTS  --conns / --clients for the tool (default 1 / 1)
#   LEADER_ONLY  1: point the tool at the leader only (as the issue's etcd
#                figures are); otherwise at all three members
#   PROFILE_SECS >0: save a CPU profile of each member (--enable-pprof)
#                to $WORK/<label>-m<i>.prof, starting 1 s into the run
#   WORK         scratch directory (default /tmp/strata-compare)
#   BASE_PORT    client ports BASE_PORT+10i, peer ports +5 (default 23790)
#
# Building the tools: etcdctl and etcd come from tests/tools
# (go build -modfile=tests/tools/go.mod ...); the benchmark tool is not in a
# tagged module of its own: build it in a scratch module that requires
# go.etcd.io/etcd/v3@v3.7.1 and imports go.etcd.io/etcd/v3/tools/benchmark.
set -u
label=$1
shift
: "${SERVER:?set SERVER}" "${BENCHMARK:?set BENCHMARK}" "${ETCDCTL:?set ETCDCTL}"
work=${WORK:-/tmp/strata-compare}
base=${BASE_PORT:-23790}
dir=$work/$label
rm -rf "$dir"
mkdir -p "$dir"

ic=""
for i in 0 1 2; do ic="$ic,m$i=http://127.0.0.1:$((base + 5 + i * 10))"; done
ic=${ic#,}
pids=()
for i in 0 1 2; do
	c=$((base + i * 10))
	p=$((base + 5 + i * 10))
	"$SERVER" --name=m$i --data-dir="$dir/m$i" \
		--listen-client-urls=http://127.0.0.1:$c --advertise-client-urls=http://127.0.0.1:$c \
		--listen-peer-urls=http://127.0.0.1:$p --initial-advertise-peer-urls=http://127.0.0.1:$p \
		--initial-cluster="$ic" --initial-cluster-state=new --initial-cluster-token="compare-$label" \
		--enable-pprof >"$dir/m$i.log" 2>&1 &
	pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
for i in 0 1 2; do
	for _ in $(seq 200); do
		grep -q "ready to serve client requests" "$dir/m$i.log" && break
		sleep 0.1
	done
done

eps="127.0.0.1:$base,127.0.0.1:$((base + 10)),127.0.0.1:$((base + 20))"
if [ "${LEADER_ONLY:-0}" = 1 ]; then
	lead=""
	for _ in $(seq 50); do
		lead=$("$ETCDCTL" --endpoints="$eps" endpoint status -w fields 2>/dev/null |
			awk '/"Endpoint"/{ep=$3} /"MemberID"/{id=$3} /"Leader"/{if ($3==id) print ep}' | tr -d '"')
		[ -n "$lead" ] && break
		sleep 0.2
	done
	[ -z "$lead" ] && { echo "no leader" >&2; exit 1; }
	eps=$lead
fi
echo "endpoints $eps"

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
ctxsw() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/{s+=$2} END{print s}'; }
declare -a cpu0 cs0
for i in 0 1 2; do
	cpu0[i]=$(cpu "${pids[i]}")
	cs0[i]=$(ctxsw "${pids[i]}")
done
prof=""
if [ "${PROFILE_SECS:-0}" -gt 0 ]; then
	(
		sleep 1
		for i in 0 1 2; do
			curl -s -o "$work/$label-m$i.prof" \
				"http://127.0.0.1:$((base + i * 10))/debug/pprof/profile?seconds=$PROFILE_SECS" &
		done
		wait
	) &
	prof=$!
fi
"$BENCHMARK" --endpoints="$eps" --conns="${CONNS:-1}" --clients="${CLIENTS:-1}" "$@" 2>&1 |
	grep -E "Total:|Slowest:|Average:|Requests/sec:|99% in" | tr -s ' \t\n' ' '
echo
hz=$(getconf CLK_TCK)
total=0
for i in 0 1 2; do
	d=$(($(cpu "${pids[i]}") - cpu0[i]))
	total=$((total + d))
	echo -n "m$i cpu $((d * 1000 / hz))ms ctxsw $(($(ctxsw "${pids[i]}") - cs0[i])); "
done
echo "total server cpu $((total * 1000 / hz))ms"
[ -n "$prof" ] && wait "$prof"
exit 0
