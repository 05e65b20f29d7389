//go:build !linux

package testpeer

import "syscall"

// sysProcAttr returns nil where the kernel cannot kill a child together
// with its parent; there Stop, run by the test's cleanup, is the only end
// of a peer.
func sysProcAttr() *syscall.SysProcAttr { return nil }
