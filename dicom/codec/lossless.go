package codec

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// losslessCodec is JPEG Lossless, Non-Hierarchical (Process 14, ISO/IEC
// 10918-1 Annex H), 2 to 16 bits, predictors 1 to 7; SV1 is predictor 1.
// It is written in Go because Debian's libjpeg-turbo 2.1 has no lossless
// mode and the format is small: Huffman-coded differences from a
// prediction of each sample by its neighbours.
type losslessCodec struct {
	lim       Limits
	predictor int
}

func (losslessCodec) Lossy() bool    { return false }
func (losslessCodec) Method() string { return "" }

// errTruncated reports a scan that ends before its last sample.
var errTruncated = errors.New("scan ends before the frame is complete")

// ljComponent is one component of a lossless frame.
type ljComponent struct {
	id byte
}

// ljDecoder holds what the markers of a lossless frame declare.
type ljDecoder struct {
	precision     int
	width, height int
	comps         []ljComponent
	tables        [4]*huffTable
	restart       int
}

func (c losslessCodec) Decode(dst, src []byte, im Image) ([]byte, Image, error) {
	if err := im.check(c.lim); err != nil {
		return nil, im, err
	}
	d := &ljDecoder{}
	var out []uint16 // samples interleaved, allocated once the frame header is checked
	pos := 0
	if len(src) < 2 || src[0] != 0xFF || src[1] != 0xD8 {
		return nil, im, fmt.Errorf("%w: JPEG Lossless frame does not start with SOI", ErrMalformed)
	}
	pos = 2
	scans := 0
	for {
		m, seg, next, err := nextMarker(src, pos)
		if err != nil {
			return nil, im, err
		}
		pos = next
		switch m {
		case 0xD9: // EOI
			if scans == 0 {
				return nil, im, fmt.Errorf("%w: JPEG Lossless frame without a scan", ErrMalformed)
			}
			return c.finish(dst, out, d, im)
		case 0xC4:
			if err := d.parseDHT(seg); err != nil {
				return nil, im, err
			}
		case 0xDD:
			if len(seg) < 2 {
				return nil, im, fmt.Errorf("%w: DRI of %d bytes", ErrMalformed, len(seg))
			}
			d.restart = int(binary.BigEndian.Uint16(seg))
		case 0xC3:
			if out != nil {
				return nil, im, fmt.Errorf("%w: second frame header", ErrMalformed)
			}
			if err := d.parseSOF(seg, im); err != nil {
				return nil, im, err
			}
			out = make([]uint16, d.width*d.height*len(d.comps))
		case 0xDA:
			if out == nil {
				return nil, im, fmt.Errorf("%w: scan before the frame header", ErrMalformed)
			}
			n, err := d.scan(seg, src[pos:], out)
			if err != nil {
				return nil, im, err
			}
			pos += n
			scans++
		case 0xC0, 0xC1, 0xC2, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF:
			return nil, im, fmt.Errorf("%w: JPEG process SOF%d in a JPEG Lossless frame", ErrUnsupported, m-0xC0)
		}
	}
}

// finish writes the decoded samples as a native frame.
func (c losslessCodec) finish(dst []byte, out []uint16, d *ljDecoder, im Image) ([]byte, Image, error) {
	n := len(out)
	o := im
	o.PlanarConfiguration = 0
	if im.BitsAllocated == 8 {
		dst = grow(dst, n)
		for i, v := range out {
			dst[i] = byte(v)
		}
	} else {
		dst = grow(dst, 2*n)
		for i, v := range out {
			binary.LittleEndian.PutUint16(dst[2*i:], v)
		}
	}
	if d.precision <= im.BitsStored {
		fixSign(dst, Image{BitsAllocated: im.BitsAllocated, BitsStored: d.precision, PixelRepresentation: im.PixelRepresentation})
	}
	return dst, o, nil
}

