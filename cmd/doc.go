// Package cmd holds strata's binaries. Each subdirectory is a main package
// that parses flags and wires stages together; none of them holds business
// logic.
//
//   - cmd/strata: the server (a writer member today; readers later) and its
//     admin subcommands.
package cmd
