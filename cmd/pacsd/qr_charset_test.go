package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"golang.org/x/text/encoding/charmap"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestFindscuCharsets queries with findscu in ISO_IR 144, 126, 127 and 138
// for patients stored in UTF-8, and checks that each response is written
// in the query's character set, as docs/conformance.md says, when its
// values fit in it, and in UTF-8 (ISO_IR 192) when they do not.
func TestFindscuCharsets(t *testing.T) {
	testpeer.Need(t, "findscu", "storescu", "dcmdump")
	patients := []struct {
		id, name, description, charset string
		cm                             *charmap.Charmap
	}{
		{"CYR", "Иванов^Пётр", "Рентген грудной клетки", "ISO_IR 144", charmap.ISO8859_5},
		{"GRK", "Παπαδόπουλος^Νίκος", "Ακτινογραφία θώρακος", "ISO_IR 126", charmap.ISO8859_7},
		{"ARB", "قباني^نزار", "أشعة الصدر", "ISO_IR 127", charmap.ISO8859_6},
		{"HEB", "שרון^דבורה", "צילום חזה", "ISO_IR 138", charmap.ISO8859_8},
	}
	dir := t.TempDir()
	for i, p := range patients {
		in := &dcmgen.Instance{Patient: dcmgen.Patient{Name: p.name, ID: p.id}, SpecificCharacterSet: "ISO_IR 192", InstanceNumber: 1, Rows: 8, Columns: 8}
		in.Study = dcmgen.Study{UID: dcmgen.UID(), Description: p.description, Date: "20240101"}
		in.Series = dcmgen.Series{UID: dcmgen.UID(), Modality: "CR", Number: 1}
		if _, err := dcmgen.Create(filepath.Join(dir, fmt.Sprintf("%d.dcm", i)), in); err != nil {
			t.Fatal(err)
		}
	}
	pacsd := startPacsd(t, t.TempDir())
	if out, err := pacsd.dcmtk("storescu", "+sd", dir); err != nil {
		t.Fatalf("storescu: %v\n%s", err, out)
	}

	ctx := context.Background()
	charsetLine := regexp.MustCompile(`\(0008,0005\) CS \[([^\]]*)\]`)
	// query finds the patient with ID id in charset and returns the one
	// response's Specific Character Set, its values as dcmdump decodes
	// them, and its bytes.
	query := func(t *testing.T, charset, id string) (string, map[uint32]string, []byte) {
		t.Helper()
		out := t.TempDir()
		args := []string{"-S", "-X", "-od", out, "-aet", "DCMTK", "-aec", "PACSD",
			"-k", "SpecificCharacterSet=" + charset, "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=" + id,
			"-k", "PatientName", "-k", "StudyDescription", "-k", "StudyInstanceUID", pacsd.host(), pacsd.port()}
		if _, stderr, err := testpeer.Run(ctx, "findscu", args...); err != nil {
			t.Fatalf("findscu: %v\n%s", err, stderr)
		}
		files, _ := filepath.Glob(filepath.Join(out, "rsp*.dcm"))
		if len(files) != 1 {
			t.Fatalf("%d responses", len(files))
		}
		raw, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		dump, _, err := testpeer.Run(ctx, "dcmdump", "+P", "0008,0005", files[0])
		if err != nil {
			t.Fatal(err)
		}
		m := charsetLine.FindStringSubmatch(dump)
		if m == nil {
			t.Fatalf("no Specific Character Set in the response: %s", dump)
		}
		values, err := testpeer.Dump(ctx, files[0])
		if err != nil {
			t.Fatal(err)
		}
		return m[1], values, raw
	}
	for _, p := range patients {
		t.Run(p.charset, func(t *testing.T) {
			charset, values, raw := query(t, p.charset, p.id)
			if charset != p.charset {
				t.Errorf("response in %q, want %q", charset, p.charset)
			}
			if values[uint32(tag.PatientName)] != p.name || values[uint32(tag.StudyDescription)] != p.description {
				t.Errorf("dcmdump reads %q, %q; want %q, %q", values[uint32(tag.PatientName)], values[uint32(tag.StudyDescription)], p.name, p.description)
			}
			encoded, err := p.cm.NewEncoder().String(p.name)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(raw, []byte(encoded)) {
				t.Errorf("the response does not hold the name encoded in %s", p.charset)
			}
		})
	}
	t.Run("values that do not fit", func(t *testing.T) {
		// A Greek name asked for in Cyrillic comes back in UTF-8.
		charset, values, raw := query(t, "ISO_IR 144", "GRK")
		if charset != "ISO_IR 192" || values[uint32(tag.PatientName)] != patients[1].name || !bytes.Contains(raw, []byte(patients[1].name)) {
			t.Errorf("response in %q with %q, want ISO_IR 192 with %q", charset, values[uint32(tag.PatientName)], patients[1].name)
		}
	})
}
