package dimsetest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// DIMSE statuses the script reports, as numbers.
const (
	success = 0x0000
	cancel  = 0xFE00
)

// plan is what scripts/dimse.mjs does.
type plan struct {
	Host        string     `json:"host"`
	Port        int        `json:"port"`
	CallingAE   string     `json:"callingAE"`
	CalledAE    string     `json:"calledAE"`
	DestAE      string     `json:"destAE"`
	DestPort    int        `json:"destPort"`
	DestDelayMs int        `json:"destDelayMs"`
	Study       string     `json:"study"`
	Series      string     `json:"series"`
	Files       []planFile `json:"files"`
	Steps       []string   `json:"steps"`
}

type planFile struct {
	Path string `json:"path"`
	SOP  string `json:"sop"`
}

// association is how a step's association ended.
type association struct {
	Ended  string
	Errors []string
}

// subOps are the counts of a C-MOVE or C-GET response.
type subOps struct {
	Status                                int
	Remaining, Completed, Failed, Warning *int
}

func (s *subOps) String() string {
	if s == nil {
		return "no final response"
	}
	n := func(p *int) string {
		if p == nil {
			return "-"
		}
		return strconv.Itoa(*p)
	}
	return fmt.Sprintf("status 0x%04X, remaining %s, completed %s, failed %s, warning %s", s.Status, n(s.Remaining), n(s.Completed), n(s.Failed), n(s.Warning))
}

func val(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}