// nextMarker finds the marker at or after pos and returns it with its
// segment (empty for markers without one) and the position after it.
func nextMarker(src []byte, pos int) (byte, []byte, int, error) {
	for pos < len(src) && src[pos] != 0xFF {
		pos++ // tolerate garbage between segments, as libjpeg does
	}
	for pos < len(src) && src[pos] == 0xFF {
		pos++
	}
	if pos >= len(src) {
		return 0, nil, pos, fmt.Errorf("%w: JPEG stream ends before EOI", ErrMalformed)
	}
	m := src[pos]
	pos++
	if m == 0xD8 || m == 0xD9 || (m >= 0xD0 && m <= 0xD7) || m == 0x01 {
		return m, nil, pos, nil
	}
	if pos+2 > len(src) {
		return 0, nil, pos, fmt.Errorf("%w: JPEG marker %02X truncated", ErrMalformed, m)
	}
	n := int(binary.BigEndian.Uint16(src[pos:]))
	if n < 2 || pos+n > len(src) {
		return 0, nil, pos, fmt.Errorf("%w: JPEG marker %02X of length %d", ErrMalformed, m, n)
	}
	return m, src[pos+2 : pos+n], pos + n, nil
}

func (d *ljDecoder) parseSOF(seg []byte, im Image) error {
	if len(seg) < 6 {
		return fmt.Errorf("%w: SOF3 of %d bytes", ErrMalformed, len(seg))
	}
	d.precision = int(seg[0])
	d.height = int(binary.BigEndian.Uint16(seg[1:]))
	d.width = int(binary.BigEndian.Uint16(seg[3:]))
	nf := int(seg[5])
	if len(seg) < 6+3*nf {
		return fmt.Errorf("%w: SOF3 of %d components in %d bytes", ErrMalformed, nf, len(seg))
	}
	if d.precision < 2 || d.precision > 16 {
		return fmt.Errorf("%w: JPEG Lossless precision %d", ErrMalformed, d.precision)
	}
	if d.precision > im.BitsAllocated {
		return fmt.Errorf("%w: JPEG Lossless precision %d for %d bits allocated", ErrMalformed, d.precision, im.BitsAllocated)
	}
	if d.width != im.Columns || d.height != im.Rows || nf != im.SamplesPerPixel {
		return fmt.Errorf("%w: JPEG frame of %dx%d with %d components in an image of %dx%d with %d samples",
			ErrMalformed, d.width, d.height, nf, im.Columns, im.Rows, im.SamplesPerPixel)
	}
	for i := range nf {
		c := seg[6+3*i:]
		if c[1] != 0x11 {
			return fmt.Errorf("%w: JPEG Lossless component with sampling factors %02X", ErrUnsupported, c[1])
		}
		d.comps = append(d.comps, ljComponent{id: c[0]})
	}
	return nil
}

func (d *ljDecoder) parseDHT(seg []byte) error {
	for len(seg) > 0 {
		if len(seg) < 17 {
			return fmt.Errorf("%w: DHT truncated", ErrMalformed)
		}
		class, id := seg[0]>>4, int(seg[0]&0x0F)
		if id > 3 || class > 1 {
			return fmt.Errorf("%w: Huffman table %02X", ErrMalformed, seg[0])
		}
		var counts [16]int
		total := 0
		for i := range 16 {
			counts[i] = int(seg[1+i])
			total += counts[i]
		}
		if total > 256 || len(seg) < 17+total {
			return fmt.Errorf("%w: DHT of %d codes truncated", ErrMalformed, total)
		}
		t, err := newHuffTable(counts, seg[17:17+total])
		if err != nil {
			return err
		}
		if class == 0 {
			d.tables[id] = t
		}
		seg = seg[17+total:]
	}
	return nil
}

