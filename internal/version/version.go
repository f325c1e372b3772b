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
