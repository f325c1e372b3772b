// Package snapshot creates raft snapshots from an engine, streams them
// compressed, installs them, and implements backups and restore. (Not yet
// built.)
package snapshot