// scan decodes one scan whose header is seg from the entropy-coded data
// at the start of data, and returns how many bytes of data it took.
func (d *ljDecoder) scan(seg, data []byte, out []uint16) (int, error) {
	if len(seg) < 1 {
		return 0, fmt.Errorf("%w: empty SOS", ErrMalformed)
	}
	ns := int(seg[0])
	if ns < 1 || ns > len(d.comps) || len(seg) < 1+2*ns+3 {
		return 0, fmt.Errorf("%w: SOS of %d components", ErrMalformed, ns)
	}
	idx := make([]int, ns) // frame component index of each scan component
	tables := make([]*huffTable, ns)
	inOrder := ns == len(d.comps)
	for i := range ns {
		id, td := seg[1+2*i], int(seg[2+2*i]>>4)
		idx[i] = -1
		for k, c := range d.comps {
			if c.id == id {
				idx[i] = k
			}
		}
		if idx[i] < 0 || td > 3 || d.tables[td] == nil {
			return 0, fmt.Errorf("%w: SOS component %d or its table %d is undefined", ErrMalformed, id, td)
		}
		inOrder = inOrder && idx[i] == i
		tables[i] = d.tables[td]
	}
	p := seg[1+2*ns:]
	predictor, pt := int(p[0]), int(p[2]&0x0F)
	if predictor < 1 || predictor > 7 {
		return 0, fmt.Errorf("%w: JPEG Lossless predictor %d", ErrMalformed, predictor)
	}
	if pt >= d.precision {
		return 0, fmt.Errorf("%w: point transform %d for precision %d", ErrMalformed, pt, d.precision)
	}
	br := bitReader{data: data}
	s := ljScan{
		br: &br, tables: tables, idx: idx, nc: len(d.comps), w: d.width, h: d.height, predictor: predictor,
		mask: int32(1)<<(d.precision-pt) - 1, initial: int32(1) << (d.precision - pt - 1),
	}
	var err error
	if d.restart == 0 && inOrder {
		err = s.decodeRows(out)
	} else {
		err = s.decodeRestarts(out, d.restart)
	}
	if err != nil {
		return 0, err
	}
	if br.overrun() {
		return 0, fmt.Errorf("%w: %v", ErrMalformed, errTruncated)
	}
	if pt > 0 {
		for _, k := range idx {
			for i := k; i < len(out); i += s.nc {
				out[i] <<= pt
			}
		}
	}
	return br.consumed(), nil
}

// ljScan is one scan being decoded.
type ljScan struct {
	br            *bitReader
	tables        []*huffTable
	idx           []int // frame component of each scan component
	nc            int   // components in the frame
	w, h          int
	predictor     int
	mask, initial int32
}

// decodeRows decodes a scan of every component in frame order without
// restart intervals, row by row: the case every encoder writes, and the
// fast one.
func (s *ljScan) decodeRows(out []uint16) error {
	nc, br, mask := s.nc, s.br, s.mask
	stride := s.w * nc
	if len(out) < stride*s.h {
		return fmt.Errorf("%w: scan larger than its frame", ErrMalformed)
	}
	// Table of each sample of a row's pixel, for nc components.
	var t [4]*huffTable
	copy(t[:], s.tables)
	if nc > len(t) {
		return fmt.Errorf("%w: %d components in a scan", ErrUnsupported, nc)
	}
	for y := range s.h {
		row := out[y*stride : (y+1)*stride]
		if y == 0 {
			for k := range nc {
				row[k] = uint16((s.initial + br.diff(t[k])) & mask)
			}
		} else {
			up := out[(y-1)*stride : y*stride]
			for k := range nc {
				row[k] = uint16((int32(up[k]) + br.diff(t[k])) & mask)
			}
		}
		if nc == 1 {
			s.row1(row, out, y, t[0])
		} else {
			s.rowN(row, out, y, t[:nc])
		}
		if br.err != nil {
			return br.err
		}
	}
	return nil
}

// row1 decodes the samples after the first of row y of a one-component
// scan. It keeps the bit reader's state in locals, which the compiler
// holds in registers, and decodes most differences with one look-up:
// this loop is where decoding spends its time.
func (s *ljScan) row1(row, out []uint16, y int, t *huffTable) {
	b, mask := s.br, s.mask
	acc, n := b.acc, b.n
	var up []uint16
	predictor := s.predictor
	if y == 0 {
		predictor = 1
	} else {
		up = out[(y-1)*len(row) : y*len(row)]
		up = up[:len(row)]
	}
	prev := int32(row[0])
	for x := 1; x < len(row); x++ {
		if n < 32 {
			b.acc, b.n = acc, n
			b.fill()
			acc, n = b.acc, b.n
		}
		var d int32
		if e := t.fast[(acc>>((n-lookahead)&63))&(1<<lookahead-1)]; e&fastWhole != 0 {
			n -= uint(e & 31)
			d = int32(e) >> 16
		} else {
			b.acc, b.n = acc, n
			d = b.slowDiff(t, e)
			acc, n = b.acc, b.n
		}
		if predictor != 1 {
			prev = predict(predictor, prev, int32(up[x]), int32(up[x-1]))
		}
		prev = (prev + d) & mask
		row[x] = uint16(prev)
	}
	b.acc, b.n = acc, n
}

