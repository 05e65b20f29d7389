// Package testpeer starts and drives the real DICOM peers that pacsd's
// tests and benchmarks talk to: dcmtk's command-line tools, dcmtk's
// storescp, Orthanc with or without its DICOMweb plugin, the node scripts
// that drive JavaScript clients (RunNode), and pacsd itself, built from
// this module (StartPacsdT), for tests that drive the whole program.
//
// Every peer listens on a free port of 127.0.0.1 and keeps its files in a
// directory the caller gives (a test's TempDir), so tests can run in
// parallel and leave nothing behind. Each process is ended by its own PID,
// never by name.
//
// The core functions take a context and return errors, so that a benchmark
// program outside "go test" can use them; the functions whose names end in
// T are thin wrappers for tests that fail the test on error and register
// the process's Stop with t.Cleanup.
//
// A peer that is not installed is an ErrNotInstalled error. The test
// wrappers turn it into a skip on a developer's machine, with a message
// saying that `make test` installs it, and into a failure under CI=true:
// an interoperability test that quietly skips in CI is worse than none.
package testpeer

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ErrNotInstalled reports a program or package a peer needs that is not
// installed on this machine. Errors of this package that say what is
// missing match it with errors.Is.
var ErrNotInstalled = errors.New("testpeer: not installed")

// notInstalledError names what is missing.
type notInstalledError string

func (e notInstalledError) Error() string        { return "testpeer: " + string(e) + " not installed" }
func (e notInstalledError) Is(target error) bool { return target == ErrNotInstalled }

// extraDirs are searched after PATH. Debian installs Orthanc in /usr/sbin,
// which is not on the PATH of ordinary users.
var extraDirs = []string{"/usr/sbin", "/usr/local/sbin", "/sbin"}

// Lookup returns the path of the executable name, searching PATH, then
// the system administration directories where Debian puts daemons such as
// Orthanc, then where go install puts programs. A name that contains a slash is only checked, not searched.
func Lookup(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	if !strings.Contains(name, "/") {
		// Programs built with go install (MinIO, Versity's gateway)
		// land in GOBIN or GOPATH/bin, which need not be on PATH.
		for _, dir := range append(extraDirs, goBinDirs()...) {
			p := filepath.Join(dir, name)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return p, nil
			}
		}
	}
	return "", notInstalledError(name)
}

// Need makes sure that the executables named are installed. If one is missing
// the test is skipped with a message telling the developer to run
// `make test`, or fails when the environment variable CI is "true", so that
// CI never passes without having run its interoperability tests.
func Need(tb testing.TB, names ...string) {
	tb.Helper()
	var missing []string
	for _, name := range names {
		if _, err := Lookup(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		notInstalled(tb, strings.Join(missing, ", "))
	}
}

// notInstalled skips or fails tb because what is missing, as Need
// documents.
func notInstalled(tb testing.TB, what string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s not installed, and under CI=true a missing peer fails the test: the CI setup must install it, as `make test` does", what)
		return
	}
	tb.Skipf("%s not installed; run `make test`, which installs it", what)
}

// check ends tb if err is not nil: ErrNotInstalled as Need does, any other
// error as a test failure.
func check(tb testing.TB, err error) {
	tb.Helper()
	if err == nil {
		return
	}
	if e, ok := errors.AsType[notInstalledError](err); ok {
		notInstalled(tb, string(e))
		return
	}
	tb.Fatal(err)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago. The
// port is released before FreePort returns, so another process can take it
// before the caller does; StartStoreSCP and StartOrthanc therefore retry
// with new ports when a peer exits before it listens.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("testpeer: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
