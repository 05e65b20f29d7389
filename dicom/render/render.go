// Package render turns one frame of a DICOM image into an image.Image
// ready for image/jpeg or image/png: the rendered media types of WADO-RS
// (/rendered, /thumbnail) and WADO-URI (PS3.18 §8.3.5).
//
// A grayscale frame goes through the pipeline of PS3.3 §C.11: stored
// values are masked and sign-extended (Bits Stored, High Bit, Pixel
// Representation), the Modality LUT is applied as Rescale Slope and
// Intercept, then the VOI LUT as a window (LINEAR, LINEAR_EXACT or
// SIGMOID, PS3.3 §C.11.2.1.2) onto 8 bits, and MONOCHROME1 is inverted. A
// colour frame is converted to 8-bit RGB without windowing, as PS3.18
// leaves colour images unwindowed.
//
// The caller reads the frame: native pixel data is located with Frame
// and read by range; an encapsulated frame is its fragments joined. Memory
// stays within one frame (compressed and decoded) plus the output image:
// scaling holds one source row at a time, a native frame's buffer grows
// with the bytes that arrive rather than with what its attributes claim,
// and no frame of more than 2^26 pixels is rendered at all.
package render

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/uid"
)

// ErrUnsupported reports a frame that this package cannot render: a
// compressed transfer syntax it does not decode, a photometric
// interpretation or bit depth it does not know, an option it does not
// implement. The error wrapping it says which, in words the HTTP layer can
// pass on (406 Not Acceptable, or 400 for an option).
var ErrUnsupported = errors.New("render: unsupported")

// ErrMalformed reports pixel data at odds with its own attributes: Bits
// Stored larger than Bits Allocated, a frame shorter than Rows × Columns
// samples, a compressed bitstream that does not decode.
var ErrMalformed = errors.New("render: malformed pixel data")

// ErrTooLarge reports a frame of more pixels than Options.MaxPixels
// allows.
var ErrTooLarge = errors.New("render: image too large")

// ErrBadOption reports a rendering option outside its range, such as a
// window width of zero or a viewport that does not parse: the request is
// at fault, not the data.
var ErrBadOption = errors.New("render: invalid option")

// maxPixels bounds Rows × Columns of a frame this package renders. It keeps
// the output image of a frame whose attributes claim a gigapixel matrix
// from being allocated; real single frames are far smaller, and tiled
// whole-slide images are rendered a tile (frame) at a time.
const maxPixels = 1 << 26

// Photometric interpretations (PS3.3 §C.7.6.3.1.2) this package renders.
const (
	Monochrome1  = "MONOCHROME1"
	Monochrome2  = "MONOCHROME2"
	RGB          = "RGB"
	YBRFull      = "YBR_FULL"
	YBRFull422   = "YBR_FULL_422"
	PaletteColor = "PALETTE COLOR"
)

// Params are the attributes of the Image Pixel module and of the Modality
// and VOI LUT modules that rendering needs, as plain values. ParamsFrom
// fills them from a data set's header; tests and callers with their own
// parser fill them directly.
type Params struct {
	Rows, Columns   int
	SamplesPerPixel int
	// PhotometricInterpretation is a defined term such as MONOCHROME2.
	PhotometricInterpretation string
	BitsAllocated             int
	BitsStored                int
	HighBit                   int
	// PixelRepresentation is 0 for unsigned and 1 for two's complement
	// stored values.
	PixelRepresentation int
	// PlanarConfiguration is 0 for colour-by-pixel (R1 G1 B1 R2 …) and 1
	// for colour-by-plane (R1 R2 … G1 G2 … B1 B2 …).
	PlanarConfiguration int
	// NumberOfFrames is 0 or 1 for a single-frame image.
	NumberOfFrames int
	// RescaleSlope and RescaleIntercept are the Modality LUT; a slope of
	// 0, which no real rescale has, stands for an absent one (slope 1).
	RescaleSlope, RescaleIntercept float64
	// ModalityLUT, when set, is the Modality LUT in place of the rescale
	// (the first item of the Modality LUT Sequence).
	ModalityLUT *LUT
	// Window is the first window of Window Center and Window Width, with
	// the VOI LUT Function; nil when the data set has none.
	Window *Window
	// VOILUT, when set and Window is nil, is the VOI LUT (the first item
	// of the VOI LUT Sequence).
	VOILUT *LUT
	// Palette holds the Palette Color Lookup Tables a PALETTE COLOR
	// image needs; nil otherwise.
	Palette *Palette
}

