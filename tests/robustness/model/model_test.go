package model

import (
	"math"
	"testing"

	"github.com/anishathalye/porcupine"
)

// op is an operation of client c from call to ret.
func op(c int, call, ret int64, req Request, resp Response) porcupine.Operation {
	return porcupine.Operation{ClientId: c, Call: call, Return: ret, Input: req, Output: resp}
}

const end = math.MaxInt64 // an unknown outcome's return: the end of the history

func check(t *testing.T, name string, want porcupine.CheckResult, history ...porcupine.Operation) {
	t.Helper()
	if got := porcupine.CheckOperations(Model, history); got != (want == porcupine.Ok) {
		t.Errorf("%s: linearizable = %v, want %v", name, got, want == porcupine.Ok)
	}
}

func TestSequentialSemantics(t *testing.T) {
	check(t, "put, get, cas, delete", porcupine.Ok,
		op(0, 0, 1, Request{Kind: Get, Key: "a"}, Response{Revision: 1}),
		op(0, 2, 3, Request{Kind: Put, Key: "a", Value: "1"}, Response{Revision: 2}),
		op(0, 4, 5, Request{Kind: Get, Key: "a"}, Response{Revision: 2, Found: true, Value: "1", ModRevision: 2}),
		op(0, 6, 7, Request{Kind: CAS, Key: "a", Expect: 1, Value: "x"}, Response{Revision: 2}),
		op(0, 8, 9, Request{Kind: CAS, Key: "a", Expect: 2, Value: "2"}, Response{Revision: 3, Succeeded: true}),
		op(0, 10, 11, Request{Kind: Delete, Key: "b"}, Response{Revision: 3}),
		op(0, 12, 13, Request{Kind: Delete, Key: "a"}, Response{Revision: 4, Deleted: 1}),
		op(0, 14, 15, Request{Kind: CAS, Key: "a", Expect: 0, Value: "3"}, Response{Revision: 5, Succeeded: true}),
	)
	check(t, "a put's revision skips one", porcupine.Illegal,
		op(0, 0, 1, Request{Kind: Put, Key: "a", Value: "1"}, Response{Revision: 3}),
	)
	check(t, "a failed compare writes", porcupine.Illegal,
		op(0, 0, 1, Request{Kind: CAS, Key: "a", Expect: 7, Value: "1"}, Response{Revision: 1}),
		op(0, 2, 3, Request{Kind: Get, Key: "a"}, Response{Revision: 2, Found: true, Value: "1", ModRevision: 2}),
	)
}

// TestStaleRead: a read that starts after a put returned must see it (what
// a reader serving "linearizable" reads without ReadIndex gets wrong).
func TestStaleRead(t *testing.T) {
	put := op(0, 0, 10, Request{Kind: Put, Key: "a", Value: "1"}, Response{Revision: 2})
	check(t, "read after the put sees it", porcupine.Ok, put,
		op(1, 11, 12, Request{Kind: Get, Key: "a"}, Response{Revision: 2, Found: true, Value: "1", ModRevision: 2}))
	check(t, "read after the put misses it", porcupine.Illegal, put,
		op(1, 11, 12, Request{Kind: Get, Key: "a"}, Response{Revision: 1}))
	check(t, "concurrent read may miss it", porcupine.Ok, put,
		op(1, 5, 12, Request{Kind: Get, Key: "a"}, Response{Revision: 1}))
}

// TestUnknownOutcome: an operation whose outcome the client lost may have
// happened or not, but not both, and not differently for two readers.
func TestUnknownOutcome(t *testing.T) {
	lost := op(0, 0, end, Request{Kind: Put, Key: "a", Value: "1"}, Response{Unknown: true})
	check(t, "it happened", porcupine.Ok, lost,
		op(1, 5, 6, Request{Kind: Get, Key: "a"}, Response{Revision: 2, Found: true, Value: "1", ModRevision: 2}))
	check(t, "it did not", porcupine.Ok, lost,
		op(1, 5, 6, Request{Kind: Get, Key: "a"}, Response{Revision: 1}))
	check(t, "it happened, then it did not", porcupine.Illegal, lost,
		op(1, 5, 6, Request{Kind: Get, Key: "a"}, Response{Revision: 2, Found: true, Value: "1", ModRevision: 2}),
		op(1, 7, 8, Request{Kind: Get, Key: "a"}, Response{Revision: 1}))
	check(t, "it happened at another revision", porcupine.Illegal, lost,
		op(1, 5, 6, Request{Kind: Put, Key: "b", Value: "2"}, Response{Revision: 2}),
		op(1, 7, 8, Request{Kind: Get, Key: "a"}, Response{Revision: 3, Found: true, Value: "1", ModRevision: 2}))
}

// TestAcknowledgedWriteLost: a write that returned must stay (what a
// server acknowledging before commit, then losing the entry, shows).
func TestAcknowledgedWriteLost(t *testing.T) {
	check(t, "acknowledged put lost", porcupine.Illegal,
		op(0, 0, 1, Request{Kind: Put, Key: "a", Value: "1"}, Response{Revision: 2}),
		op(1, 2, 3, Request{Kind: Put, Key: "b", Value: "2"}, Response{Revision: 2}),
	)
	check(t, "a revision applied twice", porcupine.Illegal,
		op(0, 0, 1, Request{Kind: Put, Key: "a", Value: "1"}, Response{Revision: 2}),
		op(1, 2, 3, Request{Kind: Get, Key: "a"}, Response{Revision: 3, Found: true, Value: "1", ModRevision: 3}),
	)
}

