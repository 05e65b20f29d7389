package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

func httpGet(url string) (int, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// TestPydicomCorpus sends every Part-10 test file of Debian's
// python3-pydicom with dcmsend, each proposing its own transfer syntax, to
// dcmtk's storescp (keeping data sets bit for bit, +B) and to pacsd. pacsd
// must keep exactly the instances storescp accepts, each data set byte
// for byte as storescp received it from the same sender, and index their
// attributes as dcmdump reads them.
func TestPydicomCorpus(t *testing.T) {
	testpeer.Need(t, "dcmsend", "storescp", "dcmdump")
	files := testpeer.PydicomFilesT(t)
	ctx := context.Background()

	scp := testpeer.StartStoreSCPT(t, testpeer.StoreSCPOptions{AET: "PACSD", Dir: t.TempDir(), Args: []string{"+B"}})
	send := func(host, port string) string {
		args := append([]string{"-aet", "DCMTK", "-aec", "PACSD", "-dn", "+ma", "--no-halt", "-nuc", host, port}, files...)
		stdout, stderr, _ := testpeer.Run(ctx, "dcmsend", args...)
		return stdout + stderr
	}
	send("127.0.0.1", fmt.Sprint(scp.Port))
	want, err := scp.Files()
	if err != nil {
		t.Fatal(err)
	}
	if len(want) < 40 {
		t.Fatalf("storescp accepted only %d instances", len(want))
	}

	data := t.TempDir()
	p := startPacsd(t, data)
	out := send(p.host(), p.port())
	p.stop()

	a := openArchive(t, data)
	counts, err := a.db.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("dcmsend to pacsd:\n%s", out)
	if n := a.checkConsistent(t); n != counts.Instances {
		t.Errorf("%d rows checked", n)
	}
	checked, refused := 0, 0
	for sop, path := range want {
		t.Run(filepath.Base(path), func(t *testing.T) {
			smeta, sdata := part10(t, path)
			dump, derr := testpeer.Dump(ctx, path)
			if derr == nil && (dump[uint32(tag.SOPInstanceUID)] != sop || dump[uint32(tag.SOPClassUID)] != smeta.MediaStorageSOPClassUID) {
				// dcmsend took the C-STORE's UIDs from a File Meta
				// Information that contradicts the data set (pydicom
				// keeps such files on purpose). storescp stores it
				// anyway; pacsd checks the command against the data
				// set and refuses it (PS3.4 B.2.3).
				if _, err := a.db.Instance(ctx, sop); err == nil {
					t.Errorf("instance whose command contradicts its data set (%s / %s) was archived", sop, dump[uint32(tag.SOPInstanceUID)])
				}
				refused++
				return
			}
			meta, got, row := a.object(t, sop)
			if meta.TransferSyntaxUID != smeta.TransferSyntaxUID {
				t.Errorf("transfer syntax %s, storescp's %s", meta.TransferSyntaxUID, smeta.TransferSyntaxUID)
			}
			if !bytes.Equal(got, sdata) {
				t.Errorf("data set differs from storescp's: %d bytes vs %d", len(got), len(sdata))
			}
			if row.CallingAE != "DCMTK" || row.CalledAE != "PACSD" {
				t.Errorf("row AEs %q -> %q", row.CallingAE, row.CalledAE)
			}
			checked++
			if derr != nil {
				t.Logf("attributes not compared: dcmdump cannot read the file: %v", derr)
				return
			}
			checkIndexed(t, a, dump)
		})
	}
	t.Logf("%d instances compared with storescp's; %d refused for contradicting their command", checked, refused)
	if counts.Instances != len(want)-refused {
		t.Errorf("pacsd indexed %d instances, storescp received %d of which %d contradict their command", counts.Instances, len(want), refused)
	}
}

// checkIndexed compares the index's patient, study and series attributes
// of an instance with dcmdump's reading of it.
func checkIndexed(t *testing.T, a *audit, dump map[uint32]string) {
	t.Helper()
	ctx := context.Background()
	study, err := a.db.Study(ctx, dump[uint32(tag.StudyInstanceUID)])
	if err != nil {
		t.Fatalf("study: %v", err)
	}
	series, err := a.db.Series(ctx, dump[uint32(tag.SeriesInstanceUID)])
	if err != nil {
		t.Fatalf("series: %v", err)
	}
	if study.PatientID != dump[uint32(tag.PatientID)] || study.IssuerOfPatientID != dump[uint32(tag.IssuerOfPatientID)] {
		t.Errorf("patient (%q, %q), dcmdump (%q, %q)", study.PatientID, study.IssuerOfPatientID, dump[uint32(tag.PatientID)], dump[uint32(tag.IssuerOfPatientID)])
	}
	patient, err := a.db.StudyPatient(ctx, study.StudyInstanceUID)
	if err != nil {
		t.Fatalf("patient: %v", err)
	}
	// Several pydicom files share UIDs with different contents; the index
	// holds the latest. Compare only where this instance is the latest
	// sent of its study: its own instance attributes always.
	inst, err := a.db.InstanceAttributes(ctx, dump[uint32(tag.SOPInstanceUID)])
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ds   interface{ String(tag.Tag) string }
		tags []tag.Tag
	}{
		{inst, []tag.Tag{tag.SOPClassUID, tag.InstanceNumber, tag.Rows, tag.Columns, tag.BitsAllocated, tag.NumberOfFrames}},
		{series.Attributes, []tag.Tag{tag.Modality, tag.SeriesNumber}},
		{study.Attributes, []tag.Tag{tag.StudyDate, tag.StudyTime, tag.AccessionNumber, tag.StudyID}},
		{patient.Attributes, []tag.Tag{tag.PatientName, tag.PatientBirthDate, tag.PatientSex}},
	} {
		for _, tg := range c.tags {
			if got, want := c.ds.String(tg), dump[uint32(tg)]; got != want && !sharedUID(t, a, dump) {
				t.Errorf("%v = %q, dcmdump %q", tg, got, want)
			}
		}
	}
}

