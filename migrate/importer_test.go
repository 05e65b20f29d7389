package migrate_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/migrate"
	"github.com/pacsd/pacsd/migrate/migratetest"
)

// writeDICOMDIR writes a DICOMDIR at path whose image records name refs.
func writeDICOMDIR(t *testing.T, path string, refs ...[]string) {
	t.Helper()
	var buf bytes.Buffer
	w, err := dcmgen.NewWriter(&buf, dcmgen.Meta{SOPClassUID: "1.2.840.10008.1.3.10", SOPInstanceUID: dcmgen.UID()})
	if err != nil {
		t.Fatal(err)
	}
	var items []dcmgen.Item
	for _, r := range refs {
		items = append(items, dcmgen.Item{{Tag: 0x00041430, VR: "CS", Value: "IMAGE"}, {Tag: 0x00041500, VR: "CS", Value: r}})
	}
	for _, e := range []dcmgen.Element{
		{Tag: 0x00041130, VR: "CS", Value: "DISK1"},
		{Tag: 0x00041220, VR: "SQ", Value: items},
	} {
		if err := w.WriteElement(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestImport(t *testing.T) {
	dir := t.TempDir()
	study := dcmgen.Study{UID: dcmgen.UID(), Date: "20240102"}
	pat := dcmgen.Patient{ID: "P1", Name: "DOE^JANE"}
	mk := func(rel string, in dcmgen.Instance, cut int, bare bool) []byte {
		t.Helper()
		in.Study, in.Patient, in.Rows, in.Columns = study, pat, 16, 16
		var buf bytes.Buffer
		if _, err := dcmgen.WriteFile(&buf, &in); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		if bare {
			b = b[bytes.Index(b, []byte{0x08, 0x00}):] // the data set after File Meta Information
			b = b[bytes.Index(b[10:], []byte{0x08, 0x00})+10:]
		}
		b = b[:len(b)-cut]
		p := filepath.Join(dir, filepath.FromSlash(rel))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return b
	}
	mk("A/IM1", dcmgen.Instance{}, 0, false)
	mk("A/IM2", dcmgen.Instance{Syntax: dcmgen.ImplicitVRLittleEndian}, 0, true)
	mk("B/TRUNC.dcm", dcmgen.Instance{}, 100, false)
	os.WriteFile(filepath.Join(dir, "B", "readme.txt"), []byte("Images of the old PACS, disk 1 of 3.\n"), 0o644)
	writeDICOMDIR(t, filepath.Join(dir, "DICOMDIR"), []string{"A", "IM1"}, []string{"A", "IM2"}, []string{"A", "IM9"})

	arch, st := newMemArchive(), &migratetest.Memory{}
	imp := &migrate.Importer{State: st, Archive: arch, Index: arch, AETitle: "PACSD", Owner: "test:1", Concurrency: 3}
	sum, err := imp.Run(t.Context(), []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Files[migrate.FileVerified] != 2 || sum.Files[migrate.FileRejected] != 2 || !sum.Complete() || sum.ByState[migrate.Verified] != 1 {
		t.Errorf("summary = %+v", sum)
	}
	reasons := map[string]string{}
	for f, err := range st.Files(t.Context(), sum.Migration.ID, migrate.FileRejected) {
		if err != nil {
			t.Fatal(err)
		}
		reasons[filepath.Base(f.Path)] = f.Reason
	}
	if !strings.Contains(reasons["readme.txt"], "not DICOM") || reasons["TRUNC.dcm"] == "" || !strings.Contains(reasons["IM9"], "missing") || len(reasons) != 3 {
		t.Errorf("rejected files: %q", reasons)
	}
	row, err := st.Study(t.Context(), sum.Migration.ID, study.UID)
	if err != nil {
		t.Fatal(err)
	}
	if row.State != migrate.Verified || row.InstancesAtSource != 2 || row.InstancesHere != 2 || row.PatientName != "DOE^JANE" || row.StudyDate != "20240102" || row.Modalities != "CT" {
		t.Errorf("study = %+v", row)
	}
	var report bytes.Buffer
	if err := migrate.WriteReport(t.Context(), &report, st, migrate.CSV); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(report.String(), study.UID+",P1,DOE^JANE,20240102,CT,2,2,verified,1,") || !strings.Contains(report.String(), "readme.txt,rejected,") {
		t.Errorf("report:\n%s", report.String())
	}

	// Again: the verified files are not read twice.
	sum, err = imp.Run(t.Context(), []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Skipped != 2 || sum.Files[migrate.FileVerified] != 0 || !sum.Complete() {
		t.Errorf("second import = %+v", sum)
	}
}
