package codec

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pacsd/pacsd/dicom/uid"
)

// ErrUnsupported reports a transfer syntax, or a combination of image
// attributes, that no codec here decodes or encodes.
var ErrUnsupported = errors.New("codec: unsupported")

// ErrMalformed reports a code stream that does not decode, or that
// contradicts the data set's own description of its pixels.
var ErrMalformed = errors.New("codec: malformed pixel data")

// ErrTooLarge reports a frame larger than Limits allow.
var ErrTooLarge = errors.New("codec: frame too large")

// Photometric interpretations (PS3.3 C.7.6.3.1.2) that codecs read or
// write.
const (
	Monochrome1  = "MONOCHROME1"
	Monochrome2  = "MONOCHROME2"
	PaletteColor = "PALETTE COLOR"
	RGB          = "RGB"
	YBRFull      = "YBR_FULL"
	YBRFull422   = "YBR_FULL_422"
	YBRICT       = "YBR_ICT"
	YBRRCT       = "YBR_RCT"
)

// Image holds the Image Pixel attributes (PS3.3 C.7.6.3) that describe
// every frame of an image.
type Image struct {
	Rows, Columns   int
	SamplesPerPixel int
	BitsAllocated   int
	BitsStored      int
	// PixelRepresentation is 1 for two's complement samples, 0 for
	// unsigned ones.
	PixelRepresentation       int
	PhotometricInterpretation string
	// PlanarConfiguration is 0 for colour-by-pixel, 1 for
	// colour-by-plane; it matters for native frames only.
	PlanarConfiguration int
}

// Signed reports whether the samples are two's complement.
func (im Image) Signed() bool { return im.PixelRepresentation == 1 }

// Photometric returns the photometric interpretation, trimmed and upper case.
func (im Image) Photometric() string {
	return strings.ToUpper(strings.TrimSpace(im.PhotometricInterpretation))
}

// bytesPerSample is the size of one sample in a native frame.
func (im Image) bytesPerSample() int { return (im.BitsAllocated + 7) / 8 }

// FrameSize is the size in bytes of one native frame: Rows × Columns ×
// Samples per Pixel samples of Bits Allocated bits, YBR_FULL_422 holding
// two samples a pixel.
func (im Image) FrameSize() int64 {
	samples := int64(im.SamplesPerPixel)
	if im.Photometric() == YBRFull422 && im.SamplesPerPixel == 3 {
		samples = 2
	}
	return int64(im.Rows) * int64(im.Columns) * samples * int64(im.BitsAllocated) / 8
}

// Limits bound the memory one frame may take.
type Limits struct {
	// MaxFrameBytes is the largest native frame decoded or encoded
	// (default 256 MiB).
	MaxFrameBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxFrameBytes <= 0 {
		l.MaxFrameBytes = 256 << 20
	}
	return l
}

// check reports whether im is an image the codecs can hold a frame of,
// within lim.
func (im Image) check(lim Limits) error {
	return im.checkBits(lim, 8, 16)
}

// checkBits is check for codecs that take the given Bits Allocated.
func (im Image) checkBits(lim Limits, allocated ...int) error {
	if im.Rows <= 0 || im.Columns <= 0 || im.Rows > 0xFFFF || im.Columns > 0xFFFF {
		return fmt.Errorf("%w: %d rows, %d columns", ErrMalformed, im.Rows, im.Columns)
	}
	switch im.SamplesPerPixel {
	case 1, 3:
	default:
		return fmt.Errorf("%w: %d samples per pixel", ErrUnsupported, im.SamplesPerPixel)
	}
	if !slices.Contains(allocated, im.BitsAllocated) {
		return fmt.Errorf("%w: %d bits allocated", ErrUnsupported, im.BitsAllocated)
	}
	if im.BitsStored < 1 || im.BitsStored > im.BitsAllocated {
		return fmt.Errorf("%w: %d bits stored of %d allocated", ErrMalformed, im.BitsStored, im.BitsAllocated)
	}
	if n := im.FrameSize(); n > lim.MaxFrameBytes {
		return fmt.Errorf("%w: a frame of %d bytes (%dx%d) exceeds the limit of %d", ErrTooLarge, n, im.Columns, im.Rows, lim.MaxFrameBytes)
	}
	return nil
}

