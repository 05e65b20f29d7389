package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestStorageCommitmentWithOrthanc has Orthanc, as a modality would, ask
// pacsd to commit to instances (N-ACTION) and receive the result on an
// association pacsd opens back to it (N-EVENT-REPORT).
func TestStorageCommitmentWithOrthanc(t *testing.T) {
	testpeer.Need(t, "Orthanc", "storescu")
	ctx := context.Background()
	dir := t.TempDir()
	writeCorpus(t, dir)
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	files = files[:3]
	port, err := testpeer.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	orthanc := testpeer.StartOrthancT(t, testpeer.OrthancOptions{
		Modalities: map[string]testpeer.Modality{"pacsd": {AET: "PACSD", Host: "127.0.0.1", Port: port}},
	})
	p := startPacsd(t, t.TempDir(), "--dimse-addr", "127.0.0.1:"+strconv.Itoa(port), "--remote-ae", "ORTHANC="+orthanc.DICOMAddr)
	if out, err := p.dcmtk("storescu", files...); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	type ref struct {
		SOPClassUID    string
		SOPInstanceUID string
	}
	var refs []ref
	for _, f := range files {
		m, _ := part10(t, f)
		refs = append(refs, ref{m.MediaStorageSOPClassUID, m.MediaStorageSOPInstanceUID})
	}
	missing := ref{refs[0].SOPClassUID, "1.2.826.0.1.3680043.2.1125.999.1"}
	var job struct{ ID string }
	if err := orthanc.PostJSON(ctx, "/modalities/pacsd/storage-commitment", map[string]any{
		"DicomInstances": append(slices.Clone(refs), missing),
		"Timeout":        60,
	}, &job); err != nil {
		t.Fatalf("storage-commitment request: %v", err)
	}
	var report struct {
		Status   string
		Success  []ref
		Failures []struct {
			SOPClassUID, SOPInstanceUID string
			FailureReason               int
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := orthanc.GetJSON(ctx, "/storage-commitment/"+job.ID, &report); err != nil {
			t.Fatal(err)
		}
		if report.Status != "Pending" || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if report.Status != "Failure" {
		t.Fatalf("report status %q, want Failure (one instance is not archived)\n%s", report.Status, p.proc.LogTail(20))
	}
	got := fmt.Sprint(report.Success)
	for _, r := range refs {
		if !slices.Contains(report.Success, r) {
			t.Errorf("%s not reported committed: %s", r.SOPInstanceUID, got)
		}
	}
	// Orthanc has the result before pacsd has released the association
	// that carried it and logged it.
	rec := findLog(p.log(), "storage commitment reported")
	for wait := time.Now().Add(10 * time.Second); rec == nil && time.Now().Before(wait); {
		time.Sleep(50 * time.Millisecond)
		rec = findLog(p.log(), "storage commitment reported")
	}
	if rec == nil {
		t.Errorf("pacsd did not log the report")
	} else if rec["remote"] != orthanc.DICOMAddr {
		t.Errorf("report logged as %v, want it sent on a new association to %s", rec, orthanc.DICOMAddr)
	}
	if len(report.Failures) != 1 || report.Failures[0].SOPInstanceUID != missing.SOPInstanceUID || report.Failures[0].FailureReason != 0x0112 {
		t.Errorf("failures %+v, want %s with reason 0x0112 (no such object instance)", report.Failures, missing.SOPInstanceUID)
	}
}