// rowN decodes the pixels after the first of row y of a scan of several
// components, interleaved.
func (s *ljScan) rowN(row, out []uint16, y int, t []*huffTable) {
	br, mask, nc := s.br, s.mask, len(t)
	predictor := s.predictor
	var up []uint16
	if y == 0 {
		predictor = 1
	} else {
		up = out[(y-1)*len(row) : y*len(row)]
		up = up[:len(row)]
	}
	for x := nc; x < len(row); x += nc {
		for k, tk := range t {
			i := x + k
			var pred int32
			if predictor == 1 {
				pred = int32(row[i-nc])
			} else {
				pred = predict(predictor, int32(row[i-nc]), int32(up[i]), int32(up[i-nc]))
			}
			row[i] = uint16((pred + br.diff(tk)) & mask)
		}
	}
}

// predict is the prediction of Table H.1 from the sample to the left
// (ra), above (rb) and above left (rc).
func predict(predictor int, ra, rb, rc int32) int32 {
	switch predictor {
	case 1:
		return ra
	case 2:
		return rb
	case 3:
		return rc
	case 4:
		return ra + rb - rc
	case 5:
		return ra + (rb-rc)>>1
	case 6:
		return rb + (ra-rc)>>1
	default:
		return (ra + rb) >> 1
	}
}

// decodeRestarts decodes any scan: with restart intervals, which reset
// the prediction (H.1.2.1), and of components in any order or a subset
// of them.
func (s *ljScan) decodeRestarts(out []uint16, restart int) error {
	nc, w, br := s.nc, s.w, s.br
	if len(out) < w*s.h*nc {
		return fmt.Errorf("%w: scan larger than its frame", ErrMalformed)
	}
	mcus := 0
	firstRow := 0 // the row predicted from the left only, after a restart
	restartAt := 0
	for y := range s.h {
		for x := range w {
			if restart > 0 && mcus > 0 && mcus%restart == 0 {
				if err := br.restart(); err != nil {
					return err
				}
				firstRow, restartAt = y, x
			}
			for i, k := range s.idx {
				diff := br.diff(s.tables[i])
				at := (y*w+x)*nc + k
				var pred int32
				switch {
				case y == firstRow && x == restartAt:
					pred = s.initial
				case y == firstRow:
					pred = int32(out[at-nc])
				case x == 0:
					pred = int32(out[at-w*nc])
				default:
					pred = predict(s.predictor, int32(out[at-nc]), int32(out[at-w*nc]), int32(out[at-w*nc-nc]))
				}
				out[at] = uint16((pred + diff) & s.mask)
			}
			mcus++
		}
		if br.err != nil {
			return br.err
		}
	}
	return nil
}

// huffTable is a Huffman table of ISO/IEC 10918-1 Annex C. fast decodes
// the next lookahead bits of the stream at once: the difference itself
// when its code and additional bits fit (most of them), else the code's
// length and category.
type huffTable struct {
	fast    [1 << lookahead]uint32
	maxcode [18]int32
	valptr  [17]int32
	mincode [17]int32
	values  []byte
}

// lookahead is how many bits the fast table of a Huffman table decodes.
const lookahead = 12

// A fast table entry: the bits it consumes in its low 5 bits (0: a code
// longer than lookahead), fastWhole when it holds the difference, in its
// high 16 bits; else the category in bits 8 to 12.
const fastWhole = 1 << 5

func newHuffTable(counts [16]int, values []byte) (*huffTable, error) {
	t := &huffTable{values: append([]byte(nil), values...)}
	code, k := int32(0), 0
	for l := 1; l <= 16; l++ {
		t.valptr[l] = int32(k)
		t.mincode[l] = code
		for range counts[l-1] {
			if code >= 1<<l {
				return nil, fmt.Errorf("%w: Huffman table with too many codes of length %d", ErrMalformed, l)
			}
			if l <= lookahead {
				t.fillFast(code, l, int(values[k]))
			}
			code++
			k++
		}
		t.maxcode[l] = code - 1
		if counts[l-1] == 0 {
			t.maxcode[l] = -1
		}
		code <<= 1
	}
	t.maxcode[17] = 1 << 30
	return t, nil
}

