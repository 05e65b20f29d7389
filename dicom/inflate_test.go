package dicom

import (
	"bufio"
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// deflatedObject returns a Part-10 object of a deflated data set and the
// same object with its data set inflated.
func deflatedObject(t testing.TB, dataset []byte) (object, inflated []byte) {
	t.Helper()
	meta := AppendFileMeta(nil, FileMeta{
		MediaStorageSOPClassUID:    uid.CTImageStorage,
		MediaStorageSOPInstanceUID: "1.2.3.4",
		TransferSyntaxUID:          uid.DeflatedExplicitVRLittleEndian,
		ImplementationClassUID:     ImplementationClassUID,
	})
	var z bytes.Buffer
	fw, _ := flate.NewWriter(&z, flate.BestSpeed)
	fw.Write(dataset)
	fw.Close()
	return append(bytes.Clone(meta), z.Bytes()...), append(meta, dataset...)
}

// TestInflatedObject reads pydicom's deflated image and a generated one
// through InflatedObject, by the offsets the Scanner gives, and in every
// order io.ReaderAt allows.
func TestInflatedObject(t *testing.T) {
	objects := map[string][]byte{}
	sample := buildTruncationSample(syntax{explicit: true})
	objects["generated"], _ = deflatedObject(t, sample.data)
	for _, p := range testpeer.PydicomFilesT(t) {
		if filepath.Base(p) == "image_dfl.dcm" {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			objects["image_dfl.dcm"] = b
		}
	}
	for name, object := range objects {
		t.Run(name, func(t *testing.T) {
			br := bufio.NewReader(bytes.NewReader(object))
			m, metaLen, err := ReadFileMeta(br)
			if err != nil {
				t.Fatal(err)
			}
			ts, _ := uid.LookupTransferSyntax(m.TransferSyntaxUID)
			dataset := inflate(t, object[metaLen:], ts)
			want := append(bytes.Clone(object[:metaLen]), dataset...)

			_, h, err := scanAll(t, object[metaLen:], ts, Limits{})
			if err != nil || h.Err != nil || h.PixelData == nil {
				t.Fatalf("%v / %v / %+v", err, h.Err, h.PixelData)
			}
			if h.Length != int64(len(dataset)) {
				t.Errorf("Header.Length %d, inflated data set %d bytes", h.Length, len(dataset))
			}
			px, _ := h.Dataset.Find(tag.PixelData)
			if px.Binary == nil || px.Binary.Offset != h.PixelData.Offset || px.Binary.Offset < 0 {
				t.Fatalf("Pixel Data %+v, located at %+v", px.Binary, h.PixelData)
			}

			obj := NewInflatedObject(bytes.NewReader(object))
			// The value at each offset the header gives.
			for _, f := range append([]Fragment{{h.PixelData.Offset, h.PixelData.Length}}, h.PixelData.Fragments...) {
				got := make([]byte, f.Length)
				if _, err := obj.ReadAt(got, metaLen+f.Offset); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, dataset[f.Offset:f.Offset+f.Length]) {
					t.Errorf("value at %d differs", f.Offset)
				}
			}
			// Backwards, across the File Meta Information, at the end.
			if err := iotest.TestReader(io.NewSectionReader(obj, 0, int64(len(want))), want); err != nil {
				t.Error(err)
			}
			if n, err := obj.ReadAt(make([]byte, 10), int64(len(want))-4); n != 4 || err != io.EOF {
				t.Errorf("read past the end: %d, %v", n, err)
			}
		})
	}
}

func TestInflatedObjectErrors(t *testing.T) {
	object, _ := deflatedObject(t, buildTruncationSample(syntax{explicit: true}).data)
	metaLen := int64(bytes.Index(object, []byte("1.2.840.10008.1.2.1.99")) + 22)
	tests := []struct {
		name   string
		object []byte
		want   error
	}{
		{"cut short", object[:len(object)-10], ErrTruncated},
		{"corrupt", append(bytes.Clone(object[:metaLen]), 0xff, 0xff, 0xff, 0xff), ErrMalformed},
		{"not Part-10", []byte("GET / HTTP/1.1\r\n"), ErrNotPart10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := io.ReadAll(io.NewSectionReader(NewInflatedObject(bytes.NewReader(tt.object)), 0, 1<<20))
			if !errors.Is(err, tt.want) {
				t.Errorf("%v, want %v", err, tt.want)
			}
		})
	}
}

// FuzzInflatedObject reads objects, deflated or not, well formed or not,
// at any offset: a read never panics, and reads the same bytes however
// the reads before it moved the decompressor.
func FuzzInflatedObject(f *testing.F) {
	sample := buildTruncationSample(syntax{explicit: true})
	object, _ := deflatedObject(f, sample.data)
	f.Add(object, uint16(0), uint16(300))
	f.Add(object, uint16(200), uint16(40))
	f.Add(object[:len(object)/2], uint16(250), uint16(100))
	f.Fuzz(func(t *testing.T, object []byte, off, n uint16) {
		obj := NewInflatedObject(bytes.NewReader(object))
		first := make([]byte, n)
		k1, err1 := obj.ReadAt(first, int64(off))
		obj.ReadAt(make([]byte, 7), int64(off)+int64(n)) // moves on
		second := make([]byte, n)
		k2, err2 := obj.ReadAt(second, int64(off))
		if k1 != k2 || (err1 == nil) != (err2 == nil) || !bytes.Equal(first[:k1], second[:k2]) {
			t.Fatalf("read %d (%v), then %d (%v)", k1, err1, k2, err2)
		}
		if k1 < int(n) && err1 == nil {
			t.Fatalf("short read of %d of %d bytes without an error", k1, n)
		}
	})
}
