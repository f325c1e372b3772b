//go:build !strata_failpoints

package failpoint

import "github.com/cockroachdb/pebble/v2/vfs"

// Point is one failpoint: nothing, in this build.
type Point struct{}

// New returns the failpoint name, which does nothing in this build.
func New(string) Point { return Point{} }

// Hit does nothing in this build.
func (Point) Hit() {}

// WillSync, Created and Renamed record nothing in this build.
func WillSync(string, int64, Loss) {}
func Created(string)               {}
func Renamed(string, string)       {}

// WrapFS returns fs in this build.
func WrapFS(fs vfs.FS) vfs.FS { return fs }
