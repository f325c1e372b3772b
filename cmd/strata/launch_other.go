//go:build !linux

package main

import "syscall"

// orphanKill is nil where there is no parent-death signal: members of a
// sweep killed hard outlive it.
func orphanKill() *syscall.SysProcAttr { return nil }
