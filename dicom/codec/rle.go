package codec

import (
	"encoding/binary"
	"fmt"
)

// rleCodec is RLE Lossless (PS3.5 Annex G): a 64-byte header of segment
// offsets, then one PackBits segment for each byte of each sample, most
// significant byte first.
type rleCodec struct{ lim Limits }

func (rleCodec) Lossy() bool    { return false }
func (rleCodec) Method() string { return "" }

func (c rleCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	if im.BitsAllocated%8 != 0 {
		return nil, im, fmt.Errorf("%w: RLE Lossless of %d bits allocated", ErrMalformed, im.BitsAllocated)
	}
	if err := im.checkBits(c.lim, 8, 16, 32); err != nil {
		return nil, im, err
	}
	if im.Photometric() == YBRFull422 {
		return nil, im, fmt.Errorf("%w: RLE Lossless of YBR_FULL_422", ErrMalformed)
	}
	bps := im.bytesPerSample()
	pixels := im.Rows * im.Columns
	nseg := im.SamplesPerPixel * bps
	if len(src) < 64 {
		return nil, im, fmt.Errorf("%w: RLE header of %d bytes", ErrMalformed, len(src))
	}
	if n := binary.LittleEndian.Uint32(src); n != uint32(nseg) {
		return nil, im, fmt.Errorf("%w: %d RLE segments for %d samples of %d bytes", ErrMalformed, n, im.SamplesPerPixel, bps)
	}
	dst = grow(dst, pixels*nseg)
	stride := im.SamplesPerPixel * bps
	for seg := range nseg {
		start := int(binary.LittleEndian.Uint32(src[4+4*seg:]))
		end := len(src)
		if seg+1 < nseg {
			end = int(binary.LittleEndian.Uint32(src[8+4*seg:]))
		}
		if start < 64 || end > len(src) || start > end {
			return nil, im, fmt.Errorf("%w: RLE segment %d spans bytes %d to %d of %d", ErrMalformed, seg+1, start, end, len(src))
		}
		// Segment seg holds byte seg%bps (most significant first) of
		// sample seg/bps; little endian puts it at bps-1-seg%bps.
		at := (seg/bps)*bps + bps - 1 - seg%bps
		if err := unpackBits(dst[at:], stride, pixels, src[start:end]); err != nil {
			return nil, im, fmt.Errorf("%w: RLE segment %d: %v", ErrMalformed, seg+1, err)
		}
	}
	out := im
	out.PlanarConfiguration = 0
	return dst, out, nil
}

// unpackBits decodes a PackBits segment (PS3.5 G.3.1) into want bytes,
// stride apart in dst. A run past want is cut short: the segment's last
// byte may be padding.
func unpackBits(dst []byte, stride, want int, seg []byte) error {
	n, i := 0, 0
	for n < want {
		if i >= len(seg) {
			return fmt.Errorf("decodes to %d bytes of %d", n, want)
		}
		h := int8(seg[i])
		i++
		switch {
		case h >= 0:
			k := int(h) + 1
			if i+k > len(seg) {
				return fmt.Errorf("literal run of %d bytes past the end of the segment", k)
			}
			for _, v := range seg[i : i+k] {
				if n < want {
					dst[n*stride] = v
					n++
				}
			}
			i += k
		case h != -128:
			if i >= len(seg) {
				return fmt.Errorf("replicate run past the end of the segment")
			}
			v := seg[i]
			i++
			for range 1 - int(h) {
				if n == want {
					break
				}
				dst[n*stride] = v
				n++
			}
		}
	}
	return nil
}

func (c rleCodec) Encode(dst, src []byte, im Image) ([]byte, Image, error) {
	if err := im.checkBits(c.lim, 8, 16, 32); err != nil {
		return dst, im, err
	}
	if int64(len(src)) < im.FrameSize() {
		return dst, im, fmt.Errorf("%w: native frame of %d bytes, %d expected", ErrMalformed, len(src), im.FrameSize())
	}
	if im.Photometric() == YBRFull422 {
		return dst, im, fmt.Errorf("%w: RLE Lossless of YBR_FULL_422", ErrUnsupported)
	}
	bps := im.bytesPerSample()
	nseg := im.SamplesPerPixel * bps
	src = byPixel(nil, src, im)
	stride := im.SamplesPerPixel * bps
	head := len(dst)
	dst = append(dst, make([]byte, 64)...)
	binary.LittleEndian.PutUint32(dst[head:], uint32(nseg))
	row := make([]byte, im.Columns)
	for seg := range nseg {
		binary.LittleEndian.PutUint32(dst[head+4+4*seg:], uint32(len(dst)-head))
		at := (seg/bps)*bps + bps - 1 - seg%bps
		// Each row is packed apart, as PS3.5 G.3.1 recommends.
		for y := range im.Rows {
			base := y * im.Columns * stride
			for x := range row {
				row[x] = src[base+x*stride+at]
			}
			dst = packBits(dst, row)
		}
		if (len(dst)-head)%2 == 1 {
			dst = append(dst, 0)
		}
	}
	out := im
	out.PlanarConfiguration = 0
	return dst, out, nil
}

// packBits appends the PackBits encoding of b to dst: runs of 3 or more
// equal bytes become replicate runs, the rest literal runs, neither
// longer than 128 bytes.
func packBits(dst, b []byte) []byte {
	i := 0
	for i < len(b) {
		run := 1
		for i+run < len(b) && run < 128 && b[i+run] == b[i] {
			run++
		}
		if run >= 3 {
			dst = append(dst, byte(int8(1-run)), b[i])
			i += run
			continue
		}
		j := i
		for j < len(b) && j-i < 128 {
			if j+2 < len(b) && b[j] == b[j+1] && b[j] == b[j+2] {
				break
			}
			j++
		}
		dst = append(dst, byte(j-i-1))
		dst = append(dst, b[i:j]...)
		i = j
	}
	return dst
}
