package codec

import (
	"encoding/binary"
	"fmt"
)

// checkOpenJPH checks an HTJ2K code stream for what OpenJPH 0.9 reads
// without checking before it decodes it. Read against its code stream
// parser, OpenJPH 0.9:
//
//   - keeps the quantization of up to 32 decomposition levels, the
//     precinct sizes of up to 32 and up to as many QCC segments as there
//     are components in arrays of those sizes, and fills them from
//     whatever lengths the segments declare;
//   - asserts that the progression order is one of the five, that
//     the quantization style agrees with the wavelet (none for 5/3,
//     expounded for 9/7) for every component, and that the code-block
//     decoder meets no more magnitude bits than it holds;
//   - indexes its tiles by the tile-part's Isot having checked only
//     that it is not more than the number of tiles;
//   - takes a Psot of 0 (the last tile-part runs to the end) as an
//     empty tile-part and then reads on with a length that wrapped
//     around;
//   - finds markers by searching for 0xFF, so that a marker it does not
//     know makes it read on inside that segment's body;
//   - and skips, with a warning, COC, RGN, POC, PPM and PPT, and COD,
//     QCD and QCC in tile-part headers, whose code streams it then
//     decodes to the wrong pixels.
//
// So the main and tile-part headers must hold only the markers OpenJPH
// knows, in segments that fit; COD, QCD and QCC must hold what it can
// keep; every tile-part must name an existing tile, in order, and reach
// its SOD within its length. What this cannot check, the packet headers
// and code-blocks, the decoder's assertion trap (assert_trap.c) turns
// into an error. It returns the code stream to decode: cs, or a copy
// whose last tile-part states its length when Psot was 0.
func checkOpenJPH(cs []byte, siz sizInfo) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: HTJ2K code stream: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	unsupported := func(format string, args ...any) error {
		return fmt.Errorf("%w: HTJ2K code stream: %s", ErrUnsupported, fmt.Sprintf(format, args...))
	}
	pos := 4 + int(binary.BigEndian.Uint16(cs[4:])) // after SOC and SIZ
	var cod *codInfo
	qcdSeen := false
	var qccs []int
	type quant struct{ style, levels int }
	var quants []quant // of QCD and every QCC, checked once COD is known
	for {
		if pos+4 > len(cs) || cs[pos] != 0xFF {
			return nil, bad("no marker at offset %d of the main header", pos)
		}
		m := cs[pos+1]
		if m == 0x90 { // SOT
			break
		}
		n := int(binary.BigEndian.Uint16(cs[pos+2:]))
		if n < 2 || pos+2+n > len(cs) {
			return nil, bad("marker %02X at offset %d overruns the code stream", m, pos)
		}
		seg := cs[pos+4 : pos+2+n]
		switch m {
		case 0x50: // CAP: only the HTJ2K capability, Part 15 Ccap
			if len(seg) != 6 || binary.BigEndian.Uint32(seg) != 0x00020000 {
				return nil, unsupported("capabilities (CAP) other than Part 15's")
			}
		case 0x52: // COD
			if cod != nil {
				return nil, bad("a second COD")
			}
			c, err := parseCOD(seg, siz.components)
			if err != nil {
				return nil, err
			}
			cod = c
		case 0x5C: // QCD
			if qcdSeen {
				return nil, bad("a second QCD")
			}
			qcdSeen = true
			style, levels, err := parseQuant(seg, 0)
			if err != nil {
				return nil, err
			}
			quants = append(quants, quant{style, levels})
		case 0x5D: // QCC
			idxLen := 1
			if siz.components >= 257 {
				idxLen = 2
			}
			if len(seg) < idxLen {
				return nil, bad("QCC of %d bytes", len(seg))
			}
			c := int(seg[0])
			if idxLen == 2 {
				c = int(binary.BigEndian.Uint16(seg))
			}
			for _, k := range qccs {
				if k == c {
					return nil, bad("two QCC of component %d", c)
				}
			}
			if c >= siz.components {
				return nil, bad("QCC of component %d of %d", c, siz.components)
			}
			qccs = append(qccs, c)
			style, levels, err := parseQuant(seg, idxLen)
			if err != nil {
				return nil, err
			}
			quants = append(quants, quant{style, levels})
		case 0x55, 0x56, 0x57, 0x59, 0x63, 0x64:
			// TLM, PRF, PLM, CPF, CRG, COM: skipped, harmlessly.
		case 0x53, 0x5E, 0x5F, 0x60:
			return nil, unsupported("marker %s, which OpenJPH 0.9 ignores", markerName(m))
		default:
			return nil, bad("marker %02X in the main header", m)
		}
		pos += 2 + n
	}
	if cod == nil || !qcdSeen {
		return nil, bad("main header without COD or QCD")
	}
	for _, q := range quants {
		if q.levels != cod.levels {
			return nil, bad("quantization for %d decomposition levels with %d in COD", q.levels, cod.levels)
		}
		if !(cod.reversible && q.style == 0 || !cod.reversible && q.style == 2) {
			return nil, unsupported("wavelet %s with quantization style %d", map[bool]string{true: "5/3", false: "9/7"}[cod.reversible], q.style)
		}
	}
	return checkOpenJPHTileParts(cs, pos, siz)
}

