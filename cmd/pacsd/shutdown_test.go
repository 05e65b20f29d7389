package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage/mem"
	"github.com/pacsd/pacsd/storage/spool"
)

// TestGracefulShutdown sends SIGTERM to pacsd in the middle of a storescu
// run: pacsd stops accepting associations at once, lets the one in
// progress finish, and then exits cleanly with every instance stored.
func TestGracefulShutdown(t *testing.T) {
	testpeer.Need(t, "storescu", "echoscu")
	const total, termAfter = 200, 40
	dir := t.TempDir()
	files, err := dcmgen.WriteSeries(dir, total, 16<<10, dcmgen.Instance{Series: dcmgen.Series{Modality: "MR"}})
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startPacsd(t, data)
	path, err := testpeer.Lookup("storescu")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path, "-v", "-aet", "DCMTK", "-aec", "PACSD", p.host(), p.port(), "+sd", dir)
	cmd.Env = append(os.Environ(), "TCP_NODELAY=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks, termed := 0, false
	var log strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "I: Received Store Response (Success)") {
			acks++
			if acks == termAfter && !termed {
				if err := syscall.Kill(p.proc.PID(), syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				termed = true
				// New associations are refused from now on.
				deadline := time.Now().Add(5 * time.Second)
				for {
					_, _, err := testpeer.Run(context.Background(), "echoscu", "-aet", "LATE", "-aec", "PACSD", p.host(), p.port())
					if err != nil {
						break
					}
					if time.Now().After(deadline) {
						t.Error("pacsd still accepts associations after SIGTERM")
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("storescu failed during shutdown: %v\n%s", err, log.String())
	}
	select {
	case <-p.proc.Exited():
	case <-time.After(15 * time.Second):
		t.Fatal("pacsd did not exit after the association ended")
	}
	if err := p.proc.Stop(); err != nil {
		t.Fatalf("pacsd exit: %v", err)
	}
	if acks != total {
		t.Errorf("%d of %d instances acknowledged", acks, total)
	}
	if findLog(p.log(), "pacsd stopped") == nil {
		t.Error("no clean stop in the log")
	}
	a := openArchive(t, data)
	checkSeries(t, a, files)
}

// TestServeFailsClean starts pacsd serve where it fails part way through
// its start, and checks that it returns the error having closed all it
// opened: no goroutine is left, and the spool's lock is released, so that
// the next pacsd starts on the same data directory.
func TestServeFailsClean(t *testing.T) {
	env := func(k string) string {
		return map[string]string{"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"}[k]
	}
	// A spool in front of an S3 server that is not there: pacsd starts,
	// taking images into the spool, and its uploaders wait for S3.
	spooled := "s3://bucket?endpoint=127.0.0.1:1&secure=false&max_retries=1&ack=spool"
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	data := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"HTTP port taken", []string{"--storage", spooled, "--http-addr", taken.Addr().String()}, "HTTP listener"},
		{"DIMSE port taken", []string{"--storage", spooled, "--dimse-addr", taken.Addr().String()}, "DIMSE listener"},
		{"index unusable", []string{"--storage", spooled, "--index", "mysql://db/pacsd"}, "index"},
		{"HTTP port taken, file storage", []string{"--http-addr", taken.Addr().String()}, "HTTP listener"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshot()
			args := append([]string{"serve", "--data", data, "--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"}, tc.args...)
			var stderr syncBuffer
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // it should not start at all
			defer cancel()
			err := run(ctx, args, env, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("serve = %v, want an error about the %s\n%s", err, tc.want, stderr.String())
			}
			checkLeaks(t, before)
		})
	}

	// Two pacsd on one spool: the second is refused, and the first keeps
	// its lock until it stops.
	before := snapshot()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var first syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", data, "--storage", spooled, "--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
			env, io.Discard, &first)
	}()
	for !strings.Contains(first.String(), "pacsd started") {
		select {
		case err := <-done:
			t.Fatalf("first pacsd: %v\n%s", err, first.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	err = run(t.Context(), []string{"serve", "--data", data, "--storage", spooled, "--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0"},
		env, io.Discard, io.Discard)
	if !errors.Is(err, spool.ErrLocked) {
		t.Errorf("second pacsd on the same spool: %v, want %v", err, spool.ErrLocked)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("first pacsd: %v\n%s", err, first.String())
	}
	if !strings.Contains(first.String(), "pacsd stopped") {
		t.Errorf("first pacsd did not stop cleanly:\n%s", first.String())
	}
	checkLeaks(t, before)
	sp, err := spool.New(spool.Config{Dir: filepath.Join(data, "spool"), Remote: mem.New()})
	if err != nil {
		t.Fatalf("spool still locked after pacsd stopped: %v", err)
	}
	sp.Close(t.Context())
}

// TestShutdownDeadline stops pacsd while a peer holds an association
// open and idle: pacsd aborts it at the shutdown timeout and returns,
// rather than wait for the peer to release it.
func TestShutdownDeadline(t *testing.T) {
	before := snapshot()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var log syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--data", t.TempDir(), "--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
			"--log-format", "json", "--shutdown-timeout", "300ms"}, func(string) string { return "" }, io.Discard, &log)
	}()
	var started map[string]any
	for started == nil {
		select {
		case err := <-done:
			t.Fatalf("pacsd: %v\n%s", err, log.String())
		case <-time.After(10 * time.Millisecond):
			started = findLog(log.String(), "pacsd started")
		}
	}
	d := &dimse.Dialer{CallingAE: "IDLE", CalledAE: "PACSD", Proposals: []dimse.Proposal{
		{AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}},
	}}
	a, err := d.Dial(t.Context(), started["dimse_addr"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Echo(t.Context()); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("pacsd: %v", err)
		}
		if took := time.Since(stopped); took > 5*time.Second {
			t.Errorf("pacsd took %v to stop with a shutdown timeout of 300ms", took)
		}
	case <-time.After(time.Minute):
		t.Fatalf("pacsd did not stop a minute after its shutdown timeout of 300ms:\n%s", log.String())
	}
	select {
	case <-a.Done():
	case <-time.After(10 * time.Second):
		t.Error("the idle association was not aborted")
	}
	a.Abort()
	if findLog(log.String(), "pacsd stopped") == nil {
		t.Errorf("no clean stop in the log:\n%s", log.String())
	}
	checkLeaks(t, before)
}

