package codec

import (
	"bytes"
	"context"
	"encoding/binary"
	"image"
	"io"
	"testing"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/internal/dcmgen"
)

// BenchmarkDecodeCT decodes a 512×512 16-bit CT frame with each lossless
// codec, reusing the destination as a caller that decodes frame after
// frame does.
func BenchmarkDecodeCT(b *testing.B) {
	reg := New(Options{})
	im := Image{Rows: 512, Columns: 512, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2}
	native := dcmgen.CTPixels(512, 512)
	for _, ts := range []string{uid.JPEGLSLossless, uid.JPEGLosslessSV1, uid.RLELossless, uid.HTJ2KLossless, uid.JPEG2000Lossless} {
		c, _ := reg.Lookup(ts)
		enc, _, err := c.Encode(nil, native, im)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(uid.Name(ts), func(b *testing.B) {
			b.SetBytes(int64(len(native)))
			var dst []byte
			for b.Loop() {
				if dst, _, err = c.Decode(dst[:0], enc, im); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncodeJPEG encodes a rendered 512×512 grey image, as
// /rendered answers it.
func BenchmarkEncodeJPEG(b *testing.B) {
	reg := New(Options{})
	native := dcmgen.CTPixels(512, 512)
	img := image.NewGray(image.Rect(0, 0, 512, 512))
	for i := range img.Pix {
		img.Pix[i] = byte(binary.LittleEndian.Uint16(native[2*i:]) >> 4)
	}
	var dst []byte
	for b.Loop() {
		var err error
		if dst, err = reg.EncodeJPEG(dst[:0], img, 90); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(dst)), "bytes")
}

// BenchmarkTranscodeCT converts a data set of one 512×512 CT frame from
// JPEG-LS Lossless to Explicit VR Little Endian, as a C-GET by a peer
// of uncompressed syntaxes does for every instance.
func BenchmarkTranscodeCT(b *testing.B) {
	reg := New(Options{})
	im := Image{Rows: 512, Columns: 512, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2}
	var d []byte
	d = appendElement(d, tag.SOPClassUID, "UI", []byte(uid.CTImageStorage))
	d = appendElement(d, tag.SOPInstanceUID, "UI", []byte("1.2.3.4.5.6.7"))
	d = appendElement(d, tag.SamplesPerPixel, "US", us(1))
	d = appendElement(d, tag.PhotometricInterpretation, "CS", []byte(im.PhotometricInterpretation))
	d = appendElement(d, tag.Rows, "US", us(512))
	d = appendElement(d, tag.Columns, "US", us(512))
	d = appendElement(d, tag.BitsAllocated, "US", us(16))
	d = appendElement(d, tag.BitsStored, "US", us(12))
	d = appendElement(d, tag.HighBit, "US", us(11))
	d = appendElement(d, tag.PixelRepresentation, "US", us(0))
	d = appendElement(d, tag.PixelData, "OW", dcmgen.CTPixels(512, 512))
	var jls bytes.Buffer
	if _, err := reg.Transcode(context.Background(), &jls, bytes.NewReader(d), uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, TranscodeOptions{}); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if _, err := reg.Transcode(context.Background(), io.Discard, bytes.NewReader(jls.Bytes()), uid.JPEGLSLossless, uid.ExplicitVRLittleEndian, TranscodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}
