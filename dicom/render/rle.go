package render

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// rle decodes an RLE Lossless frame (PS3.5 Annex G) read from r: a
// 64-byte header of segment offsets, then one segment per byte of each
// sample, most significant byte first, each a PackBits stream. It streams
// the segments into one native frame, little endian and colour-by-plane,
// and renders that.
func rle(p Params, r io.Reader, opts Options) (rows, error) {
	l, err := p.layout()
	if err != nil {
		return nil, err
	}
	if l.alloc == 1 || l.photometric == YBRFull422 {
		return nil, fmt.Errorf("%w: RLE Lossless with %d bits allocated and %s", ErrMalformed, l.alloc, l.photometric)
	}
	bps := l.alloc / 8
	npix := l.w * l.h
	nseg := l.spp * bps
	br := bufio.NewReader(r)
	var head [64]byte
	if _, err := io.ReadFull(br, head[:]); err != nil {
		return nil, fmt.Errorf("%w: RLE header: %v", ErrMalformed, unexpected(err))
	}
	if n := binary.LittleEndian.Uint32(head[:]); n != uint32(nseg) {
		return nil, fmt.Errorf("%w: %d RLE segments for %d samples of %d bytes", ErrMalformed, n, l.spp, bps)
	}
	offsets := make([]int64, nseg)
	for i := range offsets {
		offsets[i] = int64(binary.LittleEndian.Uint32(head[4+4*i:]))
	}
	frame := make([]byte, npix*nseg)
	pos := int64(len(head))
	for seg := range nseg {
		if offsets[seg] < pos {
			return nil, fmt.Errorf("%w: RLE segment %d at offset %d overlaps what precedes it", ErrMalformed, seg+1, offsets[seg])
		}
		if _, err := br.Discard(int(offsets[seg] - pos)); err != nil {
			return nil, fmt.Errorf("%w: RLE segment %d: %v", ErrMalformed, seg+1, unexpected(err))
		}
		pos = offsets[seg]
		end := int64(-1)
		if seg+1 < nseg {
			end = offsets[seg+1]
		}
		// Segment seg holds byte seg%bps (most significant first) of
		// sample seg/bps; in the frame that byte is at bps-1-seg%bps of
		// each little endian value.
		sample, b := seg/bps, bps-1-seg%bps
		n, err := unpackBits(br, &pos, end, npix, func(i int, v byte) {
			frame[(sample*npix+i)*bps+b] = v
		})
		if err != nil {
			return nil, fmt.Errorf("%w: RLE segment %d: %v", ErrMalformed, seg+1, unexpected(err))
		}
		if n < npix {
			return nil, fmt.Errorf("%w: RLE segment %d decodes to %d bytes of %d", ErrMalformed, seg+1, n, npix)
		}
	}
	l.planar = true
	return newSource(p, l, frame, false, Options{Window: opts.Window})
}

// unpackBits decodes a PackBits segment (PS3.5 §G.3.1) from r, whose
// position *pos it advances, until it has produced want bytes or reached
// end (-1: no end but want). It passes each byte to put with its index
// and returns how many it produced. A run that would go past want is cut
// short: the segment's last byte may be padding.
func unpackBits(r *bufio.Reader, pos *int64, end int64, want int, put func(int, byte)) (int, error) {
	n := 0
	for n < want && (end < 0 || *pos < end) {
		c, err := r.ReadByte()
		if err != nil {
			return n, err
		}
		*pos++
		switch h := int8(c); {
		case h >= 0:
			for range int(h) + 1 {
				v, err := r.ReadByte()
				if err != nil {
					return n, err
				}
				*pos++
				if n < want {
					put(n, v)
					n++
				}
			}
		case h != -128:
			v, err := r.ReadByte()
			if err != nil {
				return n, err
			}
			*pos++
			for range 1 - int(h) {
				if n < want {
					put(n, v)
					n++
				}
			}
		}
	}
	return n, nil
}

// unexpected turns the end of the stream into io.ErrUnexpectedEOF, which
// says what it is in an error message: the data stopped short.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
