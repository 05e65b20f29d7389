package codec

import (
	"bytes"
	"context"
	"io"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
)

// fuzzLimits keep what a hostile code stream may make a decoder allocate
// small, as Limits do in production.
var fuzzLimits = Limits{MaxFrameBytes: 1 << 20}

// fuzzImages are the images whose encodings seed the fuzzers.
var fuzzImages = []Image{
	{Rows: 16, Columns: 24, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2},
	{Rows: 8, Columns: 8, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: RGB},
	{Rows: 9, Columns: 7, SamplesPerPixel: 1, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: Monochrome2},
}

// fuzzDecoder fuzzes the decoder of ts with code streams and image
// attributes that may contradict them: any error is fine, a crash or a
// frame of the wrong size is not.
func fuzzDecoder(f *testing.F, ts string) {
	reg := New(Options{Limits: fuzzLimits})
	c, _ := reg.Lookup(ts)
	for i, im := range fuzzImages {
		enc, eim, err := c.Encode(nil, synthetic(im, uint64(i)), im)
		if err != nil {
			continue
		}
		f.Add(enc, uint16(eim.Rows), uint16(eim.Columns), uint8(eim.SamplesPerPixel), uint8(eim.BitsAllocated), uint8(eim.BitsStored), eim.PhotometricInterpretation)
		f.Add(enc[:len(enc)/2], uint16(eim.Rows), uint16(eim.Columns), uint8(eim.SamplesPerPixel), uint8(eim.BitsAllocated), uint8(eim.BitsStored), eim.PhotometricInterpretation)
		f.Add(enc, uint16(eim.Rows*2), uint16(eim.Columns), uint8(eim.SamplesPerPixel), uint8(eim.BitsAllocated), uint8(eim.BitsStored), eim.PhotometricInterpretation)
	}
	f.Fuzz(func(t *testing.T, src []byte, rows, cols uint16, spp, alloc, stored uint8, photometric string) {
		im := Image{Rows: int(rows), Columns: int(cols), SamplesPerPixel: int(spp), BitsAllocated: int(alloc),
			BitsStored: int(stored), PhotometricInterpretation: photometric}
		out, oim, err := c.Decode(nil, src, im)
		if err != nil {
			return
		}
		if int64(len(out)) != oim.FrameSize() {
			t.Fatalf("decoded %d bytes for a frame of %d", len(out), oim.FrameSize())
		}
	})
}

func FuzzJPEG(f *testing.F)         { fuzzDecoder(f, uid.JPEGExtended12Bit) }
func FuzzJPEGLossless(f *testing.F) { fuzzDecoder(f, uid.JPEGLossless) }
func FuzzJPEGLS(f *testing.F)       { fuzzDecoder(f, uid.JPEGLSLossless) }
func FuzzJPEG2000(f *testing.F)     { fuzzDecoder(f, uid.JPEG2000) }
func FuzzHTJ2K(f *testing.F)        { fuzzDecoder(f, uid.HTJ2K) }
func FuzzRLE(f *testing.F)          { fuzzDecoder(f, uid.RLELossless) }

// FuzzTranscode fuzzes Transcode with data sets of every syntax.
func FuzzTranscode(f *testing.F) {
	reg := New(Options{Limits: fuzzLimits})
	ds, _ := nativeDataset(fuzzImages[0], 2, 1)
	syntaxes := append([]string{uid.ExplicitVRLittleEndian}, reg.Syntaxes()...)
	for i, ts := range syntaxes {
		var enc bytes.Buffer
		if _, err := reg.Transcode(context.Background(), &enc, bytes.NewReader(ds), uid.ExplicitVRLittleEndian, ts, TranscodeOptions{}); err == nil {
			f.Add(enc.Bytes(), uint8(i), uint8((i+1)%len(syntaxes)))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, from, to uint8) {
		a, b := syntaxes[int(from)%len(syntaxes)], syntaxes[int(to)%len(syntaxes)]
		reg.Transcode(context.Background(), io.Discard, bytes.NewReader(data), a, b, TranscodeOptions{})
	})
}