// sizInfo is what the checks take from SIZ.
type sizInfo struct {
	components int
	tiles      int
}

// codInfo is what the checks take from COD.
type codInfo struct {
	levels     int
	reversible bool
}

// parseCOD checks the body of a COD segment (A.6.1).
func parseCOD(seg []byte, components int) (*codInfo, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: HTJ2K COD: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if len(seg) < 10 {
		return nil, bad("%d bytes", len(seg))
	}
	scod, order, layers, mct := seg[0], seg[1], binary.BigEndian.Uint16(seg[2:]), seg[4]
	levels, xcb, ycb, style, wavelet := int(seg[5]), int(seg[6]), int(seg[7]), seg[8], seg[9]
	switch {
	case scod&^7 != 0:
		return nil, bad("coding style %02X", scod)
	case order > 4:
		return nil, bad("progression order %d", order)
	case layers == 0:
		return nil, bad("no quality layers")
	case layers > 1:
		return nil, fmt.Errorf("%w: HTJ2K of %d quality layers", ErrUnsupported, layers)
	case mct > 1 || mct == 1 && components < 3:
		return nil, bad("multiple component transform %d of %d components", mct, components)
	case levels > 32:
		return nil, bad("%d decomposition levels", levels)
	case xcb > 8 || ycb > 8 || xcb+ycb > 8:
		return nil, bad("code-blocks of 2^%d x 2^%d", xcb+2, ycb+2)
	case style&0x40 == 0 || style&^0x48 != 0:
		return nil, fmt.Errorf("%w: HTJ2K code-block style %02X", ErrUnsupported, style)
	case wavelet > 1:
		return nil, bad("wavelet %d", wavelet)
	}
	want := 10
	if scod&1 != 0 {
		want += levels + 1
	}
	if len(seg) != want {
		return nil, bad("%d bytes for %d levels", len(seg), levels)
	}
	if scod&1 != 0 {
		for r, p := range seg[10:] {
			if r > 0 && (p&0x0F == 0 || p>>4 == 0) {
				return nil, bad("precinct size %02X at resolution %d", p, r)
			}
		}
	}
	return &codInfo{levels: levels, reversible: wavelet == 1}, nil
}

// maxMagnitudeBits bounds the magnitude bit-planes of a sub-band
// (guard bits + exponent - 1): OpenJPH 0.9 decodes code-blocks into 32-bit
// samples.
const maxMagnitudeBits = 30

// parseQuant checks the body of a QCD or QCC segment (A.6.4, A.6.5)
// whose style byte follows skip bytes of component index, and returns
// its style and the decomposition levels it quantizes.
func parseQuant(seg []byte, skip int) (style, levels int, err error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: HTJ2K quantization: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	if len(seg) < skip+1 {
		return 0, 0, bad("%d bytes", len(seg))
	}
	sq := seg[skip]
	guard := int(sq >> 5)
	body := seg[skip+1:]
	switch style = int(sq & 0x1F); style {
	case 0:
		if len(body) == 0 || (len(body)-1)%3 != 0 {
			return 0, 0, bad("%d bytes of exponents", len(body))
		}
		for _, b := range body {
			if guard+int(b>>3)-1 > maxMagnitudeBits {
				return 0, 0, bad("%d magnitude bits", guard+int(b>>3)-1)
			}
		}
		levels = (len(body) - 1) / 3
	case 2:
		if len(body) == 0 || len(body)%2 != 0 || (len(body)/2-1)%3 != 0 {
			return 0, 0, bad("%d bytes of step sizes", len(body))
		}
		for i := 0; i < len(body); i += 2 {
			if e := int(body[i] >> 3); guard+e-1 > maxMagnitudeBits {
				return 0, 0, bad("%d magnitude bits", guard+e-1)
			}
		}
		levels = (len(body)/2 - 1) / 3
	default:
		return 0, 0, fmt.Errorf("%w: HTJ2K quantization style %d", ErrUnsupported, style)
	}
	if levels > 32 {
		return 0, 0, bad("%d decomposition levels", levels)
	}
	return style, levels, nil
}

