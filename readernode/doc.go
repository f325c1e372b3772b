// Package readernode composes a learner member that applies the compressed
// replication stream into bbolt and serves reads and watches. (Not yet
// built: the seam exists so the applier's Engine contract is written for two
// engines from the start.)
package readernode