// Window is a VOI window (PS3.3 §C.11.2.1.2), applied to the output of
// the Modality LUT.
type Window struct {
	Center, Width float64
	// Function is the VOI LUT Function; "" means LINEAR.
	Function string
}

// VOI LUT Functions (PS3.3 §C.11.2.1.3).
const (
	Linear      = "LINEAR"
	LinearExact = "LINEAR_EXACT"
	Sigmoid     = "SIGMOID"
)

// check reports whether the window can be applied: PS3.3 requires a width
// of at least 1 for LINEAR and more than 0 for the other functions.
func (w Window) check() error {
	if math.IsNaN(w.Center) || math.IsInf(w.Center, 0) || math.IsNaN(w.Width) || math.IsInf(w.Width, 0) {
		return fmt.Errorf("%w: window center %v, width %v", ErrBadOption, w.Center, w.Width)
	}
	switch w.Function {
	case "", Linear:
		if w.Width < 1 {
			return fmt.Errorf("%w: window width %v is less than 1", ErrBadOption, w.Width)
		}
	case LinearExact, Sigmoid:
		if w.Width <= 0 {
			return fmt.Errorf("%w: window width %v is not positive", ErrBadOption, w.Width)
		}
	default:
		return fmt.Errorf("%w: VOI LUT function %q", ErrUnsupported, w.Function)
	}
	return nil
}

// Palette is the red, green and blue Palette Color Lookup Tables of a
// PALETTE COLOR image (PS3.3 §C.7.6.3.1.5).
type Palette struct {
	Red, Green, Blue LUT
}

// LUT is a lookup table: a Palette Color Lookup Table, a Modality LUT or
// a VOI LUT, its descriptor and its data.
type LUT struct {
	// Entries is the number of entries (a descriptor value of 0 means
	// 65536); First is the input value mapped to the first entry, inputs
	// below and above the table mapping to its first and last entries;
	// Bits is the number of significant bits of each entry, 8 to 16.
	Entries, First, Bits int
	// Data is the LUT Data, little endian. It holds one 16-bit word per
	// entry, or, from writers that pack 8-bit tables, one byte per entry.
	Data []byte
}

// Options are what a request adds to the data set's own rendering.
type Options struct {
	// Window overrides the data set's window (the window= query
	// parameter of PS3.18 §8.3.5.1.4). It applies to grayscale images
	// only; to an 8-bit grayscale JPEG frame only this window applies.
	Window *Window
	// Viewport is the largest size of the output; the image is scaled
	// down to fit it, keeping its aspect ratio, and never scaled up.
	Viewport Viewport
	// MaxPixels refuses, with ErrTooLarge, a frame of more than this many
	// pixels (Rows × Columns); 0 means 2^26. A server that renders
	// concurrently sets it to bound the memory of each rendering: a frame
	// costs about 8 bytes a pixel while it is decoded and rendered.
	MaxPixels int64
	// BitOffset is the Span.BitOffset that Frame returned for a frame of
	// 1-bit pixel data: the bits of the first byte read that belong to
	// the frame before.
	BitOffset int
}

// Viewport bounds the size of the output in pixels. A zero dimension
// leaves that dimension unbounded.
type Viewport struct {
	Width, Height int
}

// ParseWindow parses the value of the window query parameter of PS3.18
// §8.3.5.1.4, "center,width,function", the function being one of LINEAR,
// LINEAR_EXACT and SIGMOID and defaulting to LINEAR when left out.
func ParseWindow(s string) (*Window, error) {
	parts := strings.Split(s, ",")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, fmt.Errorf("%w: window %q is not center,width,function", ErrBadOption, s)
	}
	c, err1 := strconv.ParseFloat(strings.TrimSpace(parts[0]), 64)
	w, err2 := strconv.ParseFloat(strings.TrimSpace(parts[1]), 64)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: window %q: center and width must be numbers", ErrBadOption, s)
	}
	win := &Window{Center: c, Width: w, Function: Linear}
	if len(parts) == 3 {
		win.Function = strings.ToUpper(strings.TrimSpace(parts[2]))
	}
	if err := win.check(); err != nil {
		return nil, err
	}
	return win, nil
}

