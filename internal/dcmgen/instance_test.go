package dcmgen_test

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

func TestWriteFileFillsDefaults(t *testing.T) {
	var in dcmgen.Instance
	var buf bytes.Buffer
	n, err := dcmgen.WriteFile(&buf, &in)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Errorf("WriteFile returned %d, wrote %d bytes", n, buf.Len())
	}
	for name, v := range map[string]string{
		"SOPClassUID": in.SOPClassUID, "SOPInstanceUID": in.SOPInstanceUID,
		"Study.UID": in.Study.UID, "Series.UID": in.Series.UID,
		"Series.FrameOfReferenceUID": in.Series.FrameOfReferenceUID,
	} {
		if v == "" || !bytes.Contains(buf.Bytes(), []byte(v)) {
			t.Errorf("%s = %q was not filled in and written", name, v)
		}
	}
	if in.SOPClassUID != dcmgen.CTImageStorage || in.Series.Modality != "CT" {
		t.Errorf("SOP class %s, modality %s, want CT Image Storage and CT", in.SOPClassUID, in.Series.Modality)
	}
	if in.Rows != 64 || in.Columns != 64 || in.BitsAllocated != 16 || in.NumberOfFrames != 1 {
		t.Errorf("geometry %d×%d×%d bits, %d frames", in.Rows, in.Columns, in.BitsAllocated, in.NumberOfFrames)
	}
}

func TestExtraElements(t *testing.T) {
	in := dcmgen.Instance{Extra: []dcmgen.Element{
		{Tag: 0xFFFCFFFC, VR: "OB", Value: []byte{0, 0}}, // after Pixel Data
		{Tag: 0x00080060, VR: "CS", Value: "MR"},         // replaces the generated Modality
		{Tag: 0x00091001, VR: "LO", Value: "private"},
	}}
	var buf bytes.Buffer
	if _, err := dcmgen.WriteFile(&buf, &in); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if !bytes.HasSuffix(b, []byte{0xFC, 0xFF, 0xFC, 0xFF, 'O', 'B', 0, 0, 2, 0, 0, 0, 0, 0}) {
		t.Errorf("the trailing padding element is not last: % x", b[len(b)-16:])
	}
	if !bytes.Contains(b, []byte("\x08\x00\x60\x00CS\x02\x00MR")) || bytes.Contains(b, []byte("CS\x02\x00CT")) {
		t.Error("the extra Modality did not replace the generated one")
	}
	for _, bad := range []dcmgen.Element{
		{Tag: 0x00020010, VR: "UI", Value: "1.2"},
		{Tag: 0x7FE00010, VR: "OW", Value: []byte{0, 0}},
	} {
		in := dcmgen.Instance{Extra: []dcmgen.Element{bad}}
		if _, err := dcmgen.WriteFile(io.Discard, &in); err == nil {
			t.Errorf("extra element %s was accepted", bad.Tag)
		}
	}
}

func TestSize(t *testing.T) {
	for name, in := range variants() {
		t.Run(name, func(t *testing.T) {
			size, err := in.Size()
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if _, err := dcmgen.WriteFile(&buf, &in); err != nil {
				t.Fatal(err)
			}
			if size != int64(buf.Len()) {
				t.Errorf("Size() = %d, WriteFile wrote %d", size, buf.Len())
			}
		})
	}
}

func TestFitSize(t *testing.T) {
	tests := []struct {
		name string
		in   dcmgen.Instance
		size int64
	}{
		{"512 KiB CT", dcmgen.Instance{}, 512 << 10},
		{"odd size, 8 bits, odd columns", dcmgen.Instance{BitsAllocated: 8, Columns: 333}, 100_001},
		{"implicit VR", dcmgen.Instance{Syntax: dcmgen.ImplicitVRLittleEndian}, 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			if err := in.FitSize(tt.size); err != nil {
				t.Fatal(err)
			}
			got, err := in.Size()
			if err != nil {
				t.Fatal(err)
			}
			rowBytes := int64(in.Columns * in.BitsAllocated / 8)
			if got > tt.size || got <= tt.size-rowBytes-1 {
				t.Errorf("%d×%d image: file of %d bytes, want at most %d and within a row (%d bytes)", in.Rows, in.Columns, got, tt.size, rowBytes)
			}
		})
	}
	in := dcmgen.Instance{}
	if err := in.FitSize(100 << 20); err == nil {
		t.Error("FitSize made a single frame of 100 MiB at 512 columns, which needs more than 65535 rows")
	}
}