func TestDescribe(t *testing.T) {
	s, _ := Initial().apply(Request{Kind: Put, Key: "k", Value: "v"})
	if got := describe(s); got != `rev 2, k="v"@2` {
		t.Fatalf("describe = %s", got)
	}
	if got := Model.DescribeOperation(Request{Kind: CAS, Key: "k", Expect: 2, Value: "w"}, Response{Revision: 3, Succeeded: true}); got != `cas(k@2, "w") -> true rev 3` {
		t.Fatalf("describe operation = %s", got)
	}
}

func TestLeases(t *testing.T) {
	check(t, "revoke deletes the lease's keys at one revision", porcupine.Ok,
		op(0, 0, 1, Request{Kind: LeaseGrant, Lease: 7}, Response{Revision: 1}),
		op(0, 2, 3, Request{Kind: PutLease, Key: "a", Value: "1", Lease: 7}, Response{Revision: 2}),
		op(0, 4, 5, Request{Kind: PutLease, Key: "b", Value: "2", Lease: 7}, Response{Revision: 3}),
		op(0, 6, 7, Request{Kind: Put, Key: "c", Value: "3"}, Response{Revision: 4}),
		op(0, 8, 9, Request{Kind: LeaseRevoke, Lease: 7}, Response{Revision: 5}),
		op(0, 10, 11, Request{Kind: List}, Response{Revision: 5, List: "c=3@4"}),
		op(0, 12, 13, Request{Kind: PutLease, Key: "a", Value: "4", Lease: 7}, Response{LeaseNotFound: true}),
		op(0, 14, 15, Request{Kind: LeaseRevoke, Lease: 7}, Response{LeaseNotFound: true}),
	)
	check(t, "a put without the lease detaches the key", porcupine.Ok,
		op(0, 0, 1, Request{Kind: LeaseGrant, Lease: 7}, Response{Revision: 1}),
		op(0, 2, 3, Request{Kind: PutLease, Key: "a", Value: "1", Lease: 7}, Response{Revision: 2}),
		op(0, 4, 5, Request{Kind: Put, Key: "a", Value: "2"}, Response{Revision: 3}),
		op(0, 6, 7, Request{Kind: LeaseRevoke, Lease: 7}, Response{Revision: 3}),
		op(0, 8, 9, Request{Kind: Get, Key: "a"}, Response{Revision: 3, Found: true, Value: "2", ModRevision: 3}),
	)
	check(t, "a key outlives its revoked lease", porcupine.Illegal,
		op(0, 0, 1, Request{Kind: LeaseGrant, Lease: 7}, Response{Revision: 1}),
		op(0, 2, 3, Request{Kind: PutLease, Key: "a", Value: "1", Lease: 7}, Response{Revision: 2}),
		op(0, 4, 5, Request{Kind: LeaseRevoke, Lease: 7}, Response{Revision: 3}),
		op(0, 6, 7, Request{Kind: Get, Key: "a"}, Response{Revision: 3, Found: true, Value: "1", ModRevision: 2}),
	)
	check(t, "a granted lease not found", porcupine.Illegal,
		op(0, 0, 1, Request{Kind: LeaseGrant, Lease: 7}, Response{Revision: 1}),
		op(0, 2, 3, Request{Kind: PutLease, Key: "a", Value: "1", Lease: 7}, Response{LeaseNotFound: true}),
	)
}

func TestKubernetesWrites(t *testing.T) {
	check(t, "create, conflicting create, update, delete", porcupine.Ok,
		op(0, 0, 1, Request{Kind: CAS, Key: "a", Value: "1", ElseGet: true}, Response{Revision: 2, Succeeded: true}),
		op(0, 2, 3, Request{Kind: CAS, Key: "a", Value: "x", ElseGet: true}, Response{Revision: 2, Found: true, Value: "1", ModRevision: 2}),
		op(0, 4, 5, Request{Kind: CAS, Key: "a", Value: "2", Expect: 2, ElseGet: true}, Response{Revision: 3, Succeeded: true}),
		op(0, 6, 7, Request{Kind: CASDelete, Key: "a", Expect: 2, ElseGet: true}, Response{Revision: 3, Found: true, Value: "2", ModRevision: 3}),
		op(0, 8, 9, Request{Kind: CASDelete, Key: "a", Expect: 3, ElseGet: true}, Response{Revision: 4, Succeeded: true, Deleted: 1}),
		op(0, 10, 11, Request{Kind: CASDelete, Key: "a", ElseGet: true}, Response{Revision: 4, Succeeded: true}),
		op(0, 12, 13, Request{Kind: List}, Response{Revision: 4}),
	)
	check(t, "a list missing an acknowledged create", porcupine.Illegal,
		op(0, 0, 1, Request{Kind: CAS, Key: "a", Value: "1", ElseGet: true}, Response{Revision: 2, Succeeded: true}),
		op(1, 2, 3, Request{Kind: List}, Response{Revision: 2}),
	)
}
