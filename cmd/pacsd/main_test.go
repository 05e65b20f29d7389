package main

import (
	"github.com/pacsd/pacsd/index/sqlindex"

	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/testpeer"
	"github.com/pacsd/pacsd/storage/file"
)

// The end-to-end tests run the real program as a separate process, so that
// it can be killed, on loopback ports the kernel picks. The test binary
// doubles as pacsd: with PACSD_TEST_AS_MAIN=1 it runs main instead of the
// tests.
func TestMain(m *testing.M) {
	if os.Getenv("PACSD_TEST_AS_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// instance is a pacsd process under test.
type instance struct {
	t         testing.TB
	proc      *testpeer.Process
	data      string
	dimseAddr string
	httpAddr  string
}

// log returns what pacsd has logged so far.
func (p *instance) log() string {
	b, _ := os.ReadFile(p.proc.Log())
	return string(b)
}

func (p *instance) host() string { h, _, _ := net.SplitHostPort(p.dimseAddr); return h }
func (p *instance) port() string { _, port, _ := net.SplitHostPort(p.dimseAddr); return port }

// startPacsd runs pacsd serve on data with the given extra flags and
// waits until it listens.
func startPacsd(t *testing.T, data string, flags ...string) *instance {
	t.Helper()
	return startPacsdIn(t, nil, data, flags...)
}

// startPacsdIn runs pacsd serve as startPacsd does, through the command
// wrap (a program and its arguments, which end by running the program
// given after them), if not nil.
func startPacsdIn(t testing.TB, wrap []string, data string, flags ...string) *instance {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	args := append([]string{"serve", "--data", data, "--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--shutdown-timeout", "10s"}, flags...)
	cmd := testpeer.Cmd{Name: exe, Args: args, Dir: dir, Env: []string{"PACSD_TEST_AS_MAIN=1"}}
	if wrap != nil {
		cmd.Name, cmd.Args = wrap[0], append(append(wrap[1:len(wrap):len(wrap)], exe), args...)
	}
	proc := testpeer.StartT(t, cmd)
	p := &instance{t: t, proc: proc, data: data}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if started := findLog(p.log(), "pacsd started"); started != nil {
			p.dimseAddr, _ = started["dimse_addr"].(string)
			p.httpAddr, _ = started["http_addr"].(string)
			return p
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

// findLog returns the first JSON log record with message msg.
func findLog(log, msg string) map[string]any {
	for _, line := range strings.Split(log, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			return rec
		}
	}
	return nil
}

// dcmtk runs a dcmtk tool against p with calling AE DCMTK.
func (p *instance) dcmtk(tool string, args ...string) (string, error) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	all := append([]string{"-aet", "DCMTK", "-aec", "PACSD"}, args...)
	all = append(all, p.host(), p.port())
	stdout, stderr, err := testpeer.Run(ctx, tool, reorder(tool, all)...)
	return stdout + stderr, err
}

// reorder puts peer and port before the files for the tools that take
// files last.
func reorder(tool string, args []string) []string {
	if tool != "storescu" && tool != "dcmsend" {
		return args
	}
	// flags, then host port, then files
	n := len(args)
	host, port := args[n-2], args[n-1]
	var flags, files []string
	for i := 0; i < n-2; i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") || strings.HasPrefix(a, "+") {
			flags = append(flags, a)
			if takesValue(a) && i+1 < n-2 {
				i++
				flags = append(flags, args[i])
			}
			continue
		}
		files = append(files, a)
	}
	return append(append(flags, host, port), files...)
}

func takesValue(flag string) bool {
	switch flag {
	case "-aet", "-aec", "-to", "-ta", "-td", "-pdu", "+sp", "-xf", "+cl":
		return true
	}
	return false
}

// stop ends pacsd gracefully (SIGTERM) and waits for it.
func (p *instance) stop() {
	p.t.Helper()
	if err := p.proc.Stop(); err != nil {
		p.t.Logf("pacsd stop: %v", err)
	}
}

// archive opens pacsd's index and storage directly, as an auditor would.
type audit struct {
	db    *sqlindex.DB
	store *file.Store
}

func openArchive(t *testing.T, data string) *audit {
	t.Helper()
	return openArchiveAt(t, data, "sqlite://"+filepath.Join(data, "index.db"))
}

