package dicom

import (
	"bytes"
	"io"
	"path/filepath"
	"strconv"
	"testing"
	"testing/iotest"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

func TestSwapUnit(t *testing.T) {
	tests := []struct {
		tag  tag.Tag
		vr   string
		bits int
		want int
	}{
		{tag.PixelData, "OW", 32, 4},
		{tag.PixelData, "OW", 16, 2},
		{tag.PixelData, "OW", 64, 8},
		{tag.PixelData, "OW", 8, 2}, // packed in words (PS3.5 §8.1.1)
		{tag.PixelData, "OW", 1, 2},
		{tag.PixelData, "OW", 0, 2},
		{tag.PixelData, "OB", 8, 1},
		{tag.PixelData, "OB", 1, 1},
		{tag.PixelData, "OB", 16, 2},
		{tag.PixelData, "UN", 16, 1}, // little endian in every syntax
		{tag.FloatPixelData, "OF", 16, 4},
		{tag.DoubleFloatPixelData, "OD", 16, 8},
		{tag.New(0x6000, 0x3000), "OW", 32, 2}, // overlay data follows its VR
		{tag.RedPaletteColorLookupTableData, "OW", 8, 2},
		{tag.Rows, "US", 32, 2},
		{tag.FrameIncrementPointer, "AT", 0, 2},
		{tag.SimpleFrameList, "UL", 0, 4},
		{tag.New(0x0018, 0x9219), "SS", 0, 2},
		{tag.New(0x0070, 0x0022), "FL", 0, 4},
		{tag.New(0x0018, 0x9089), "FD", 0, 8},
		{tag.New(0x0066, 0x0040), "OL", 0, 4},
		{tag.New(0x0028, 0x3006), "OV", 0, 8},
		{tag.New(0x0072, 0x0082), "SV", 0, 8},
		{tag.New(0x0072, 0x0083), "UV", 0, 8},
		{tag.PatientName, "PN", 16, 1},
		{tag.New(0x0009, 0x1001), "OB", 32, 1},
		{tag.New(0x0009, 0x1001), "UN", 32, 1},
	}
	for _, tt := range tests {
		if got := SwapUnit(tt.tag, tt.vr, tt.bits); got != tt.want {
			t.Errorf("SwapUnit(%v, %s, %d) = %d, want %d", tt.tag, tt.vr, tt.bits, got, tt.want)
		}
	}
}

func TestSwapReader(t *testing.T) {
	src := make([]byte, 100<<10+3) // a partial unit at the end
	for i := range src {
		src[i] = byte(i * 7)
	}
	for _, unit := range []int{1, 2, 4, 8} {
		want := bytes.Clone(src)
		swapUnits(want, unit)
		for name, r := range map[string]io.Reader{
			"whole":    NewSwapReader(bytes.NewReader(src), unit),
			"one byte": NewSwapReader(iotest.OneByteReader(bytes.NewReader(src)), unit),
		} {
			got, err := io.ReadAll(iotest.OneByteReader(r))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("unit %d, %s: %d bytes, %v; equal %v", unit, name, len(got), err, bytes.Equal(got, want))
			}
		}
	}
	if err := iotest.TestReader(NewSwapReader(bytes.NewReader(src[:64]), 4), func() []byte {
		b := bytes.Clone(src[:64])
		swapUnits(b, 4)
		return b
	}()); err != nil {
		t.Error(err)
	}
}

// TestSwapRTDose converts pydicom's big endian RT Dose, whose 32-bit
// pixels are sent as OW, to little endian by every path that swaps bytes,
// and compares the pixels with those of its little endian twin, which
// pydicom reads as the same values.
func TestSwapRTDose(t *testing.T) {
	files := map[string]string{}
	for _, p := range testpeer.PydicomFilesT(t) {
		files[filepath.Base(p)] = p
	}
	pixels := func(t *testing.T, name string) (data []byte, ts uid.TransferSyntax, h Header) {
		t.Helper()
		m, data, err := readPart10(files[name])
		if err != nil {
			t.Fatal(err)
		}
		ts, _ = uid.LookupTransferSyntax(m.TransferSyntaxUID)
		_, h, err = scanAll(t, data, ts, Limits{})
		if err != nil || h.Err != nil || h.PixelData == nil {
			t.Fatalf("%s: %v / %v", name, err, h.Err)
		}
		return data, ts, h
	}
	for _, tt := range []struct{ be, le string }{{"rtdose_expb.dcm", "rtdose.dcm"}, {"rtdose_expb_1frame.dcm", "rtdose_1frame.dcm"}} {
		t.Run(tt.be, func(t *testing.T) {
			leData, _, leHeader := pixels(t, tt.le)
			want := leData[leHeader.PixelData.Offset:][:leHeader.PixelData.Length]
			beData, beTS, beHeader := pixels(t, tt.be)
			if bits := beHeader.Dataset.First(tag.BitsAllocated); bits != "32" {
				t.Fatalf("Bits Allocated %s", bits)
			}

			var out bytes.Buffer
			if err := Transcode(&out, bytes.NewReader(beData), beTS, explicitLE); err != nil {
				t.Fatal(err)
			}
			_, h, err := scanAll(t, out.Bytes(), explicitLE, Limits{})
			if err != nil || h.PixelData == nil {
				t.Fatalf("%v %+v", err, h.PixelData)
			}
			if got := out.Bytes()[h.PixelData.Offset:][:h.PixelData.Length]; !bytes.Equal(got, want) {
				t.Errorf("Transcode: pixels differ from %s", tt.le)
			}

			bits, _ := strconv.Atoi(beHeader.Dataset.First(tag.BitsAllocated))
			px, _ := beHeader.Dataset.Find(tag.PixelData)
			raw := beData[beHeader.PixelData.Offset:][:beHeader.PixelData.Length]
			got, err := io.ReadAll(NewSwapReader(bytes.NewReader(raw), SwapUnit(tag.PixelData, px.VR, bits)))
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("NewSwapReader: pixels differ from %s (%v)", tt.le, err)
			}

			if px.Binary.Data != nil && !bytes.Equal(px.Binary.Data, want) {
				t.Errorf("Scanner: inline pixels differ from %s", tt.le)
			}
		})
	}
}
