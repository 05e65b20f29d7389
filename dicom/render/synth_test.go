package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// synth describes a small image written as a Part-10 file, for the
// encodings the pydicom files lack: signed and masked stored values, a
// High Bit above Bits Stored - 1, palettes, 1-bit frames that do not start
// on a byte boundary.
type synth struct {
	name                     string
	ts                       string
	rows, cols, frames       int
	photometric              string
	spp, alloc, stored, high int
	signed, planar           bool
	pixels                   []byte // little endian; Encode swaps OW for big endian
	extra                    []dicom.Element
	window                   *Window // an override, given to both renderers
	frame                    int
	// tolerance is the largest difference from dcmj2pnm accepted; 0
	// means 1.
	tolerance int
}

func us(t tag.Tag, v ...int) dicom.Element {
	e := dicom.Element{Tag: t, VR: "US"}
	for _, n := range v {
		e.Values = append(e.Values, strconv.Itoa(n))
	}
	return e
}

func text(t tag.Tag, vr string, v ...string) dicom.Element {
	return dicom.Element{Tag: t, VR: vr, Values: v}
}

// write writes s as a Part-10 file in dir and returns its path.
func (s synth) write(t *testing.T, dir string) string {
	t.Helper()
	const sopClass = "1.2.840.10008.5.1.4.1.1.7" // Secondary Capture
	inst := "2.25." + strconv.FormatUint(rand.Uint64(), 10)
	pr, pc := 0, 0
	if s.signed {
		pr = 1
	}
	if s.planar {
		pc = 1
	}
	els := []dicom.Element{
		text(tag.SOPClassUID, "UI", sopClass),
		text(tag.SOPInstanceUID, "UI", inst),
		text(tag.StudyInstanceUID, "UI", inst+".1"),
		text(tag.SeriesInstanceUID, "UI", inst+".2"),
		us(tag.SamplesPerPixel, s.spp),
		text(tag.PhotometricInterpretation, "CS", s.photometric),
		us(tag.Rows, s.rows),
		us(tag.Columns, s.cols),
		us(tag.BitsAllocated, s.alloc),
		us(tag.BitsStored, s.stored),
		us(tag.HighBit, s.high),
		us(tag.PixelRepresentation, pr),
	}
	if s.spp > 1 {
		els = append(els, us(tag.PlanarConfiguration, pc))
	}
	if s.frames > 0 {
		els = append(els, text(tag.NumberOfFrames, "IS", strconv.Itoa(s.frames)))
	}
	vr := "OW"
	if s.alloc <= 8 {
		vr = "OB"
	}
	els = append(els, s.extra...)
	els = append(els, dicom.Element{Tag: tag.PixelData, VR: vr, Binary: &dicom.Binary{Data: s.pixels}})
	ts, _ := uid.LookupTransferSyntax(s.ts)
	var b bytes.Buffer
	b.Write(dicom.AppendFileMeta(nil, dicom.FileMeta{
		MediaStorageSOPClassUID:    sopClass,
		MediaStorageSOPInstanceUID: inst,
		TransferSyntaxUID:          s.ts,
		ImplementationClassUID:     dicom.ImplementationClassUID,
	}))
	if err := (&dicom.Dataset{Elements: els}).Encode(&b, ts, dicom.EncodeOptions{}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, s.name+".dcm")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// words returns values as 16-bit little endian words.
func words(v []int) []byte {
	var b []byte
	for _, n := range v {
		b = binary.LittleEndian.AppendUint16(b, uint16(n))
	}
	return b
}

// ramp returns n values: a ramp from lo to hi with noise, so that both
// the window's edges and its slope are exercised.
func ramp(r *rand.Rand, n, lo, hi int) []int {
	out := make([]int, n)
	for i := range out {
		v := lo + (hi-lo)*i/max(n-1, 1) + r.IntN(33) - 16
		out[i] = min(max(v, lo), hi)
	}
	return out
}

func synths() []synth {
	r := rand.New(rand.NewPCG(1, 2))
	var s []synth

	// Signed 12 bits in 16 with other bits set above them, a rescale and
	// the data set's window.
	v := ramp(r, 24*32, -2048, 2047)
	for i := range v {
		v[i] = v[i]&0x0FFF | 0xA000
	}
	s = append(s, synth{name: "signed12", ts: uid.ExplicitVRLittleEndian, rows: 24, cols: 32,
		photometric: Monochrome2, spp: 1, alloc: 16, stored: 12, high: 11, signed: true, pixels: words(v),
		extra: []dicom.Element{
			text(tag.WindowCenter, "DS", "50", "300"), text(tag.WindowWidth, "DS", "300", "10"),
			text(tag.RescaleIntercept, "DS", "-100"), text(tag.RescaleSlope, "DS", "2"),
		}})

	// 12 bits stored in the high bits of 16, noise in the low ones.
	v = ramp(r, 20*20, 0, 4095)
	for i := range v {
		v[i] = v[i]<<4 | r.IntN(16)
	}
	s = append(s, synth{name: "highbit15", ts: uid.ExplicitVRLittleEndian, rows: 20, cols: 20,
		photometric: Monochrome2, spp: 1, alloc: 16, stored: 12, high: 15, pixels: words(v)})

	// Big endian, signed, min-max window.
	v = ramp(r, 16*24, -30000, 30000)
	s = append(s, synth{name: "bigendian16", ts: uid.ExplicitVRBigEndian, rows: 16, cols: 24,
		photometric: Monochrome2, spp: 1, alloc: 16, stored: 16, high: 15, signed: true, pixels: words(v)})

	// MONOCHROME1 with a SIGMOID window given by the request.
	b := make([]byte, 16*16)
	for i := range b {
		b[i] = byte(i + r.IntN(8))
	}
	s = append(s, synth{name: "mono1-sigmoid", ts: uid.ExplicitVRLittleEndian, rows: 16, cols: 16,
		photometric: Monochrome1, spp: 1, alloc: 8, stored: 8, high: 7, pixels: b,
		window: &Window{Center: 100, Width: 80, Function: Sigmoid}})

	// MONOCHROME1 with a LINEAR window given by the request, signed 8 bits.
	s = append(s, synth{name: "mono1-signed8", ts: uid.ImplicitVRLittleEndian, rows: 16, cols: 16,
		photometric: Monochrome1, spp: 1, alloc: 8, stored: 8, high: 7, signed: true, pixels: b,
		window: &Window{Center: -10, Width: 120, Function: Linear}})

	// Signed 32 bits with a fractional rescale, min-max window.
	var b32 []byte
	for _, n := range ramp(r, 12*10, -5_000_000, 7_000_000) {
		b32 = binary.LittleEndian.AppendUint32(b32, uint32(int32(n)))
	}
	s = append(s, synth{name: "signed32", ts: uid.ExplicitVRLittleEndian, rows: 12, cols: 10,
		photometric: Monochrome2, spp: 1, alloc: 32, stored: 32, high: 31, signed: true, pixels: b32,
		extra: []dicom.Element{text(tag.RescaleIntercept, "DS", "3"), text(tag.RescaleSlope, "DS", "0.5")}})

	// 1-bit frames of 5x7 = 35 bits: the second and third start inside a
	// byte.
	bits := make([]byte, (3*35+7)/8+1)
	for i := range bits {
		bits[i] = byte(r.Uint32())
	}
	for _, f := range []int{1, 2} {
		s = append(s, synth{name: "bits1-frame" + strconv.Itoa(f), ts: uid.ExplicitVRLittleEndian, rows: 5, cols: 7, frames: 3,
			photometric: Monochrome2, spp: 1, alloc: 1, stored: 1, high: 0, pixels: bits, frame: f})
	}

	// Palettes: 8 bits stored with 16-bit entries; 16 bits stored with a
	// table that starts at 100 and is shorter than the values' range.
	red, green, blue := make([]int, 256), make([]int, 256), make([]int, 256)
	for i := range 256 {
		red[i], green[i], blue[i] = i*257, (255-i)*257, (i*7%256)*257
	}
	b = make([]byte, 16*16)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	s = append(s, synth{name: "palette8", ts: uid.ExplicitVRLittleEndian, rows: 16, cols: 16,
		photometric: PaletteColor, spp: 1, alloc: 8, stored: 8, high: 7, pixels: b,
		extra: palette(256, 0, 16, red, green, blue)})
	n := 1000
	red, green, blue = make([]int, n), make([]int, n), make([]int, n)
	for i := range n {
		red[i], green[i], blue[i] = i*65535/n, 65535-i*65535/n, (i*37%n)*65535/n
	}
	v = ramp(r, 20*12, 0, 1300)
	s = append(s, synth{name: "palette16", ts: uid.ExplicitVRLittleEndian, rows: 20, cols: 12,
		photometric: PaletteColor, spp: 1, alloc: 16, stored: 16, high: 15, pixels: words(v),
		extra: palette(n, 100, 16, red, green, blue)})

	// RGB by plane, and YBR_FULL.
	b = make([]byte, 3*10*14)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	s = append(s, synth{name: "rgb-planar", ts: uid.ExplicitVRLittleEndian, rows: 10, cols: 14,
		photometric: RGB, spp: 3, alloc: 8, stored: 8, high: 7, planar: true, pixels: b})
	// dcmtk truncates each term of its YCbCr conversion on its own, an
	// error of up to 2 where Render rounds once.
	s = append(s, synth{name: "ybr-full", ts: uid.ExplicitVRLittleEndian, rows: 10, cols: 14,
		photometric: YBRFull, spp: 3, alloc: 8, stored: 8, high: 7, pixels: b, tolerance: 2})
	return s
}

// palette returns the Palette Color Lookup Table elements of three tables
// of n entries starting at first.
func palette(n, first, bits int, red, green, blue []int) []dicom.Element {
	desc := func(t tag.Tag) dicom.Element { return us(t, n%65536, first, bits) }
	data := func(t tag.Tag, v []int) dicom.Element {
		return dicom.Element{Tag: t, VR: "OW", Binary: &dicom.Binary{Data: words(v)}}
	}
	return []dicom.Element{
		desc(tag.RedPaletteColorLookupTableDescriptor), desc(tag.GreenPaletteColorLookupTableDescriptor),
		desc(tag.BluePaletteColorLookupTableDescriptor),
		data(tag.RedPaletteColorLookupTableData, red), data(tag.GreenPaletteColorLookupTableData, green),
		data(tag.BluePaletteColorLookupTableData, blue),
	}
}

// TestSyntheticMatchesDcmtk writes each synthetic image as a file, reads
// it back with pacsd's parser and ParamsFrom, renders it and compares the
// result with dcmj2pnm's rendering of the same file, within 1 per channel.
func TestSyntheticMatchesDcmtk(t *testing.T) {
	testpeer.Need(t, "dcmj2pnm")
	dir := t.TempDir()
	for _, s := range synths() {
		t.Run(s.name, func(t *testing.T) {
			path := s.write(t, dir)
			in, ok := readInstance(t, path)
			if !ok {
				t.Fatal("cannot read the file back")
			}
			data, opts := in.frame(t, s.frame)
			opts.Window = s.window
			got, err := Render(t.Context(), in.params, in.ts, bytes.NewReader(data), opts)
			if err != nil {
				t.Fatal(err)
			}
			win := s.window
			if win == nil && in.params.Window != nil {
				win = in.params.Window
			}
			want, err := dcmj2pnm(t, path, s.frame, win)
			if err != nil {
				t.Fatal(err)
			}
			d, n, err := compare(got, want)
			if err != nil {
				t.Fatal(err)
			}
			if d > max(s.tolerance, 1) {
				t.Errorf("differs from dcmj2pnm by up to %d (%d pixels)\n got: %v\nwant: %v", d, n, dump(got), dump(want))
			}
		})
	}
}

// dump formats the first row of img, for messages.
func dump(img image.Image) string {
	var b []byte
	r := img.Bounds()
	for x := r.Min.X; x < r.Max.X; x++ {
		c := color.NRGBAModel.Convert(img.At(x, r.Min.Y)).(color.NRGBA)
		if c.R == c.G && c.G == c.B {
			b = fmt.Appendf(b, "%d ", c.R)
		} else {
			b = fmt.Appendf(b, "%d/%d/%d ", c.R, c.G, c.B)
		}
	}
	return string(b)
}

// pixels returns img's pixels as 8-bit RGB, row by row.
func pixels(img image.Image) []byte {
	var b []byte
	r := img.Bounds()
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			c := color.NRGBAModel.Convert(img.At(x, y)).(color.NRGBA)
			b = append(b, c.R, c.G, c.B)
		}
	}
	return b
}

