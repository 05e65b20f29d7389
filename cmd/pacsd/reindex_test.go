package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/index/sqlite"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// indexView is what an index answers about an archive: its counts, a
// study-level query of everything, and every instance's record.
type indexView struct {
	counts  index.Counts
	studies []string
	records map[string]index.Instance
	// metadata holds each instance's metadata document, or its error.
	metadata map[string]string
}

func viewIndex(t *testing.T, data string, sops []string) indexView {
	t.Helper()
	ctx := t.Context()
	db, err := sqlite.Open(ctx, filepath.Join(data, "index.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	v := indexView{records: map[string]index.Instance{}, metadata: map[string]string{}}
	if v.counts, err = db.Counts(ctx); err != nil {
		t.Fatal(err)
	}
	q := &index.Query{Level: index.StudyLevel, Identifier: &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.PatientName, VR: "PN"},
		{Tag: tag.PatientID, VR: "LO"},
		{Tag: tag.StudyInstanceUID, VR: "UI"},
		{Tag: tag.ModalitiesInStudy, VR: "CS"},
		{Tag: tag.NumberOfStudyRelatedSeries, VR: "IS"},
		{Tag: tag.NumberOfStudyRelatedInstances, VR: "IS"},
	}}}
	for m, err := range db.Find(ctx, q) {
		if err != nil {
			t.Fatal(err)
		}
		v.studies = append(v.studies, fmt.Sprint(m.Elements))
	}
	slices.Sort(v.studies)
	for _, sop := range sops {
		in, err := db.Instance(ctx, sop)
		if err != nil {
			t.Fatalf("%s: %v", sop, err)
		}
		v.records[sop] = *in
		doc, err := db.Metadata(ctx, in)
		v.metadata[sop] = fmt.Sprintf("%s %v", doc, err)
	}
	return v
}

// pacsd runs the pacsd command line in this process and returns its
// output.
func pacsd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	err = run(ctx, args, testEnv, &out, &errb)
	return out.String(), errb.String(), err
}

// testEnv is the environment of pacsd run in the test process: the AWS_
// credentials that tests set with t.Setenv, and nothing else, so that a
// developer's PACSD_ variables do not change what a test runs.
func testEnv(name string) string {
	if strings.HasPrefix(name, "AWS_") {
		return os.Getenv(name)
	}
	return ""
}

// exitCode runs pacsd as a process, as an operator's script would, and
// returns its exit code.
func exitCode(t *testing.T, args ...string) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, args...)
	cmd.Env = append(os.Environ(), "PACSD_TEST_AS_MAIN=1")
	out, err := cmd.CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("pacsd %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return 0
}