// sharedUID reports whether the instance's study holds other instances,
// whose later attributes may rightly differ (pydicom's corpus reuses
// UIDs).
func sharedUID(t *testing.T, a *audit, dump map[uint32]string) bool {
	st, err := a.db.Study(context.Background(), dump[uint32(tag.StudyInstanceUID)])
	return err == nil && st.NumberOfStudyRelatedInstances > 1
}

// TestGeneratedSeries stores a generated 300-instance CT series with
// storescu: every data set must arrive byte for byte and the index must
// hold exactly that series.
func TestGeneratedSeries(t *testing.T) {
	testpeer.Need(t, "storescu")
	dir := t.TempDir()
	files, err := dcmgen.WriteSeries(dir, 300, 64<<10, dcmgen.Instance{
		Patient: dcmgen.Patient{Name: "Series^Three Hundred", ID: "GEN300", IssuerOfPatientID: "TRUST-A", BirthDate: "19700101", Sex: "F"},
		Study:   dcmgen.Study{AccessionNumber: "ACC300", Description: "Generated", Date: "20261122", Time: "101010"},
		Series:  dcmgen.Series{Modality: "CT", Number: 3, Description: "Axial"},
	})
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	p := startPacsd(t, data)
	if out, err := p.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}
	p.stop()
	a := openArchive(t, data)
	checkSeries(t, a, files)
	study, err := a.db.Study(context.Background(), files[0].StudyInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if study.PatientID != "GEN300" || study.IssuerOfPatientID != "TRUST-A" || study.NumberOfStudyRelatedInstances != 300 ||
		study.NumberOfStudyRelatedSeries != 1 || strings.Join(study.ModalitiesInStudy, `\`) != "CT" ||
		study.Attributes.String(tag.AccessionNumber) != "ACC300" {
		t.Errorf("study %+v", study)
	}
}

// checkSeries checks that every generated file is archived with its data
// set unchanged, and nothing else.
func checkSeries(t *testing.T, a *audit, files []dcmgen.File) {
	t.Helper()
	ctx := context.Background()
	for _, f := range files {
		_, want := part10(t, f.Path)
		_, got, _ := a.object(t, f.SOPInstanceUID)
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: data set differs from the file's", f.SOPInstanceUID)
		}
	}
	series, err := a.db.Series(ctx, files[0].SeriesInstanceUID)
	if err != nil {
		t.Fatal(err)
	}
	if series.NumberOfSeriesRelatedInstances != len(files) {
		t.Errorf("series has %d instances, %d sent", series.NumberOfSeriesRelatedInstances, len(files))
	}
}

// TestConcurrentStorescu runs 8 storescu processes at once, each with a
// series of its own.
func TestConcurrentStorescu(t *testing.T) {
	testpeer.Need(t, "storescu")
	const senders, perSeries = 8, 40
	study := dcmgen.UID()
	var all [][]dcmgen.File
	var dirs []string
	for i := 0; i < senders; i++ {
		dir := t.TempDir()
		files, err := dcmgen.WriteSeries(dir, perSeries, 32<<10, dcmgen.Instance{
			Patient: dcmgen.Patient{Name: "Concurrent^Eight", ID: "CONC8"},
			Study:   dcmgen.Study{UID: study},
			Series:  dcmgen.Series{Modality: []string{"CT", "MR"}[i%2], Number: i + 1},
		})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, files)
		dirs = append(dirs, dir)
	}
	data := t.TempDir()
	p := startPacsd(t, data)
	var wg sync.WaitGroup
	errs := make([]error, senders)
	outs := make([]string, senders)
	for i := range dirs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], errs[i] = p.dcmtk("storescu", "+sd", dirs[i])
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("storescu %d: %v\n%s", i, err, outs[i])
		}
	}
	p.stop()
	a := openArchive(t, data)
	for _, files := range all {
		checkSeries(t, a, files)
	}
	st, err := a.db.Study(context.Background(), study)
	if err != nil {
		t.Fatal(err)
	}
	mods := append([]string(nil), st.ModalitiesInStudy...)
	sort.Strings(mods)
	if st.NumberOfStudyRelatedInstances != senders*perSeries || st.NumberOfStudyRelatedSeries != senders || strings.Join(mods, ",") != "CT,MR" {
		t.Errorf("study: %d instances, %d series, modalities %v", st.NumberOfStudyRelatedInstances, st.NumberOfStudyRelatedSeries, st.ModalitiesInStudy)
	}
	if n := a.checkConsistent(t); n != senders*perSeries {
		t.Errorf("%d instances indexed", n)
	}
}