// TestClosersDeadline checks that serve closes what it opened last first,
// each within the shutdown timeout, and does not wait past it, and a
// grace, for one that ignores it.
func TestClosersDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var order []string
		closeWith := func(name string, wait bool) func(context.Context) error {
			return func(ctx context.Context) error {
				order = append(order, name)
				if _, ok := ctx.Deadline(); !ok {
					t.Errorf("%s: closed without a deadline", name)
				}
				if wait {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			}
		}
		var cs closers
		cs.add("storage", closeWith("storage", false))
		cs.add("index", closeWith("index", false))
		cs.add("servers", closeWith("servers", true))
		start := time.Now()
		if err := cs.close(time.Second, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("close: %v", err)
		}
		if took := time.Since(start); took != time.Second {
			t.Errorf("close took %v, want the shutdown timeout, 1s", took)
		}
		if want := []string{"servers", "index", "storage"}; !slices.Equal(order, want) {
			t.Errorf("closed %v, want %v", order, want)
		}

		// A closer that ignores its deadline is given up on.
		hung := make(chan struct{})
		cs = nil
		cs.add("storage", closeWith("storage", false))
		cs.add("servers", func(context.Context) error { <-hung; return nil })
		start = time.Now()
		err := cs.close(time.Second, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "servers") {
			t.Errorf("close = %v, want an error naming the servers", err)
		}
		if took := time.Since(start); took != time.Second+shutdownGrace {
			t.Errorf("close gave up after %v, want %v", took, time.Second+shutdownGrace)
		}
		close(hung)
	})
}

// running is what the process holds: goroutines and open files.
type running struct {
	goroutines map[string]string // stacks by ID
	files      map[string]string // what each descriptor is, by number
}

func snapshot() running {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	r := running{goroutines: map[string]string{}, files: map[string]string{}}
	for _, g := range strings.Split(string(buf), "\n\n") {
		if id, _, ok := strings.Cut(strings.TrimPrefix(g, "goroutine "), " "); ok {
			r.goroutines[id] = g
		}
	}
	fds, _ := os.ReadDir("/proc/self/fd") // Linux; elsewhere goroutines only
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); err == nil {
			r.files[fd.Name()] = target
		}
	}
	return r
}

// checkLeaks fails t if goroutines started or files opened since before
// are still there a few seconds on. (A socket nothing refers to any more
// may have been closed by the garbage collector.)
func checkLeaks(t *testing.T, before running) {
	t.Helper()
	var left []string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = left[:0]
		now := snapshot()
		for id, stack := range now.goroutines {
			// os/signal's loop starts at the process's first
			// signal.Notify (serve's, for SIGHUP) and never ends.
			if _, ok := before.goroutines[id]; !ok && !strings.Contains(stack, "pacsd.snapshot") && !strings.Contains(stack, "os/signal.loop") {
				left = append(left, stack)
			}
		}
		for fd, target := range now.files {
			if before.files[fd] != target {
				left = append(left, "file descriptor "+fd+": "+target)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		t.Errorf("%d goroutines and files left behind:\n%s", len(left), strings.Join(left, "\n\n"))
	}
}

// syncBuffer is a bytes.Buffer that a logger writes while a test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
