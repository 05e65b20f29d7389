package archive

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/index"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// TestMetadataAtIngest stores every pydicom sample and checks that the
// metadata the archive keeps in the index at ingest is exactly what it
// computes by reading the object back, and that frames lie within the
// Pixel Data.
func TestMetadataAtIngest(t *testing.T) {
	f := newFixture(t, Config{})
	ctx := context.Background()
	kept := 0
	files := append(testpeer.PydicomFilesT(t), mustGlob(t, filepath.Join("..", "testdata", "dicom", "*.dcm"))...)
	for _, path := range files {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fm, n, err := dicom.ReadFileMeta(bufio.NewReader(bytes.NewReader(b)))
		if err != nil {
			continue // pydicom's files without File Meta Information
		}
		res, err := f.svc.Store(ctx, &StoreRequest{TransferSyntaxUID: fm.TransferSyntaxUID, Dataset: bytes.NewReader(b[n:])})
		if err != nil {
			continue // refused samples are another test's business
		}
		in := res.Instance
		name := filepath.Base(path)
		doc, err := f.db.Metadata(ctx, in)
		if errors.Is(err, index.ErrNotFound) {
			continue // left to be read from the object
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		kept++
		atIngest, err := decodeMetadata(doc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		fromObject, err := f.svc.readMetadata(ctx, in)
		if err != nil {
			t.Fatalf("%s: read back: %v", name, err)
		}
		if !bytes.Equal(atIngest.JSON, fromObject.JSON) {
			t.Errorf("%s: metadata JSON at ingest differs from the object's", name)
		}
		if !reflect.DeepEqual(atIngest.Frames, fromObject.Frames) || atIngest.TransferSyntaxUID != fromObject.TransferSyntaxUID {
			t.Errorf("%s: frames at ingest %v, from the object %v", name, atIngest.Frames, fromObject.Frames)
		}
		size := in.Size
		if ts, _ := uid.LookupTransferSyntax(fm.TransferSyntaxUID); ts.Deflated {
			// Ranges of the object with its data set inflated: the
			// file's inflated, less the file's own deflated length.
			inflated, err := io.Copy(io.Discard, io.NewSectionReader(dicom.NewInflatedObject(bytes.NewReader(b)), 0, math.MaxInt64))
			if err != nil {
				t.Fatalf("%s: inflate: %v", name, err)
			}
			size += inflated - int64(len(b))
		}
		for i, fr := range atIngest.Frames {
			for _, r := range fr {
				if r.Offset < 132 || r.Offset+r.Length > size {
					t.Errorf("%s: frame %d range %+v outside the object of %d bytes", name, i+1, r, size)
				}
			}
		}
		if got, err := f.svc.Metadata(ctx, in); err != nil || !bytes.Equal(got.JSON, atIngest.JSON) {
			t.Errorf("%s: Metadata does not serve the kept document (%v)", name, err)
		}
	}
	if kept < 40 {
		t.Errorf("metadata kept at ingest for only %d samples", kept)
	}
}

func mustGlob(t *testing.T, pattern string) []string {
	m, err := filepath.Glob(pattern)
	if err != nil || len(m) == 0 {
		t.Fatalf("%s: %v", pattern, err)
	}
	return m
}