// Codec decodes and encodes the frames of one transfer syntax. A native
// frame is little endian, Bits Allocated bits a sample, laid out as the
// Image's Planar Configuration says.
type Codec interface {
	// Decode decodes the code stream of one frame, src, of an image
	// described by im. It returns the native frame, in dst if it has the
	// room, and the description of the frame it returns: colour-by-pixel,
	// and with a photometric interpretation that may differ from im's
	// when decoding converts colour (YBR_FULL_422 JPEG to RGB, YBR_ICT
	// and YBR_RCT to RGB).
	Decode(dst, src []byte, im Image) ([]byte, Image, error)
	// Encode encodes one native frame, src, of an image described by im,
	// appending the code stream to dst. It returns the description of
	// the encoded image, whose photometric interpretation may differ
	// from im's (RGB becomes YBR_RCT, YBR_ICT or YBR_FULL_422 when the
	// codec transforms colour).
	Encode(dst, src []byte, im Image) ([]byte, Image, error)
	// Lossy reports whether Encode loses information, and so whether
	// the Lossy Image Compression attributes must say so (PS3.5 §8.2).
	Lossy() bool
	// Method is the Lossy Image Compression Method (0028,2114) of the
	// codec's lossy encoding, such as ISO_10918_1.
	Method() string
}

// Options configure the encoders of a Registry. The zero value gives
// what dcmtk and GDCM write by default.
type Options struct {
	Limits Limits
	// JPEGQuality is the IJG quality of JPEG Baseline and Extended
	// encoding, 1 to 100 (default 90).
	JPEGQuality int
	// JPEGLSNear is the NEAR parameter of JPEG-LS near-lossless
	// encoding (default 2).
	JPEGLSNear int
	// J2KRatio is the compression ratio of lossy JPEG 2000 and HTJ2K
	// encoding (default 10).
	J2KRatio float64
	// JPEGLosslessPredictor is the selection value of JPEG Lossless
	// Process 14 encoding, 1 to 7 (default 1).
	JPEGLosslessPredictor int
}

func (o Options) withDefaults() Options {
	o.Limits = o.Limits.withDefaults()
	if o.JPEGQuality <= 0 || o.JPEGQuality > 100 {
		o.JPEGQuality = 90
	}
	if o.JPEGLSNear <= 0 {
		o.JPEGLSNear = 2
	}
	if o.J2KRatio <= 1 {
		o.J2KRatio = 10
	}
	if o.JPEGLosslessPredictor < 1 || o.JPEGLosslessPredictor > 7 {
		o.JPEGLosslessPredictor = 1
	}
	return o
}

// Registry maps transfer syntax UIDs to the codecs of this package. It
// holds no state beyond its options and is safe for concurrent use.
type Registry struct {
	opts   Options
	codecs map[string]Codec
}

// New returns a Registry of every codec, configured by opts.
func New(opts Options) *Registry {
	o := opts.withDefaults()
	lim := o.Limits
	return &Registry{opts: o, codecs: map[string]Codec{
		uid.JPEGBaseline8Bit:   jpegCodec{lim: lim, quality: o.JPEGQuality, maxBits: 8},
		uid.JPEGExtended12Bit:  jpegCodec{lim: lim, quality: o.JPEGQuality, maxBits: 12},
		uid.JPEGLossless:       losslessCodec{lim: lim, predictor: o.JPEGLosslessPredictor},
		uid.JPEGLosslessSV1:    losslessCodec{lim: lim, predictor: 1},
		uid.JPEGLSLossless:     jlsCodec{lim: lim},
		uid.JPEGLSNearLossless: jlsCodec{lim: lim, near: o.JPEGLSNear},
		uid.JPEG2000Lossless:   j2kCodec{lim: lim},
		uid.JPEG2000:           j2kCodec{lim: lim, ratio: o.J2KRatio},
		uid.HTJ2KLossless:      htj2kCodec{lim: lim},
		uid.HTJ2KLosslessRPCL:  htj2kCodec{lim: lim, rpcl: true},
		uid.HTJ2K:              htj2kCodec{lim: lim, ratio: o.J2KRatio},
		uid.RLELossless:        rleCodec{lim: lim},
	}}
}

