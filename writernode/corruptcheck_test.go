package writernode

import (
	"slices"
	"testing"
)

func TestOddMembers(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []memberHash
		odd     []uint64
		ok      bool
	}{
		{"all agree", []memberHash{{id: 1, hash: 7}, {id: 2, hash: 7}, {id: 3, hash: 7}}, nil, true},
		{"one odd", []memberHash{{id: 1, hash: 7}, {id: 2, hash: 8}, {id: 3, hash: 7}}, []uint64{2}, true},
		{"the asker odd", []memberHash{{id: 1, hash: 9}, {id: 2, hash: 7}, {id: 3, hash: 7}, {id: 4, hash: 7}}, []uint64{1}, true},
		{"no majority", []memberHash{{id: 1, hash: 7}, {id: 2, hash: 8}}, nil, false},
		{"three ways", []memberHash{{id: 1, hash: 7}, {id: 2, hash: 8}, {id: 3, hash: 9}}, nil, false},
		{"alone", []memberHash{{id: 1, hash: 7}}, nil, true},
		// Answers that cover another history (compacted elsewhere) are
		// not compared.
		{"other compaction", []memberHash{{id: 1, hash: 7, compactRev: 5}, {id: 2, hash: 7, compactRev: 5}, {id: 3, hash: 1, compactRev: 9}}, nil, true},
	} {
		odd, ok := oddMembers(tc.answers)
		if ok != tc.ok || !slices.Equal(odd, tc.odd) {
			t.Errorf("%s: %v, %v; want %v, %v", tc.name, odd, ok, tc.odd, tc.ok)
		}
	}
}
