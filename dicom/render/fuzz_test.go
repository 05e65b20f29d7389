package render

import (
	"bytes"
	"image"
	"image/jpeg"
	"math"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
)

// fuzzSyntaxes are the transfer syntaxes a fuzzed header chooses from:
// every decoder, and one that is refused.
var fuzzSyntaxes = []string{
	uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian, uid.RLELossless,
	uid.JPEGBaseline8Bit, uid.JPEG2000,
}

var fuzzPhotometric = []string{
	Monochrome1, Monochrome2, RGB, YBRFull, YBRFull422, PaletteColor, "YBR_ICT", "",
}

// fuzzParams turns the bytes of a fuzzed header into Params, Options and
// a transfer syntax, every field free to be wrong. The image stays small
// so that each run is quick; the limits on size have their own tests.
func fuzzParams(h []byte, lut []byte) (Params, string, Options) {
	b := func(i int) int {
		if i < len(h) {
			return int(h[i])
		}
		return 0
	}
	p := Params{
		Rows: b(0) % 20, Columns: b(1) % 20,
		PhotometricInterpretation: fuzzPhotometric[b(2)%len(fuzzPhotometric)],
		SamplesPerPixel:           b(3) % 5,
		BitsAllocated:             []int{1, 8, 16, 32, 12, 0}[b(4)%6],
		BitsStored:                b(5) % 40,
		HighBit:                   b(6)%40 - 2,
		PixelRepresentation:       b(7) % 3,
		PlanarConfiguration:       b(8) % 3,
		NumberOfFrames:            b(9) % 4,
		RescaleSlope:              float64(int8(b(10))) / 4,
		RescaleIntercept:          float64(int8(b(11))) * 100,
	}
	var opts Options
	if b(12)&1 == 1 {
		p.Window = &Window{Center: float64(int8(b(13))) * 10, Width: float64(b(14)) * 3, Function: []string{"", Linear, LinearExact, Sigmoid, "X"}[b(15)%5]}
	}
	if b(12)&2 == 2 {
		opts.Window = &Window{Center: float64(int8(b(16))), Width: float64(b(17)) / 2, Function: []string{"", Linear, LinearExact, Sigmoid, "X"}[b(18)%5]}
	}
	if b(12)&4 == 4 {
		opts.Viewport = Viewport{b(19)%24 - 2, b(20) % 24}
	}
	opts.BitOffset = (b(21)+1)%10 - 1
	if b(12)&8 == 8 {
		t := LUT{Entries: b(22) * 3, First: int(int8(b(23))), Bits: []int{8, 16, 0, 12}[b(24)%4], Data: lut}
		p.Palette = &Palette{Red: t, Green: t, Blue: t}
	}
	if b(12)&16 == 16 {
		p.RescaleSlope = math.NaN()
	}
	if b(12)&32 == 32 {
		p.ModalityLUT = &LUT{Entries: b(26) * 5, First: int(int8(b(27))) * 4, Bits: []int{8, 16, 0, 12, 40}[b(28)%5], Data: lut}
	}
	if b(12)&64 == 64 {
		p.VOILUT = &LUT{Entries: b(29) * 5, First: int(int8(b(30))) * 4, Bits: []int{8, 16, 0, 10, -1}[b(31)%5], Data: lut}
	}
	return p, fuzzSyntaxes[b(25)%len(fuzzSyntaxes)], opts
}

// fuzzSeed is one input of FuzzRender: header, frame, palette data.
type fuzzSeed struct {
	name         string
	h, data, lut []byte
}

