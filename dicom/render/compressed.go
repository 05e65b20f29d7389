package render

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pacsd/pacsd/dicom/codec"
)

// compressed decodes a frame of a compressed transfer syntax with the
// codec of registry reg and returns its rows. The frame's bytes are read
// up to twice the size of the native frame plus a megabyte, more than
// any encoder writes, which bounds what a broken frame costs.
func compressed(reg *codec.Registry, c codec.Codec, p Params, r io.Reader, opts Options) (rows, error) {
	check := p
	switch strings.ToUpper(strings.TrimSpace(p.PhotometricInterpretation)) {
	case codec.YBRICT, codec.YBRRCT:
		// JPEG 2000 colour, which the decoder returns as RGB.
		check.PhotometricInterpretation = RGB
	}
	l, err := check.layout()
	if err != nil {
		return nil, err
	}
	im := codec.Image{
		Rows: p.Rows, Columns: p.Columns, SamplesPerPixel: p.SamplesPerPixel,
		BitsAllocated: l.alloc, BitsStored: l.stored, PixelRepresentation: p.PixelRepresentation,
		PhotometricInterpretation: strings.ToUpper(strings.TrimSpace(p.PhotometricInterpretation)), PlanarConfiguration: p.PlanarConfiguration,
	}
	limit := 2*int64(l.w)*int64(l.h)*int64(l.spp)*int64(max(l.alloc/8, 1)) + 1<<20
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%w: compressed frame of more than %d bytes for %dx%d pixels", ErrMalformed, limit, l.w, l.h)
	}
	native, out, err := c.Decode(nil, data, im)
	switch {
	case errors.Is(err, codec.ErrUnsupported), errors.Is(err, codec.ErrTooLarge):
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	// The decoder returns colour-by-pixel samples of the stored bits
	// only (High Bit is Bits Stored - 1), and may have converted colour.
	q := p
	q.PhotometricInterpretation = out.PhotometricInterpretation
	q.PlanarConfiguration = 0
	q.HighBit = l.stored - 1
	ql, err := q.layout()
	if err != nil {
		return nil, err
	}
	return newSource(q, ql, native, false, Options{Window: opts.Window})
}