// fillFast sets the fast entries of the code of length l for category s.
func (t *huffTable) fillFast(code int32, l, s int) {
	shift := lookahead - l
	for f := range int32(1) << shift {
		e := uint32(l) | uint32(s)<<8
		if s < 16 && l+s <= lookahead {
			// The additional bits follow the code within the lookahead.
			v := (f >> (shift - s)) & (1<<s - 1)
			if s > 0 && v < 1<<(s-1) {
				v -= 1<<s - 1
			}
			e = uint32(l+s) | fastWhole | uint32(v)<<16
		}
		t.fast[code<<shift|f] = e
	}
}

// bitReader reads entropy-coded bits, removing stuffed zero bytes and
// stopping at a marker; past the data it reads zeros and counts them.
// The first malformed code sets err; the values decoded after it are
// meaningless and the caller checks err once a row.
type bitReader struct {
	data   []byte
	pos    int
	acc    uint64
	n      uint
	marker bool
	pad    uint // zero bits added past the data
	err    error
}

func (b *bitReader) fill() {
	// Eight bytes at once while none of them is 0xFF.
	if !b.marker && b.pos+8 <= len(b.data) {
		v := binary.BigEndian.Uint64(b.data[b.pos:])
		if x := ^v; (x-0x0101010101010101)&^x&0x8080808080808080 == 0 {
			k := (64 - b.n) / 8
			b.acc = b.acc<<(8*k) | v>>(64-8*k)
			b.n += 8 * k
			b.pos += int(k)
			return
		}
	}
	for b.n <= 56 {
		if b.marker || b.pos >= len(b.data) {
			b.acc <<= 8
			b.n += 8
			b.pad += 8
			continue
		}
		c := b.data[b.pos]
		if c == 0xFF {
			if b.pos+1 < len(b.data) && b.data[b.pos+1] == 0 {
				b.pos += 2
			} else {
				b.marker = true
				continue
			}
		} else {
			b.pos++
		}
		b.acc = b.acc<<8 | uint64(c)
		b.n += 8
	}
}

// overrun reports whether decoding used bits past the data.
func (b *bitReader) overrun() bool { return b.pad > b.n }

// consumed is how many bytes of data the scan took, up to the marker
// that ends it.
func (b *bitReader) consumed() int { return b.pos }

// restart skips to the RSTn marker that must follow and resets the
// reader after it.
func (b *bitReader) restart() error {
	if b.err != nil {
		return b.err
	}
	if b.overrun() {
		return fmt.Errorf("%w: %v", ErrMalformed, errTruncated)
	}
	b.acc, b.n, b.pad = 0, 0, 0
	b.marker = false
	for b.pos+1 < len(b.data) && !(b.data[b.pos] == 0xFF && b.data[b.pos+1] >= 0xD0 && b.data[b.pos+1] <= 0xD7) {
		b.pos++
	}
	if b.pos+1 >= len(b.data) {
		return fmt.Errorf("%w: restart marker missing", ErrMalformed)
	}
	b.pos += 2
	return nil
}

func (b *bitReader) bits(n uint) int32 {
	if n == 0 {
		return 0
	}
	if b.n < n {
		b.fill()
	}
	b.n -= n
	return int32(b.acc>>b.n) & (1<<n - 1)
}

// diff decodes one Huffman-coded difference (H.1.2.2).
func (b *bitReader) diff(t *huffTable) int32 {
	if b.n < 32 {
		b.fill()
	}
	e := t.fast[(b.acc>>(b.n-lookahead))&(1<<lookahead-1)]
	if e&fastWhole != 0 {
		b.n -= uint(e & 31)
		return int32(e) >> 16
	}
	return b.slowDiff(t, e)
}

