package dicom

import (
	"path/filepath"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// TestSamples reads the committed sample files, one per encoding and
// character set the archive must decode.
func TestSamples(t *testing.T) {
	tests := []struct {
		file, name, issuer string
		frames             bool
	}{
		{"ct-explicit-le.dcm", "Sample^CT", "PACSD-TEST", false},
		{"mr-implicit-le-latin1.dcm", "Müller^Jürgen", "", false},
		{"ct-utf8-multiframe.dcm", "Yamada^Tarou=山田^太郎=やまだ^たろう", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			m, data, err := readPart10(filepath.Join("..", "testdata", "dicom", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			ts, _ := uid.LookupTransferSyntax(m.TransferSyntaxUID)
			id, h, err := scanAll(t, data, ts, Limits{})
			if err != nil || h.Err != nil {
				t.Fatalf("%v / %v", err, h.Err)
			}
			if id.SOPInstanceUID != m.MediaStorageSOPInstanceUID {
				t.Errorf("identity %+v", id)
			}
			if got := h.Dataset.First(tag.PatientName); got != tt.name {
				t.Errorf("PatientName %q, want %q", got, tt.name)
			}
			if got := h.Dataset.First(tag.IssuerOfPatientID); got != tt.issuer {
				t.Errorf("IssuerOfPatientID %q, want %q", got, tt.issuer)
			}
			if h.PixelData == nil || h.PixelData.Offset+h.PixelData.Length != int64(len(data)) {
				t.Errorf("pixel data %+v in %d bytes", h.PixelData, len(data))
			}
		})
	}
}

// sampleSeeds returns the data sets of the sample files, for fuzzing.
func sampleSeeds(f *testing.F) [][]byte {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "dicom", "*.dcm"))
	var out [][]byte
	for _, p := range paths {
		if _, data, err := readPart10(p); err == nil {
			out = append(out, data)
		}
	}
	if len(out) == 0 {
		f.Fatal("no sample files")
	}
	return out
}
