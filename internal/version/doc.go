// Package version holds the versions strata reports. strata answers as the
// etcd server version whose API and semantics it implements — in
// Status.version, /version, `--version` and etcd_server_version — because
// clients and Kubernetes gate features on that number; its own version is
// reported beside it.
package version
