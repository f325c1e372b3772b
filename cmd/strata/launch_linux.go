package main

import "syscall"

// orphanKill makes a launched member die with the harness: a sweep killed
// hard (SIGKILL, a test's timeout) leaves no cluster behind. Linux ties
// the signal to the thread that started the child, and the Go runtime
// ends a thread only when a goroutine locked to it exits, which none of
// the harness's does.
func orphanKill() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
