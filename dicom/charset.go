package dicom

import (
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/japanese"
	"golang.org/x/text/encoding/korean"
	"golang.org/x/text/encoding/simplifiedchinese"
	"golang.org/x/text/encoding/unicode"
)

// A textDecoder turns text values into UTF-8 as one value of Specific
// Character Set (0008,0005) says: PS3.3 §C.12.1.1.2 names the character
// sets, PS3.5 §6.1 says how values are written in them, with or without
// the code extensions of ISO/IEC 2022. A nil *textDecoder, for a data set
// without Specific Character Set or with none that it knows, leaves the
// bytes as they are.
type textDecoder struct {
	// plain decodes whole values where code extensions are not in use:
	// a single character set without them (ISO_IR 100, ISO_IR 192, ...).
	plain encoding.Encoding
	// Otherwise values are decoded as ISO/IEC 2022 text. g0 and g1 are
	// the designations of value 1 of Specific Character Set, in force at
	// the start of each value and again after each delimiter, where the
	// writer must have returned to them (PS3.5 §6.1.2.5.3).
	g0, g1 *graphicSet
	// spare decodes GR bytes while no G1 set is designated: the first
	// G1 set that Specific Character Set names, so that text written
	// without the escape sequences (or without repeating them after a
	// delimiter) still reads as meant, else the default repertoire's
	// stand-in for stray bytes, Windows-1252.
	spare *graphicSet
}

// A graphicSet is a character set that an escape sequence designates as
// G0, used through the GL bytes 0x21–0x7E, or as G1, used through the GR
// bytes 0xA0–0xFF (PS3.5 §6.1.2.5: DICOM uses no shift functions, so G0 is
// always invoked in GL and G1 in GR). The C1 bytes 0x80–0x9F, which DICOM
// text does not use, go to G1 too, as they went to the 8-bit character
// sets before code extensions were decoded here.
type graphicSet struct {
	g1 bool
	// double sets take two bytes a character; the decoder pairs GL bytes
	// itself, and leaves GR bytes to decode.
	double bool
	// decode appends the UTF-8 of run, bytes of this set as the value
	// has them.
	decode func(dst, run []byte) []byte
}

// A charsetTerm is what one Defined Term of Specific Character Set means.
type charsetTerm struct {
	// plain decodes the text when the term is the only value and uses
	// no code extensions ("ISO_IR ..." and the multi-byte sets).
	plain encoding.Encoding
	// alone marks the multi-byte sets that exclude code extensions
	// (PS3.3 Table C.12-5): UTF-8, GB 18030 and GBK.
	alone bool
	// g0 and g1 are the sets the term designates with code extensions.
	g0, g1 *graphicSet
}

var (
	// ISO-IR 6, ASCII. ISO-IR 14, JIS X 0201 Romaji, the G0 set of
	// ISO 2022 IR 13, differs only in 0x5C (YEN SIGN) and 0x7E
	// (OVERLINE); it is read as ASCII, as Shift_JIS decoders read it
	// (pydicom's too), so that 0x5C stays the value delimiter.
	setASCII = &graphicSet{decode: func(dst, run []byte) []byte { return append(dst, run...) }}
	// JIS X 0208 and JIS X 0212 are G0 sets; EUC-JP holds them in GR,
	// JIS X 0212 behind the single shift 0x8F.
	setJISX0208 = &graphicSet{double: true, decode: func(dst, run []byte) []byte {
		b := make([]byte, len(run))
		for i, c := range run {
			b[i] = c | 0x80
		}
		return decodeBytes(dst, japanese.EUCJP, b)
	}}
	setJISX0212 = &graphicSet{double: true, decode: func(dst, run []byte) []byte {
		b := make([]byte, 0, len(run)/2*3)
		for i := 0; i+1 < len(run); i += 2 {
			b = append(b, 0x8F, run[i]|0x80, run[i+1]|0x80)
		}
		return decodeBytes(dst, japanese.EUCJP, b)
	}}
	// JIS X 0201 katakana. Shift_JIS has them as the same single bytes,
	// and reads its double-byte characters too: text that is Shift_JIS
	// under an ISO 2022 IR 13 label keeps what it can.
	setKatakana = &graphicSet{g1: true, decode: decoderOf(japanese.ShiftJIS)}
	// KS X 1001 and GB 2312 are G1 sets, as in EUC-KR and GBK.
	setKSX1001 = &graphicSet{g1: true, double: true, decode: decoderOf(korean.EUCKR)}
	setGB2312  = &graphicSet{g1: true, double: true, decode: decoderOf(simplifiedchinese.GBK)}
	// setWindows1252 stands in for G1 where Specific Character Set
	// names none. The default repertoire has no GR bytes; stray ones
	// read as ISO 8859-1, as they always have (see charsetTerms).
	setWindows1252 = singleByteSet(charmap.Windows1252)
)

