package codec

/*
#cgo CFLAGS: -I/usr/include/openjpeg-2.5
#cgo CXXFLAGS: -O2 -std=c++14
#cgo LDFLAGS: -lopenjp2 -lopenjph -lstdc++
#include <stdlib.h>
#include "j2k_shim.h"
*/
import "C"

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// j2kCodec is JPEG 2000 (ISO/IEC 15444-1) through OpenJPEG: lossless
// (reversible 5/3 wavelet, RCT for colour) when ratio is 0, lossy
// (irreversible 9/7, ICT) at that compression ratio otherwise.
type j2kCodec struct {
	lim   Limits
	ratio float64
}

func (c j2kCodec) Lossy() bool  { return c.ratio > 0 }
func (j2kCodec) Method() string { return "ISO_15444_1" }

// htj2kCodec is High-Throughput JPEG 2000 (ISO/IEC 15444-15) through
// OpenJPH: lossless, lossless with RPCL progression and TLM markers
// (rpcl), or lossy when ratio is set.
type htj2kCodec struct {
	lim   Limits
	ratio float64
	rpcl  bool
}

func (c htj2kCodec) Lossy() bool  { return c.ratio > 0 }
func (htj2kCodec) Method() string { return "ISO_15444_15" }

// j2kOut is the description of a decoded JPEG 2000 frame: the colour
// transforms are undone by the decoder.
func j2kOut(im Image) Image {
	o := im
	o.PlanarConfiguration = 0
	switch im.Photometric() {
	case YBRICT, YBRRCT:
		o.PhotometricInterpretation = RGB
	}
	return o
}

type j2kDecodeFunc func(src *C.uchar, n C.size_t, w, h, c, bits C.int, dst *C.uchar, size C.size_t, bps C.int, info *C.int, msg *C.char) C.int

func decodeJ2K(dst, src []byte, im Image, lim Limits, name string, decode j2kDecodeFunc) ([]byte, Image, error) {
	if err := im.check(lim); err != nil {
		return nil, im, err
	}
	if len(src) < 4 {
		return nil, im, fmt.Errorf("%w: %s frame of %d bytes", ErrMalformed, name, len(src))
	}
	out := grow(dst, int(im.FrameSize()))
	var info [4]C.int
	var msg [C.PACSD_MSG]C.char
	rc := decode((*C.uchar)(unsafe.Pointer(&src[0])), C.size_t(len(src)), C.int(im.Columns), C.int(im.Rows),
		C.int(im.SamplesPerPixel), C.int(im.BitsAllocated), (*C.uchar)(unsafe.Pointer(&out[0])), C.size_t(len(out)),
		C.int(im.bytesPerSample()), &info[0], &msg[0])
	switch rc {
	case 0:
	case -2:
		return nil, im, fmt.Errorf("%w: %s frame of %dx%d with %d components of %d bits in an image of %dx%d with %d samples of %d bits",
			ErrMalformed, name, info[0], info[1], info[2], info[3], im.Columns, im.Rows, im.SamplesPerPixel, im.BitsAllocated)
	default:
		return nil, im, fmt.Errorf("%w: %s: %s", ErrMalformed, name, C.GoString(&msg[0]))
	}
	return out, j2kOut(im), nil
}

func (c j2kCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	return decodeJ2K(dst, src, im, c.lim, "JPEG 2000", func(s *C.uchar, n C.size_t, w, h, k, b C.int, d *C.uchar, size C.size_t, bps C.int, info *C.int, msg *C.char) C.int {
		return C.pacsd_j2k_decode(s, n, w, h, k, b, d, size, bps, info, msg)
	})
}

func (c htj2kCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	return decodeJ2K(dst, src, im, c.lim, "HTJ2K", func(s *C.uchar, n C.size_t, w, h, k, b C.int, d *C.uchar, size C.size_t, bps C.int, info *C.int, msg *C.char) C.int {
		return C.pacsd_ojph_decode(s, n, w, h, k, b, d, size, bps, info, msg)
	})
}

// j2kInput checks a native frame for JPEG 2000 encoding and returns it
// colour-by-pixel, with whether the colour transform applies.
func j2kInput(src []byte, im Image, lim Limits, lossy bool) ([]byte, bool, error) {
	if err := checkNative(src, im, lim); err != nil {
		return nil, false, err
	}
	p := im.Photometric()
	switch {
	case p == YBRFull422:
		return nil, false, fmt.Errorf("%w: JPEG 2000 from YBR_FULL_422", ErrUnsupported)
	case lossy && p == PaletteColor:
		return nil, false, fmt.Errorf("%w: lossy JPEG 2000 of PALETTE COLOR", ErrUnsupported)
	}
	return byPixel(nil, src, im), im.SamplesPerPixel == 3 && p == RGB, nil
}

