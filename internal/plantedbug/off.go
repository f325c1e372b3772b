//go:build !strata_planted_bugs

package plantedbug

// On reports whether the bug named is planted: never, in this build.
func On(string) bool { return false }
