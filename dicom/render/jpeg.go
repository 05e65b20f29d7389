package render

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"strings"
)

// decodeJPEG decodes a JPEG Baseline or 8-bit JPEG Extended frame. It
// returns either the decoded image, when it needs no further work, or the
// rows to render: a grayscale frame with a window to apply, MONOCHROME1 to
// invert or a palette to look up, and a colour frame whose JPEG
// components are RGB although image/jpeg took them for YCbCr.
func decodeJPEG(p Params, r io.Reader, opts Options) (image.Image, rows, error) {
	w, h := p.Columns, p.Rows
	if w <= 0 || h <= 0 {
		return nil, nil, fmt.Errorf("%w: %d rows, %d columns", ErrMalformed, h, w)
	}
	if int64(w)*int64(h) > maxPixels {
		return nil, nil, fmt.Errorf("%w: a frame of %dx%d pixels is too large to render", ErrUnsupported, w, h)
	}
	// A JPEG frame is smaller than its pixels but for its tables and
	// markers; twice the pixels and a megabyte is more than any encoder
	// writes, and bounds what a broken frame costs.
	limit := 2*int64(w)*int64(h)*int64(max(p.SamplesPerPixel, 1)) + 1<<20
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, nil, err
	}
	if int64(len(data)) > limit {
		return nil, nil, fmt.Errorf("%w: JPEG frame of more than %d bytes for %dx%d pixels", ErrMalformed, limit, w, h)
	}
	// The header first: the decoder allocates for the size it declares,
	// which must be the size the data set declares.
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, nil, jpegError(err)
	}
	if cfg.Width != w || cfg.Height != h {
		return nil, nil, fmt.Errorf("%w: JPEG frame of %dx%d pixels in an image of %dx%d", ErrMalformed, cfg.Width, cfg.Height, w, h)
	}
	img, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, nil, jpegError(err)
	}
	photometric := strings.ToUpper(strings.TrimSpace(p.PhotometricInterpretation))
	switch m := img.(type) {
	case *image.Gray:
		if m.Stride != w || len(m.Pix) < w*h {
			return nil, nil, fmt.Errorf("%w: unexpected layout of the decoded JPEG frame", ErrMalformed)
		}
		l := layout{w: w, h: h, spp: 1, photometric: photometric, alloc: 8, stored: 8, frameBits: int64(w) * int64(h) * 8}
		s := sampler{data: m.Pix, alloc: 8, mask: 0xFF, stored: 8}
		switch {
		case photometric == PaletteColor:
			if p.Palette == nil {
				return nil, nil, fmt.Errorf("%w: PALETTE COLOR without its lookup tables", ErrUnsupported)
			}
			src, err := newPalette(l, s, p.Palette)
			return nil, src, err
		case opts.Window != nil:
			return nil, newGray(p, l, s, opts.Window), nil
		case photometric == Monochrome1:
			// Only the inversion: the identity window of 8-bit values.
			q := p
			q.RescaleSlope, q.RescaleIntercept = 1, 0
			return nil, newGray(q, l, s, &Window{Center: 128, Width: 256, Function: Linear}), nil
		}
		return img, nil, nil
	case *image.YCbCr:
		// PS3.5 §8.2.1: RGB means the components were not transformed,
		// whatever image/jpeg guessed without an Adobe marker; the YBR
		// interpretations mean they were.
		return nil, newJPEGColor(m, photometric != RGB), nil
	case *image.CMYK:
		return nil, nil, fmt.Errorf("%w: CMYK JPEG", ErrUnsupported)
	}
	return img, nil, nil
}

// jpegError classifies an error of image/jpeg.
func jpegError(err error) error {
	var unsupported jpeg.UnsupportedError
	if errors.As(err, &unsupported) {
		return fmt.Errorf("%w: JPEG: %v", ErrUnsupported, err)
	}
	return fmt.Errorf("%w: JPEG: %v", ErrMalformed, err)
}

// jpegColor renders the three components of a decoded colour JPEG frame
// as libjpeg does, so that the output matches what viewers built on it
// (dcmtk among them) show: subsampled chrominance is upsampled by its
// "fancy" triangle filter for 4:2:2 and 4:2:0, by replication otherwise,
// and YCbCr is converted to RGB in its 16-bit fixed point. image/jpeg
// replicates chrominance, which leaves visible steps at colour edges.
type jpegColor struct {
	m *image.YCbCr
	// hs and vs are the horizontal and vertical subsampling factors;
	// cw and ch the size of the chrominance planes.
	hs, vs, cw, ch int
	convert        bool
	cb, cr         []uint8 // one upsampled row
	sums           []int   // one row of vertical sums, for 4:2:0
}

