package render

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/testpeer"
)

// dcmj2pnm renders frame (counted from 0) of the file at path with
// dcmtk's dcmj2pnm as PNG, windowed as Render windows by default: with
// the data set's first window if it has one, else from the frame's
// minimum to its maximum. Overlays are left out, as Render leaves them.
func dcmj2pnm(t *testing.T, path string, frame int, win *Window) (image.Image, error) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out.png")
	args := []string{"+on", "-O", "+F", strconv.Itoa(frame + 1)}
	switch {
	case win == nil:
		args = append(args, "+Wm")
	case win.Function == Sigmoid:
		args = append(args, "+Ww", fmt.Sprint(win.Center), fmt.Sprint(win.Width), "+Wfs")
	default:
		args = append(args, "+Ww", fmt.Sprint(win.Center), fmt.Sprint(win.Width), "+Wfl")
	}
	args = append(args, path, out)
	if _, _, err := testpeer.Run(t.Context(), "dcmj2pnm", args...); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return png.Decode(bytes.NewReader(b))
}

// decompressed decompresses the file at path with a peer, for a
// syntax dcmj2pnm does not decode.
func decompressed(t *testing.T, path, ts string) (string, bool) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "decompressed.dcm")
	switch ts {
	case uid.JPEGLSLossless, uid.JPEGLSNearLossless:
		testpeer.RunT(t, "dcmdjpls", path, out)
	case uid.JPEG2000Lossless, uid.JPEG2000:
		testpeer.RunT(t, "gdcmconv", "--raw", path, out)
	default:
		return "", false
	}
	return out, true
}

// compare reports how far got is from want: the largest difference of
// any channel of any pixel and how many pixels differ at all.
func compare(got, want image.Image) (maxDiff, differ int, err error) {
	if got.Bounds().Size() != want.Bounds().Size() {
		return 0, 0, fmt.Errorf("size %v, want %v", got.Bounds().Size(), want.Bounds().Size())
	}
	gb, wb := got.Bounds(), want.Bounds()
	for y := range gb.Dy() {
		for x := range gb.Dx() {
			r1, g1, b1, _ := got.At(gb.Min.X+x, gb.Min.Y+y).RGBA()
			r2, g2, b2, _ := want.At(wb.Min.X+x, wb.Min.Y+y).RGBA()
			d := max(absDiff(r1>>8, r2>>8), absDiff(g1>>8, g2>>8), absDiff(b1>>8, b2>>8))
			maxDiff = max(maxDiff, d)
			if d > 0 {
				differ++
			}
		}
	}
	return maxDiff, differ, nil
}

func absDiff(a, b uint32) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}

// dcmtkWrong lists the pydicom files whose dcmj2pnm rendering is no
// reference, and why. TestTwins checks them against their twins instead.
var dcmtkWrong = map[string]string{
	// Its code stream declares 2^32 tiles; no decoder reads it (GDCM
	// and OpenJPEG refuse it), as the codec tests check.
	"JPEG2000-embedded-sequence-delimiter.dcm": "undecodable code stream",
	// Their 32-bit values are big endian, as their twins rtdose.dcm and
	// rtdose_1frame.dcm show, but dcmtk swaps an OW value in 16-bit
	// words, so that its rendering of each differs from its rendering of
	// the twin.
	"rtdose_expb.dcm":        "32-bit big endian",
	"rtdose_expb_1frame.dcm": "32-bit big endian",
}

