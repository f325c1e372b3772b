// Package model is etcd's KV semantics as a porcupine model, the oracle of
// the robustness suite's linearizability check: one store with a global
// revision that every mutating operation (a Put, a DeleteRange that
// deletes, a Txn whose branch writes) advances by exactly one, and reads
// that see the latest revision.
//
// An operation whose outcome the client cannot know (a timeout, a lost
// connection, a leader change after the proposal) is recorded as Unknown:
// the model lets it have happened, with any result, or not, and the
// checker finds out which history explains the rest. Such an operation's
// return time is the end of the history, since it may take effect at any
// time after its call.
package model
