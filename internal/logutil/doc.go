// Package logutil builds strata's zap loggers in etcd's log format, so that
// tools and people reading etcd logs read strata's the same way.
//
// A JSON line has etcd's keys: "level" (lower case), "ts" (UTC,
// 2006-01-02T15:04:05.000000Z0700), "caller" (short: pkg/file.go:line),
// "msg", "logger" for named loggers, "stacktrace" from error level up, and
// "error" for zap.Error fields. Sampling is etcd's: per message and second,
// the first 100 entries, then every 100th. Outputs are etcd's --log-outputs
// values: "default" and "stderr" (standard error), "stdout", or file paths.
//
// strata has no journald writer: "systemd/journal" logs to standard error.
// There is no log rotation (--enable-log-rotation is ignored).
package logutil
