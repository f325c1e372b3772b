// Package api implements etcd's v3 gRPC services on top of a member's
// stages. The handlers validate requests exactly as etcd's gRPC layer does,
// route reads to the local state machine (after a linearizable barrier
// unless the request is serializable) and writes to the proposer, and fill
// response headers. They hold no state of their own: a member kind (writer
// or reader) provides a Backend.
package api
