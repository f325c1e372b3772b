// Package version holds the versions strata reports. strata answers as the
// etcd server version whose API and semantics it implements — in
// Status.version, /version, `--version` and etcd_server_version — because
// clients and Kubernetes gate features on that number; its own version is
// reported beside it.
package version

const (
	// EtcdServer is the etcd server version strata implements.
	EtcdServer = "3.7.3"
	// EtcdCluster is the cluster version /version reports.
	EtcdCluster = "3.7.0"
	// Storage is the storage version Status and /version report.
	Storage = "3.7.0"
	// Strata is strata's own version.
	Strata = "0.1.0"
)
