package deid

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
)

// FuzzRewrite feeds Rewrite arbitrary data sets in explicit and implicit
// VR little endian: it must fail cleanly or write a data set that dicom
// reads back, never panic.
func FuzzRewrite(f *testing.F) {
	paths, _ := filepath.Glob(filepath.Join("..", "testdata", "dicom", "*.dcm"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		br := bufio.NewReader(bytes.NewReader(b))
		m, n, err := dicom.ReadFileMeta(br)
		if err != nil {
			continue
		}
		f.Add(b[n:], m.TransferSyntaxUID == uid.ImplicitVRLittleEndian)
	}
	d, err := New(Options{Key: testKey, MaxHeader: 1 << 20})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, implicit bool) {
		tsUID := uid.ExplicitVRLittleEndian
		if implicit {
			tsUID = uid.ImplicitVRLittleEndian
		}
		ts, _ := uid.LookupTransferSyntax(tsUID)
		var out bytes.Buffer
		if _, err := d.Rewrite(context.Background(), &out, bytes.NewReader(data), ts); err != nil {
			return
		}
		s := dicom.NewScanner(bytes.NewReader(out.Bytes()), ts, dicom.Limits{})
		defer s.Close()
		if _, err := s.Identify(); err != nil {
			t.Fatalf("the output does not read back: %v", err)
		}
		io.Copy(io.Discard, s.Rest())
		if h := s.Header(); h.Err != nil {
			t.Fatalf("the output does not read back: %v", h.Err)
		}
	})
}