// TestDcmjsDimse drives pacsd with dcmjs-dimse: every DIMSE service it
// offers, then C-CANCEL of C-FIND, C-MOVE and C-GET. The cancels are the
// regression tests of two defects found with independent stacks: a
// C-CANCEL during a C-GET aborted the association, and one during a C-MOVE
// counted the sub-operation in flight as failed although the destination
// stored it.
func TestDcmjsDimse(t *testing.T) {
	needNodeModules(t)
	const n = 12
	files, err := dcmgen.WriteSeries(t.TempDir(), n, 64<<10, dcmgen.Instance{Series: dcmgen.Series{Modality: "CT"}})
	if err != nil {
		t.Fatal(err)
	}
	destPort, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	p := startPacsd(t, "--remote-ae", "DCMJS-DEST=127.0.0.1:"+strconv.Itoa(destPort))
	host, port := p.dimse(t)
	pl := plan{Host: host, Port: port, CallingAE: "DCMJS", CalledAE: "PACSD", DestAE: "DCMJS-DEST", DestPort: destPort,
		DestDelayMs: 300, Study: files[0].StudyInstanceUID, Series: files[0].SeriesInstanceUID,
		Steps: []string{"echo", "store", "find", "move", "get", "cancelFind", "cancelMove", "cancelGet"}}
	for _, f := range files {
		pl.Files = append(pl.Files, planFile{f.Path, f.SOPInstanceUID})
	}
	var res map[string]json.RawMessage
	runNode(t, 3*time.Minute, "dimse.mjs", pl, &res)

	released := func(t *testing.T, a association) {
		t.Helper()
		if a.Ended != "released" || len(a.Errors) > 0 {
			t.Errorf("association %s, errors %q; want released", a.Ended, a.Errors)
		}
	}
	t.Run("C-ECHO", func(t *testing.T) {
		var got struct {
			Status int
			association
		}
		step(t, res, "echo", &got)
		if got.Status != success {
			t.Errorf("status 0x%04X", got.Status)
		}
		released(t, got.association)
	})
	t.Run("C-STORE", func(t *testing.T) {
		var got struct {
			Statuses map[string]int
			association
		}
		step(t, res, "store", &got)
		for _, f := range files {
			if st, ok := got.Statuses[f.SOPInstanceUID]; !ok || st != success {
				t.Errorf("%s: status 0x%04X (answered: %v)", f.SOPInstanceUID, st, ok)
			}
		}
		released(t, got.association)
	})
	t.Run("C-FIND", func(t *testing.T) {
		var got struct {
			Study                    []map[string]any
			Images                   []string
			StudyStatus, ImageStatus int
			association
		}
		step(t, res, "find", &got)
		if len(got.Study) != 1 || got.Study[0]["StudyInstanceUID"] != pl.Study || fmt.Sprint(got.Study[0]["NumberOfStudyRelatedInstances"]) != strconv.Itoa(n) {
			t.Errorf("study matches %v, want study %s with %d instances", got.Study, pl.Study, n)
		}
		var want []string
		for _, f := range files {
			want = append(want, f.SOPInstanceUID)
		}
		slices.Sort(want)
		slices.Sort(got.Images)
		if !slices.Equal(got.Images, want) {
			t.Errorf("image matches %v, want %v", got.Images, want)
		}
		if got.StudyStatus != success || got.ImageStatus != success {
			t.Errorf("final statuses 0x%04X, 0x%04X", got.StudyStatus, got.ImageStatus)
		}
		released(t, got.association)
	})
	t.Run("C-MOVE", func(t *testing.T) {
		var got struct {
			Final    *subOps
			Received int
			association
		}
		step(t, res, "move", &got)
		if got.Final == nil || got.Final.Status != success || val(got.Final.Completed) != n || val(got.Final.Failed) != 0 || got.Received != n {
			t.Errorf("final response %v, destination received %d; want success with %d completed", got.Final, got.Received, n)
		}
		released(t, got.association)
	})
	t.Run("C-GET", func(t *testing.T) {
		var got struct {
			Final    *subOps
			Received []string
			association
		}
		step(t, res, "get", &got)
		if got.Final == nil || got.Final.Status != success || val(got.Final.Completed) != n || len(got.Received) != n {
			t.Errorf("final response %v, received %d; want success with %d completed", got.Final, len(got.Received), n)
		}
		released(t, got.association)
	})
	t.Run("C-CANCEL of C-FIND", func(t *testing.T) {
		var got struct {
			Matches, Status, EchoAfter int
			association
		}
		step(t, res, "cancelFind", &got)
		if got.Status != cancel || got.Matches >= n {
			t.Errorf("final status 0x%04X after %d matches; want 0xFE00 before all %d", got.Status, got.Matches, n)
		}
		if got.EchoAfter != success {
			t.Errorf("C-ECHO after the cancel: status 0x%04X", got.EchoAfter)
		}
		released(t, got.association)
	})
	t.Run("C-CANCEL of C-MOVE", func(t *testing.T) {
		var got struct {
			Final                    *subOps
			Pending, ReceivedAtFinal int
			Received, EchoAfter      int
			association
		}
		step(t, res, "cancelMove", &got)
		f := got.Final
		if f == nil || f.Status != cancel {
			t.Fatalf("final response %v, want 0xFE00", f)
		}
		// The sub-operation in flight when the cancel arrived is
		// finished and counted as what it was: completed, as the
		// destination stored it.
		if val(f.Completed) != got.ReceivedAtFinal || val(f.Failed) != 0 || got.Received != got.ReceivedAtFinal {
			t.Errorf("final response %v; the destination received %d by then, %d in all", f, got.ReceivedAtFinal, got.Received)
		}
		if val(f.Completed)+val(f.Remaining) != n || val(f.Completed) >= n {
			t.Errorf("final response %v: completed and remaining should add up to %d, some remaining", f, n)
		}
		if got.EchoAfter != success {
			t.Errorf("C-ECHO after the cancel: status 0x%04X", got.EchoAfter)
		}
		released(t, got.association)
	})
	t.Run("C-CANCEL of C-GET", func(t *testing.T) {
		var got struct {
			Final               *subOps
			Received, EchoAfter int
			association
		}
		step(t, res, "cancelGet", &got)
		f := got.Final
		// PS3.4 C.4.3.3.1: the C-STORE in flight is answered, the
		// final response says Cancel with the counts, and the
		// association stays.
		if f == nil || f.Status != cancel || val(f.Completed) != 3 || val(f.Failed) != 0 || val(f.Remaining) != n-3 || got.Received != 3 {
			t.Errorf("final response %v after %d C-STOREs; want 0xFE00, 3 completed, %d remaining", f, got.Received, n-3)
		}
		if got.EchoAfter != success {
			t.Errorf("C-ECHO after the cancel: status 0x%04X", got.EchoAfter)
		}
		released(t, got.association)
	})
}