// slowDiff decodes a difference whose code or additional bits go beyond
// the lookahead; e is its fast table entry.
func (b *bitReader) slowDiff(t *huffTable, e uint32) int32 {
	var s int
	if e != 0 {
		b.n -= uint(e & 31)
		s = int(e>>8) & 31
	} else {
		code := int32(b.acc>>(b.n-lookahead)) & (1<<lookahead - 1)
		b.n -= lookahead
		l := lookahead
		for code > t.maxcode[l] {
			code = code<<1 | b.bits(1)
			l++
			if l > 16 {
				b.fail("invalid Huffman code")
				return 0
			}
		}
		k := t.valptr[l] + code - t.mincode[l]
		if k < 0 || int(k) >= len(t.values) {
			b.fail("invalid Huffman code")
			return 0
		}
		s = int(t.values[k])
	}
	switch {
	case s == 0:
		return 0
	case s == 16:
		return 32768
	case s > 16:
		b.fail(fmt.Sprintf("difference category %d", s))
		return 0
	}
	v := b.bits(uint(s))
	if v < 1<<(s-1) {
		v -= 1<<s - 1
	}
	return v
}

func (b *bitReader) fail(why string) {
	if b.err == nil {
		b.err = fmt.Errorf("%w: %s", ErrMalformed, why)
	}
}

func (c losslessCodec) Encode(dst, src []byte, im Image) ([]byte, Image, error) {
	if err := checkNative(src, im, c.lim); err != nil {
		return dst, im, err
	}
	if im.Photometric() == YBRFull422 {
		return dst, im, fmt.Errorf("%w: JPEG Lossless of YBR_FULL_422", ErrUnsupported)
	}
	src = byPixel(nil, src, im)
	nc, w, h := im.SamplesPerPixel, im.Columns, im.Rows
	p := max(im.BitsStored, 2)
	mask := int32(1)<<p - 1
	samples := make([]int32, w*h*nc)
	for i := range samples {
		if im.BitsAllocated == 8 {
			samples[i] = int32(src[i]) & mask
		} else {
			samples[i] = int32(binary.LittleEndian.Uint16(src[2*i:])) & mask
		}
	}
	// Differences first, with their categories counted for an optimal
	// Huffman table (K.2).
	diffs := make([]int32, len(samples))
	var freq [17]int
	for y := range h {
		for x := range w {
			for k := range nc {
				at := (y*w+x)*nc + k
				var pred int32
				switch {
				case y == 0 && x == 0:
					pred = 1 << (p - 1)
				case y == 0:
					pred = samples[at-nc]
				case x == 0:
					pred = samples[at-w*nc]
				default:
					ra, rb, rc := samples[at-nc], samples[at-w*nc], samples[at-w*nc-nc]
					switch c.predictor {
					case 1:
						pred = ra
					case 2:
						pred = rb
					case 3:
						pred = rc
					case 4:
						pred = ra + rb - rc
					case 5:
						pred = ra + (rb-rc)>>1
					case 6:
						pred = rb + (ra-rc)>>1
					case 7:
						pred = (ra + rb) >> 1
					}
				}
				// Differences are modulo 2^16 (H.1.2.1), in -32767..32768.
				d := (samples[at] - pred) & 0xFFFF
				if d > 32768 {
					d -= 65536
				}
				diffs[at] = d
				freq[category(d)]++
			}
		}
	}
	lengths := huffLengths(freq[:])
	codes, counts, symbols := canonical(lengths)

	dst = append(dst, 0xFF, 0xD8)
	// DHT: one table, class 0, id 0.
	dht := []byte{0x00}
	for _, n := range counts {
		dht = append(dht, byte(n))
	}
	dht = append(dht, symbols...)
	dst = appendSegment(dst, 0xC4, dht)
	sof := []byte{byte(p), byte(h >> 8), byte(h), byte(w >> 8), byte(w), byte(nc)}
	for k := range nc {
		sof = append(sof, byte(k+1), 0x11, 0)
	}
	dst = appendSegment(dst, 0xC3, sof)
	sos := []byte{byte(nc)}
	for k := range nc {
		sos = append(sos, byte(k+1), 0x00)
	}
	sos = append(sos, byte(c.predictor), 0, 0)
	dst = appendSegment(dst, 0xDA, sos)
	bw := bitWriter{dst: dst}
	for _, d := range diffs {
		s := category(d)
		bw.write(codes[s], lengths[s])
		if s > 0 && s < 16 {
			v := d
			if d < 0 {
				v = d + 1<<s - 1
			}
			bw.write(uint32(v)&(1<<s-1), s)
		}
	}
	dst = bw.flush()
	dst = append(dst, 0xFF, 0xD9)
	out := im
	out.PlanarConfiguration = 0
	return dst, out, nil
}

