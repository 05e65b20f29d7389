package testpeer

import "syscall"

// sysProcAttr asks Linux to kill a started peer when the test binary dies,
// so that a test that panics or times out does not leave storescp or
// Orthanc listening until the machine restarts. The kernel ties the signal
// to the OS thread that started the child, and Go ends a thread only when a
// goroutine that locked it exits without unlocking it; a peer started from
// such a goroutine would be killed early, which tests do not do.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