// TestMatchesDcmtk renders the first and last frame of every pydicom test
// file that Render supports and compares each with what dcmtk's dcmj2pnm
// renders of it, within 1 per channel: Render rounds where dcmtk
// truncates, and its JPEG decoder's inverse DCT differs from libjpeg's in
// the last bit.
func TestMatchesDcmtk(t *testing.T) {
	testpeer.Need(t, "dcmj2pnm", "dcmdjpls", "gdcmconv")
	files := testpeer.PydicomFilesT(t)
	compared := 0
	for _, path := range files {
		in, ok := readInstance(t, path)
		if !ok {
			continue
		}
		name := filepath.Base(path)
		if why, ok := dcmtkWrong[name]; ok {
			t.Logf("%s: not compared: %s", name, why)
			continue
		}
		frames := max(in.params.NumberOfFrames, 1)
		for _, i := range []int{0, frames - 1} {
			data, opts := in.frame(t, i)
			got, err := Render(t.Context(), in.params, in.ts, bytes.NewReader(data), opts)
			if errors.Is(err, ErrUnsupported) {
				// Only the syntaxes Render does not decode, and JPEG
				// Extended with 12 bits, which image/jpeg does not.
				switch in.ts {
				case uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.ExplicitVRBigEndian,
					uid.DeflatedExplicitVRLittleEndian, uid.RLELossless, uid.JPEGBaseline8Bit:
					t.Errorf("%s: %v", name, err)
				default:
					t.Logf("%s: %v", name, err)
				}
				break
			}
			if err != nil {
				t.Errorf("%s frame %d: %v", name, i, err)
				break
			}
			var win *Window
			if w := in.params.Window; w != nil && w.check() == nil {
				win = w
			}
			want, err := dcmj2pnm(t, path, i, win)
			if err != nil {
				// dcmtk 3.6.7's dcmj2pnm decodes neither JPEG-LS nor
				// JPEG 2000: a peer decompresses it first (dcmdjpls,
				// GDCM), and dcmj2pnm renders that.
				ref, ok := decompressed(t, path, in.ts)
				if !ok {
					t.Logf("%s: dcmj2pnm cannot render it: %v", name, err)
					break
				}
				if want, err = dcmj2pnm(t, ref, i, win); err != nil {
					t.Errorf("%s: dcmj2pnm cannot render its decompressed copy: %v", name, err)
					break
				}
			}
			d, n, err := compare(got, want)
			if err != nil {
				t.Errorf("%s frame %d: %v", name, i, err)
				continue
			}
			t.Logf("%s frame %d: %s, max diff %d, %d pixels differ", name, i, in.params.PhotometricInterpretation, d, n)
			if d > 1 {
				t.Errorf("%s frame %d: differs from dcmj2pnm by up to %d (%d pixels)", name, i, d, n)
			}
			compared++
			if frames == 1 {
				break
			}
		}
	}
	// Some 60 frames of the package's files are renderable; fewer means
	// files went missing or Render lost an encoding.
	if compared < 50 {
		t.Errorf("compared %d frames, want at least 50", compared)
	}
}

// TestWindowMatchesDcmtk renders pydicom files with the windows a request
// may give and compares them with dcmj2pnm's rendering with the same
// window.
func TestWindowMatchesDcmtk(t *testing.T) {
	testpeer.Need(t, "dcmj2pnm")
	byName := map[string]string{}
	for _, f := range testpeer.PydicomFilesT(t) {
		byName[filepath.Base(f)] = f
	}
	tests := []struct {
		file string
		win  Window
	}{
		{"CT_small.dcm", Window{Center: 40, Width: 400, Function: Linear}},
		{"CT_small.dcm", Window{Center: -600, Width: 1500, Function: Sigmoid}},
		{"MR_small.dcm", Window{Center: 800, Width: 1}},
		{"MR_small_bigendian.dcm", Window{Center: 1000, Width: 900, Function: Sigmoid}},
		{"6154", Window{Center: 1200, Width: 2000, Function: Linear}}, // MONOCHROME1, slope 0.684
		{"liver_1frame.dcm", Window{Center: 0.5, Width: 2, Function: Linear}},
		{"rtdose_rle.dcm", Window{Center: 2e6, Width: 3e6, Function: Linear}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%v,%v,%s", tt.file, tt.win.Center, tt.win.Width, tt.win.Function), func(t *testing.T) {
			path, ok := byName[tt.file]
			if !ok {
				t.Fatalf("%s is not among the pydicom files", tt.file)
			}
			in, ok := readInstance(t, path)
			if !ok {
				t.Fatalf("cannot read %s", tt.file)
			}
			data, opts := in.frame(t, 0)
			opts.Window = &tt.win
			got, err := Render(t.Context(), in.params, in.ts, bytes.NewReader(data), opts)
			if err != nil {
				t.Fatal(err)
			}
			want, err := dcmj2pnm(t, path, 0, &tt.win)
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
		})
	}
}
