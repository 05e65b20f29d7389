package render

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// layout is Params checked and reduced to what decoding needs.
type layout struct {
	w, h, spp   int
	photometric string
	alloc       int
	stored      int
	shift       int // of the stored bits within the allocated ones
	signed      bool
	planar      bool
	// frameBits is the size of one native frame in bits.
	frameBits int64
}

// layout checks p and returns its layout. Attributes that contradict one
// another are ErrMalformed; values this package does not handle are
// ErrUnsupported. A High Bit outside the allocated bits, which some
// writers get wrong, is taken as Bits Stored - 1.
func (p Params) layout() (layout, error) {
	l := layout{
		w: p.Columns, h: p.Rows, spp: p.SamplesPerPixel,
		photometric: strings.ToUpper(strings.TrimSpace(p.PhotometricInterpretation)),
		alloc:       p.BitsAllocated, stored: p.BitsStored,
		signed: p.PixelRepresentation != 0,
		planar: p.PlanarConfiguration == 1,
	}
	if l.w <= 0 || l.h <= 0 {
		return l, fmt.Errorf("%w: %d rows, %d columns", ErrMalformed, l.h, l.w)
	}
	if int64(l.w)*int64(l.h) > maxPixels {
		return l, fmt.Errorf("%w: a frame of %dx%d pixels is too large to render", ErrUnsupported, l.w, l.h)
	}
	switch l.photometric {
	case Monochrome1, Monochrome2, PaletteColor:
		if l.spp != 1 {
			return l, fmt.Errorf("%w: %s with %d samples per pixel", ErrMalformed, l.photometric, l.spp)
		}
	case RGB, YBRFull, YBRFull422:
		if l.spp != 3 {
			return l, fmt.Errorf("%w: %s with %d samples per pixel", ErrMalformed, l.photometric, l.spp)
		}
	case "":
		return l, fmt.Errorf("%w: no photometric interpretation", ErrMalformed)
	default:
		return l, fmt.Errorf("%w: photometric interpretation %s", ErrUnsupported, l.photometric)
	}
	switch l.alloc {
	case 1:
		if l.spp != 1 || l.photometric == PaletteColor {
			return l, fmt.Errorf("%w: 1 bit allocated for %s", ErrUnsupported, l.photometric)
		}
	case 8, 16, 32:
	default:
		return l, fmt.Errorf("%w: %d bits allocated", ErrUnsupported, l.alloc)
	}
	if l.stored == 0 {
		l.stored = l.alloc
	}
	if l.stored < 1 || l.stored > l.alloc {
		return l, fmt.Errorf("%w: %d bits stored of %d allocated", ErrMalformed, l.stored, l.alloc)
	}
	high := p.HighBit
	if high < l.stored-1 || high >= l.alloc {
		high = l.stored - 1
	}
	l.shift = high + 1 - l.stored
	if l.photometric == PaletteColor && l.stored > 16 {
		return l, fmt.Errorf("%w: PALETTE COLOR with %d bits stored", ErrUnsupported, l.stored)
	}
	if l.spp == 3 && l.signed {
		return l, fmt.Errorf("%w: signed %s samples", ErrUnsupported, l.photometric)
	}
	samples := int64(l.spp)
	if l.photometric == YBRFull422 {
		// Two luminance samples share one pair of chrominance samples
		// (PS3.3 §C.7.6.3.1.2): four samples for every two pixels.
		if l.alloc != 8 {
			return l, fmt.Errorf("%w: YBR_FULL_422 with %d bits allocated", ErrUnsupported, l.alloc)
		}
		if l.w%2 != 0 {
			return l, fmt.Errorf("%w: YBR_FULL_422 with an odd number of columns", ErrMalformed)
		}
		samples = 2
	}
	l.frameBits = int64(l.w) * int64(l.h) * samples * int64(l.alloc)
	return l, nil
}

// Span locates one frame within the value of native (uncompressed) Pixel
// Data.
type Span struct {
	// Offset and Length are the bytes to read, counted from the first
	// byte of the Pixel Data value.
	Offset, Length int64
	// BitOffset is, for 1-bit pixel data, where the frame starts within
	// its first byte: frames of 1-bit data follow one another bit after
	// bit, not byte after byte. Pass it on in Options.BitOffset.
	BitOffset int
}