// TestReindexAndVerify stores two series through pacsd, deletes the
// index, rebuilds it with pacsd reindex and checks that it answers as the
// original did; then damages storage and checks that pacsd verify reports
// exactly the damage, and its exit code.
func TestReindexAndVerify(t *testing.T) {
	testpeer.Need(t, "storescu")
	data := t.TempDir()
	p := startPacsd(t, data)
	var files []dcmgen.File
	for i, pt := range []dcmgen.Patient{{Name: "Lost^Index", ID: "R1"}, {Name: "Found^Again", ID: "R2"}} {
		dir := t.TempDir()
		fs, err := dcmgen.WriteSeries(dir, 5+i, 24<<10, dcmgen.Instance{Patient: pt, Series: dcmgen.Series{Modality: []string{"CT", "MR"}[i]}})
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, fs...)
		if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
	}
	p.stop()
	var sops []string
	for _, f := range files {
		sops = append(sops, f.SOPInstanceUID)
	}
	before := viewIndex(t, data, sops)
	if before.counts.Instances != len(files) || len(before.studies) != 2 {
		t.Fatalf("after storescu the index has %+v, studies %q", before.counts, before.studies)
	}

	// The index is lost.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(data, "index.db"+suffix)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	start := time.Now()
	stdout, stderr, err := pacsd(t, "reindex", "--data", data)
	t.Logf("pacsd reindex in %v:\n%s%s", time.Since(start).Round(time.Millisecond), stdout, stderr)
	if err != nil {
		t.Fatalf("pacsd reindex: %v", err)
	}
	if !strings.Contains(stdout, fmt.Sprintf("indexed %d objects, 0 failed", len(files))) {
		t.Errorf("pacsd reindex does not report %d objects indexed", len(files))
	}
	after := viewIndex(t, data, sops)
	if after.counts != before.counts {
		t.Errorf("Counts after reindex %+v, before %+v", after.counts, before.counts)
	}
	if !slices.Equal(after.studies, before.studies) {
		t.Errorf("studies after reindex\n%s\nbefore\n%s", strings.Join(after.studies, "\n"), strings.Join(before.studies, "\n"))
	}
	for sop, was := range before.records {
		got := after.records[sop]
		// The object's modification time stands for when it arrived.
		if d := got.ReceivedAt.Sub(was.ReceivedAt).Abs(); d > 5*time.Second {
			t.Errorf("%s: received at %v after reindex, %v before", sop, got.ReceivedAt, was.ReceivedAt)
		}
		got.ReceivedAt = was.ReceivedAt
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", was) {
			t.Errorf("%s: record after reindex\n%+v\nbefore\n%+v", sop, got, was)
		}
		if after.metadata[sop] != before.metadata[sop] {
			t.Errorf("%s: metadata after reindex\n%s\nbefore\n%s", sop, after.metadata[sop], before.metadata[sop])
		}
	}

	// A sound archive verifies clean.
	stdout, _, err = pacsd(t, "verify", "--data", data)
	if err != nil || !strings.Contains(stdout, "0 problems") {
		t.Errorf("pacsd verify of a sound archive: %v\n%s", err, stdout)
	}
	if code := exitCode(t, "verify", "--data", data); code != 0 {
		t.Errorf("pacsd verify of a sound archive exits %d", code)
	}

	// One object has a byte changed, one is deleted, and one appears that
	// pacsd never stored.
	objects := filepath.Join(data, "objects")
	keyOf := func(sop string) string { return after.records[sop].Key }
	corrupt, missing := keyOf(sops[0]), keyOf(sops[len(sops)-1])
	b, err := os.ReadFile(filepath.Join(objects, corrupt))
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x80
	if err := os.WriteFile(filepath.Join(objects, corrupt), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(objects, missing)); err != nil {
		t.Fatal(err)
	}
	stray, err := dcmgen.WriteSeries(t.TempDir(), 1, 0, dcmgen.Instance{})
	if err != nil {
		t.Fatal(err)
	}
	orphan := archive.Key(stray[0].StudyInstanceUID, stray[0].SeriesInstanceUID, stray[0].SOPInstanceUID, "")
	b, err = os.ReadFile(stray[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(objects, orphan)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(objects, orphan), b, 0o644); err != nil {
		t.Fatal(err)
	}

	stdout, _, err = pacsd(t, "verify", "--data", data)
	t.Logf("pacsd verify of the damaged archive: %v\n%s", err, stdout)
	if err == nil {
		t.Errorf("pacsd verify of a damaged archive succeeded")
	}
	var problems []string
	for _, line := range strings.Split(stdout, "\n") {
		if kind, rest, ok := strings.Cut(line, " "); ok && slices.Contains([]string{"missing", "orphan", "sha256", "size", "unreadable"}, kind) {
			problems = append(problems, kind+" "+strings.TrimSuffix(strings.Fields(rest)[0], ":"))
		}
	}
	slices.Sort(problems)
	want := []string{"missing " + missing, "orphan " + orphan, "sha256 " + corrupt}
	slices.Sort(want)
	if !slices.Equal(problems, want) {
		t.Errorf("pacsd verify reported\n%s\nwant\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(stdout, "3 problems") {
		t.Errorf("pacsd verify's summary does not count 3 problems")
	}
	if code := exitCode(t, "verify", "--data", data); code != 1 {
		t.Errorf("pacsd verify of a damaged archive exits %d, want 1", code)
	}
}

// TestReindexS3Spool reindexes an archive on S3 with a spool whose
// objects are not uploaded yet: reindex reads them where they are.
func TestReindexS3Spool(t *testing.T) {
	a := newS3Archive(t)
	dir, files := writeSeries(t, 4)
	data := t.TempDir()
	url := a.url("ack=spool")
	p := startPacsd(t, data, "--storage", url)
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	// These are uploaded; the next ones stay in the spool, since MinIO
	// goes down first.
	for deadline := time.Now().Add(time.Minute); countFiles(t, filepath.Join(data, "spool")) > 0 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.srv.Stop(); err != nil {
		t.Fatal(err)
	}
	more, err := dcmgen.WriteSeries(t.TempDir(), 2, 24<<10, dcmgen.Instance{Patient: dcmgen.Patient{ID: "SPOOLED"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range more {
		if out, err := p.dcmtk("storescu", f.Path); err != nil {
			t.Fatalf("storescu: %v\n%s", err, out)
		}
	}
	p.stop()
	if err := a.srv.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	if n := countFiles(t, filepath.Join(data, "spool")); n != len(more) {
		t.Fatalf("the spool holds %d objects, want %d", n, len(more))
	}
	all := append(files, more...)
	var sops []string
	for _, f := range all {
		sops = append(sops, f.SOPInstanceUID)
	}
	before := viewIndex(t, data, sops)
	os.Remove(filepath.Join(data, "index.db"))
	os.Remove(filepath.Join(data, "index.db-wal"))
	os.Remove(filepath.Join(data, "index.db-shm"))
	stdout, stderr, err := pacsd(t, "reindex", "--data", data, "--storage", url)
	if err != nil {
		t.Fatalf("pacsd reindex: %v\n%s%s", err, stdout, stderr)
	}
	after := viewIndex(t, data, sops)
	if after.counts != before.counts || !slices.Equal(after.studies, before.studies) || fmt.Sprint(after.metadata) != fmt.Sprint(before.metadata) {
		t.Errorf("after reindex %+v %q, before %+v %q", after.counts, after.studies, before.counts, before.studies)
	}
	if stdout, _, err := pacsd(t, "verify", "--data", data, "--storage", url); err != nil {
		t.Errorf("pacsd verify: %v\n%s", err, stdout)
	}
	// Reindex and verify only read: the spool is left for pacsd serve.
	if n := countFiles(t, filepath.Join(data, "spool")); n != len(more) {
		t.Errorf("the spool holds %d objects after reindex and verify, want %d", n, len(more))
	}
}
