// Package perf is the workload harness as a library: it drives etcd-API
// endpoints (strata's or etcd's alike: it is a client of the API and knows
// nothing of server internals) with a workload and measures what happens.
//
// A run (Run) opens Config.Conns gRPC connections over the chosen
// endpoints, starts Config.Clients workers spread over them, and has each
// perform operations of the workload (workloads.go) until Config.Total
// operations or Config.Duration. Without Config.Rate the workers run
// closed-loop, each issuing its next operation when the last returned;
// with it they follow a schedule (the rate split evenly between them) and
// every latency is measured from the operation's scheduled start, not from
// when it was actually sent, so a stalled server shows up in the
// percentiles instead of silently lowering the offered load (coordinated
// omission, as wrk2 and HdrHistogram's corrected recording treat it).
//
// Measurements (Result): a latency histogram per run and per RPC kind
// (HdrHistogram, 1 µs to 1 min, 3 significant digits), throughput per
// second, errors by gRPC code, the harness's own CPU per operation
// (getrusage), and for endpoints served on this machine each server
// process's CPU seconds and peak RSS from /proc, so a result reports CPU per
// 1,000 operations — the figure to compare on a shared machine.
//
// Results are JSON (Result, schema in docs/perf.md); report.go renders them
// as terminal tables and a self-contained HTML report.
package perf
