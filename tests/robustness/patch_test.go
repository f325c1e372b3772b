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
		"gap":           {[]Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 4, Key: "b", Value: "2"}}, "want 3"},
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
	out, resolved, dropped := patch(ops, []Write{{Revision: 2, Key: "a", Value: "1"}, {Revision: 3, Key: "b", Value: "2"}})
	if resolved != 1 || dropped != 1 || len(out) != 3 {
		t.Fatalf("resolved %d, dropped %d, kept %d operations", resolved, dropped, len(out))
	}
	if r := out[1].Output.(model.Response); r.Unknown || r.Revision != 3 {
		t.Fatalf("the applied unknown put became %+v", r)
	}
	if r := out[2].Output.(model.Response); !r.Unknown {
		t.Fatalf("an unknown delete was resolved: %+v", r)
	}
}