// fuzzSeeds are valid inputs, one per decoder and layout, from which the
// fuzzer mutates.
func fuzzSeeds() []fuzzSeed {
	hdr := func(v ...byte) []byte { return append(v, make([]byte, 32)...)[:32] }
	rlep := mono(4, 8, 8, 7, false)
	rlep.Rows, rlep.Columns = 2, 2
	var jb bytes.Buffer
	if err := jpeg.Encode(&jb, image.NewGray(image.Rect(0, 0, 8, 8)), nil); err != nil {
		panic(err)
	}
	return []fuzzSeed{
		{"signed 12 of 16 bits, windowed", hdr(4, 4, 1, 1, 2, 12, 13, 1, 0, 1, 4, 0, 1, 5, 40, 1),
			u16(1, 2, 3, -4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16), nil},
		{"RGB by plane", hdr(2, 3, 2, 3, 1, 8, 9, 0, 1), []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18}, nil},
		{"YBR_FULL_422 scaled", hdr(2, 4, 4, 3, 1, 8, 9, 0, 0, 0, 4, 0, 4, 0, 0, 0, 0, 0, 0, 3, 1),
			[]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, nil},
		{"PALETTE COLOR", hdr(2, 2, 5, 1, 1, 8, 9, 0, 0, 0, 4, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 1),
			[]byte{0, 1, 2, 3}, u16(1, 2, 3, 4, 5, 6)},
		{"modality and VOI LUTs", hdr(2, 2, 1, 1, 2, 12, 11, 0, 0, 0, 4, 0, 96, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1),
			[]byte{0, 0, 1, 0, 2, 0, 3, 0}, []byte{0, 0, 1, 0, 2, 0, 3, 0, 4, 0}},
		{"1 bit from bit 3", hdr(3, 5, 1, 1, 0, 1, 2, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4), []byte{0xA5, 0x5A, 0xFF}, nil},
		{"RLE", hdr(2, 2, 1, 1, 1, 8, 9, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2),
			encodeRLE(rlep, []byte{1, 1, 1, 9}), nil},
		{"JPEG windowed", hdr(8, 8, 1, 1, 1, 8, 9, 0, 0, 0, 4, 0, 2, 0, 0, 0, 9, 30, 1, 0, 0, 1, 0, 0, 0, 3), jb.Bytes(), nil},
	}
}

// FuzzRender renders arbitrary frames with arbitrary attributes: Render
// and Frame must never panic, and an image they return has the size the
// attributes and the viewport say. The seeds are valid inputs; the
// corpus in testdata/fuzz holds inputs that once found a bug.
func FuzzRender(f *testing.F) {
	for _, s := range fuzzSeeds() {
		f.Add(s.h, s.data, s.lut)
	}
	f.Fuzz(func(t *testing.T, h, data, lut []byte) {
		p, ts, opts := fuzzParams(h, lut)
		for i := range max(p.NumberOfFrames, 1) + 1 {
			if sp, err := Frame(p, i); err == nil && (sp.Offset < 0 || sp.Length < 0 || sp.BitOffset < 0 || sp.BitOffset > 7) {
				t.Fatalf("frame %d: %+v", i, sp)
			}
		}
		img, err := Render(t.Context(), p, ts, bytes.NewReader(data), opts)
		if err != nil {
			return
		}
		w, h2 := img.Bounds().Dx(), img.Bounds().Dy()
		if w < 1 || h2 < 1 || w > p.Columns || h2 > p.Rows {
			t.Fatalf("%dx%d image from %dx%d", w, h2, p.Columns, p.Rows)
		}
		if vp := opts.Viewport; (vp.Width > 0 && w > vp.Width) || (vp.Height > 0 && h2 > vp.Height) {
			t.Fatalf("%dx%d image in viewport %+v", w, h2, vp)
		}
	})
}

// TestFuzzSeeds makes sure that every seed of FuzzRender renders, so that
// the fuzzer starts inside each decoder rather than at its first check.
func TestFuzzSeeds(t *testing.T) {
	for _, s := range fuzzSeeds() {
		p, ts, opts := fuzzParams(s.h, s.lut)
		if _, err := Render(t.Context(), p, ts, bytes.NewReader(s.data), opts); err != nil {
			t.Errorf("%s: %v", s.name, err)
		}
	}
}