// openArchiveAt opens pacsd's index at the URL idx and its storage under
// data, as openArchive does the embedded defaults.
func openArchiveAt(t *testing.T, data, idx string) *audit {
	t.Helper()
	db, err := openIndex(t.Context(), idx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	store, err := file.New(filepath.Join(data, "objects"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	return &audit{db, store}
}

// object returns the stored object of an instance, its data set bytes
// (after our File Meta Information) and its index row.
func (a *audit) object(t *testing.T, sop string) (meta dicom.FileMeta, dataset []byte, row *index.Instance) {
	t.Helper()
	ctx := context.Background()
	row, err := a.db.Instance(ctx, sop)
	if err != nil {
		t.Fatalf("index: %s: %v", sop, err)
	}
	obj, err := a.store.Open(ctx, row.Key)
	if err != nil {
		t.Fatalf("storage: %s: %v", row.Key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if hex.EncodeToString(sum[:]) != row.SHA256 || int64(len(b)) != row.Size {
		t.Errorf("%s: object's SHA-256/size %x/%d, index says %s/%d", sop, sum, len(b), row.SHA256, row.Size)
	}
	meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%s: %v", row.Key, err)
	}
	return meta, b[n:], row
}

// part10 splits a Part-10 file into its meta and data set.
func part10(t *testing.T, path string) (dicom.FileMeta, []byte) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	meta, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return meta, b[n:]
}

// checkConsistent checks that every index row has its object, with the
// SHA-256 and size the row records, and returns the number of rows.
func (a *audit) checkConsistent(t *testing.T) int {
	t.Helper()
	n := 0
	for row, err := range a.db.Instances(context.Background()) {
		if err != nil {
			t.Fatal(err)
		}
		n++
		a.object(t, row.SOPInstanceUID)
	}
	return n
}

func TestEcho(t *testing.T) {
	testpeer.Need(t, "echoscu")
	p := startPacsd(t, t.TempDir())
	if out, err := p.dcmtk("echoscu"); err != nil {
		t.Fatalf("echoscu: %v\n%s", err, out)
	}
	// The called AE title is checked.
	ctx := context.Background()
	if _, stderr, err := testpeer.Run(ctx, "echoscu", "-aet", "DCMTK", "-aec", "NOTPACSD", p.host(), p.port()); err == nil || !strings.Contains(stderr, "Called AE Title Not Recognized") {
		t.Errorf("echoscu to the wrong called AE: %v\n%s", err, stderr)
	}
}

func TestAllowList(t *testing.T) {
	testpeer.Need(t, "echoscu")
	p := startPacsd(t, t.TempDir(), "--allow-ae", "MODALITY@127.0.0.1,OTHER@10.0.0.0/8")
	ctx := context.Background()
	if _, stderr, err := testpeer.Run(ctx, "echoscu", "-aet", "MODALITY", "-aec", "PACSD", p.host(), p.port()); err != nil {
		t.Errorf("allowed AE refused: %v\n%s", err, stderr)
	}
	for _, ae := range []string{"DCMTK", "OTHER"} {
		_, stderr, err := testpeer.Run(ctx, "echoscu", "-aet", ae, "-aec", "PACSD", p.host(), p.port())
		if err == nil || !strings.Contains(stderr, "Calling AE Title Not Recognized") {
			t.Errorf("%s (not allowed from loopback) accepted: %v\n%s", ae, err, stderr)
		}
	}
}

func TestListenRefusedWithoutAllowList(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve", "--data", t.TempDir(), "--dimse-addr", ":0"}, func(string) string { return "" }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "allow-list") {
		t.Fatalf("run = %v, want a refusal to listen beyond loopback", err)
	}
}

func TestHealth(t *testing.T) {
	p := startPacsd(t, t.TempDir())
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := httpGet("http://" + p.httpAddr + path)
		if err != nil || resp != 200 {
			t.Errorf("GET %s = %d, %v", path, resp, err)
		}
	}
}

// TestUsage runs pacsd's command line as an operator would type it, and
// checks what it prints and its exit status.
func TestUsage(t *testing.T) {
	commands := []string{"serve", "retrieve", "reindex", "verify", "version"}
	// Each command's -h lists its own flags and not those of others.
	store := []string{"--config", "--log-level", "--log-format", "--data", "--storage", "--index"}
	serveOnly := []string{"--dimse-addr", "--http-addr", "--allow-ae", "--allow-any-ae", "--max-associations", "--max-pdu",
		"--idle-timeout", "--shutdown-timeout", "--max-matches", "--case-sensitive-names", "--dicomweb-root", "--cors-origins", "--max-body"}
	retrieveOnly := []string{"--from", "--level", "--key", "--move"}
	stores := append(append([]string{}, store...), "--ae-title", "--duplicates", "--remote-ae")
	for _, tc := range []struct {
		args           []string
		status         int
		stdout, stderr []string // what they must say
		not            []string // flags stdout must not list
	}{
		{args: nil, status: 2, stderr: append([]string{"no command"}, commands...)},
		{args: []string{"-h"}, stdout: commands},
		{args: []string{"help"}, stdout: commands},
		{args: []string{"serve", "-h"}, stdout: append(append([]string{}, stores...), serveOnly...), not: retrieveOnly},
		{args: []string{"help", "serve"}, stdout: serveOnly},
		{args: []string{"retrieve", "--help"}, stdout: append(append([]string{}, stores...), retrieveOnly...), not: serveOnly},
		{args: []string{"reindex", "-h"}, stdout: store, not: append(append([]string{"--ae-title", "--remote-ae"}, serveOnly...), retrieveOnly...)},
		{args: []string{"verify", "-h"}, stdout: store, not: append(append([]string{"--ae-title", "--remote-ae"}, serveOnly...), retrieveOnly...)},
		{args: []string{"version", "-h"}, stdout: []string{"version"}, not: store},
		{args: []string{"version"}, stdout: []string{"pacsd " + version}},
		{args: []string{"serve", "--bogus"}, status: 2, stderr: []string{"unknown flag --bogus", `"pacsd serve -h"`}},
		{args: []string{"serve", "--max-pdu"}, status: 2, stderr: []string{"--max-pdu", "expected int"}},
		{args: []string{"serve", "extra"}, status: 2, stderr: []string{"unexpected argument extra"}},
		{args: []string{"bogus"}, status: 2, stderr: []string{"bogus", `"pacsd -h"`}},
		{args: []string{"--data", "data"}, status: 2, stderr: []string{"--data"}},
		{args: []string{"retrieve", "--remote-ae", "X=h:1"}, status: 2, stderr: []string{"--from", `"pacsd retrieve -h"`}},
		{args: []string{"verify", "--http-addr", "127.0.0.1:0"}, status: 2, stderr: []string{"unknown flag --http-addr"}},
	} {
		t.Run(strings.Join(append([]string{"pacsd"}, tc.args...), " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tc.args, func(string) string { return "" }, &stdout, &stderr)
			if err != nil {
				// What main prints.
				fmt.Fprintln(&stderr, "pacsd:", err)
			}
			if got := exitStatus(err); got != tc.status {
				t.Errorf("exit status %d, want %d (%v)", got, tc.status, err)
			}
			for _, w := range tc.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("standard output does not say %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tc.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("standard error does not say %q:\n%s", w, stderr.String())
				}
			}
			listed := map[string]bool{}
			for _, m := range flagLine.FindAllStringSubmatch(stdout.String(), -1) {
				listed[m[1]] = true
			}
			for _, f := range tc.not {
				if listed[f] {
					t.Errorf("lists %s, a flag of another command:\n%s", f, stdout.String())
				}
			}
		})
	}
}

// flagLine matches the flag a line of -h describes.
var flagLine = regexp.MustCompile(`(?m)^\s+(?:-\w, )?(--[a-z0-9-]+)`)

// TestExitStatus runs pacsd as a process: a command line it cannot run
// exits 2, help 0.
func TestExitStatus(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		status int
	}{
		{nil, 2},
		{[]string{"serve", "--bogus"}, 2},
		{[]string{"serve", "-h"}, 0},
		{[]string{"verify", "--data", t.TempDir(), "--storage", "gs://bucket"}, 1},
	} {
		if got := exitCode(t, tc.args...); got != tc.status {
			t.Errorf("pacsd %s: exit status %d, want %d", strings.Join(tc.args, " "), got, tc.status)
		}
	}
}