// Lookup returns the codec of transfer syntax ts.
func (r *Registry) Lookup(ts string) (Codec, bool) {
	c, ok := r.codecs[ts]
	return c, ok
}

// Syntaxes returns the transfer syntaxes the Registry has codecs for, in
// a stable order.
func (r *Registry) Syntaxes() []string {
	s := make([]string, 0, len(r.codecs))
	for k := range r.codecs {
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}

// Limits returns the frame limits the Registry's codecs enforce.
func (r *Registry) Limits() Limits { return r.opts.Limits }

// grow returns a slice of n bytes, dst's storage if it is large enough.
func grow(dst []byte, n int) []byte {
	if cap(dst) >= n {
		return dst[:n]
	}
	return make([]byte, n)
}

// interleave returns the colour-by-pixel copy of a colour-by-plane frame
// of 3 samples a pixel, each of bps bytes.
func interleave(dst, src []byte, pixels, bps int) []byte {
	dst = grow(dst, len(src))
	plane := pixels * bps
	for p := range pixels {
		for s := range 3 {
			copy(dst[(3*p+s)*bps:(3*p+s+1)*bps], src[s*plane+p*bps:s*plane+(p+1)*bps])
		}
	}
	return dst
}

// deinterleave returns the colour-by-plane copy of a colour-by-pixel frame.
func deinterleave(dst, src []byte, pixels, bps int) []byte {
	dst = grow(dst, len(src))
	plane := pixels * bps
	for p := range pixels {
		for s := range 3 {
			copy(dst[s*plane+p*bps:s*plane+(p+1)*bps], src[(3*p+s)*bps:(3*p+s+1)*bps])
		}
	}
	return dst
}

// byPixel returns src as a colour-by-pixel frame: src itself unless im
// is colour-by-plane, in which case scratch holds the copy.
func byPixel(scratch, src []byte, im Image) []byte {
	if im.SamplesPerPixel != 3 || im.PlanarConfiguration != 1 {
		return src
	}
	return interleave(scratch, src, im.Rows*im.Columns, im.bytesPerSample())
}

// checkNative reports whether src holds a whole native frame of im.
func checkNative(src []byte, im Image, lim Limits) error {
	if err := im.check(lim); err != nil {
		return err
	}
	if int64(len(src)) < im.FrameSize() {
		return fmt.Errorf("%w: native frame of %d bytes, %d expected", ErrMalformed, len(src), im.FrameSize())
	}
	return nil
}

// signExtend16 sign-extends 16-bit little endian samples of bits stored
// bits in place, as dcmtk does when it decompresses signed pixel data, so
// that the bits above Bits Stored agree with the sign.
func signExtend16(b []byte, bits int) {
	if bits >= 16 {
		return
	}
	shift := 16 - bits
	for i := 0; i+1 < len(b); i += 2 {
		v := int16(uint16(b[i])|uint16(b[i+1])<<8) << shift >> shift
		b[i], b[i+1] = byte(v), byte(uint16(v)>>8)
	}
}

// signExtend8 does what signExtend16 does for 8-bit samples.
func signExtend8(b []byte, bits int) {
	if bits >= 8 {
		return
	}
	shift := 8 - bits
	for i := range b {
		b[i] = byte(int8(b[i]) << shift >> shift)
	}
}

// fixSign sign-extends a decoded frame of im when its samples are signed.
func fixSign(b []byte, im Image) {
	if !im.Signed() {
		return
	}
	if im.BitsAllocated == 16 {
		signExtend16(b, im.BitsStored)
	} else {
		signExtend8(b, im.BitsStored)
	}
}