// TestTwins renders the pydicom files that hold the same image in other
// encodings (big endian, RLE, implicit VR) and requires the same output,
// pixel for pixel. dcmj2pnm is no reference for the big endian 32-bit
// files: it swaps their OW value in 16-bit words, so that its rendering of
// rtdose_expb.dcm differs from its rendering of rtdose.dcm.
func TestTwins(t *testing.T) {
	files := testpeer.PydicomFilesT(t)
	byName := map[string]string{}
	for _, f := range files {
		byName[filepath.Base(f)] = f
	}
	twins := [][2]string{
		{"MR_small.dcm", "MR_small_bigendian.dcm"},
		{"MR_small.dcm", "MR_small_expb.dcm"},
		{"MR_small.dcm", "MR_small_implicit.dcm"},
		{"MR_small.dcm", "MR_small_RLE.dcm"},
		{"rtdose.dcm", "rtdose_expb.dcm"},
		{"rtdose.dcm", "rtdose_rle.dcm"},
		{"rtdose_1frame.dcm", "rtdose_expb_1frame.dcm"},
		{"liver_1frame.dcm", "liver_expb_1frame.dcm"},
		{"SC_rgb_rle_2frame.dcm", "SC_rgb_rle.dcm"},
	}
	for _, tw := range twins {
		t.Run(tw[1], func(t *testing.T) {
			var imgs [2][]byte
			for k, name := range tw {
				path, ok := byName[name]
				if !ok {
					t.Fatalf("%s is not among the pydicom files", name)
				}
				in, ok := readInstance(t, path)
				if !ok {
					t.Fatalf("cannot read %s", name)
				}
				data, opts := in.frame(t, 0)
				img, err := Render(t.Context(), in.params, in.ts, bytes.NewReader(data), opts)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				imgs[k] = pixels(img)
			}
			if !bytes.Equal(imgs[0], imgs[1]) {
				t.Errorf("%s and %s render differently", tw[0], tw[1])
			}
		})
	}
}
