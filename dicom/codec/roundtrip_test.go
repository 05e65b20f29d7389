package codec

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
)

// synthetic returns a native frame of im: smooth gradients with noise,
// so that every predictor and transform has something to do.
func synthetic(im Image, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	n := im.Rows * im.Columns * im.SamplesPerPixel
	out := make([]byte, n*im.bytesPerSample())
	maxv := 1<<im.BitsStored - 1
	for i := range n {
		p := i / im.SamplesPerPixel
		x, y := p%im.Columns, p/im.Columns
		v := (x*7+y*13+(i%im.SamplesPerPixel)*50)*maxv/(7*im.Columns+13*im.Rows+100) + r.IntN(5)
		v = min(max(v, 0), maxv)
		if im.Signed() {
			v -= 1 << (im.BitsStored - 1)
		}
		if im.BitsAllocated == 8 {
			out[i] = byte(v)
		} else {
			binary.LittleEndian.PutUint16(out[2*i:], uint16(int16(v)))
		}
	}
	if im.SamplesPerPixel == 3 && im.PlanarConfiguration == 1 {
		return deinterleave(nil, out, im.Rows*im.Columns, im.bytesPerSample())
	}
	return out
}

// masked returns the samples of a native frame cut to Bits Stored.
func masked(b []byte, im Image) []uint32 {
	n := len(b) / im.bytesPerSample()
	out := make([]uint32, n)
	m := uint32(1)<<im.BitsStored - 1
	for i := range out {
		switch im.BitsAllocated {
		case 8:
			out[i] = uint32(b[i]) & m
		case 32:
			out[i] = binary.LittleEndian.Uint32(b[4*i:]) & m
		default:
			out[i] = uint32(binary.LittleEndian.Uint16(b[2*i:])) & m
		}
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	reg := New(Options{})
	images := map[string]Image{
		"gray8":       {Rows: 37, Columns: 53, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: Monochrome2},
		"gray12":      {Rows: 64, Columns: 48, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2},
		"gray16":      {Rows: 33, Columns: 65, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, PhotometricInterpretation: Monochrome2},
		"signed16":    {Rows: 40, Columns: 40, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 16, PixelRepresentation: 1, PhotometricInterpretation: Monochrome2},
		"signed12":    {Rows: 40, Columns: 40, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PixelRepresentation: 1, PhotometricInterpretation: Monochrome2},
		"rgb8":        {Rows: 31, Columns: 45, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: RGB},
		"rgb8-planar": {Rows: 16, Columns: 20, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: RGB, PlanarConfiguration: 1},
	}
	for _, ts := range reg.Syntaxes() {
		c, _ := reg.Lookup(ts)
		for name, im := range images {
			t.Run(uid.Name(ts)+"/"+name, func(t *testing.T) {
				src := synthetic(im, 7)
				enc, eim, err := c.Encode(nil, src, im)
				if errors.Is(err, ErrUnsupported) {
					t.Skipf("encode: %v", err)
				}
				if err != nil {
					t.Fatalf("encode: %v", err)
				}
				dec, dim, err := c.Decode(nil, enc, eim)
				if err != nil {
					t.Fatalf("decode: %v", err)
				}
				if dim.PlanarConfiguration != 0 {
					t.Errorf("decoded planar configuration %d", dim.PlanarConfiguration)
				}
				want := masked(byPixel(nil, src, im), im)
				got := masked(dec, im)
				if len(got) != len(want) {
					t.Fatalf("decoded %d samples, want %d", len(got), len(want))
				}
				tol := 0
				if c.Lossy() {
					tol = 1 << max(im.BitsStored-4, 3)
				}
				worst, sum := 0, 0
				for i := range want {
					d := int(got[i]) - int(want[i])
					if im.Signed() {
						s := 32 - im.BitsStored
						d = int(int32(got[i]<<s)>>s) - int(int32(want[i]<<s)>>s)
					}
					worst = max(worst, d, -d)
					sum += max(d, -d)
				}
				if c.Lossy() {
					// Lossy coding of tiny noisy images has outliers; its
					// mean error is what shows a broken codec.
					worst = sum / len(want)
				}
				if worst > tol {
					t.Errorf("largest difference %d, tolerance %d (%d bytes encoded)", worst, tol, len(enc))
				}
				if !c.Lossy() && bytes.Equal(enc, src) {
					t.Errorf("encoding is the input")
				}
			})
		}
	}
}
