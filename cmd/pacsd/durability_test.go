package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestKillDuringStore kills pacsd with SIGKILL in the middle of a
// 500-instance storescu run. After a restart every instance storescu saw
// acknowledged must be in storage and in the index, with the SHA-256 the
// index records and its data set unchanged, and no index row may lack its
// object.
func TestKillDuringStore(t *testing.T) {
	testpeer.Need(t, "storescu", "echoscu")
	const total, killAfter = 500, 150
	dir := t.TempDir()
	files, err := dcmgen.WriteSeries(dir, total, 24<<10, dcmgen.Instance{
		Patient: dcmgen.Patient{Name: "Kill^Nine", ID: "KILL9"},
		Series:  dcmgen.Series{Modality: "CT"},
	})
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]dcmgen.File{}
	for _, f := range files {
		byPath[f.Path] = f
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
	// storescu -v logs each file it sends and each response it gets;
	// an instance is acknowledged when a success response follows it.
	var acked []dcmgen.File
	var sending string
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "I: Sending file: "):
			sending = strings.TrimPrefix(line, "I: Sending file: ")
		case strings.HasPrefix(line, "I: Received Store Response (Success)"):
			acked = append(acked, byPath[sending])
			if len(acked) == killAfter && !killed {
				if err := p.proc.Kill(); err != nil {
					t.Fatal(err)
				}
				killed = true
			}
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("storescu finished with %d acknowledgements before the kill", len(acked))
	}
	<-p.proc.Exited()
	t.Logf("%d instances acknowledged before SIGKILL", len(acked))

	// Whatever the crash left must be consistent, before any restart
	// tidies up.
	a := openArchive(t, data)
	for _, f := range acked {
		_, want := part10(t, f.Path)
		_, got, _ := a.object(t, f.SOPInstanceUID)
		if !bytes.Equal(got, want) {
			t.Errorf("%s: acknowledged data set differs after the crash", f.SOPInstanceUID)
		}
	}
	rows := a.checkConsistent(t)
	if rows < len(acked) {
		t.Errorf("%d index rows for %d acknowledged instances", rows, len(acked))
	}
	a.db.Close()
	a.store.Close()

	// pacsd restarts on the same data and takes the whole series again.
	p2 := startPacsd(t, data)
	if out, err := p2.dcmtk("echoscu"); err != nil {
		t.Fatalf("echoscu after restart: %v\n%s", err, out)
	}
	if out, err := p2.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu after restart: %v\n%s", err, out)
	}
	p2.stop()
	a = openArchive(t, data)
	checkSeries(t, a, files)
	if n := a.checkConsistent(t); n != total {
		t.Errorf("%d instances indexed, want %d", n, total)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := a.db.Counts(ctx); err != nil || c.Series != 1 || c.Studies != 1 {
		t.Errorf("counts %+v, %v", c, err)
	}

	// What the crash left is at most orphans: the object of the store
	// the kill cut short. verify --repair, once they are old enough for
	// it to be sure no store is still at work on them, leaves nothing.
	stdout, _, err := pacsd(t, "verify", "--data", data)
	for _, line := range strings.Split(stdout, "\n") {
		if kind, _, _ := strings.Cut(line, " "); slices.Contains([]string{"missing", "size", "sha256", "unreadable"}, kind) {
			t.Errorf("pacsd verify after the crash: %s", line)
		}
	}
	t.Logf("pacsd verify after the crash: %v\n%s", err, stdout)
	hourAgo := time.Now().Add(-time.Hour)
	filepath.WalkDir(filepath.Join(data, "objects"), func(path string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			os.Chtimes(path, hourAgo, hourAgo)
		}
		return nil
	})
	if stdout, _, err := pacsd(t, "verify", "--repair", "--data", data); err != nil {
		t.Errorf("pacsd verify --repair after the crash: %v\n%s", err, stdout)
	}
	if stdout, _, err := pacsd(t, "verify", "--data", data); err != nil || !strings.Contains(stdout, " 0 problems") {
		t.Errorf("pacsd verify after the repair: %v\n%s", err, stdout)
	}
}
