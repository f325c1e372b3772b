// Package plantedbug holds the bugs the robustness suite plants on purpose
// to show that its checkers catch them (issue 7, "checker power"). A bug
// exists only in a binary built with -tags strata_planted_bugs, and there
// only when the environment variable STRATA_PLANTED_BUG names it; in every
// other build On is the constant false and the compiler drops the bug's
// code.
package plantedbug

// The bugs.
const (
	// StaleReaderRead: a reader answers linearizable reads from its own
	// state, without a ReadIndex round.
	StaleReaderRead = "stale-reader-read"
	// ApplyTwice: every 50th raft entry's write requests are applied
	// twice (on every member alike, so HashKV still agrees).
	ApplyTwice = "apply-twice"
	// DropWatchEvent: the events of every 100th revision are not sent
	// to the watchers that are up to date.
	DropWatchEvent = "drop-watch-event"
	// AckBeforeCommit: the leader applies the entries it appends, and
	// answers their requests, before a quorum has them (before its own
	// fsync, too).
	AckBeforeCommit = "ack-before-commit"
)
