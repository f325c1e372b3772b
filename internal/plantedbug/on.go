//go:build strata_planted_bugs

package plantedbug

import "os"

var active = os.Getenv("STRATA_PLANTED_BUG")

// On reports whether the bug named is planted in this process.
func On(name string) bool { return active == name }
