package render

import (
	"encoding/binary"
	"fmt"
)

// colorFrame renders an RGB, YBR_FULL, YBR_FULL_422 or PALETTE COLOR
// frame as 8-bit RGB.
type colorFrame struct {
	w, h  int
	s     sampler
	npix  int
	kind  string // the photometric interpretation
	depth []uint8
	// palette holds the red, green and blue output of each stored value
	// of a PALETTE COLOR frame, indexed by the value's bits.
	palette [3][]uint8
}

func newColor(l layout, s sampler) *colorFrame {
	c := &colorFrame{w: l.w, h: l.h, s: s, npix: l.w * l.h, kind: l.photometric}
	if !l.planar || c.kind == YBRFull422 {
		c.npix = 0 // marks colour-by-pixel; YBR_FULL_422 is always so
	}
	if l.stored <= 16 {
		c.depth = make([]uint8, 1<<l.stored)
		for raw := range c.depth {
			c.depth[raw] = to8(uint32(raw), l.stored)
		}
	}
	return c
}

// to8 scales v, of the given number of bits, to 8 bits: more bits are
// cut to their most significant 8, fewer are stretched to the full range.
func to8(v uint32, bits int) uint8 {
	switch {
	case bits == 8:
		return uint8(v)
	case bits > 8:
		return uint8(v >> (bits - 8))
	}
	return uint8((v*255*2 + (1<<bits - 1)) / (2 * (1<<bits - 1)))
}

func (c *colorFrame) size() (int, int) { return c.w, c.h }
func (c *colorFrame) channels() int    { return 3 }

// sample returns sample k (0, 1 or 2) of pixel i, as 8 bits.
func (c *colorFrame) sample(i, k int) uint8 {
	var raw uint32
	if c.npix != 0 {
		raw = c.s.raw(k*c.npix + i)
	} else {
		raw = c.s.raw(3*i + k)
	}
	if c.depth != nil {
		return c.depth[raw]
	}
	return to8(raw, c.s.stored)
}

func (c *colorFrame) row(y int, dst []uint8) {
	i := y * c.w
	switch c.kind {
	case RGB:
		for x := range c.w {
			dst[3*x], dst[3*x+1], dst[3*x+2] = c.sample(i+x, 0), c.sample(i+x, 1), c.sample(i+x, 2)
		}
	case YBRFull:
		for x := range c.w {
			dst[3*x], dst[3*x+1], dst[3*x+2] = ybrToRGB(c.sample(i+x, 0), c.sample(i+x, 1), c.sample(i+x, 2))
		}
	case YBRFull422:
		// Y1 Y2 Cb Cr for every two pixels; rows have an even width.
		d := c.s.data[2*i:]
		for x := 0; x+1 < c.w; x += 2 {
			q := d[2*x : 2*x+4]
			dst[3*x], dst[3*x+1], dst[3*x+2] = ybrToRGB(q[0], q[2], q[3])
			dst[3*x+3], dst[3*x+4], dst[3*x+5] = ybrToRGB(q[1], q[2], q[3])
		}
	case PaletteColor:
		for x := range c.w {
			raw := c.s.raw(i + x)
			dst[3*x], dst[3*x+1], dst[3*x+2] = c.palette[0][raw], c.palette[1][raw], c.palette[2][raw]
		}
	}
}

// newPalette returns the rows of a PALETTE COLOR frame.
func newPalette(l layout, s sampler, pal *Palette) (*colorFrame, error) {
	c := &colorFrame{w: l.w, h: l.h, s: s, kind: PaletteColor}
	for k, lut := range []LUT{pal.Red, pal.Green, pal.Blue} {
		entries, err := lut.entries()
		if err != nil {
			return nil, fmt.Errorf("%s palette: %w", [3]string{"red", "green", "blue"}[k], err)
		}
		out := make([]uint8, 1<<l.stored)
		for raw := range out {
			e := s.value(uint32(raw)) - int64(lut.First)
			e = min(max(e, 0), int64(len(entries)-1))
			out[raw] = entries[e]
		}
		c.palette[k] = out
	}
	return c, nil
}

// values returns the LUT's entries: 16-bit words, or bytes from writers
// that pack 8-bit tables.
func (t LUT) values() ([]int, error) {
	n := t.Entries
	if n == 0 {
		n = 1 << 16
	}
	if n < 0 || n > 1<<16 {
		return nil, fmt.Errorf("%w: LUT of %d entries", ErrMalformed, t.Entries)
	}
	out := make([]int, n)
	switch {
	case len(t.Data) == n && t.Bits <= 8:
		for i, b := range t.Data {
			out[i] = int(b)
		}
	case len(t.Data) >= 2*n:
		for i := range out {
			out[i] = int(binary.LittleEndian.Uint16(t.Data[2*i:]))
		}
	default:
		return nil, fmt.Errorf("%w: %d bytes of LUT data for %d entries", ErrMalformed, len(t.Data), n)
	}
	return out, nil
}

// entries returns the LUT's entries scaled to 8 bits.
func (t LUT) entries() ([]uint8, error) {
	n := t.Entries
	if n == 0 {
		n = 1 << 16
	}
	if n < 0 || n > 1<<16 {
		return nil, fmt.Errorf("%w: %d palette entries", ErrMalformed, t.Entries)
	}
	out := make([]uint8, n)
	switch {
	case len(t.Data) == n:
		// One byte per entry: a packed 8-bit table.
		copy(out, t.Data)
	case len(t.Data) >= 2*n:
		words := make([]uint16, n)
		var top uint16
		for i := range words {
			words[i] = binary.LittleEndian.Uint16(t.Data[2*i:])
			top = max(top, words[i])
		}
		// An 8-bit table in 16-bit words has its entries in the low
		// byte, but some writers put them in the high byte; the largest
		// entry tells which.
		shift := 8
		if t.Bits <= 8 && top <= 0xFF {
			shift = 0
		}
		for i, w := range words {
			out[i] = uint8(w >> shift)
		}
	default:
		return nil, fmt.Errorf("%w: %d bytes of palette data for %d entries", ErrMalformed, len(t.Data), n)
	}
	return out, nil
}

// ybrToRGB converts full-range YCbCr to RGB with the equations of PS3.3
// §C.7.6.3.1.2 (those of JFIF), in 16-bit fixed point rounded as libjpeg
// rounds them, so that native frames convert as JPEG frames do.
func ybrToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	const half = 1 << 15
	yy, b, r := int(y), int(cb)-128, int(cr)-128
	return sat(yy + (91881*r+half)>>16), sat(yy + (-22554*b-46802*r+half)>>16), sat(yy + (116130*b+half)>>16)
}

func sat(v int) uint8 {
	return uint8(min(max(v, 0), 255))
}
