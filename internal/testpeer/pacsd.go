package testpeer

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Pacsd is a pacsd serve that a test started, built from this module.
type Pacsd struct {
	*Process
	DIMSEAddr string // host:port of its DIMSE listener
	HTTPAddr  string // host:port of its HTTP listener
	Bin       string // the pacsd binary, for its other commands
}

// StartPacsdT builds pacsd into a temporary directory (with the race
// detector when race is set, so that a peer drives pacsd's handlers under
// it) and starts it with an empty archive in a new directory, on ports of
// 127.0.0.1 the kernel picks, with args added to its command line. It
// waits until pacsd says it started. When the test ends pacsd is stopped,
// and a data race it reported fails the test.
func StartPacsdT(tb testing.TB, race bool, args ...string) *Pacsd {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "pacsd")
	build := []string{"build", "-o", bin}
	if race {
		build = append(build, "-race")
	}
	build = append(build, "github.com/pacsd/pacsd/cmd/pacsd")
	ctx, cancel := context.WithTimeout(tb.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", build...).CombinedOutput(); err != nil {
		tb.Fatalf("go %s: %v\n%s", strings.Join(build, " "), err, out)
	}
	dir := tb.TempDir()
	proc := StartT(tb, Cmd{Name: bin, Dir: dir, Args: append([]string{
		"serve", "--data", filepath.Join(dir, "data"),
		"--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--shutdown-timeout", "10s",
	}, args...)})
	tb.Cleanup(func() {
		_ = proc.Stop() // the cleanup of StartT reports its error
		if b, _ := os.ReadFile(proc.Log()); strings.Contains(string(b), "WARNING: DATA RACE") {
			tb.Errorf("pacsd reported a data race; its log is %s", proc.Log())
		}
	})
	p, err := waitStarted(proc, 30*time.Second)
	if err != nil {
		tb.Fatal(err)
	}
	p.Bin = bin
	return p
}

// waitStarted waits for the log line that says pacsd started and gives
// its addresses.
func waitStarted(proc *Process, timeout time.Duration) (*Pacsd, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(proc.Log())
		for line := range strings.SplitSeq(string(b), "\n") {
			var rec struct {
				Msg       string `json:"msg"`
				DIMSEAddr string `json:"dimse_addr"`
				HTTPAddr  string `json:"http_addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "pacsd started" {
				return &Pacsd{Process: proc, DIMSEAddr: rec.DIMSEAddr, HTTPAddr: rec.HTTPAddr}, nil
			}
		}
		select {
		case <-proc.Exited():
			return nil, fmt.Errorf("testpeer: pacsd exited at start:\n%s", proc.LogTail(40))
		case <-time.After(20 * time.Millisecond):
		}
	}
	return nil, fmt.Errorf("testpeer: pacsd did not start:\n%s", proc.LogTail(40))
}
