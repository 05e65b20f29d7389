package codec

/*
#cgo LDFLAGS: -lcharls
#include <stdlib.h>
#include <charls/charls.h>
#include "assert_trap.h"

// PACSD_JLS_TRAPPED is the return code of a decoding that failed one of
// CharLS's assertions (assert_trap.c).
#define PACSD_JLS_TRAPPED -1000

static const char *pacsd_jls_message(int rc) {
	if (rc == PACSD_JLS_TRAPPED) return pacsd_trap_message();
	return charls_get_error_message((charls_jpegls_errc)rc);
}

// pacsd_jls_header reads the header of a JPEG-LS stream into info:
// width, height, bits per sample, components, interleave mode, NEAR.
static int pacsd_jls_header(const void *src, size_t n, int *info) {
	charls_jpegls_decoder *volatile d = NULL;
	jmp_buf trap;
	if (setjmp(trap) != 0) {
		if (d != NULL) charls_jpegls_decoder_destroy(d);
		return PACSD_JLS_TRAPPED;
	}
	pacsd_trap_set(&trap);
	d = charls_jpegls_decoder_create();
	if (d == NULL) {
		pacsd_trap_set(NULL);
		return (int)CHARLS_JPEGLS_ERRC_NOT_ENOUGH_MEMORY;
	}
	charls_frame_info fi;
	charls_interleave_mode ilv = CHARLS_INTERLEAVE_MODE_NONE;
	int32_t near = 0;
	int rc = charls_jpegls_decoder_set_source_buffer(d, src, n);
	if (!rc) rc = charls_jpegls_decoder_read_header(d);
	if (!rc) rc = charls_jpegls_decoder_get_frame_info(d, &fi);
	if (!rc) rc = charls_jpegls_decoder_get_interleave_mode(d, &ilv);
	if (!rc) rc = charls_jpegls_decoder_get_near_lossless(d, 0, &near);
	if (!rc) {
		info[0] = (int)fi.width;
		info[1] = (int)fi.height;
		info[2] = fi.bits_per_sample;
		info[3] = fi.component_count;
		info[4] = (int)ilv;
		info[5] = near;
	}
	pacsd_trap_set(NULL);
	charls_jpegls_decoder_destroy(d);
	return rc;
}

static int pacsd_jls_decode(const void *src, size_t n, void *dst, size_t dst_size) {
	charls_jpegls_decoder *volatile d = NULL;
	jmp_buf trap;
	if (setjmp(trap) != 0) {
		if (d != NULL) charls_jpegls_decoder_destroy(d);
		return PACSD_JLS_TRAPPED;
	}
	pacsd_trap_set(&trap);
	d = charls_jpegls_decoder_create();
	if (d == NULL) {
		pacsd_trap_set(NULL);
		return (int)CHARLS_JPEGLS_ERRC_NOT_ENOUGH_MEMORY;
	}
	int rc = charls_jpegls_decoder_set_source_buffer(d, src, n);
	if (!rc) rc = charls_jpegls_decoder_read_header(d);
	if (!rc) rc = charls_jpegls_decoder_decode_to_buffer(d, dst, dst_size, 0);
	pacsd_trap_set(NULL);
	charls_jpegls_decoder_destroy(d);
	return rc;
}

// pacsd_jls_encode encodes a colour-by-pixel frame into dst, which is
// large enough, and returns its length in *written.
static int pacsd_jls_encode(const void *src, size_t n, int w, int h, int bits, int comps, int near,
		void *dst, size_t dst_size, size_t *written) {
	charls_jpegls_encoder *e = charls_jpegls_encoder_create();
	if (e == NULL) return (int)CHARLS_JPEGLS_ERRC_NOT_ENOUGH_MEMORY;
	charls_frame_info fi = {(uint32_t)w, (uint32_t)h, bits, comps};
	int rc = charls_jpegls_encoder_set_frame_info(e, &fi);
	if (!rc && comps > 1) rc = charls_jpegls_encoder_set_interleave_mode(e, CHARLS_INTERLEAVE_MODE_SAMPLE);
	if (!rc) rc = charls_jpegls_encoder_set_near_lossless(e, near);
	if (!rc) rc = charls_jpegls_encoder_set_destination_buffer(e, dst, dst_size);
	if (!rc) rc = charls_jpegls_encoder_encode_from_buffer(e, src, n, 0);
	if (!rc) rc = charls_jpegls_encoder_get_bytes_written(e, written);
	charls_jpegls_encoder_destroy(e);
	return rc;
}
*/
import "C"

import (
	"bytes"
	"fmt"
	"unsafe"
)

// jlsCodec is JPEG-LS (ISO/IEC 14495-1) through CharLS: lossless when
// near is 0, near-lossless with that NEAR otherwise.
type jlsCodec struct {
	lim  Limits
	near int
}

