// Package internal groups plumbing shared by both member kinds: the etcd API
// service handlers (internal/api), configuration (internal/config), logging
// (internal/logutil) and test utilities.
package internal