// j2kEncoded describes an encoded frame: RGB becomes YBR_RCT or YBR_ICT
// when the colour transform was applied (PS3.3 C.7.6.3.1.2).
func j2kEncoded(im Image, mct, lossy bool) Image {
	o := im
	o.PlanarConfiguration = 0
	if mct {
		o.PhotometricInterpretation = YBRRCT
		if lossy {
			o.PhotometricInterpretation = YBRICT
		}
	}
	return o
}

func (c j2kCodec) Encode(dst, src []byte, im Image) ([]byte, Image, error) {
	src, mct, err := j2kInput(src, im, c.lim, c.Lossy())
	if err != nil {
		return dst, im, err
	}
	var out *C.uchar
	var n C.size_t
	var msg [C.PACSD_MSG]C.char
	rc := C.pacsd_j2k_encode((*C.uchar)(unsafe.Pointer(&src[0])), C.int(im.Columns), C.int(im.Rows), C.int(im.SamplesPerPixel),
		C.int(im.BitsStored), C.int(im.bytesPerSample()), C.int(im.PixelRepresentation), cbool(mct), C.double(c.ratio), &out, &n, &msg[0])
	if rc != 0 {
		return dst, im, fmt.Errorf("codec: JPEG 2000 encoding: %s", C.GoString(&msg[0]))
	}
	defer C.free(unsafe.Pointer(out))
	dst = append(dst, unsafe.Slice((*byte)(unsafe.Pointer(out)), int(n))...)
	return dst, j2kEncoded(im, mct, c.Lossy()), nil
}

// htj2kQuant is the quantisation step of lossy HTJ2K for a compression
// ratio: OpenJPH sets the step, not the rate, so the ratio picks a step
// that gives about that ratio on medical images.
func htj2kQuant(ratio float64) float64 {
	if ratio <= 0 {
		return 0
	}
	return 0.0005 * ratio
}

func (c htj2kCodec) Encode(dst, src []byte, im Image) ([]byte, Image, error) {
	src, mct, err := j2kInput(src, im, c.lim, c.Lossy())
	if err != nil {
		return dst, im, err
	}
	var out *C.uchar
	var n C.size_t
	var msg [C.PACSD_MSG]C.char
	rc := C.pacsd_ojph_encode((*C.uchar)(unsafe.Pointer(&src[0])), C.int(im.Columns), C.int(im.Rows), C.int(im.SamplesPerPixel),
		C.int(im.BitsStored), C.int(im.bytesPerSample()), C.int(im.PixelRepresentation), cbool(mct), cbool(c.rpcl),
		C.double(htj2kQuant(c.ratio)), &out, &n, &msg[0])
	if rc != 0 {
		return dst, im, fmt.Errorf("codec: HTJ2K encoding: %s", C.GoString(&msg[0]))
	}
	defer C.free(unsafe.Pointer(out))
	cs := unsafe.Slice((*byte)(unsafe.Pointer(out)), int(n))
	if c.rpcl {
		if dst, err = appendWithTLM(dst, cs); err != nil {
			return dst, im, err
		}
	} else {
		dst = append(dst, cs...)
	}
	return dst, j2kEncoded(im, mct, c.Lossy()), nil
}

// appendWithTLM appends code stream cs to dst with a TLM marker segment
// (ISO/IEC 15444-1 A.7.1) listing the length of every tile-part, which
// the HTJ2K RPCL transfer syntax requires (PS3.5 A.4.11) and OpenJPH 0.9
// does not write. It goes at the end of the main header, before the
// first SOT.
func appendWithTLM(dst, cs []byte) ([]byte, error) {
	first := -1
	pos := 2
	for pos+4 <= len(cs) {
		m := binary.BigEndian.Uint16(cs[pos:])
		if m == 0xFF90 {
			first = pos
			break
		}
		pos += 2 + int(binary.BigEndian.Uint16(cs[pos+2:]))
	}
	if first < 0 {
		return dst, fmt.Errorf("codec: HTJ2K code stream without a tile-part")
	}
	var lengths []uint32
	for pos = first; pos+12 <= len(cs) && binary.BigEndian.Uint16(cs[pos:]) == 0xFF90; {
		psot := binary.BigEndian.Uint32(cs[pos+6:])
		if psot == 0 {
			psot = uint32(len(cs) - 2 - pos) // to the EOC
		}
		if psot < 12 || pos+int(psot) > len(cs) {
			return dst, fmt.Errorf("codec: HTJ2K tile-part of %d bytes", psot)
		}
		lengths = append(lengths, psot)
		pos += int(psot)
	}
	dst = append(dst, cs[:first]...)
	// Ztlm 0, Stlm: no tile numbers (tile-parts in order), 32-bit lengths.
	dst = append(dst, 0xFF, 0x55)
	dst = binary.BigEndian.AppendUint16(dst, uint16(4+4*len(lengths)))
	dst = append(dst, 0, 0x40)
	for _, l := range lengths {
		dst = binary.BigEndian.AppendUint32(dst, l)
	}
	return append(dst, cs[first:]...), nil
}