func (c jlsCodec) Lossy() bool  { return c.near > 0 }
func (jlsCodec) Method() string { return "ISO_14495_1" }

func (c jlsCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	if err := im.check(c.lim); err != nil {
		return nil, im, err
	}
	if len(src) < 4 {
		return nil, im, fmt.Errorf("%w: JPEG-LS frame of %d bytes", ErrMalformed, len(src))
	}
	// CharLS 2.4 takes tens of seconds over some truncated streams; a
	// stream without EOI in its last bytes (padding may follow it) is
	// truncated, and refused before CharLS sees it.
	if !bytes.Contains(src[max(len(src)-8, 0):], []byte{0xFF, 0xD9}) {
		return nil, im, fmt.Errorf("%w: JPEG-LS frame does not end with EOI: truncated", ErrMalformed)
	}
	var info [6]C.int
	cs := unsafe.Pointer(&src[0])
	if rc := C.pacsd_jls_header(cs, C.size_t(len(src)), &info[0]); rc != 0 {
		return nil, im, fmt.Errorf("%w: JPEG-LS: %s", ErrMalformed, C.GoString(C.pacsd_jls_message(rc)))
	}
	w, h, bits, comps, ilv := int(info[0]), int(info[1]), int(info[2]), int(info[3]), int(info[4])
	if w != im.Columns || h != im.Rows || comps != im.SamplesPerPixel || bits > im.BitsAllocated || bits < 2 {
		return nil, im, fmt.Errorf("%w: JPEG-LS frame of %dx%d with %d components of %d bits in an image of %dx%d with %d samples of %d bits",
			ErrMalformed, w, h, comps, bits, im.Columns, im.Rows, im.SamplesPerPixel, im.BitsAllocated)
	}
	bps := 1
	if bits > 8 {
		bps = 2
	}
	n := w * h * comps * bps
	buf := grow(dst, n)
	if rc := C.pacsd_jls_decode(cs, C.size_t(len(src)), unsafe.Pointer(&buf[0]), C.size_t(n)); rc != 0 {
		return nil, im, fmt.Errorf("%w: JPEG-LS: %s", ErrMalformed, C.GoString(C.pacsd_jls_message(rc)))
	}
	if comps == 3 && ilv == 0 {
		// Interleave mode none decodes plane after plane.
		buf = interleave(nil, buf, w*h, bps)
	}
	if bps == 1 && im.BitsAllocated == 16 {
		wide := make([]byte, 2*len(buf))
		for i, v := range buf {
			wide[2*i] = v
		}
		buf = wide
	}
	fixSign(buf, Image{BitsAllocated: im.BitsAllocated, BitsStored: min(bits, im.BitsStored), PixelRepresentation: im.PixelRepresentation})
	o := im
	o.PlanarConfiguration = 0
	return buf, o, nil
}

func (c jlsCodec) Encode(dst, src []byte, im Image) ([]byte, Image, error) {
	if err := checkNative(src, im, c.lim); err != nil {
		return dst, im, err
	}
	p := im.Photometric()
	switch {
	case p == YBRFull422:
		return dst, im, fmt.Errorf("%w: JPEG-LS from YBR_FULL_422", ErrUnsupported)
	case c.near > 0 && im.Signed():
		return dst, im, fmt.Errorf("%w: near-lossless JPEG-LS of signed pixels", ErrUnsupported)
	case c.near > 0 && p == PaletteColor:
		return dst, im, fmt.Errorf("%w: near-lossless JPEG-LS of PALETTE COLOR", ErrUnsupported)
	}
	bits := max(im.BitsStored, 2)
	src = byPixel(nil, src, im)
	n := int(im.FrameSize())
	// CharLS wants every sample within Bits Stored; the bits above it
	// (a sign extension, an overlay) are not pixel data.
	masked := make([]byte, n)
	if im.BitsAllocated == 8 {
		m := byte(1<<bits - 1)
		for i := range masked {
			masked[i] = src[i] & m
		}
	} else {
		m := uint16(1<<bits - 1)
		for i := 0; i < n; i += 2 {
			v := (uint16(src[i]) | uint16(src[i+1])<<8) & m
			masked[i], masked[i+1] = byte(v), byte(v>>8)
		}
	}
	out := make([]byte, n+n/2+1024)
	var written C.size_t
	rc := C.pacsd_jls_encode(unsafe.Pointer(&masked[0]), C.size_t(n), C.int(im.Columns), C.int(im.Rows), C.int(bits),
		C.int(im.SamplesPerPixel), C.int(c.near), unsafe.Pointer(&out[0]), C.size_t(len(out)), &written)
	if rc != 0 {
		return dst, im, fmt.Errorf("codec: JPEG-LS encoding: %s", C.GoString(C.pacsd_jls_message(rc)))
	}
	o := im
	o.PlanarConfiguration = 0
	return append(dst, out[:written]...), o, nil
}