// ParseViewport parses the value of the viewport query parameter of PS3.18
// §8.3.5.1.3 in its "vw,vh" form; either may be empty, leaving that
// dimension unbounded. The form that also selects a source region
// (vw,vh,sx,sy,sw,sh) is ErrUnsupported.
func ParseViewport(s string) (Viewport, error) {
	parts := strings.Split(s, ",")
	switch {
	case len(parts) == 6:
		return Viewport{}, fmt.Errorf("%w: viewport with a source region", ErrUnsupported)
	case len(parts) != 2:
		return Viewport{}, fmt.Errorf("%w: viewport %q is not vw,vh", ErrBadOption, s)
	}
	var dims [2]int
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 {
			return Viewport{}, fmt.Errorf("%w: viewport %q: dimensions must be positive integers", ErrBadOption, s)
		}
		dims[i] = n
	}
	return Viewport{Width: dims[0], Height: dims[1]}, nil
}

// Render decodes one frame, read from frame, of an image with attributes
// p, encoded in the transfer syntax with UID ts, and renders it as an
// *image.Gray (grayscale) or *image.RGBA (colour, opaque). A JPEG frame
// that needs no further work (MONOCHROME2 without a window in opts,
// components marked RGB in the bitstream) is returned as image/jpeg
// decoded it. A colour JPEG frame in YCbCr is upsampled and converted as
// libjpeg does it, so that it looks as it does in viewers built on it.
//
// For the native transfer syntaxes (Implicit and Explicit VR Little
// Endian, Explicit VR Big Endian, Deflated Explicit VR Little Endian once
// the caller has inflated it, Encapsulated Uncompressed), frame holds the
// frame's bytes as Frame locates them; only those bytes are read. In big
// endian, 16- and 32-bit samples are swapped whole; 1- and 8-bit data are
// taken as the OB value PS3.5 requires them to be. For JPEG
// Baseline and 8-bit JPEG Extended it holds the frame's JPEG bitstream, and
// for RLE Lossless the frame's RLE segments with their header (PS3.5
// Annex G), in both cases the frame's fragments joined. Every other
// transfer syntax is ErrUnsupported.
//
// ctx is checked between the steps of the work; cancelling the read
// itself is the reader's business.
func Render(ctx context.Context, p Params, ts string, frame io.Reader, opts Options) (image.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if opts.Window != nil {
		if err := opts.Window.check(); err != nil {
			return nil, err
		}
	}
	if opts.Viewport.Width < 0 || opts.Viewport.Height < 0 {
		return nil, fmt.Errorf("%w: negative viewport %dx%d", ErrBadOption, opts.Viewport.Width, opts.Viewport.Height)
	}
	if opts.MaxPixels > 0 && int64(p.Rows)*int64(p.Columns) > opts.MaxPixels {
		return nil, fmt.Errorf("%w: %dx%d pixels, more than %d", ErrTooLarge, p.Columns, p.Rows, opts.MaxPixels)
	}
	var src rows
	var err error
	switch ts {
	case uid.ImplicitVRLittleEndian, uid.ExplicitVRLittleEndian, uid.DeflatedExplicitVRLittleEndian,
		uid.EncapsulatedUncompressedExplicitVRLittleEndian:
		src, err = native(p, frame, false, opts)
	case uid.ExplicitVRBigEndian:
		src, err = native(p, frame, true, opts)
	default:
		reg := codec.New(codec.Options{Limits: codec.Limits{MaxFrameBytes: opts.maxFrameBytes()}})
		if c, ok := reg.Lookup(ts); ok {
			src, err = compressed(reg, c, p, frame, opts)
			break
		}
		name := uid.Name(ts)
		if name == ts {
			name = "transfer syntax " + strconv.Quote(ts)
		}
		return nil, fmt.Errorf("%w: %s", ErrUnsupported, name)
	}
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return output(ctx, src, opts.Viewport)
}

// maxFrameBytes bounds the native frame a codec decodes for rendering:
// the pixel budget in samples of up to 16 bits, three a pixel.
func (o Options) maxFrameBytes() int64 {
	px := o.MaxPixels
	if px <= 0 {
		px = maxPixels
	}
	return px * 3 * 2
}

// fits reports whether a w × h image needs no scaling to fit vp.
func fits(w, h int, vp Viewport) bool {
	return (vp.Width == 0 || w <= vp.Width) && (vp.Height == 0 || h <= vp.Height)
}