// Frame locates frame index (counted from 0) of native pixel data with
// attributes p, so that the caller can read that frame alone:
// Rows × Columns × Samples per Pixel × Bits Allocated bits per frame
// (with YBR_FULL_422's shared chrominance), frames back to back. The
// caller checks that the span lies within the Pixel Data it holds.
func Frame(p Params, index int) (Span, error) {
	l, err := p.layout()
	if err != nil {
		return Span{}, err
	}
	frames := max(p.NumberOfFrames, 1)
	if index < 0 || index >= frames {
		return Span{}, fmt.Errorf("%w: frame %d of %d", ErrBadOption, index+1, frames)
	}
	start := int64(index) * l.frameBits
	s := Span{Offset: start / 8, BitOffset: int(start % 8)}
	s.Length = (int64(s.BitOffset) + l.frameBits + 7) / 8
	return s, nil
}

// readFrame reads exactly n bytes of r. The buffer grows with the data
// that arrives rather than being allocated at once for n, so a frame whose
// attributes claim more than the data holds costs no more than the data.
func readFrame(r io.Reader, n int64) ([]byte, error) {
	const first = 4 << 20
	buf := make([]byte, min(n, first))
	read := 0
	for {
		k, err := io.ReadFull(r, buf[read:])
		read += k
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: frame ends after %d bytes of %d", ErrMalformed, read, n)
		}
		if err != nil {
			return nil, err
		}
		if int64(read) == n {
			return buf, nil
		}
		grown := make([]byte, min(n, 2*int64(len(buf))))
		copy(grown, buf)
		buf = grown
	}
}

// native returns the rows of a native frame read from r.
func native(p Params, r io.Reader, bigEndian bool, opts Options) (rows, error) {
	l, err := p.layout()
	if err != nil {
		return nil, err
	}
	if opts.BitOffset < 0 || opts.BitOffset > 7 || (opts.BitOffset != 0 && l.alloc != 1) {
		return nil, fmt.Errorf("%w: bit offset %d with %d bits allocated", ErrBadOption, opts.BitOffset, l.alloc)
	}
	data, err := readFrame(r, (int64(opts.BitOffset)+l.frameBits+7)/8)
	if err != nil {
		return nil, err
	}
	return newSource(p, l, data, bigEndian, opts)
}

// newSource returns the rows of a decoded frame: data holds its samples
// as Bits Allocated and Planar Configuration (l.planar) lay them out.
func newSource(p Params, l layout, data []byte, bigEndian bool, opts Options) (rows, error) {
	s := sampler{
		data: data, alloc: l.alloc, bigEndian: bigEndian, bitOffset: opts.BitOffset,
		shift: uint(l.shift), mask: uint32(1<<l.stored - 1), stored: l.stored, signed: l.signed,
	}
	if l.stored == 32 {
		s.mask = 0xFFFFFFFF
	}
	switch l.photometric {
	case Monochrome1, Monochrome2:
		return newGray(p, l, s, opts.Window)
	case PaletteColor:
		if p.Palette == nil {
			return nil, fmt.Errorf("%w: PALETTE COLOR without its lookup tables", ErrUnsupported)
		}
		return newPalette(l, s, p.Palette)
	default:
		return newColor(l, s), nil
	}
}

// sampler reads stored values from a frame's bytes.
type sampler struct {
	data      []byte
	alloc     int
	bigEndian bool
	bitOffset int
	shift     uint
	mask      uint32
	stored    int
	signed    bool
}

// raw returns the stored bits of sample i, unsigned.
func (s *sampler) raw(i int) uint32 {
	var v uint32
	switch s.alloc {
	case 1:
		b := s.bitOffset + i
		return uint32(s.data[b>>3]>>(b&7)) & 1
	case 8:
		v = uint32(s.data[i])
	case 16:
		b := s.data[2*i : 2*i+2]
		if s.bigEndian {
			v = uint32(b[0])<<8 | uint32(b[1])
		} else {
			v = uint32(b[1])<<8 | uint32(b[0])
		}
	default:
		b := s.data[4*i : 4*i+4]
		if s.bigEndian {
			v = uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		} else {
			v = uint32(b[3])<<24 | uint32(b[2])<<16 | uint32(b[1])<<8 | uint32(b[0])
		}
	}
	return v >> s.shift & s.mask
}

// value returns the stored value whose bits raw returned, sign-extended
// when Pixel Representation says the values are signed.
func (s *sampler) value(raw uint32) int64 {
	if s.signed && raw>>(s.stored-1)&1 == 1 {
		return int64(raw) - int64(1)<<s.stored
	}
	return int64(raw)
}