// step decodes the result of one step of the script, failing the test
// with the step's error if it failed.
func step(t *testing.T, res map[string]json.RawMessage, name string, v any) {
	t.Helper()
	raw, ok := res[name]
	if !ok {
		t.Fatalf("no result for %s", name)
	}
	var failed struct{ Error *string }
	if json.Unmarshal(raw, &failed) == nil && failed.Error != nil {
		t.Fatalf("%s failed: %s", name, *failed.Error)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, raw)
	}
}

// pacsd is a running pacsd serve.
type pacsd struct {
	proc      *testpeer.Process
	dimseAddr string
}

func (p *pacsd) dimse(t *testing.T) (string, int) {
	t.Helper()
	host, port, _ := strings.Cut(p.dimseAddr, ":")
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatalf("DIMSE address %q", p.dimseAddr)
	}
	return host, n
}

// startPacsd builds pacsd (with the race detector if the test has it) and
// starts it with an empty archive, on ports of 127.0.0.1 the kernel picks,
// with the extra arguments given. When the test ends pacsd is stopped, and
// a data race it reported fails the test.
func startPacsd(t *testing.T, args ...string) *pacsd {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pacsd")
	build := []string{"build", "-o", bin}
	if raceEnabled {
		build = append(build, "-race")
	}
	build = append(build, "github.com/pacsd/pacsd/cmd/pacsd")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", build...).CombinedOutput(); err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(build, " "), err, out)
	}
	dir := t.TempDir()
	proc := testpeer.StartT(t, testpeer.Cmd{Name: bin, Dir: dir, Args: append([]string{
		"serve", "--data", filepath.Join(dir, "data"),
		"--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--shutdown-timeout", "10s",
	}, args...)})
	t.Cleanup(func() {
		_ = proc.Stop() // the cleanup of StartT reports its error
		if b, _ := os.ReadFile(proc.Log()); strings.Contains(string(b), "WARNING: DATA RACE") {
			t.Errorf("pacsd reported a data race; its log is %s", proc.Log())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(proc.Log())
		for line := range strings.SplitSeq(string(b), "\n") {
			var rec struct {
				Msg       string `json:"msg"`
				DIMSEAddr string `json:"dimse_addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "pacsd started" {
				return &pacsd{proc: proc, dimseAddr: rec.DIMSEAddr}
			}
		}
		select {
		case <-proc.Exited():
			t.Fatalf("pacsd exited at start:\n%s", proc.LogTail(40))
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("pacsd did not start:\n%s", proc.LogTail(40))
	return nil
}

// nodeDir is the directory of the node project: the test's working
// directory.
func nodeDir(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// needNodeModules makes sure that node and the node project's packages
// are installed, skipping the test, or failing it under CI=true, as
// testpeer.Need does for a missing program.
func needNodeModules(t *testing.T) {
	t.Helper()
	testpeer.Need(t, "node")
	dir := nodeDir(t)
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return
	}
	msg := "the node packages of internal/dimsetest are not installed, or older than its package-lock.json"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and under CI=true a missing peer fails the test: the CI setup must run scripts/install-test-deps, as `make test` does", msg)
	}
	t.Skipf("%s; run `make test`, which installs them (npm ci)", msg)
}

// runNode runs a script of scripts/ with node, handing it pl as a JSON
// file, and decodes the JSON it prints into result. The script's standard
// error is logged with the test.
func runNode(t *testing.T, timeout time.Duration, script string, pl, result any) {
	t.Helper()
	b, err := json.MarshalIndent(pl, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	planFile := filepath.Join(t.TempDir(), "plan.json")
	if err := os.WriteFile(planFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	start := time.Now()
	stdout, stderr, err := testpeer.Run(ctx, "node", filepath.Join(nodeDir(t), "scripts", script), planFile)
	t.Logf("node %s: %v", script, time.Since(start).Round(time.Millisecond))
	if strings.TrimSpace(stderr) != "" {
		t.Logf("node %s standard error:\n%s", script, stderr)
	}
	if err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
	if err := json.Unmarshal([]byte(stdout), result); err != nil {
		t.Fatalf("node %s printed no JSON result: %v\n%s", script, err, stdout)
	}
}
