package codec

/*
#cgo CFLAGS: -I/usr/include/gdcm-3.0 -O2
#cgo LDFLAGS: -ljpeg -lgdcmjpeg12
#include <stdlib.h>
int pacsd_jpeg_decode8(const unsigned char *src, size_t n, int want_w, int want_h, int want_c,
	int convert, unsigned char *dst, size_t dst_size, int *info, char *err, size_t errlen);
int pacsd_jpeg_encode8(const unsigned char *src, int w, int h, int c, int ybr, int quality, int optimize,
	unsigned char **out, size_t *out_len, char *err, size_t errlen);
int pacsd_jpeg_decode12(const unsigned char *src, size_t n, int want_w, int want_h, int want_c,
	int convert, unsigned char *dst, size_t dst_size, int *info, char *err, size_t errlen);
int pacsd_jpeg_encode12(const unsigned char *src, int w, int h, int c, int ybr, int quality, int optimize,
	unsigned char **out, size_t *out_len, char *err, size_t errlen);
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// jpegCodec is JPEG Baseline (Process 1, maxBits 8) and JPEG Extended
// (Processes 2 and 4, maxBits 12). 8-bit frames go through libjpeg-turbo;
// 12-bit frames through the 12-bit IJG library of GDCM, because Debian
// builds libjpeg-turbo 2.1 without 12-bit support.
type jpegCodec struct {
	lim     Limits
	quality int
	maxBits int
	// quick leaves out the optimized Huffman tables, a second pass over
	// the image that makes it a few percent smaller: for rendered images,
	// which are made for one response and not kept.
	quick bool
}

func (jpegCodec) Lossy() bool    { return true }
func (jpegCodec) Method() string { return "ISO_10918_1" }

// sofPrecision returns the sample precision of the first frame header
// of a JPEG stream, or 0.
func sofPrecision(src []byte) (int, byte) {
	pos := 2
	for pos+4 <= len(src) {
		if src[pos] != 0xFF {
			pos++
			continue
		}
		m := src[pos+1]
		if m == 0xFF || m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7) {
			pos++
			continue
		}
		n := int(src[pos+2])<<8 | int(src[pos+3])
		if m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC {
			if pos+4 < len(src) {
				return int(src[pos+4]), m
			}
			return 0, m
		}
		if m == 0xDA || m == 0xD9 {
			return 0, m
		}
		pos += 2 + n
	}
	return 0, 0
}

func (c jpegCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	if err := im.check(c.lim); err != nil {
		return nil, im, err
	}
	if len(src) < 4 || src[0] != 0xFF || src[1] != 0xD8 {
		return nil, im, fmt.Errorf("%w: JPEG frame does not start with SOI", ErrMalformed)
	}
	prec, sof := sofPrecision(src)
	switch {
	case sof == 0xC3:
		return nil, im, fmt.Errorf("%w: a lossless JPEG frame in a lossy JPEG transfer syntax", ErrMalformed)
	case prec == 0:
		return nil, im, fmt.Errorf("%w: JPEG frame without a frame header", ErrMalformed)
	case prec != 8 && prec != 12:
		return nil, im, fmt.Errorf("%w: JPEG sample precision %d", ErrUnsupported, prec)
	case prec == 12 && im.BitsAllocated != 16, prec > im.BitsAllocated:
		return nil, im, fmt.Errorf("%w: %d-bit JPEG frame for %d bits allocated", ErrMalformed, prec, im.BitsAllocated)
	}
	photometric := im.Photometric()
	convert := photometric == YBRFull || photometric == YBRFull422
	size := im.Rows * im.Columns * im.SamplesPerPixel * ((prec + 7) / 8)
	out := grow(dst, size)
	var info [4]C.int
	var msg [200]C.char
	cs := (*C.uchar)(unsafe.Pointer(&src[0]))
	var rc C.int
	if prec == 8 {
		rc = C.pacsd_jpeg_decode8(cs, C.size_t(len(src)), C.int(im.Columns), C.int(im.Rows), C.int(im.SamplesPerPixel),
			cbool(convert), (*C.uchar)(unsafe.Pointer(&out[0])), C.size_t(len(out)), &info[0], &msg[0], C.size_t(len(msg)))
	} else {
		rc = C.pacsd_jpeg_decode12(cs, C.size_t(len(src)), C.int(im.Columns), C.int(im.Rows), C.int(im.SamplesPerPixel),
			cbool(convert), (*C.uchar)(unsafe.Pointer(&out[0])), C.size_t(len(out)), &info[0], &msg[0], C.size_t(len(msg)))
	}
	switch rc {
	case -1:
		return nil, im, fmt.Errorf("%w: JPEG: %s", ErrMalformed, C.GoString(&msg[0]))
	case -2:
		return nil, im, fmt.Errorf("%w: JPEG frame of %dx%d with %d components in an image of %dx%d with %d samples",
			ErrMalformed, info[0], info[1], info[2], im.Columns, im.Rows, im.SamplesPerPixel)
	}
	o := im
	o.PlanarConfiguration = 0
	if convert {
		o.PhotometricInterpretation = RGB
	}
	if prec == 8 && im.BitsAllocated == 16 {
		// An 8-bit frame of 16-bit pixels: widen it.
		wide := make([]byte, 2*len(out))
		for i, v := range out {
			wide[2*i] = v
		}
		out = wide
	}
	fixSign(out, im)
	return out, o, nil
}

func cbool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func (c jpegCodec) Encode(dst, src []byte, im Image) ([]byte, Image, error) {
	if err := checkNative(src, im, c.lim); err != nil {
		return dst, im, err
	}
	photometric := im.Photometric()
	switch {
	case im.Signed():
		return dst, im, fmt.Errorf("%w: lossy JPEG of signed pixels", ErrUnsupported)
	case im.BitsStored > c.maxBits:
		return dst, im, fmt.Errorf("%w: JPEG of %d bits stored (at most %d)", ErrUnsupported, im.BitsStored, c.maxBits)
	case photometric == YBRFull422:
		return dst, im, fmt.Errorf("%w: JPEG from YBR_FULL_422", ErrUnsupported)
	case im.SamplesPerPixel == 3 && photometric != RGB && photometric != YBRFull:
		return dst, im, fmt.Errorf("%w: JPEG of %s", ErrUnsupported, photometric)
	case photometric == PaletteColor:
		return dst, im, fmt.Errorf("%w: lossy JPEG of PALETTE COLOR", ErrUnsupported)
	}
	src = byPixel(nil, src, im)
	var out *C.uchar
	var n C.size_t
	var msg [200]C.char
	var rc C.int
	cs := (*C.uchar)(unsafe.Pointer(&src[0]))
	w, h, spp := C.int(im.Columns), C.int(im.Rows), C.int(im.SamplesPerPixel)
	ybr := cbool(photometric == YBRFull)
	switch {
	case im.BitsAllocated == 8:
		rc = C.pacsd_jpeg_encode8(cs, w, h, spp, ybr, C.int(c.quality), cbool(!c.quick), &out, &n, &msg[0], C.size_t(len(msg)))
	case im.BitsStored <= 8 && c.maxBits == 8:
		narrow := make([]byte, len(src)/2)
		for i := range narrow {
			narrow[i] = src[2*i]
		}
		rc = C.pacsd_jpeg_encode8((*C.uchar)(unsafe.Pointer(&narrow[0])), w, h, spp, ybr, C.int(c.quality), cbool(!c.quick), &out, &n, &msg[0], C.size_t(len(msg)))
	default:
		rc = C.pacsd_jpeg_encode12(cs, w, h, spp, ybr, C.int(c.quality), cbool(!c.quick), &out, &n, &msg[0], C.size_t(len(msg)))
	}
	if rc != 0 {
		return dst, im, fmt.Errorf("codec: JPEG encoding: %s", C.GoString(&msg[0]))
	}
	defer C.free(unsafe.Pointer(out))
	dst = append(dst, unsafe.Slice((*byte)(unsafe.Pointer(out)), int(n))...)
	o := im
	o.PlanarConfiguration = 0
	if im.SamplesPerPixel == 3 {
		o.PhotometricInterpretation = YBRFull422
	}
	return dst, o, nil
}
