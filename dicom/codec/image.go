package codec

import (
	"fmt"
	"image"
)

// EncodeJPEG encodes an image, such as a rendered frame, as a baseline
// JPEG of IJG quality quality (1 to 100) and appends it to dst: through
// libjpeg-turbo, three times as fast as image/jpeg. A *image.Gray is
// encoded as grey, any other image as RGB, its alpha ignored. It writes
// the standard Huffman tables rather than ones made for the image, which
// would take a second pass for a few percent less.
func (r *Registry) EncodeJPEG(dst []byte, img image.Image, quality int) ([]byte, error) {
	if quality < 1 || quality > 100 {
		return dst, fmt.Errorf("%w: JPEG quality %d", ErrUnsupported, quality)
	}
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w <= 0 || h <= 0 || w > 65535 || h > 65535 {
		return dst, fmt.Errorf("%w: a JPEG of %dx%d pixels", ErrUnsupported, w, h)
	}
	im := Image{Rows: h, Columns: w, SamplesPerPixel: 3, BitsAllocated: 8, BitsStored: 8, PhotometricInterpretation: RGB}
	var pix []byte
	switch m := img.(type) {
	case *image.Gray:
		im.SamplesPerPixel, im.PhotometricInterpretation = 1, Monochrome2
		pix = m.Pix
		if m.Stride != w {
			pix = make([]byte, 0, w*h)
			for y := range h {
				pix = append(pix, m.Pix[y*m.Stride:y*m.Stride+w]...)
			}
		}
	case *image.RGBA:
		pix = make([]byte, 0, w*h*3)
		for y := range h {
			row := m.Pix[y*m.Stride : y*m.Stride+4*w]
			for x := 0; x < len(row); x += 4 {
				pix = append(pix, row[x], row[x+1], row[x+2])
			}
		}
	default:
		pix = make([]byte, 0, w*h*3)
		for y := b.Min.Y; y < b.Max.Y; y++ {
			for x := b.Min.X; x < b.Max.X; x++ {
				cr, cg, cb, _ := img.At(x, y).RGBA()
				pix = append(pix, byte(cr>>8), byte(cg>>8), byte(cb>>8))
			}
		}
	}
	c := jpegCodec{lim: r.opts.Limits, quality: quality, maxBits: 8, quick: true}
	out, _, err := c.Encode(dst, pix, im)
	return out, err
}
