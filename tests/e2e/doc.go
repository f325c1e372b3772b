// Package e2e is strata's end-to-end compatibility suite and the small
// framework it runs on: build the binaries (etcd and etcdctl v3.7.3 from the
// module proxy, strata from this repository), start member processes on
// 127.0.0.1, drive them with etcdctl and client/v3, and compare what a strata
// member answers with what a real etcd answers. See tests/doc.go for the
// build recipe and the environment variables.
package e2e
