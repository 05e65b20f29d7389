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
	"bytes"
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

// decodeJ2K decodes a JPEG 2000 frame with decode after checking it: the
// image size by checkSIZ, then the rest by check, which returns the bytes
// to decode.
func decodeJ2K(dst, src []byte, im Image, lim Limits, name string, check func(src, cs []byte, siz sizInfo) ([]byte, error), decode j2kDecodeFunc) ([]byte, Image, error) {
	if err := im.check(lim); err != nil {
		return nil, im, err
	}
	if len(src) < 4 {
		return nil, im, fmt.Errorf("%w: %s frame of %d bytes", ErrMalformed, name, len(src))
	}
	cs, siz, err := checkSIZ(src, im)
	if err != nil {
		return nil, im, err
	}
	if src, err = check(src, cs, siz); err != nil {
		return nil, im, err
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
	if int(info[3]) <= im.BitsStored {
		// Signed pixels are sign-extended from Bits Stored, as the
		// other decoders and dcmtk do, whether or not the code stream
		// says its samples are signed: some writers mark them unsigned
		// in a signed image, and pydicom reads them so too.
		fixSign(out, im)
	}
	return out, j2kOut(im), nil
}

// openJPEG decodes JPEG 2000 with OpenJPEG, which reads JP2 files and
// raw code streams.
func openJPEG(s *C.uchar, n C.size_t, w, h, k, b C.int, d *C.uchar, size C.size_t, bps C.int, info *C.int, msg *C.char) C.int {
	return C.pacsd_j2k_decode(s, n, w, h, k, b, d, size, bps, info, msg)
}

// openJPH decodes HTJ2K code streams with OpenJPH.
func openJPH(s *C.uchar, n C.size_t, w, h, k, b C.int, d *C.uchar, size C.size_t, bps C.int, info *C.int, msg *C.char) C.int {
	return C.pacsd_ojph_decode(s, n, w, h, k, b, d, size, bps, info, msg)
}

func (c j2kCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	check := func(src, cs []byte, _ sizInfo) ([]byte, error) { return src, checkTileParts(cs) }
	return decodeJ2K(dst, src, im, c.lim, "JPEG 2000", check, openJPEG)
}

func (c htj2kCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	check := func(_, cs []byte, siz sizInfo) ([]byte, error) { return checkOpenJPH(cs, siz) }
	return decodeJ2K(dst, src, im, c.lim, "HTJ2K", check, openJPH)
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

// checkSIZ checks the image and tile size (SIZ, ISO/IEC 15444-1 A.5.1)
// of a JPEG 2000 code stream against im and the standard's constraints
// before a library sees it: a code stream lying about its tiling makes
// OpenJPH loop for a very long time. It returns the code stream (src, or
// the code stream of a JP2 file) and what its SIZ says.
func checkSIZ(src []byte, im Image) ([]byte, sizInfo, error) {
	cs := src
	if len(cs) >= 12 && string(cs[4:8]) == "jP  " {
		// A JP2 file: the code stream is in the jp2c box.
		i := bytes.Index(cs, []byte{0xFF, 0x4F, 0xFF, 0x51})
		if i < 0 {
			return nil, sizInfo{}, fmt.Errorf("%w: JP2 without a code stream", ErrMalformed)
		}
		cs = cs[i:]
	}
	if len(cs) < 4+38 || cs[0] != 0xFF || cs[1] != 0x4F || cs[2] != 0xFF || cs[3] != 0x51 {
		return nil, sizInfo{}, fmt.Errorf("%w: JPEG 2000 code stream does not start with SOC and SIZ", ErrMalformed)
	}
	s := cs[4:]
	u := func(i int) int64 { return int64(binary.BigEndian.Uint32(s[i:])) }
	lsiz := int(binary.BigEndian.Uint16(s))
	xsiz, ysiz, xo, yo := u(4), u(8), u(12), u(16)
	xt, yt, xto, yto := u(20), u(24), u(28), u(32)
	comps := int(binary.BigEndian.Uint16(s[36:]))
	switch {
	case lsiz != 38+3*comps || len(s) < lsiz:
		return nil, sizInfo{}, fmt.Errorf("%w: JPEG 2000 SIZ of %d bytes for %d components", ErrMalformed, lsiz, comps)
	case xsiz <= xo || ysiz <= yo || xsiz-xo != int64(im.Columns) || ysiz-yo != int64(im.Rows):
		return nil, sizInfo{}, fmt.Errorf("%w: JPEG 2000 image of %dx%d in an image of %dx%d", ErrMalformed, xsiz-xo, ysiz-yo, im.Columns, im.Rows)
	case comps != im.SamplesPerPixel:
		return nil, sizInfo{}, fmt.Errorf("%w: JPEG 2000 image of %d components in an image of %d samples", ErrMalformed, comps, im.SamplesPerPixel)
	case xt == 0 || yt == 0 || xto > xo || yto > yo || xto+xt <= xo || yto+yt <= yo:
		return nil, sizInfo{}, fmt.Errorf("%w: JPEG 2000 tiling %dx%d at %d,%d", ErrMalformed, xt, yt, xto, yto)
	}
	for c := range comps {
		if dx, dy := s[38+3*c+1], s[38+3*c+2]; dx != 1 || dy != 1 {
			return nil, sizInfo{}, fmt.Errorf("%w: JPEG 2000 component %d subsampled %dx%d", ErrMalformed, c, dx, dy)
		}
	}
	tiles := ((xsiz - xto + xt - 1) / xt) * ((ysiz - yto + yt - 1) / yt)
	if tiles > 65535 {
		return nil, sizInfo{}, fmt.Errorf("%w: JPEG 2000 code stream of %d tiles", ErrMalformed, tiles)
	}
	return cs, sizInfo{components: comps, tiles: int(tiles)}, nil
}

// checkTileParts walks the marker segments of the main header and of
// every tile-part header (A.4): each must lie within its tile-part, and
// each tile-part must reach its SOD. OpenJPH 0.9 aborts the process on
// a tile-part that does not.
func checkTileParts(cs []byte) error {
	bad := func(what string, at int) error {
		return fmt.Errorf("%w: JPEG 2000 code stream: %s at offset %d", ErrMalformed, what, at)
	}
	pos := 2
	for {
		if pos+4 > len(cs) || cs[pos] != 0xFF {
			return bad("no tile-part", pos)
		}
		if cs[pos+1] == 0x90 {
			break
		}
		n := int(binary.BigEndian.Uint16(cs[pos+2:]))
		if n < 2 || pos+2+n > len(cs) {
			return bad("marker segment overruns the code stream", pos)
		}
		pos += 2 + n
	}
	for pos+2 <= len(cs) {
		if cs[pos] == 0xFF && cs[pos+1] == 0xD9 {
			return nil
		}
		if pos+12 > len(cs) || cs[pos] != 0xFF || cs[pos+1] != 0x90 || binary.BigEndian.Uint16(cs[pos+2:]) != 10 {
			return bad("no SOT where a tile-part starts", pos)
		}
		end := len(cs)
		if psot := int64(binary.BigEndian.Uint32(cs[pos+6:])); psot != 0 {
			if psot < 14 || int64(pos)+psot > int64(len(cs)) {
				return bad(fmt.Sprintf("tile-part of %d bytes", psot), pos)
			}
			end = pos + int(psot)
		}
		p := pos + 12
		for {
			if p+2 > end || cs[p] != 0xFF {
				return bad("tile-part header without SOD", p)
			}
			if cs[p+1] == 0x93 {
				break
			}
			switch cs[p+1] {
			case 0x52, 0x53, 0x5C, 0x5D, 0x5E, 0x5F, 0x58, 0x61, 0x64:
				// COD, COC, QCD, QCC, RGN, POC, PLT, PPT, COM: what a
				// tile-part header may hold (A.2).
			default:
				return bad(fmt.Sprintf("marker %02X in a tile-part header", cs[p+1]), p)
			}
			if p+4 > end {
				return bad("marker segment overruns its tile-part", p)
			}
			n := int(binary.BigEndian.Uint16(cs[p+2:]))
			if n < 2 || p+2+n > end {
				return bad("marker segment overruns its tile-part", p)
			}
			p += 2 + n
		}
		if end == len(cs) {
			return nil
		}
		pos = end
	}
	return nil
}