// charsetTerms are the Defined Terms of Specific Character Set (PS3.3
// Tables C.12-2 to C.12-5), and escapes the escape sequences that
// designate their sets, less the ESC (Tables C.12-3 and C.12-4).
//
// The single-byte sets are those suyashkumar/dicom decoded with, as the
// WHATWG Encoding Standard reads their labels: ISO 8859-1 and -9 as their
// Windows supersets, which differ only in 0x80–0x9F, C1 controls that
// DICOM text does not use, where they give the characters that writers
// labelling Windows text as ISO 8859 meant. TIS 620 (ISO_IR 166), which
// that decoder failed on, is read as its superset Windows-874 likewise.
var charsetTerms, escapes = func() (map[string]charsetTerm, map[string]*graphicSet) {
	terms := map[string]charsetTerm{
		"":                {plain: charmap.Windows1252, g0: setASCII},
		"ISO_IR 6":        {plain: charmap.Windows1252, g0: setASCII},
		"ISO 2022 IR 6":   {g0: setASCII},
		"ISO_IR 13":       {plain: japanese.ShiftJIS, g0: setASCII, g1: setKatakana},
		"ISO 2022 IR 13":  {g0: setASCII, g1: setKatakana},
		"ISO 2022 IR 87":  {g0: setJISX0208},
		"ISO 2022 IR 159": {g0: setJISX0212},
		"ISO 2022 IR 149": {g1: setKSX1001},
		"ISO 2022 IR 58":  {g1: setGB2312},
		"ISO_IR 192":      {plain: unicode.UTF8, alone: true},
		"GB18030":         {plain: simplifiedchinese.GB18030, alone: true},
		"GBK":             {plain: simplifiedchinese.GBK, alone: true},
	}
	escapes := map[string]*graphicSet{
		"(B":  setASCII,
		"(J":  setASCII, // ISO-IR 14
		")I":  setKatakana,
		"$B":  setJISX0208,
		"$(D": setJISX0212,
		"$)C": setKSX1001,
		"$)A": setGB2312,
	}
	for _, s := range []struct {
		ir, esc string
		cm      *charmap.Charmap
	}{
		{"100", "-A", charmap.Windows1252},
		{"101", "-B", charmap.ISO8859_2},
		{"109", "-C", charmap.ISO8859_3},
		{"110", "-D", charmap.ISO8859_4},
		{"144", "-L", charmap.ISO8859_5},
		{"127", "-G", charmap.ISO8859_6},
		{"126", "-F", charmap.ISO8859_7},
		{"138", "-H", charmap.ISO8859_8},
		{"148", "-M", charmap.Windows1254},
		{"203", "-b", charmap.ISO8859_15},
		{"166", "-T", charmap.Windows874},
	} {
		set := singleByteSet(s.cm)
		terms["ISO_IR "+s.ir] = charsetTerm{plain: s.cm, g0: setASCII, g1: set}
		terms["ISO 2022 IR "+s.ir] = charsetTerm{g0: setASCII, g1: set}
		escapes[s.esc] = set
	}
	return terms, escapes
}()

func singleByteSet(cm *charmap.Charmap) *graphicSet {
	return &graphicSet{g1: true, decode: func(dst, run []byte) []byte {
		for _, c := range run {
			dst = utf8.AppendRune(dst, cm.DecodeByte(c))
		}
		return dst
	}}
}

func decoderOf(enc encoding.Encoding) func(dst, run []byte) []byte {
	return func(dst, run []byte) []byte { return decodeBytes(dst, enc, run) }
}

// decodeBytes appends b decoded from enc, whose decoders replace what they
// cannot decode with U+FFFD.
func decodeBytes(dst []byte, enc encoding.Encoding, b []byte) []byte {
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return append(dst, string(utf8.RuneError)...)
	}
	return append(dst, out...)
}

