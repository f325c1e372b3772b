package model

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Kind names a request.
type Kind int

const (
	// Get reads one key (linearizably).
	Get Kind = iota
	// Put writes one key.
	Put
	// Delete deletes one key.
	Delete
	// CAS is a Txn: if the key's mod_revision equals Expect (0: the key
	// does not exist), put Value, else nothing.
	CAS
)

func (k Kind) String() string {
	switch k {
	case Get:
		return "get"
	case Put:
		return "put"
	case Delete:
		return "delete"
	case CAS:
		return "cas"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Request is an operation's input.
type Request struct {
	Kind   Kind
	Key    string
	Value  string
	Expect int64 // CAS: the mod_revision compared
}

// Response is an operation's output. Unknown marks an operation whose
// outcome the client does not know; its other fields are then unset.
type Response struct {
	Unknown bool
	// Revision is the response header's revision.
	Revision int64
	// Get: Found, Value and ModRevision of the key. Delete: Deleted
	// counts the keys deleted. CAS: Succeeded.
	Found       bool
	Value       string
	ModRevision int64
	Deleted     int64
	Succeeded   bool
}

// KeyValue is one key's state.
type KeyValue struct {
	Value                            string
	CreateRevision, ModRevision, Ver int64
}

// State is the store: the revision and the live keys. It is treated as
// immutable; a step returns a new one.
type State struct {
	Revision int64
	KVs      map[string]KeyValue
}

// Initial is an empty etcd: revision 1.
func Initial() State { return State{Revision: 1, KVs: map[string]KeyValue{}} }

// apply is req's effect on s, and the response it gives.
func (s State) apply(req Request) (State, Response) {
	switch req.Kind {
	case Get:
		kv, ok := s.KVs[req.Key]
		return s, Response{Revision: s.Revision, Found: ok, Value: kv.Value, ModRevision: kv.ModRevision}
	case Put:
		return s.put(req.Key, req.Value), Response{Revision: s.Revision + 1}
	case Delete:
		if _, ok := s.KVs[req.Key]; !ok {
			return s, Response{Revision: s.Revision} // deleting nothing does not advance the revision
		}
		n := State{Revision: s.Revision + 1, KVs: maps.Clone(s.KVs)}
		delete(n.KVs, req.Key)
		return n, Response{Revision: n.Revision, Deleted: 1}
	case CAS:
		if s.KVs[req.Key].ModRevision != req.Expect {
			return s, Response{Revision: s.Revision}
		}
		return s.put(req.Key, req.Value), Response{Revision: s.Revision + 1, Succeeded: true}
	}
	panic(fmt.Sprintf("model: unknown request kind %v", req.Kind))
}

func (s State) put(key, value string) State {
	n := State{Revision: s.Revision + 1, KVs: maps.Clone(s.KVs)}
	kv, ok := n.KVs[key]
	if !ok {
		kv = KeyValue{CreateRevision: n.Revision}
	}
	kv.Value, kv.ModRevision, kv.Ver = value, n.Revision, kv.Ver+1
	n.KVs[key] = kv
	return n
}

// step is the model's transition: the states s may be in after req
// answered resp.
func step(s State, req Request, resp Response) []State {
	next, want := s.apply(req)
	if resp.Unknown {
		if next.Revision == s.Revision {
			return []State{s} // it changes nothing either way
		}
		return []State{s, next}
	}
	if resp != want {
		return nil
	}
	return []State{next}
}

func equal(a, b State) bool {
	return a.Revision == b.Revision && maps.Equal(a.KVs, b.KVs)
}

func describe(s State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d", s.Revision)
	for _, k := range slices.Sorted(maps.Keys(s.KVs)) {
		kv := s.KVs[k]
		fmt.Fprintf(&b, ", %s=%q@%d", k, kv.Value, kv.ModRevision)
	}
	return b.String()
}

// Model is the porcupine model of etcd's KV.
var Model = (&porcupine.NondeterministicModel{
	Init: func() []any { return []any{Initial()} },
	Step: func(state, input, output any) []any {
		var out []any
		for _, n := range step(state.(State), input.(Request), output.(Response)) {
			out = append(out, n)
		}
		return out
	},
	Equal: func(a, b any) bool { return equal(a.(State), b.(State)) },
	DescribeOperation: func(input, output any) string {
		req, resp := input.(Request), output.(Response)
		var in string
		switch req.Kind {
		case Get, Delete:
			in = fmt.Sprintf("%v(%s)", req.Kind, req.Key)
		case Put:
			in = fmt.Sprintf("put(%s, %q)", req.Key, req.Value)
		case CAS:
			in = fmt.Sprintf("cas(%s@%d, %q)", req.Key, req.Expect, req.Value)
		}
		switch {
		case resp.Unknown:
			return in + " -> unknown"
		case req.Kind == Get && resp.Found:
			return fmt.Sprintf("%s -> %q@%d rev %d", in, resp.Value, resp.ModRevision, resp.Revision)
		case req.Kind == Get:
			return fmt.Sprintf("%s -> none rev %d", in, resp.Revision)
		case req.Kind == CAS:
			return fmt.Sprintf("%s -> %v rev %d", in, resp.Succeeded, resp.Revision)
		case req.Kind == Delete:
			return fmt.Sprintf("%s -> %d rev %d", in, resp.Deleted, resp.Revision)
		}
		return fmt.Sprintf("%s -> rev %d", in, resp.Revision)
	},
	DescribeState: func(state any) string { return describe(state.(State)) },
}).ToModel()
