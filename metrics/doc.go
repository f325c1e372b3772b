// Package metrics holds Prometheus exposition with etcd's metric names,
// OpenTelemetry tracing and the HTTP health endpoints. Core packages take an
// injected meter or tracer; nothing here registers globally.
package metrics
