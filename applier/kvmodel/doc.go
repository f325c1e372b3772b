// Package kvmodel is a small reference model of etcd v3.7's KV semantics
// (Range, Put, DeleteRange, Txn, Compact), written to be obviously correct
// rather than fast: every version of every key is kept in a map, and every
// read walks them. It is the oracle of the applier's property tests and of
// the end-to-end test that runs the same request sequences against a real
// etcd.
//
// The model answers as etcd's KV service would, validation included, with
// two differences of form: response headers carry only the revision (the
// caller compares cluster, member and term separately, if at all), and
// errors are the rpctypes.ErrGRPC* values etcd's gRPC layer sends.
//
// The model knows nothing of leases beyond LeaseExists, and nothing of
// auth, quotas or watches.
package kvmodel
