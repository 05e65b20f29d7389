package migrate

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpenInstance feeds pacsd import's reading of a file's start (File
// Meta Information, or the first element of a bare data set, then the
// identifying UIDs) whatever bytes a disk may hold.
func FuzzOpenInstance(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("..", "testdata", "dicom", "*.dcm"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
			if len(b) > 132 {
				f.Add(b[132:]) // without the preamble
			}
		}
	}
	f.Add([]byte("Images of the old PACS, disk 1 of 3.\n"))
	f.Add([]byte{0x08, 0x00, 0x16, 0x00, 'U', 'I', 0x04, 0x00, '1', '.', '2', 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(b), 4096)
		in, err := openInstance(br)
		if err != nil {
			return
		}
		if in.SOPInstanceUID == "" {
			identify(br, in.TransferSyntaxUID)
		}
	})
}

// FuzzParseKey feeds --filter's parser any text: what it takes, written
// back as KEYWORD=VALUE, reads as the same key.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"ModalitiesInStudy=CT", "00080061=MR", "PatientName=DOE*", "StudyDate=2024", "x", "=", "AccessionNumber=A=B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKey(s)
		if err != nil {
			return
		}
		again, err := ParseKey(k.String())
		if err != nil || again != k {
			t.Errorf("ParseKey(%q) = %+v; written back as %q it reads as %+v, %v", s, k, k.String(), again, err)
		}
	})
}
