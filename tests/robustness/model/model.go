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
	// does not exist), put Value, else nothing (with ElseGet: else get
	// the key, as Kubernetes' conditional writes do).
	CAS
	// CASDelete is a Txn: if the key's mod_revision equals Expect,
	// delete it, else (with ElseGet) get it.
	CASDelete
	// List reads every key (a range over the traffic's prefix).
	List
	// LeaseGrant grants lease Lease (the client picks its ID); its TTL
	// outlives the run.
	LeaseGrant
	// PutLease puts Value under Key attached to lease Lease.
	PutLease
	// LeaseRevoke revokes lease Lease, deleting the keys attached to it
	// at one revision.
	LeaseRevoke
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
	case CASDelete:
		return "cas-delete"
	case List:
		return "list"
	case LeaseGrant:
		return "lease-grant"
	case PutLease:
		return "put-lease"
	case LeaseRevoke:
		return "lease-revoke"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Request is an operation's input.
type Request struct {
	Kind    Kind
	Key     string
	Value   string
	Expect  int64 // CAS, CASDelete: the mod_revision compared
	ElseGet bool  // CAS, CASDelete: get the key if the compare fails
	Lease   int64 // LeaseGrant, PutLease, LeaseRevoke
}

// Response is an operation's output. Unknown marks an operation whose
// outcome the client does not know; its other fields are then unset.
type Response struct {
	Unknown bool
	// Revision is the response header's revision.
	Revision int64
	// Get, and a failed CAS or CASDelete with ElseGet: Found, Value and
	// ModRevision of the key. Delete: Deleted counts the keys deleted.
	// CAS, CASDelete: Succeeded.
	Found       bool
	Value       string
	ModRevision int64
	Deleted     int64
	Succeeded   bool
	// List: the keys, as key=value@mod_revision, in key order, joined
	// by commas (a string, so that responses compare with ==).
	List string
	// LeaseNotFound: PutLease or LeaseRevoke answered etcd's "requested
	// lease not found" (a definite failure: nothing changed).
	LeaseNotFound bool
}

// KeyValue is one key's state.
type KeyValue struct {
	Value                            string
	CreateRevision, ModRevision, Ver int64
	Lease                            int64
}

// State is the store: the revision, the live keys and the live leases. It
// is treated as immutable; a step returns a new one.
type State struct {
	Revision int64
	KVs      map[string]KeyValue
	Leases   map[int64]bool
}

// Initial is an empty etcd: revision 1.
func Initial() State { return State{Revision: 1, KVs: map[string]KeyValue{}, Leases: map[int64]bool{}} }

// apply is req's effect on s, and the response it gives.
func (s State) apply(req Request) (State, Response) {
	switch req.Kind {
	case Get:
		kv, ok := s.KVs[req.Key]
		return s, Response{Revision: s.Revision, Found: ok, Value: kv.Value, ModRevision: kv.ModRevision}
	case Put:
		return s.put(req.Key, req.Value, 0), Response{Revision: s.Revision + 1}
	case Delete:
		if _, ok := s.KVs[req.Key]; !ok {
			return s, Response{Revision: s.Revision} // deleting nothing does not advance the revision
		}
		return s.delete(req.Key), Response{Revision: s.Revision + 1, Deleted: 1}
	case CAS, CASDelete:
		kv, ok := s.KVs[req.Key]
		if kv.ModRevision != req.Expect {
			resp := Response{Revision: s.Revision}
			if req.ElseGet {
				resp.Found, resp.Value, resp.ModRevision = ok, kv.Value, kv.ModRevision
			}
			return s, resp
		}
		if req.Kind == CASDelete && !ok {
			// etcd compares an absent key's mod_revision as 0: the
			// compare holds, and the delete deletes nothing.
			return s, Response{Revision: s.Revision, Succeeded: true}
		}
		if req.Kind == CASDelete {
			return s.delete(req.Key), Response{Revision: s.Revision + 1, Succeeded: true, Deleted: 1}
		}
		return s.put(req.Key, req.Value, 0), Response{Revision: s.Revision + 1, Succeeded: true}
	case List:
		var b strings.Builder
		for _, k := range slices.Sorted(maps.Keys(s.KVs)) {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%s=%s@%d", k, s.KVs[k].Value, s.KVs[k].ModRevision)
		}
		return s, Response{Revision: s.Revision, List: b.String()}
	case LeaseGrant:
		n := s
		n.Leases = maps.Clone(s.Leases)
		n.Leases[req.Lease] = true
		return n, Response{Revision: s.Revision}
	case PutLease:
		if !s.Leases[req.Lease] {
			return s, Response{LeaseNotFound: true}
		}
		return s.put(req.Key, req.Value, req.Lease), Response{Revision: s.Revision + 1}
	case LeaseRevoke:
		if !s.Leases[req.Lease] {
			return s, Response{LeaseNotFound: true}
		}
		n := State{Revision: s.Revision, KVs: s.KVs, Leases: maps.Clone(s.Leases)}
		delete(n.Leases, req.Lease)
		for k, kv := range s.KVs {
			if kv.Lease == req.Lease {
				if n.Revision == s.Revision {
					n.Revision, n.KVs = s.Revision+1, maps.Clone(s.KVs)
				}
				delete(n.KVs, k)
			}
		}
		return n, Response{Revision: n.Revision}
	}
	panic(fmt.Sprintf("model: unknown request kind %v", req.Kind))
}

