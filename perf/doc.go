// Package perf is the workload harness as a library: workloads, load
// generation, latency histograms, reports and comparisons. It is a client of
// strata and knows nothing of server internals. (Not yet built.)
package perf
