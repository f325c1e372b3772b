// Package clock injects time. Every timer and ticker in strata goes through a
// Clock so that tests drive time by hand instead of sleeping.
package clock