func (s State) put(key, value string, lease int64) State {
	n := State{Revision: s.Revision + 1, KVs: maps.Clone(s.KVs), Leases: s.Leases}
	kv, ok := n.KVs[key]
	if !ok {
		kv = KeyValue{CreateRevision: n.Revision}
	}
	kv.Value, kv.ModRevision, kv.Ver, kv.Lease = value, n.Revision, kv.Ver+1, lease
	n.KVs[key] = kv
	return n
}

func (s State) delete(key string) State {
	n := State{Revision: s.Revision + 1, KVs: maps.Clone(s.KVs), Leases: s.Leases}
	delete(n.KVs, key)
	return n
}

// step is the model's transition: the states s may be in after req
// answered resp.
func step(s State, req Request, resp Response) []State {
	next, want := s.apply(req)
	if resp.Unknown {
		if equal(next, s) {
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
	return a.Revision == b.Revision && maps.Equal(a.KVs, b.KVs) && maps.Equal(a.Leases, b.Leases)
}

func describe(s State) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rev %d", s.Revision)
	for _, k := range slices.Sorted(maps.Keys(s.KVs)) {
		kv := s.KVs[k]
		fmt.Fprintf(&b, ", %s=%q@%d", k, kv.Value, kv.ModRevision)
		if kv.Lease != 0 {
			fmt.Fprintf(&b, " lease %x", kv.Lease)
		}
	}
	if len(s.Leases) > 0 {
		fmt.Fprintf(&b, "; leases")
		for _, l := range slices.Sorted(maps.Keys(s.Leases)) {
			fmt.Fprintf(&b, " %x", l)
		}
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
		case CASDelete:
			in = fmt.Sprintf("cas-delete(%s@%d)", req.Key, req.Expect)
		case List:
			in = "list()"
		case LeaseGrant, LeaseRevoke:
			in = fmt.Sprintf("%v(%x)", req.Kind, req.Lease)
		case PutLease:
			in = fmt.Sprintf("put(%s, %q, lease %x)", req.Key, req.Value, req.Lease)
		}
		switch {
		case resp.Unknown:
			return in + " -> unknown"
		case resp.LeaseNotFound:
			return in + " -> lease not found"
		case req.Kind == Get && resp.Found:
			return fmt.Sprintf("%s -> %q@%d rev %d", in, resp.Value, resp.ModRevision, resp.Revision)
		case req.Kind == Get:
			return fmt.Sprintf("%s -> none rev %d", in, resp.Revision)
		case req.Kind == List:
			return fmt.Sprintf("%s -> [%s] rev %d", in, resp.List, resp.Revision)
		case (req.Kind == CAS || req.Kind == CASDelete) && !resp.Succeeded && resp.Found:
			return fmt.Sprintf("%s -> false, %q@%d rev %d", in, resp.Value, resp.ModRevision, resp.Revision)
		case req.Kind == CAS || req.Kind == CASDelete:
			return fmt.Sprintf("%s -> %v rev %d", in, resp.Succeeded, resp.Revision)
		case req.Kind == Delete:
			return fmt.Sprintf("%s -> %d rev %d", in, resp.Deleted, resp.Revision)
		}
		return fmt.Sprintf("%s -> rev %d", in, resp.Revision)
	},
	DescribeState: func(state any) string { return describe(state.(State)) },
}).ToModel()