func TestFitFrames(t *testing.T) {
	for _, size := range []int64{2 << 20, 64<<20 + 12345, 1 << 30} {
		in := dcmgen.Instance{}
		if err := in.FitFrames(size); err != nil {
			t.Fatal(err)
		}
		got, err := in.Size()
		if err != nil {
			t.Fatal(err)
		}
		frameBytes := in.PixelLength() / int64(in.NumberOfFrames)
		if got > size || got <= size-frameBytes {
			t.Errorf("%d frames: file of %d bytes, want at most %d and within a frame (%d bytes)", in.NumberOfFrames, got, size, frameBytes)
		}
		if in.SOPClassUID != dcmgen.MultiFrameGrayscaleWordSCStorage {
			t.Errorf("SOP class %s for a multi-frame image", in.SOPClassUID)
		}
	}
}

func TestWriteSeries(t *testing.T) {
	const n, size = 5, 64 << 10
	dir := t.TempDir()
	files, err := dcmgen.WriteSeries(dir, n, size, dcmgen.Instance{Patient: dcmgen.Patient{ID: "SERIES"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != n {
		t.Fatalf("%d files, want %d", len(files), n)
	}
	checkSeries(t, files, size)
	for i, f := range files {
		if want := filepath.Join(dir, f.SOPInstanceUID+".dcm"); f.Path != want {
			t.Errorf("file %d at %s, want %s", i, f.Path, want)
		}
		b, err := os.ReadFile(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		number := []byte("\x20\x00\x13\x00IS\x02\x00" + string(rune('1'+i)) + " ")
		if !bytes.Contains(b, number) {
			t.Errorf("file %d lacks Instance Number %d", i, i+1)
		}
	}
	if _, err := dcmgen.WriteSeries(dir, 1, 0, dcmgen.Instance{Pixels: strings.NewReader("")}); err == nil {
		t.Error("WriteSeries accepted a Pixels reader it cannot share between files")
	}
}

// checkSeries checks that files form one series of files of about size
// bytes, each no larger.
func checkSeries(t *testing.T, files []dcmgen.File, size int64) {
	t.Helper()
	seen := map[string]bool{}
	for i, f := range files {
		fi, err := os.Stat(f.Path)
		if err != nil {
			t.Fatal(err)
		}
		// 512 columns of 16 bits is the largest shortfall FitSize allows.
		if fi.Size() != f.Size || f.Size > size || f.Size <= size-1024 {
			t.Errorf("file %d: %d bytes (File.Size %d), want at most %d and within a row", i, fi.Size(), f.Size, size)
		}
		if f.StudyInstanceUID != files[0].StudyInstanceUID || f.SeriesInstanceUID != files[0].SeriesInstanceUID {
			t.Errorf("file %d is in another study or series", i)
		}
		if seen[f.SOPInstanceUID] {
			t.Errorf("file %d repeats SOP Instance UID %s", i, f.SOPInstanceUID)
		}
		seen[f.SOPInstanceUID] = true
	}
}

// TestLargeMultiframe writes a 1 GiB multi-frame instance and checks that
// memory use does not follow the file's size.
func TestLargeMultiframe(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 1 GiB; skipped with -short")
	}
	const size = 1 << 30
	in := dcmgen.Instance{Patient: dcmgen.Patient{ID: "LARGE"}}
	if err := in.FitFrames(size); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "large.dcm")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := dcmgen.Create(path, &in)
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d frames of %d×%d, %d bytes written; %d KiB allocated, heap in use %d KiB", in.NumberOfFrames, in.Rows, in.Columns, f.Size, allocated>>10, after.HeapInuse>>10)
	if allocated > 4<<20 {
		t.Errorf("writing %d bytes allocated %d bytes; streaming should need well under 4 MiB", f.Size, allocated)
	}
	if fi, err := os.Stat(path); err != nil || fi.Size() != f.Size || f.Size > size || f.Size < size-(512<<10) {
		t.Errorf("file of %d bytes (stat %v), want just under %d", f.Size, err, size)
	}
	testpeer.Need(t, "dcmftest", "dcmdump")
	if out, _ := testpeer.RunT(t, "dcmftest", path); !strings.HasPrefix(out, "yes:") {
		t.Errorf("dcmftest: %s", out)
	}
	// -M leaves long values (the pixel data) unread, so dcmdump checks the
	// structure without loading a gigabyte.
	out, stderr := testpeer.RunT(t, "dcmdump", "-M", "+P", "NumberOfFrames", "+P", "PixelData", path)
	if stderr != "" || !strings.Contains(out, "NumberOfFrames") || !strings.Contains(out, "PixelData") {
		t.Errorf("dcmdump:\n%s\n%s", out, stderr)
	}
}
