package render

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pacsd/pacsd/internal/dcmgen"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// lutRows and lutColumns are the size of the tests' images.
const lutRows, lutColumns = 40, 56

// spread returns frames of 12-bit samples that cover their whole range,
// differently in each frame, for lookup tables and windows to work on.
func spread(frames int) []byte {
	var b []byte
	for f := range frames {
		for y := range lutRows {
			for x := range lutColumns {
				v := (x*4096/lutColumns + y*97 + f*1111) % 4096
				b = binary.LittleEndian.AppendUint16(b, uint16(v))
			}
		}
	}
	return b
}

// ctImage writes a 16-bit image of 12 bits stored without a window, for
// the lookup tables to work on.
func ctImage(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ct.dcm")
	if _, err := dcmgen.Create(path, &dcmgen.Instance{Rows: lutRows, Columns: lutColumns, Pixels: bytes.NewReader(spread(1))}); err != nil {
		t.Fatal(err)
	}
	return path
}

// dcmj2pnmWith renders frame (from 0) of the file at path with dcmj2pnm
// and the given VOI options.
func dcmj2pnmWith(t *testing.T, path string, frame int, voi ...string) image.Image {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.png")
	args := append([]string{"+on", "-O", "+F", strconv.Itoa(frame + 1)}, voi...)
	testpeer.RunT(t, "dcmj2pnm", append(args, path, out)...)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// renderFile renders frame (from 0) of the file at path as FrameParams
// reads it.
func renderFile(t *testing.T, path string, frame int) *instance {
	t.Helper()
	in, ok := readInstance(t, path)
	if !ok {
		t.Fatalf("cannot read %s", path)
	}
	var err error
	if in.params, err = FrameParams(in.ds, frame+1); err != nil {
		t.Fatal(err)
	}
	return in
}

// checkAgainst renders frame of in and compares it with dcmj2pnm's
// rendering.
func checkAgainst(t *testing.T, in *instance, frame int, want image.Image) {
	t.Helper()
	data, opts := in.frame(t, frame)
	got, err := Render(t.Context(), in.params, in.ts, bytes.NewReader(data), opts)
	if err != nil {
		t.Fatal(err)
	}
	d, n, err := compare(got, want)
	if err != nil {
		t.Fatal(err)
	}
	if d > 1 {
		t.Errorf("differs from dcmj2pnm by up to %d (%d pixels)", d, n)
	}
	// A comparison of two blank images would prove nothing.
	levels := map[uint32]bool{}
	b := got.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, _, _, _ := got.At(x, y).RGBA()
			levels[r] = true
		}
	}
	if len(levels) < 16 {
		t.Errorf("the rendering has %d grey levels", len(levels))
	}
}

// TestLUTsMatchDcmtk renders images with a Modality LUT Sequence or a
// VOI LUT Sequence that dcmtk's dcmmklut added, of 8 to 16 bits and with
// a first input value other than 0, and compares them with dcmj2pnm.
func TestLUTsMatchDcmtk(t *testing.T) {
	testpeer.Need(t, "dcmmklut", "dcmj2pnm")
	tests := []struct {
		name string
		lut  []string // dcmmklut's options
		voi  []string // dcmj2pnm's VOI option
	}{
		{"modality gamma 2.2, 16 bits", []string{"+Tm", "-b", "16", "-e", "4096", "+Cg", "2.2"}, []string{"+Wm"}},
		{"modality 8 bits from 1000", []string{"+Tm", "-b", "8", "-e", "2048", "-f", "1000", "+Cg", "0.7"}, []string{"+Wm"}},
		{"modality permuted", []string{"+Tm", "-b", "16", "-e", "4096", "-r", "500"}, []string{"+Wm"}},
		{"VOI gamma 0.5, 16 bits", []string{"+Tv", "-b", "16", "-e", "4096", "+Cg", "0.5"}, []string{"+Wl", "1"}},
		{"VOI 8 bits from 500", []string{"+Tv", "-b", "8", "-e", "3000", "-f", "500", "+Cg", "1.8"}, []string{"+Wl", "1"}},
		{"VOI 10 bits as US", []string{"+Tv", "-b", "10", "-e", "4096", "+Du", "+Cg", "1.3"}, []string{"+Wl", "1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "lut.dcm")
			testpeer.RunT(t, "dcmmklut", append(append(tt.lut, "+Fi", ctImage(t, dir)), path)...)
			in := renderFile(t, path, 0)
			if in.params.ModalityLUT == nil && in.params.VOILUT == nil {
				t.Fatal("no lookup table read")
			}
			checkAgainst(t, in, 0, dcmj2pnmWith(t, path, 0, tt.voi...))
		})
	}
}

