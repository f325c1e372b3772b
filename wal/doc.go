// Package wal is the durable raft log: raft entries, HardState and snapshot
// markers in segmented files of CRC-framed records.
//
// See the package documentation in wal.go for the file format.
package wal
