package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
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
