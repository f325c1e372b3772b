package wal

import (
	"errors"
	"fmt"
)

// Errors returned by the WAL. Errors that concern one file wrap one of these
// and name the file and offset; test for them with errors.Is.
var (
	// ErrCorrupt is returned by Open when the WAL holds damage that cannot be
	// a torn write: a bad record followed by a record written after the bad
	// one was durable, a bad record anywhere in a segment that is not the
	// last, a damaged segment header, a missing segment, or a CRC-valid
	// record whose contents do not decode. Open never skips such damage; an
	// operator must restore the member (e.g. from a peer snapshot).
	ErrCorrupt = errors.New("wal: corrupt")

	// ErrClosed is returned when a method other than Close is called on a
	// closed WAL, and by Save, Append and WaitDurable calls that race with
	// Close.
	ErrClosed = errors.New("wal: closed")

	// ErrLocked is returned by Open when another WAL (in this process or
	// another) has the directory open.
	ErrLocked = errors.New("wal: directory locked by another process")

	// ErrReadAllDone is returned by ReadAll after its first call: the
	// recovered log is handed to the first caller and not kept.
	ErrReadAllDone = errors.New("wal: ReadAll already called")

	// ErrOutOfOrder is returned by Save and Append when the entries are not
	// consecutive, have index 0, or would leave a gap after the last index
	// in the log (raft only ever appends at or below lastIndex+1).
	ErrOutOfOrder = errors.New("wal: entries out of order")

	// ErrSnapshotBehind is returned by SaveSnapshot when the marker's index
	// is below that of the latest marker already recorded.
	ErrSnapshotBehind = errors.New("wal: snapshot marker behind the latest one")
)

// corruption describes damage found at an offset of a segment file, before
// Open knows which file it is reading.
type corruption struct {
	off int64
	msg string
}

func (c *corruption) Error() string { return fmt.Sprintf("offset %d: %s", c.off, c.msg) }

// corruptf returns an error that wraps ErrCorrupt and names path and off.
func corruptf(path string, off int64, format string, args ...any) error {
	return fmt.Errorf("%w: %s: offset %d: %s", ErrCorrupt, path, off, fmt.Sprintf(format, args...))
}
