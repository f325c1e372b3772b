package failpoint

// The failpoints, by the boundary they guard. Names are etcd's where etcd
// has a failpoint at the same boundary.
var (
	// RaftBeforeSave and RaftAfterSave surround the append of raft's
	// entries and hard state to the WAL, fsync included.
	RaftBeforeSave = New("raftBeforeSave")
	RaftAfterSave  = New("raftAfterSave")
	// BeforeCommit and AfterCommit surround the commit of applied
	// entries to the state machine's engine.
	BeforeCommit = New("beforeCommit")
	AfterCommit  = New("afterCommit")
	// RaftBeforeApplySnap and RaftAfterApplySnap surround the install of
	// a snapshot received from the leader.
	RaftBeforeApplySnap = New("raftBeforeApplySnap")
	RaftAfterApplySnap  = New("raftAfterApplySnap")
	// RaftBeforeSaveSnap and RaftAfterSaveSnap surround recording a
	// snapshot received from the leader in the WAL (as etcd's surround
	// saving one); RaftAfterWALRelease follows every release of the log
	// (every --snapshot-count entries, after the engine is durable).
	RaftBeforeSaveSnap  = New("raftBeforeSaveSnap")
	RaftAfterSaveSnap   = New("raftAfterSaveSnap")
	RaftAfterWALRelease = New("raftAfterWALRelease")
	// Physical compaction commits its work in batches: the first of a
	// run (ScheduledCompact), the ones between (Batch) and the last,
	// which records the run finished (SetFinishedCompact).
	CompactBeforeCommitScheduledCompact = New("compactBeforeCommitScheduledCompact")
	CompactAfterCommitScheduledCompact  = New("compactAfterCommitScheduledCompact")
	CompactBeforeCommitBatch            = New("compactBeforeCommitBatch")
	CompactAfterCommitBatch             = New("compactAfterCommitBatch")
	CompactBeforeSetFinishedCompact     = New("compactBeforeSetFinishedCompact")
	CompactAfterSetFinishedCompact      = New("compactAfterSetFinishedCompact")
	// BeforeSendWatchResponse precedes every response a watch stream
	// sends (a sleep here is a slow watcher).
	BeforeSendWatchResponse = New("beforeSendWatchResponse")
)
