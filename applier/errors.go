package applier

import "errors"

var (
	// ErrClosed is returned by the Applier's methods after Close.
	ErrClosed = errors.New("applier: closed")

	// ErrIndexGap is returned by Apply when the first entry it has not yet
	// applied does not follow the applied index: entries were lost between
	// raft and the state machine. The member must stop.
	ErrIndexGap = errors.New("applier: entries do not follow the applied index")

	// ErrUnsupportedRequest is the Result.Err of a request of a kind the
	// applier does not implement (yet). It is deterministic: every member
	// answers it the same way and the state does not change.
	ErrUnsupportedRequest = errors.New("applier: unsupported request")

	// ErrNotReadOnly is returned by ReadTxn for a txn that may write.
	ErrNotReadOnly = errors.New("applier: txn is not read-only")

	// errCorruptValue is returned when a stored value cannot be decoded:
	// the engine's contents are corrupt.
	errCorruptValue = errors.New("applier: corrupt stored value")
)
