// Package loopback finds free ports on 127.0.0.1 for the processes that
// strata's commands (perf sweep --launch) and tests start.
package loopback
