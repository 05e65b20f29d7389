//go:build !unix

package spool

// lockDir does nothing where flock is not available: the file store the
// spool relies on is written for Unix systems anyway.
func lockDir(dir string) (unlock func() error, err error) {
	return func() error { return nil }, nil
}
