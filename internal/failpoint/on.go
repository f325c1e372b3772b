//go:build strata_failpoints

package failpoint

import "go.etcd.io/gofail/runtime"

// Point is one failpoint.
type Point struct{ fp *runtime.Failpoint }

// New registers the failpoint name.
func New(name string) Point { return Point{runtime.NewFailpoint(name)} }

// Hit evaluates the failpoint's term, if one is set: panic panics here,
// sleep sleeps; a term's value is ignored.
func (p Point) Hit() { p.fp.Acquire() }