// newTextDecoder returns the decoder for the values of a Specific
// Character Set, or nil if it names no character set this code knows.
// Values it does not know are ignored. An empty Specific Character Set is
// the default repertoire.
func newTextDecoder(values []string) *textDecoder {
	if len(values) == 0 {
		values = []string{""}
	}
	var known []charsetTerm
	for _, v := range values {
		if t, ok := charsetTerms[v]; ok {
			known = append(known, t)
		}
	}
	if len(known) == 0 {
		return nil
	}
	for _, t := range known {
		if t.alone {
			// These exclude code extensions; a writer that lists
			// one with other values meant it.
			return &textDecoder{plain: t.plain}
		}
	}
	if len(values) == 1 && known[0].plain != nil {
		return &textDecoder{plain: known[0].plain}
	}
	// Value 1 sets the initial designations; an empty one is the
	// default repertoire (PS3.5 §6.1.2.5.1). A double-byte G0 set is
	// never in force at the start: it would take every ASCII letter for
	// half a character.
	first := charsetTerms[values[0]]
	d := &textDecoder{g0: setASCII, g1: first.g1}
	if first.g0 != nil && !first.g0.double {
		d.g0 = first.g0
	}
	d.spare = setWindows1252
	for _, t := range known {
		if t.g1 != nil {
			d.spare = t.g1
			break
		}
	}
	return d
}

const esc = 0x1B

// decode returns text, the value of an element of VR vr, in UTF-8.
func (d *textDecoder) decode(vr, text string) string {
	if d == nil {
		return text
	}
	i := 0
	for i < len(text) && text[i] < utf8.RuneSelf && text[i] != esc {
		i++
	}
	if i == len(text) {
		return text // the same in every character set DICOM has
	}
	if d.plain != nil {
		return string(decodeBytes(nil, d.plain, []byte(text)))
	}
	return string(d.decodeISO2022(make([]byte, 0, len(text)+len(text)/2), []byte(text), delimiters(vr)))
}

// delimiters are the characters of a value of vr before which the writer
// must have returned to the initial designations (PS3.5 §6.1.2.5.3): the
// backslash between values and, in PN, the "^" between components and
// the "=" between component groups. Control characters are delimiters in
// every VR.
func delimiters(vr string) string {
	switch {
	case vr == "PN":
		return `\^=`
	case singleValued(vr):
		return ""
	}
	return `\`
}

// decodeISO2022 appends text decoded as ISO/IEC 2022 8-bit text in d's
// character sets.
func (d *textDecoder) decodeISO2022(dst, text []byte, delims string) []byte {
	g0, g1 := d.g0, d.g1
	for i := 0; i < len(text); {
		c := text[i]
		switch {
		case c == esc:
			set, n := escapeSequence(text[i:])
			switch {
			case set == nil:
				// A set this code does not know: its text cannot be
				// read, and its escape sequence is not text.
				dst = append(dst, string(utf8.RuneError)...)
			case set.g1:
				g1 = set
			default:
				g0 = set
			}
			i += n

		case c >= 0x80:
			j := i + 1
			for j < len(text) && text[j] >= 0x80 {
				j++
			}
			set := g1
			if set == nil {
				set = d.spare
			}
			dst = set.decode(dst, text[i:j])
			i = j

		case g0.double && c > 0x20 && c < 0x7F:
			j := i
			for j+1 < len(text) && gl(text[j]) && gl(text[j+1]) {
				j += 2
			}
			if j > i {
				dst = g0.decode(dst, text[i:j])
				i = j
				continue
			}
			// A byte without its pair: a delimiter before which the
			// writer did not switch back, or lost.
			if strings.IndexByte(delims, c) >= 0 {
				dst = append(dst, c)
				g0, g1 = d.g0, d.g1
			} else {
				dst = append(dst, string(utf8.RuneError)...)
			}
			i++

		default:
			// Control characters, SPACE, DEL, and the single-byte G0
			// sets, which are ASCII here (see setASCII).
			dst = append(dst, c)
			if c < 0x20 || strings.IndexByte(delims, c) >= 0 {
				g0, g1 = d.g0, d.g1
			}
			i++
		}
	}
	return dst
}

// gl reports whether c is a GL byte of a 94- or 94²-character set.
func gl(c byte) bool { return c > 0x20 && c < 0x7F }

// escapeSequence returns the set that the escape sequence at the start of
// text designates and the sequence's length: ESC, intermediate bytes
// 0x20–0x2F, a final byte 0x30–0x7E. The set is nil
// for a sequence that designates no set this code knows, and for an ESC
// that begins no sequence, whose length is then 1.
func escapeSequence(text []byte) (*graphicSet, int) {
	n := 1
	for n < len(text) && text[n] >= 0x20 && text[n] <= 0x2F {
		n++
	}
	if n == len(text) || text[n] < 0x30 || text[n] > 0x7E {
		return nil, 1
	}
	return escapes[string(text[1:n+1])], n + 1
}
