package testpeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// noDelay is added to the environment of every program this package
// starts. dcmtk (and Orthanc, which is built on it) reads TCP_NODELAY and
// otherwise leaves Nagle's algorithm on, so that a small PDU written after
// a large one waits for the peer's delayed ACK: about 40 ms per message on
// Linux, which turns a benchmark into a measurement of TCP timers.
const noDelay = "TCP_NODELAY=1"

// stopGrace is how long Stop waits after SIGTERM before it sends SIGKILL.
// Orthanc needs a moment to close its database; storescp stops at once.
const stopGrace = 10 * time.Second

// Cmd describes a long-running program to start.
type Cmd struct {
	// Name is the executable, found with Lookup.
	Name string
	Args []string
	// Dir is the working directory. The program's standard output and
	// standard error go to a log file in it, named after the program.
	Dir string
	// Env holds "KEY=value" entries added to this process's environment,
	// after TCP_NODELAY=1, so an entry here can override it.
	Env []string
}

// Process is a program started by Start.
type Process struct {
	cmd  *exec.Cmd
	log  string
	line string // the command line, for messages

	exited  chan struct{}
	waitErr error // set before exited is closed

	stopOnce sync.Once
	stopErr  error
}

// Start starts c and returns at once; use WaitTCP to wait until it listens.
// ctx bounds only the start: the process runs until Stop, so that a
// cancelled context (as testing.T's is, just before cleanup) does not kill
// it without the orderly SIGTERM that Stop sends first.
func Start(ctx context.Context, c Cmd) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if c.Dir == "" {
		return nil, errors.New("testpeer: Cmd.Dir is empty: a process needs a directory for its log")
	}
	path, err := Lookup(c.Name)
	if err != nil {
		return nil, err
	}
	logf, err := createLog(c.Dir, filepath.Base(c.Name))
	if err != nil {
		return nil, err
	}
	// The child gets its own descriptor of the log file, so this copy is
	// closed once the child has started.
	defer logf.Close()

	cmd := exec.Command(path, c.Args...)
	cmd.Dir = c.Dir
	cmd.Env = append(append(os.Environ(), noDelay), c.Env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = sysProcAttr()
	p := &Process{
		cmd:    cmd,
		log:    logf.Name(),
		line:   commandLine(path, c.Args),
		exited: make(chan struct{}),
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("testpeer: start %s: %w", p.line, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// StartT starts c for the test tb, failing or skipping tb as Need does if
// the program is missing. An empty c.Dir becomes a new tb.TempDir(). Stop
// is registered with tb.Cleanup; if the test failed, or the process had
// died on its own, the end of its log is printed with the test's output.
func StartT(tb testing.TB, c Cmd) *Process {
	tb.Helper()
	Need(tb, c.Name)
	if c.Dir == "" {
		c.Dir = tb.TempDir()
	}
	p, err := Start(tb.Context(), c)
	check(tb, err)
	cleanup(tb, p)
	return p
}

// cleanup registers p.Stop with tb.Cleanup and reports what went wrong.
func cleanup(tb testing.TB, p *Process) {
	tb.Cleanup(func() {
		err := p.Stop()
		if err != nil {
			tb.Error(err)
		}
		if err != nil || tb.Failed() {
			tb.Logf("last lines of %s:\n%s", p.log, p.LogTail(40))
		}
	})
}

// createLog creates a new log file for program in dir. Two processes of
// the same program in one directory get two files rather than one
// interleaved one.
func createLog(dir, program string) (*os.File, error) {
	for i := 1; ; i++ {
		name := program + ".log"
		if i > 1 {
			name = program + "-" + strconv.Itoa(i) + ".log"
		}
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) && i < 1000 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("testpeer: log of %s: %w", program, err)
		}
		return f, nil
	}
}

// PID returns the process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Log returns the path of the file that receives the process's standard
// output and standard error.
func (p *Process) Log() string { return p.log }

// Exited is closed when the process has exited, for whatever reason.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// LogTail returns the last n lines of the log.
func (p *Process) LogTail(n int) string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), n)
}

func tail(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Stop ends the process: SIGTERM, then SIGKILL if it has not exited within
// a grace period, and waits for it. It signals only this process, by its
// PID. Stop returns an error if the process had already exited on its own
// with a failure, since a peer that dies during a test is news; it is safe
// to call more than once.
func (p *Process) Stop() error {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			if p.waitErr != nil {
				p.stopErr = fmt.Errorf("testpeer: %s exited before it was stopped: %w", p.line, p.waitErr)
			}
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		t := time.NewTimer(stopGrace)
		defer t.Stop()
		select {
		case <-p.exited:
		case <-t.C:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
	return p.stopErr
}

// Kill ends the process with SIGKILL, as a crash or power cut would end
// it, and waits for it to exit. Since the death is intended, Stop reports
// nothing afterwards.
func (p *Process) Kill() error {
	var err error
	p.stopOnce.Do(func() {
		err = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
	})
	return err
}

// WaitTCP polls addr until it accepts a TCP connection, failing early if
// the process exits first (typically because another program took its
// port) or ctx ends.
func (p *Process) WaitTCP(ctx context.Context, addr string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-p.exited:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := WaitTCP(ctx, addr)
	select {
	case <-p.exited:
		return p.exitError()
	default:
	}
	return err
}

// errExited reports a process that ended before it was ready.
var errExited = errors.New("exited before it was ready")

func (p *Process) exitError() error {
	return fmt.Errorf("testpeer: %s %w (%v); last lines of %s:\n%s", p.line, errExited, p.waitErr, p.log, p.LogTail(15))
}

// WaitTCP polls addr until it accepts a TCP connection or ctx ends. It
// closes the test connection at once; dcmtk and Orthanc log and ignore a
// connection that sends no association request.
func WaitTCP(ctx context.Context, addr string) error {
	var d net.Dialer
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		t := time.NewTimer(20 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("testpeer: waiting for %s: %w (last error: %v)", addr, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Run runs a one-shot program such as echoscu or dcmdump to completion and
// returns its standard output and standard error. Like Start it adds
// TCP_NODELAY=1 to the environment. ctx kills the program if it ends first.
// A failure's error holds the full command line, ready to paste into a
// shell, and the end of the standard error.
func Run(ctx context.Context, name string, args ...string) (stdout, stderr string, err error) {
	path, err := Lookup(name)
	if err != nil {
		return "", "", err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), noDelay)
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.SysProcAttr = sysProcAttr()
	// A killed program's children could hold the pipes open; WaitDelay
	// stops Run from waiting for them.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), errb.String(), fmt.Errorf("testpeer: %s: %w\n%s", commandLine(path, args), err, tail(errb.String(), 20))
	}
	return out.String(), errb.String(), nil
}

// RunT runs a one-shot program for tb as Run does, failing tb if it fails
// and skipping or failing as Need does if it is not installed.
func RunT(tb testing.TB, name string, args ...string) (stdout, stderr string) {
	tb.Helper()
	Need(tb, name)
	stdout, stderr, err := Run(tb.Context(), name, args...)
	check(tb, err)
	return stdout, stderr
}

// commandLine formats a command as a POSIX shell would need it typed.
func commandLine(path string, args []string) string {
	q := make([]string, 0, 1+len(args))
	for _, a := range append([]string{path}, args...) {
		q = append(q, shellQuote(a))
	}
	return strings.Join(q, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=+,@%", r)) {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