// checkOpenJPHTileParts checks the tile-parts from pos, the first SOT.
func checkOpenJPHTileParts(cs []byte, pos int, siz sizInfo) ([]byte, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: HTJ2K code stream: %s", ErrMalformed, fmt.Sprintf(format, args...))
	}
	parts := make(map[int]int) // tile-parts seen, by tile
	for {
		if pos+2 <= len(cs) && cs[pos] == 0xFF && cs[pos+1] == 0xD9 { // EOC
			return cs, nil
		}
		if pos+14 > len(cs) || cs[pos] != 0xFF || cs[pos+1] != 0x90 || binary.BigEndian.Uint16(cs[pos+2:]) != 10 {
			return nil, bad("no SOT where a tile-part starts at offset %d", pos)
		}
		tile := int(binary.BigEndian.Uint16(cs[pos+4:]))
		psot := int64(binary.BigEndian.Uint32(cs[pos+6:]))
		part, count := int(cs[pos+10]), int(cs[pos+11])
		switch {
		case tile >= siz.tiles:
			return nil, bad("tile-part of tile %d of %d", tile, siz.tiles)
		case part != parts[tile]:
			return nil, bad("tile-part %d of tile %d after %d of them", part, tile, parts[tile])
		case count != 0 && part >= count:
			return nil, bad("tile-part %d of %d", part, count)
		}
		parts[tile]++
		if psot == 0 {
			// The last tile-part, running to EOC: OpenJPH 0.9 needs its
			// length.
			end := len(cs)
			if end-pos >= 2 && cs[end-2] == 0xFF && cs[end-1] == 0xD9 {
				end -= 2
			}
			psot = int64(end - pos)
			patched := append([]byte(nil), cs...)
			binary.BigEndian.PutUint32(patched[pos+6:], uint32(psot))
			cs = patched
		}
		if psot < 14 || int64(pos)+psot > int64(len(cs)) {
			return nil, bad("tile-part of %d bytes at offset %d", psot, pos)
		}
		end := pos + int(psot)
		p := pos + 12
		for {
			if p+2 > end || cs[p] != 0xFF {
				return nil, bad("tile-part header without SOD at offset %d", p)
			}
			m := cs[p+1]
			if m == 0x93 { // SOD
				break
			}
			switch {
			case m == 0x58 || m == 0x64:
				// PLT, COM: skipped, harmlessly.
			case m == 0x5F || m == 0x61 || part == 0 && (m == 0x52 || m == 0x53 || m == 0x5C || m == 0x5D || m == 0x5E):
				return nil, fmt.Errorf("%w: HTJ2K code stream: marker %s in a tile-part header, which OpenJPH 0.9 ignores", ErrUnsupported, markerName(m))
			default:
				return nil, bad("marker %02X in a tile-part header", m)
			}
			if p+4 > end {
				return nil, bad("marker segment overruns its tile-part at offset %d", p)
			}
			n := int(binary.BigEndian.Uint16(cs[p+2:]))
			if n < 2 || p+2+n > end {
				return nil, bad("marker segment overruns its tile-part at offset %d", p)
			}
			p += 2 + n
		}
		pos = end
		if pos == len(cs) {
			return cs, nil
		}
	}
}

// markerName names the JPEG 2000 markers the checks refuse.
func markerName(m byte) string {
	names := map[byte]string{0x52: "COD", 0x53: "COC", 0x5C: "QCD", 0x5D: "QCC", 0x5E: "RGN", 0x5F: "POC", 0x60: "PPM", 0x61: "PPT"}
	if s, ok := names[m]; ok {
		return s
	}
	return fmt.Sprintf("%02X", m)
}
