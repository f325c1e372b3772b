//go:build linux

package robustness

import (
	"math"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/stratakv/strata/tests/robustness/model"
)

func put(key, value string, resp model.Response) porcupine.Operation {
	return porcupine.Operation{Input: model.Request{Kind: model.Put, Key: key, Value: value}, Output: resp, Return: 1}
}

func TestCheckWrites(t *testing.T) {
	ops := []porcupine.Operation{put("a", "1", model.Response{Revision: 2}), put("b", "2", model.Response{Unknown: true})}
	good := []Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 3, Key: "b", Value: "2"}}
	if err := checkWrites(ops, good); err != nil {
		t.Fatalf("consistent writes refused: %v", err)
	}
	for name, c := range map[string]struct {
		writes []Write
		want   string
	}{
		"gap":           {[]Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 4, Key: "b", Value: "2"}}, "at revision 4 after revision 2"},
		"shared put":    {[]Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 2, Key: "b", Value: "2"}}, "at revision 2 after revision 2"},
		"applied twice": {[]Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 3, Key: "a", Value: "1"}}, "applied twice"},
		"lost ack":      {[]Write{{Revision: 2, Key: "b", Value: "2"}}, "revision 2 applied"},
		"missing ack":   {nil, "not among the applied writes"},
	} {
		if err := checkWrites(ops, c.writes); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}
}

func TestPatch(t *testing.T) {
	ops := []porcupine.Operation{
		put("a", "1", model.Response{Revision: 2}),
		put("b", "2", model.Response{Unknown: true}), // applied at 3
		put("c", "3", model.Response{Unknown: true}), // never applied
		{Input: model.Request{Kind: model.Delete, Key: "a"}, Output: model.Response{Unknown: true}, Return: math.MaxInt64},
	}
	writes := []Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 3, Key: "b", Value: "2"}}
	out, resolved, dropped := patch(ops, writes)
	if resolved != 1 || dropped != 2 || len(out) != 2 {
		t.Fatalf("resolved %d, dropped %d, kept %d operations", resolved, dropped, len(out))
	}
	if r := out[1].Output.(model.Response); r.Unknown || r.Revision != 3 {
		t.Fatalf("the applied unknown put became %+v", r)
	}
	// With a delete of a at revision 4 that no acknowledged delete made,
	// the earliest unknown delete of a made it; a later one leaves.
	late := porcupine.Operation{Input: model.Request{Kind: model.Delete, Key: "a"}, Output: model.Response{Unknown: true}, Call: 5, Return: math.MaxInt64}
	ops[3].Call = 2
	out, resolved, dropped = patch(append(ops, late), append(writes, Write{Revision: 4, Key: "a", Delete: true}))
	if resolved != 2 || dropped != 2 {
		t.Fatalf("resolved %d, dropped %d", resolved, dropped)
	}
	if r := out[2].Output.(model.Response); out[2].Call != 2 || r != (model.Response{Revision: 4, Deleted: 1}) {
		t.Fatalf("the unknown delete became %+v (call %d)", r, out[2].Call)
	}
}

// TestPatchLeases: a revocation's deletes share a revision and are
// claimed by the unknown revocation of the lease their keys were put
// with; an unknown grant, and an unknown revocation that deleted nothing,
// leave the history.
func TestPatchLeases(t *testing.T) {
	unknown := func(req model.Request) porcupine.Operation {
		return porcupine.Operation{Input: req, Output: model.Response{Unknown: true}, Return: math.MaxInt64}
	}
	ops := []porcupine.Operation{
		{Input: model.Request{Kind: model.LeaseGrant, Lease: 7}, Output: model.Response{Revision: 1}, Return: 1},
		unknown(model.Request{Kind: model.LeaseGrant, Lease: 8}),
		unknown(model.Request{Kind: model.PutLease, Key: "keyL0", Value: "1", Lease: 7}),
		{Input: model.Request{Kind: model.PutLease, Key: "keyL1", Value: "2", Lease: 7}, Output: model.Response{Revision: 3}, Return: 1},
		unknown(model.Request{Kind: model.LeaseRevoke, Lease: 7}),
		unknown(model.Request{Kind: model.LeaseRevoke, Lease: 9}),
	}
	writes := []Write{
		{Revision: 2, Key: "keyL0", Value: "1", Lease: 7},
		{Revision: 3, Key: "keyL1", Value: "2", Lease: 7},
		{Revision: 4, Key: "keyL0", Delete: true},
		{Revision: 4, Key: "keyL1", Delete: true},
	}
	if err := checkWrites(ops, writes); err != nil {
		t.Fatalf("a revocation's shared revision refused: %v", err)
	}
	out, resolved, dropped := patch(ops, writes)
	if resolved != 2 || dropped != 2 || len(out) != 4 {
		t.Fatalf("resolved %d, dropped %d, kept %d operations", resolved, dropped, len(out))
	}
	if r := out[3].Output.(model.Response); out[3].Input.(model.Request).Kind != model.LeaseRevoke || r != (model.Response{Revision: 4}) {
		t.Fatalf("the unknown revocation became %+v", r)
	}
	if ok, _ := porcupine.CheckOperationsVerbose(model.Model, out, 0); ok != porcupine.Ok {
		t.Fatalf("the patched history is %v", ok)
	}
}

// TestPatchConditionalDelete: a delete event goes to an unknown
// conditional delete only if its compare held then, even when another was
// called earlier.
func TestPatchConditionalDelete(t *testing.T) {
	casDelete := func(call, expect int64) porcupine.Operation {
		return porcupine.Operation{Input: model.Request{Kind: model.CASDelete, Key: "a", Expect: expect, ElseGet: true},
			Output: model.Response{Unknown: true}, Call: call, Return: math.MaxInt64}
	}
	ops := []porcupine.Operation{
		{Input: model.Request{Kind: model.CAS, Key: "a", Value: "1", ElseGet: true}, Output: model.Response{Revision: 2, Succeeded: true}, Return: 1},
		casDelete(2, 7), // stale: its compare failed
		casDelete(3, 2),
	}
	writes := []Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 3, Key: "a", Delete: true}}
	out, resolved, dropped := patch(ops, writes)
	if resolved != 1 || dropped != 1 || len(out) != 2 {
		t.Fatalf("resolved %d, dropped %d, kept %d operations", resolved, dropped, len(out))
	}
	if out[1].Call != 3 || out[1].Output.(model.Response) != (model.Response{Revision: 3, Deleted: 1, Succeeded: true}) {
		t.Fatalf("the delete went to %+v", out[1])
	}
	if ok, _ := porcupine.CheckOperationsVerbose(model.Model, out, 0); ok != porcupine.Ok {
		t.Fatalf("the patched history is %v", ok)
	}
}