func newJPEGColor(m *image.YCbCr, convert bool) *jpegColor {
	c := &jpegColor{m: m, hs: 1, vs: 1, convert: convert}
	switch m.SubsampleRatio {
	case image.YCbCrSubsampleRatio422:
		c.hs = 2
	case image.YCbCrSubsampleRatio420:
		c.hs, c.vs = 2, 2
	case image.YCbCrSubsampleRatio440:
		c.vs = 2
	case image.YCbCrSubsampleRatio411:
		c.hs = 4
	case image.YCbCrSubsampleRatio410:
		c.hs, c.vs = 4, 2
	}
	w, h := m.Rect.Dx(), m.Rect.Dy()
	c.cw, c.ch = (w+c.hs-1)/c.hs, (h+c.vs-1)/c.vs
	c.cb, c.cr = make([]uint8, w), make([]uint8, w)
	c.sums = make([]int, c.cw)
	return c
}

func (c *jpegColor) size() (int, int) { return c.m.Rect.Dx(), c.m.Rect.Dy() }
func (c *jpegColor) channels() int    { return 3 }

func (c *jpegColor) row(y int, dst []uint8) {
	w := c.m.Rect.Dx()
	c.upsample(c.m.Cb, y, c.cb)
	c.upsample(c.m.Cr, y, c.cr)
	luma := c.m.Y[y*c.m.YStride:][:w]
	for x, l := range luma {
		if !c.convert {
			dst[3*x], dst[3*x+1], dst[3*x+2] = l, c.cb[x], c.cr[x]
			continue
		}
		dst[3*x], dst[3*x+1], dst[3*x+2] = ybrToRGB(l, c.cb[x], c.cr[x])
	}
}

// upsample writes row y of the chrominance plane p, at full resolution,
// to out.
func (c *jpegColor) upsample(p []uint8, y int, out []uint8) {
	stride := c.m.CStride
	fancy := c.hs == 2 && c.cw > 2
	switch {
	case fancy && c.vs == 1:
		// Each output sample is 3/4 of the nearer input sample and 1/4
		// of the farther, rounding alternately down and up.
		in := p[y*stride:][:c.cw]
		out[0] = in[0]
		out[1] = uint8((3*int(in[0]) + int(in[1]) + 2) >> 2)
		for i := 1; i < c.cw-1; i++ {
			v := 3 * int(in[i])
			out[2*i] = uint8((v + int(in[i-1]) + 1) >> 2)
			if 2*i+1 < len(out) {
				out[2*i+1] = uint8((v + int(in[i+1]) + 2) >> 2)
			}
		}
		c.edge(out, 2*(c.cw-1), uint8((3*int(in[c.cw-1])+int(in[c.cw-2])+1)>>2), in[c.cw-1])
	case fancy && c.vs == 2:
		// The same filter vertically first: 3/4 of the nearer row, 1/4
		// of the one above (even rows) or below (odd rows), the first
		// and last rows standing in for those beyond the edge.
		i := y / 2
		j := i - 1
		if y%2 == 1 {
			j = i + 1
		}
		j = min(max(j, 0), c.ch-1)
		near, far := p[i*stride:][:c.cw], p[j*stride:][:c.cw]
		s := c.sums
		for k := range s {
			s[k] = 3*int(near[k]) + int(far[k])
		}
		out[0] = uint8((4*s[0] + 8) >> 4)
		out[1] = uint8((3*s[0] + s[1] + 7) >> 4)
		for k := 1; k < c.cw-1; k++ {
			out[2*k] = uint8((3*s[k] + s[k-1] + 8) >> 4)
			if 2*k+1 < len(out) {
				out[2*k+1] = uint8((3*s[k] + s[k+1] + 7) >> 4)
			}
		}
		k := c.cw - 1
		c.edge(out, 2*k, uint8((3*s[k]+s[k-1]+8)>>4), uint8((4*s[k]+7)>>4))
	default:
		in := p[(y/c.vs)*stride:]
		for x := range out {
			out[x] = in[x/c.hs]
		}
	}
}

// edge writes the last two upsampled samples at x, as far as out goes:
// an odd width leaves the last one out.
func (c *jpegColor) edge(out []uint8, x int, a, b uint8) {
	if x < len(out) {
		out[x] = a
	}
	if x+1 < len(out) {
		out[x+1] = b
	}
}

// ybrToRGB converts full-range YCbCr to RGB with the equations of PS3.3
// §C.7.6.3.1.2 (those of JFIF), in 16-bit fixed point rounded as libjpeg
// rounds them, so that native and JPEG frames convert alike.
func ybrToRGB(y, cb, cr uint8) (uint8, uint8, uint8) {
	const half = 1 << 15
	yy, b, r := int(y), int(cb)-128, int(cr)-128
	return sat(yy + (91881*r+half)>>16), sat(yy + (-22554*b-46802*r+half)>>16), sat(yy + (116130*b+half)>>16)
}

func sat(v int) uint8 {
	return uint8(min(max(v, 0), 255))
}
