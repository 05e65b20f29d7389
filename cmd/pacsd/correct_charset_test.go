package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestCorrectedCharset checks corrections whose values the data set's
// character set cannot hold: a German name for a data set in the
// default repertoire, a Japanese one for a Latin-1 data set. WADO-RS
// (read by pydicom) and C-GET (read by dcmdump) serve the header in
// UTF-8, the stored text converted, with the old Specific Character Set
// and values in the Original Attributes Sequence, and Attribute
// Modification DateTime the time of the correction. The same correction
// is served byte for byte the same, again and after a restart.
func TestCorrectedCharset(t *testing.T) {
	testpeer.Need(t, "storescu", "getscu", "dcmdump")
	dir := t.TempDir()
	plain, _, plainSOPs := writeStudy(t, dir, dcmgen.Patient{Name: "Wrong^Name", ID: "P1", IssuerOfPatientID: "RXH"}, nil, 1)
	latin := dcmgen.UID()
	in := &dcmgen.Instance{Patient: dcmgen.Patient{Name: "Gómez^José", ID: "P2", IssuerOfPatientID: "RXH"}, InstanceNumber: 1,
		Rows: 8, Columns: 8, SpecificCharacterSet: "ISO_IR 100"}
	in.Study = dcmgen.Study{UID: latin, Description: "Schädel"}
	in.Series = dcmgen.Series{UID: dcmgen.UID(), Modality: "CT", Number: 1}
	f, err := dcmgen.Create(filepath.Join(dir, "latin.dcm"), in)
	if err != nil {
		t.Fatal(err)
	}
	latinSOP, latinSeries := f.SOPInstanceUID, in.Series.UID

	data := t.TempDir()
	p := startPacsd(t, data)
	files, _ := filepath.Glob(filepath.Join(dir, "*.dcm"))
	storeFrom(t, p, "CT01", files...)

	const german, japanese = "Müller^Jürgen", "Yamada^Tarou=山田^太郎"
	correct := func(study, name string) string {
		t.Helper()
		update := map[string]any{"00100010": map[string]any{"vr": "PN", "Value": []any{map[string]any{"Alphabetic": name}}}}
		if st := apiCall(t, p, "POST", "/api/studies/"+study+"/update?reason=name+as+in+the+passport", update, nil); st != 200 {
			t.Fatalf("update of %s = %d", study, st)
		}
		var list []struct {
			Time string `json:"time"`
		}
		if st := apiCall(t, p, "GET", "/api/corrections?study="+study, nil, &list); st != 200 || len(list) != 1 {
			t.Fatalf("corrections of %s = %d %+v", study, st, list)
		}
		at, err := time.Parse(time.RFC3339Nano, list[0].Time)
		if err != nil {
			t.Fatalf("correction time %q: %v", list[0].Time, err)
		}
		return at.UTC().Format("20060102150405.000000") + "+0000"
	}
	plainAt := correct(plain, german)
	time.Sleep(50 * time.Millisecond) // served later than corrected
	latinAt := correct(latin, japanese)

	wado := func(study, series, sop string) []byte {
		t.Helper()
		path := filepath.Join(t.TempDir(), "wado.dcm")
		getTo(t, "http://"+p.httpAddr+"/dicom-web/studies/"+study+"/series/"+series+"/instances/"+sop, "application/dicom; transfer-syntax=*", path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	plainSeries := qido(t, p, "/studies/"+plain+"/series")
	if len(plainSeries) != 1 {
		t.Fatalf("series of %s: %v", plain, plainSeries)
	}
	plainSE := strValue(plainSeries[0], tag.SeriesInstanceUID)
	first := map[string][]byte{
		plainSOPs[0]: wado(plain, plainSE, plainSOPs[0]),
		latinSOP:     wado(latin, latinSeries, latinSOP),
	}

	// pydicom reads each in UTF-8, the old name in the first item of
	// the Original Attributes Sequence, the old character set in the
	// second, both of the correction's time.
	script := `import sys, pydicom
for path in sys.argv[1:]:
    ds = pydicom.dcmread(path)
    values, charset = ds.OriginalAttributesSequence
    print("|".join([str(ds.SpecificCharacterSet), str(ds.PatientName), str(ds.get("StudyDescription", "")),
        str(values.ModifiedAttributesSequence[0].PatientName), values.AttributeModificationDateTime,
        repr(charset.ModifiedAttributesSequence[0].SpecificCharacterSet), charset.AttributeModificationDateTime,
        str(len(ds.PixelData))]))`
	paths := []string{filepath.Join(t.TempDir(), "plain.dcm"), filepath.Join(t.TempDir(), "latin.dcm")}
	os.WriteFile(paths[0], first[plainSOPs[0]], 0o644)
	os.WriteFile(paths[1], first[latinSOP], 0o644)
	o, stderr, err := testpeer.Run(context.Background(), testpeer.PydicomPython(t), append([]string{"-c", script}, paths...)...)
	if err != nil {
		t.Fatalf("pydicom: %v\n%s", err, stderr)
	}
	want := []string{
		"ISO_IR 192|" + german + "|CT HEAD|Wrong^Name|" + plainAt + "|''|" + plainAt + "|128",
		"ISO_IR 192|" + japanese + "|Schädel|Gómez^José|" + latinAt + "|'ISO_IR 100'|" + latinAt + "|128",
	}
	if got := strings.Split(strings.TrimSpace(o), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("pydicom reads\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// C-GET: dcmdump, converting to UTF-8 as the data set says, reads
	// the same.
	out := t.TempDir()
	if o, err := p.dcmtk("getscu", "-S", "-od", out, "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID="+latin); err != nil {
		t.Fatalf("getscu: %v\n%s", err, o)
	}
	got, err := testpeer.Dump(context.Background(), filepath.Join(out, "CT."+latinSOP))
	if err != nil || got[uint32(tag.PatientName)] != japanese || got[uint32(tag.StudyDescription)] != "Schädel" {
		t.Errorf("C-GET data set: name %q, description %q, %v", got[uint32(tag.PatientName)], got[uint32(tag.StudyDescription)], err)
	}
	raw, _ := os.ReadFile(filepath.Join(out, "CT."+latinSOP))
	if !bytes.Contains(raw, []byte("ISO_IR 192")) || !bytes.Contains(raw, []byte("ISO_IR 100")) || !bytes.Contains(raw, []byte("Gómez^José")) {
		t.Error("the C-GET data set lacks ISO_IR 192, the old character set, or the old name in UTF-8")
	}

	// The same bytes again, and after a restart, whose first serving is
	// later than the correction.
	if b := wado(plain, plainSE, plainSOPs[0]); !bytes.Equal(b, first[plainSOPs[0]]) {
		t.Error("the corrected instance served twice differs")
	}
	p.stop()
	p = startPacsd(t, data)
	defer p.stop()
	if b := wado(latin, latinSeries, latinSOP); !bytes.Equal(b, first[latinSOP]) {
		t.Error("the corrected instance served after a restart differs from before")
	}
}