// category is the SSSS of a difference (Table H.2).
func category(d int32) int {
	if d == 32768 {
		return 16
	}
	if d < 0 {
		d = -d
	}
	s := 0
	for d > 0 {
		s++
		d >>= 1
	}
	return s
}

func appendSegment(dst []byte, marker byte, seg []byte) []byte {
	dst = append(dst, 0xFF, marker, byte((len(seg)+2)>>8), byte(len(seg)+2))
	return append(dst, seg...)
}

// huffLengths returns code lengths of at most 16 bits for symbols of the
// given frequencies, by the procedure of ISO/IEC 10918-1 K.2, which
// reserves the all-ones code.
func huffLengths(freq []int) []int {
	n := len(freq)
	f := make([]int, n+1)
	copy(f, freq)
	f[n] = 1 // the reserved symbol
	size := make([]int, n+1)
	others := make([]int, n+1)
	for i := range others {
		others[i] = -1
	}
	for {
		v1, v2 := -1, -1
		for i, x := range f {
			if x > 0 && (v1 < 0 || x <= f[v1]) {
				v1 = i
			}
		}
		for i, x := range f {
			if x > 0 && i != v1 && (v2 < 0 || x <= f[v2]) {
				v2 = i
			}
		}
		if v2 < 0 {
			break
		}
		f[v1] += f[v2]
		f[v2] = 0
		size[v1]++
		for others[v1] >= 0 {
			v1 = others[v1]
			size[v1]++
		}
		others[v1] = v2
		size[v2]++
		for others[v2] >= 0 {
			v2 = others[v2]
			size[v2]++
		}
	}
	var bits [64]int
	for _, s := range size {
		if s > 0 {
			bits[s]++
		}
	}
	for i := 63; i > 16; i-- {
		for bits[i] > 0 {
			j := i - 2
			for bits[j] == 0 {
				j--
			}
			bits[i] -= 2
			bits[i-1]++
			bits[j+1] += 2
			bits[j]--
		}
	}
	for i := 16; i > 0; i-- {
		if bits[i] > 0 {
			bits[i]-- // the reserved code
			break
		}
	}
	// Assign the lengths to symbols, most frequent first.
	order := make([]int, 0, n)
	for i := range n {
		if freq[i] > 0 {
			order = append(order, i)
		}
	}
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && freq[order[j]] > freq[order[j-1]]; j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	lengths := make([]int, n)
	k := 0
	for l := 1; l <= 16; l++ {
		for range bits[l] {
			lengths[order[k]] = l
			k++
		}
	}
	return lengths
}

// canonical returns the codes of the given lengths as Annex C assigns
// them, with the counts and symbols a DHT segment lists.
func canonical(lengths []int) (codes []uint32, counts [16]int, symbols []byte) {
	codes = make([]uint32, len(lengths))
	code := uint32(0)
	for l := 1; l <= 16; l++ {
		for s, n := range lengths {
			if n == l {
				codes[s] = code
				code++
				counts[l-1]++
				symbols = append(symbols, byte(s))
			}
		}
		code <<= 1
	}
	return codes, counts, symbols
}

// bitWriter appends bits to a JPEG entropy-coded segment, stuffing a zero
// after each 0xFF.
type bitWriter struct {
	dst []byte
	acc uint64
	n   uint
}

func (b *bitWriter) write(v uint32, n int) {
	b.acc = b.acc<<uint(n) | uint64(v)
	b.n += uint(n)
	for b.n >= 8 {
		c := byte(b.acc >> (b.n - 8))
		b.dst = append(b.dst, c)
		if c == 0xFF {
			b.dst = append(b.dst, 0)
		}
		b.n -= 8
	}
}

// flush pads the last byte with ones (F.1.2.3) and returns the segment.
func (b *bitWriter) flush() []byte {
	if b.n > 0 {
		b.write(1<<(8-b.n)-1, int(8-b.n))
	}
	return b.dst
}
