package codec

import (
	"bytes"
	"errors"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
)

// TestTranscodeFrame converts a native frame to each lossless syntax and
// back, and between two compressed syntaxes, and checks the pixels.
func TestTranscodeFrame(t *testing.T) {
	reg := New(Options{})
	im := Image{Rows: 37, Columns: 29, SamplesPerPixel: 1, BitsAllocated: 16, BitsStored: 12, PhotometricInterpretation: Monochrome2}
	native := make([]byte, im.FrameSize())
	for i := range len(native) / 2 {
		v := (i*7 + i/29*13) % 4096
		native[2*i], native[2*i+1] = byte(v), byte(v>>8)
	}
	for _, ts := range []string{uid.JPEGLosslessSV1, uid.JPEGLSLossless, uid.JPEG2000Lossless, uid.HTJ2KLossless, uid.RLELossless} {
		t.Run(uid.Name(ts), func(t *testing.T) {
			enc, _, err := reg.TranscodeFrame(nil, native, uid.ExplicitVRLittleEndian, ts, im)
			if err != nil {
				t.Fatal(err)
			}
			// Through another compressed syntax, and back to native.
			jls, out, err := reg.TranscodeFrame(nil, enc, ts, uid.JPEGLSLossless, im)
			if err != nil {
				t.Fatal(err)
			}
			got, _, err := reg.TranscodeFrame(nil, jls, uid.JPEGLSLossless, uid.ImplicitVRLittleEndian, out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, native) {
				t.Error("pixels differ after the round trip")
			}
		})
	}
	if _, _, err := reg.TranscodeFrame(nil, native, uid.ExplicitVRLittleEndian, "1.2.840.10008.1.2.4.100", im); !errors.Is(err, ErrUnsupported) {
		t.Errorf("to MPEG-2: %v, want ErrUnsupported", err)
	}
	if _, _, err := reg.TranscodeFrame(nil, native[:100], uid.ExplicitVRLittleEndian, uid.JPEGLSLossless, im); !errors.Is(err, ErrMalformed) {
		t.Errorf("short native frame: %v, want ErrMalformed", err)
	}
}
