package webtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// binDir holds the pacsd that the tests build, for the whole test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pacsd-webtest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var build struct {
	once sync.Once
	path string
	err  error
}

// pacsdBinary builds pacsd once per test run. A test binary built with the
// race detector gets a pacsd built with it too, so that the clients here
// drive pacsd's HTTP handlers under the detector.
func pacsdBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.path = filepath.Join(binDir, "pacsd")
		args := []string{"build", "-o", build.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "github.com/pacsd/pacsd/cmd/pacsd")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", args...).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// pacsd is a running pacsd serve.
type pacsd struct {
	proc      *testpeer.Process
	dimseAddr string
	httpAddr  string
}

// origin is the scheme, host and port of pacsd's HTTP server, as a
// browser names it.
func (p *pacsd) origin() string { return "http://" + p.httpAddr }

// root is the DICOMweb service root.
func (p *pacsd) root() string { return p.origin() + "/dicom-web" }

// startPacsd starts pacsd with an empty archive in a new directory, on
// ports of 127.0.0.1 that the kernel picks, with args added to its
// command line, and waits until it listens. When the test ends pacsd is
// stopped, and a data race that it reported fails the test.
func startPacsd(t *testing.T, args ...string) *pacsd {
	t.Helper()
	bin := pacsdBinary(t)
	dir := t.TempDir()
	proc := testpeer.StartT(t, testpeer.Cmd{Name: bin, Dir: dir, Args: append([]string{
		"serve", "--data", filepath.Join(dir, "data"),
		"--dimse-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--log-format", "json", "--shutdown-timeout", "10s",
	}, args...)})
	t.Cleanup(func() {
		_ = proc.Stop() // the cleanup of StartT reports its error
		if b, _ := os.ReadFile(proc.Log()); bytes.Contains(b, []byte("WARNING: DATA RACE")) {
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
				HTTPAddr  string `json:"http_addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "pacsd started" {
				return &pacsd{proc: proc, dimseAddr: rec.DIMSEAddr, httpAddr: rec.HTTPAddr}
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

// store sends files to pacsd with dcmtk's dcmsend, over DIMSE, so that
// what the DICOMweb clients find owes nothing to pacsd's STOW-RS.
func (p *pacsd) store(t *testing.T, files ...string) {
	t.Helper()
	host, port, err := net.SplitHostPort(p.dimseAddr)
	if err != nil {
		t.Fatal(err)
	}
	dcmsend(t, "PACSD", host, port, files)
}

func dcmsend(t *testing.T, calledAE, host, port string, files []string) {
	t.Helper()
	testpeer.Need(t, "dcmsend")
	args := append([]string{"-aet", "DCMTK", "-aec", calledAE, host, port}, files...)
	if _, stderr, err := testpeer.Run(t.Context(), "dcmsend", args...); err != nil {
		t.Fatalf("dcmsend: %v\n%s", err, stderr)
	}
}

// sentDatasets returns the SHA-256 of each data set that dcmsend sends of
// files, by SOP Instance UID, as dcmtk's storescp receives and writes it
// bit for bit (+B). dcmsend re-encodes what it reads (CT_small.dcm, for
// one, arrives different from its file), so this, not the file, is what
// pacsd must give back of an instance stored over DIMSE.
func sentDatasets(t *testing.T, files []string) map[string]string {
	t.Helper()
	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "PACSD", Args: []string{"+B"}})
	dcmsend(t, "PACSD", "127.0.0.1", strconv.Itoa(scp.Port), files)
	received, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for sop, path := range received {
		sums[sop] = readSample(t, path).datasetSHA256
	}
	return sums
}

// sample is a test file of python3-pydicom, as dcmtk reads it.
type sample struct {
	path          string
	study, series string
	sop, sopClass string
	patientName   string
	attrs         map[uint32]string
	// datasetSHA256 is the SHA-256 of the data set after the File Meta
	// Information: the bytes an archive must keep as they were sent.
	datasetSHA256 string
}

// corpus is the set of pydicom's files that the tests store: three
// patients named Doe with six studies between them, and three single
// images of other patients, one of them JPEG baseline.
type corpus struct {
	doe  []*sample
	byID map[string]*sample // by path relative to pydicom's test_files
}

// loadCorpus finds the files and reads them with dcmdump.
func loadCorpus(t *testing.T) *corpus {
	t.Helper()
	testpeer.Need(t, "dcmdump")
	c := &corpus{byID: map[string]*sample{}}
	for _, path := range testpeer.PydicomFilesT(t) {
		_, rel, ok := strings.Cut(filepath.ToSlash(path), "/test_files/")
		if !ok {
			continue
		}
		doe := strings.HasPrefix(rel, "dicomdirtests/77654033/") || strings.HasPrefix(rel, "dicomdirtests/98892001/") ||
			strings.HasPrefix(rel, "dicomdirtests/98892003/")
		if !doe && !slices.Contains(singles, rel) {
			continue
		}
		s := readSample(t, path)
		c.byID[rel] = s
		if doe {
			c.doe = append(c.doe, s)
		}
	}
	for _, rel := range singles {
		if c.byID[rel] == nil {
			t.Fatalf("python3-pydicom has no test file %s", rel)
		}
	}
	if len(c.doe) < 20 {
		t.Fatalf("found %d files of the Doe patients in python3-pydicom, want at least 20", len(c.doe))
	}
	return c
}

// The single files of the corpus.
const (
	ctSmall   = "CT_small.dcm"          // CT, Explicit VR Little Endian
	mrSmall   = "MR_small.dcm"          // MR, Explicit VR Little Endian
	jpegRGB   = "SC_rgb_jpeg_dcmtk.dcm" // colour, JPEG baseline
	j2kStowed = "693_J2KI.dcm"          // CT, JPEG 2000; stored by STOW-RS only
)

var singles = []string{ctSmall, mrSmall, jpegRGB, j2kStowed}

// files returns the paths of the samples that the tests store over DIMSE.
func (c *corpus) files() []string {
	var out []string
	for rel, s := range c.byID {
		if rel != j2kStowed {
			out = append(out, s.path)
		}
	}
	slices.Sort(out)
	return out
}

// studies returns the samples by Study Instance UID.
func studies(samples []*sample) map[string][]*sample {
	m := map[string][]*sample{}
	for _, s := range samples {
		m[s.study] = append(m[s.study], s)
	}
	return m
}

func readSample(t *testing.T, path string) *sample {
	t.Helper()
	attrs, err := testpeer.Dump(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &sample{
		path:          path,
		study:         attrs[uint32(tag.StudyInstanceUID)],
		series:        attrs[uint32(tag.SeriesInstanceUID)],
		sop:           attrs[uint32(tag.SOPInstanceUID)],
		sopClass:      attrs[uint32(tag.SOPClassUID)],
		patientName:   attrs[uint32(tag.PatientName)],
		attrs:         attrs,
		datasetSHA256: sha256Hex(b[n:]),
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// pixelItems returns the value of the Pixel Data of a file as dcmdump
// writes it out (+W): the whole value of native pixel data, or each item
// of encapsulated pixel data, the Basic Offset Table first.
func pixelItems(t *testing.T, path string) [][]byte {
	t.Helper()
	dir := t.TempDir()
	if _, stderr, err := testpeer.Run(t.Context(), "dcmdump", "-q", "+W", dir, path); err != nil {
		t.Fatalf("dcmdump +W: %v\n%s", err, stderr)
	}
	var items [][]byte
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("%s.%d.raw", filepath.Base(path), i)))
		if os.IsNotExist(err) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, b)
	}
	if len(items) == 0 {
		t.Fatalf("dcmdump wrote no pixel data of %s", path)
	}
	return items
}

// webDir is the directory of the node project: the test's working
// directory.
func webDir(t *testing.T) string {
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
	dir := webDir(t)
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	installed, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json"))
	if err == nil && !installed.ModTime().Before(lock.ModTime()) {
		return
	}
	msg := "the node packages of internal/webtest are not installed, or older than its package-lock.json"
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and under CI=true a missing peer fails the test: the CI setup must run scripts/install-test-deps, as `make test` does", msg)
	}
	t.Skipf("%s; run `make test`, which installs them (npm ci)", msg)
}

// needChromium returns the path of Debian's Chromium, skipping or failing
// the test as testpeer.Need does when it is not installed.
func needChromium(t *testing.T) string {
	t.Helper()
	testpeer.Need(t, "chromium")
	path, err := testpeer.Lookup("chromium")
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// ohifDist returns the directory of the OHIF viewer's built files, which
// npm ci installs with the node project.
func ohifDist(t *testing.T) string {
	t.Helper()
	dist := filepath.Join(webDir(t), "node_modules", ".ohif", "dist")
	if _, err := os.Stat(filepath.Join(dist, "index.html")); err != nil {
		t.Fatalf("the OHIF viewer is not installed (npm ci runs scripts/install-ohif.mjs): %v", err)
	}
	return dist
}

// runNode runs a script of scripts/ with node, handing it plan as a JSON
// file, and decodes the JSON it prints into result. The script's standard
// error, where the clients log, is logged with the test.
func runNode(t *testing.T, timeout time.Duration, script string, plan, result any) {
	t.Helper()
	b, err := json.MarshalIndent(plan, "", "  ")
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
	stdout, stderr, err := testpeer.Run(ctx, "node", filepath.Join(webDir(t), "scripts", script), planFile)
	t.Logf("node %s: %v", script, time.Since(start).Round(time.Millisecond))
	if strings.TrimSpace(stderr) != "" {
		t.Logf("node %s standard error:\n%s", script, tailLines(stderr, 60))
	}
	if err != nil {
		t.Fatalf("node %s: %v", script, err)
	}
	if err := json.Unmarshal([]byte(stdout), result); err != nil {
		t.Fatalf("node %s printed no JSON result: %v\n%s", script, err, stdout)
	}
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