// TestFunctionalGroupsMatchDcmtk renders each frame of an enhanced
// multi-frame image whose rescale and window are in functional groups:
// the window in the Shared Functional Groups for one frame and per frame
// for the others, the rescale per frame. Each must look as dcmj2pnm
// renders a classic image holding that frame's pixels with the same
// rescale and window at the top level.
func TestFunctionalGroupsMatchDcmtk(t *testing.T) {
	testpeer.Need(t, "dcmj2pnm")
	type frameValues struct {
		slope, intercept float64
		center, width    float64 // 0 width: the shared window
	}
	frames := []frameValues{
		{1, -1024, 0, 0},
		{2, -2000, 1200, 2400},
		{0.5, 100, 700, 900},
	}
	shared := frameValues{center: 1000, width: 3000}
	seq := func(tg uint32, els ...dcmgen.Element) dcmgen.Element {
		return dcmgen.Element{Tag: dcmgen.Tag(tg), VR: "SQ", Value: []dcmgen.Item{els}}
	}
	ds := func(tg uint32, v float64) dcmgen.Element {
		return dcmgen.Element{Tag: dcmgen.Tag(tg), VR: "DS", Value: strconv.FormatFloat(v, 'f', -1, 64)}
	}
	var perFrame []dcmgen.Item
	for _, f := range frames {
		item := dcmgen.Item{seq(0x00289145, ds(0x00281053, f.slope), ds(0x00281052, f.intercept),
			dcmgen.Element{Tag: 0x00281054, VR: "LO", Value: "HU"})}
		if f.width != 0 {
			item = append(item, seq(0x00289132, ds(0x00281050, f.center), ds(0x00281051, f.width)))
		}
		perFrame = append(perFrame, item)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "enhanced.dcm")
	in := &dcmgen.Instance{Rows: lutRows, Columns: lutColumns, NumberOfFrames: len(frames), Pixels: bytes.NewReader(spread(len(frames))), Extra: []dcmgen.Element{
		seq(0x52009229, seq(0x00289132, ds(0x00281050, shared.center), ds(0x00281051, shared.width))),
		{Tag: 0x52009230, VR: "SQ", Value: perFrame},
	}}
	if _, err := dcmgen.Create(path, in); err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		t.Run(fmt.Sprintf("frame %d", i+1), func(t *testing.T) {
			got := renderFile(t, path, i)
			pixels, _ := got.frame(t, i)
			center, width := f.center, f.width
			if width == 0 {
				center, width = shared.center, shared.width
			}
			classic := filepath.Join(t.TempDir(), "classic.dcm")
			if _, err := dcmgen.Create(classic, &dcmgen.Instance{Rows: lutRows, Columns: lutColumns, Pixels: bytes.NewReader(pixels),
				Extra: []dcmgen.Element{ds(0x00281053, f.slope), ds(0x00281052, f.intercept), ds(0x00281050, center), ds(0x00281051, width)}}); err != nil {
				t.Fatal(err)
			}
			checkAgainst(t, got, i, dcmj2pnmWith(t, classic, 0, "+Wi", "1"))
		})
	}
}
