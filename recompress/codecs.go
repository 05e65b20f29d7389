package recompress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/pacsd/pacsd/archive"
	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/codec"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// Codecs adapts a codec registry to archive.Codecs.
type Codecs struct{ Registry *codec.Registry }

var _ archive.Codecs = Codecs{}

// Transcode implements archive.Codecs: pixels the encoder cannot take
// are an error wrapping archive.ErrSkipped.
func (c Codecs) Transcode(ctx context.Context, dst io.Writer, src io.Reader, from, to string) error {
	_, err := c.Registry.Transcode(ctx, dst, src, from, to, codec.TranscodeOptions{})
	if errors.Is(err, codec.ErrUnsupported) || errors.Is(err, codec.ErrTooLarge) {
		return fmt.Errorf("%w: %v", archive.ErrSkipped, err)
	}
	return err
}

// DecodeFrame implements archive.Codecs.
func (c Codecs) DecodeFrame(dst, src []byte, ts string, header *dicom.Dataset) ([]byte, error) {
	im, err := imageOf(header)
	if err != nil {
		return nil, err
	}
	out, _, err := c.Registry.TranscodeFrame(dst, src, ts, uid.ExplicitVRLittleEndian, im)
	return out, err
}

// imageOf reads the Image Pixel attributes of a header.
func imageOf(h *dicom.Dataset) (codec.Image, error) {
	num := func(t tag.Tag, def int) (int, error) {
		s := strings.TrimSpace(h.First(t))
		if s == "" {
			return def, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil {
			return 0, fmt.Errorf("recompress: %s: %w", t, err)
		}
		return n, nil
	}
	var im codec.Image
	var err error
	for _, f := range []struct {
		t   tag.Tag
		def int
		v   *int
	}{
		{tag.Rows, -1, &im.Rows}, {tag.Columns, -1, &im.Columns}, {tag.SamplesPerPixel, 1, &im.SamplesPerPixel},
		{tag.BitsAllocated, -1, &im.BitsAllocated}, {tag.BitsStored, -1, &im.BitsStored},
		{tag.PixelRepresentation, 0, &im.PixelRepresentation}, {tag.PlanarConfiguration, 0, &im.PlanarConfiguration},
	} {
		if *f.v, err = num(f.t, f.def); err != nil {
			return im, err
		}
		if *f.v < 0 {
			return im, fmt.Errorf("recompress: no %s", f.t)
		}
	}
	im.PhotometricInterpretation = strings.TrimSpace(h.First(tag.PhotometricInterpretation))
	return im, nil
}
