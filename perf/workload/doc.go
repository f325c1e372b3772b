// Package workload generates the data of the workloads strata is measured
// with: for now Kubernetes-like objects (pods as kube-apiserver stores them
// in JSON), random in what differs between real objects (names, UIDs, IPs,
// hashes, timestamps) and alike in structure, so that compression figures
// are neither flattered by repetition nor spoiled by noise.
package workload
