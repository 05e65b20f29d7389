package dicom

import (
	"cmp"
	"compress/flate"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"

	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// Character sets named here for their use elsewhere; Encode writes these
// and the other single-byte sets of PS3.3 Table C.12-2 (see
// EncodeOptions). The default repertoire is also accepted as "" and is
// what an absent Specific Character Set means.
const (
	CharsetDefault = "ISO_IR 6"
	CharsetLatin1  = "ISO_IR 100"
	CharsetUTF8    = "ISO_IR 192"
)

// EncodeOptions control how Encode writes a Dataset.
type EncodeOptions struct {
	// CharacterSet is the Specific Character Set the text is written in:
	// "" or CharsetDefault (ASCII); one of the ISO 8859 sets without code
	// extensions: ISO_IR 100 (Latin-1), 101 (Latin-2), 109 (Latin-3), 110
	// (Latin-4), 144 (Cyrillic), 127 (Arabic), 126 (Greek), 138 (Hebrew),
	// 148 (Latin-5) or 203 (Latin-9); or CharsetUTF8. Others (code
	// extensions, the multi-byte sets) are ErrUnsupported.
	CharacterSet string
}

// Encode writes d to w in transfer syntax ts: Implicit VR Little Endian,
// Explicit VR Little or Big Endian, or Deflated Explicit VR Little Endian;
// other syntaxes are ErrUnsupported. It is meant for the small data sets
// of queries and their responses, whose values are held in memory.
//
// Elements are written in tag order, each from its Values as Dataset
// documents them: text in opts.CharacterSet, padded to an even length (UI
// with NUL, other text with a space), multiple values joined by
// backslashes; US, SS, UL, SL, FL, FD, SV and UV from their decimal text
// into binary in the syntax's byte order (or from Binary.Data, little
// endian, when they have no Values); AT from eight hexadecimal digits;
// the binary VRs from Binary.Data, swapped in big endian, or with zero
// length when the value is not held in memory. Sequences and items are
// written with undefined length. Group length elements are left out.
//
// Specific Character Set (0008,0005) is written as opts.CharacterSet says,
// replacing whatever d carries, and left out of items, whose text is all
// in that one character set. For the default repertoire it is left out,
// or written empty if d carries it, so that a response still holds every
// key the request asked for.
//
// Only the VRs that Specific Character Set applies to (SH, LO, ST, LT, PN,
// UC, UT) are converted; the text of every other VR must be ASCII. A value
// that cannot be written (a character outside the character set, a number
// that does not parse or fit its VR, a value too long for its length
// field) is an error naming the element. Encode checks everything before
// it writes: on error, nothing has been written to w.
func (d *Dataset) Encode(w io.Writer, ts uid.TransferSyntax, opts EncodeOptions) error {
	b, err := d.encode(ts, opts)
	if err != nil {
		return err
	}
	if !ts.Deflated {
		_, err = w.Write(b)
		return err
	}
	fw, _ := flate.NewWriter(w, flate.DefaultCompression) // the level is valid
	if _, err := fw.Write(b); err != nil {
		return err
	}
	return fw.Close()
}

// encode returns d encoded, not deflated. The whole encoding is held
// because it must be checked before a byte of it is written.
func (d *Dataset) encode(ts uid.TransferSyntax, opts EncodeOptions) ([]byte, error) {
	if !Transcodable(ts.UID) {
		return nil, fmt.Errorf("%w: encoding in %s", ErrUnsupported, uid.Name(ts.UID))
	}
	cs, ok := lookupCharset(opts.CharacterSet)
	if !ok {
		return nil, fmt.Errorf("%w: character set %q", ErrUnsupported, opts.CharacterSet)
	}
	e := encoder{
		sx: syntax{explicit: ts.UID != uid.ImplicitVRLittleEndian, bigEndian: ts.BigEndian},
		cs: cs,
	}
	top := d.sorted()
	for i := range top {
		if g := top[i].Tag.Group(); g == 0x0000 || g == 0x0002 {
			return nil, fmt.Errorf("dicom: encode %v: group %04X does not belong in a data set", top[i].Tag, g)
		}
	}
	carried := false
	top = slices.DeleteFunc(top, func(el *Element) bool {
		if el.Tag == tag.SpecificCharacterSet {
			carried = true
			return true
		}
		return false
	})
	if cs.name != "" || carried {
		scs := &Element{Tag: tag.SpecificCharacterSet, VR: "CS"}
		if cs.name != "" {
			scs.Values = []string{cs.name}
		}
		i, _ := slices.BinarySearchFunc(top, scs.Tag, func(el *Element, t tag.Tag) int { return cmp.Compare(el.Tag, t) })
		top = slices.Insert(top, i, scs)
	}
	return e.appendElements(nil, top)
}

// sorted returns pointers to the elements of d in tag order.
func (d *Dataset) sorted() []*Element {
	if d == nil {
		return nil
	}
	out := make([]*Element, len(d.Elements))
	for i := range d.Elements {
		out[i] = &d.Elements[i]
	}
	slices.SortStableFunc(out, func(a, b *Element) int { return cmp.Compare(a.Tag, b.Tag) })
	return out
}

// charset is a character set Encode writes text in.
type charset struct {
	name string // the value of Specific Character Set; "" for the default
	// encode converts UTF-8 text; ok is false if a character is not
	// representable.
	encode func(dst []byte, s string) (out []byte, bad rune, ok bool)
}

// singleByteCharset returns the encoding of a character set of PS3.3
// Table C.12-2, single byte without code extensions, by the defined term
// of Specific Character Set: the ISO 8859 part whose G1 set PS3.3 names
// for it, or nil. (ISO_IR 13 and 166 are left out: golang.org/x/text has
// no encoder of exactly JIS X 0201 or TIS 620.)
func singleByteCharset(name string) *charmap.Charmap {
	switch name {
	case "ISO_IR 100":
		return charmap.ISO8859_1
	case "ISO_IR 101":
		return charmap.ISO8859_2
	case "ISO_IR 109":
		return charmap.ISO8859_3
	case "ISO_IR 110":
		return charmap.ISO8859_4
	case "ISO_IR 144":
		return charmap.ISO8859_5
	case "ISO_IR 127":
		return charmap.ISO8859_6
	case "ISO_IR 126":
		return charmap.ISO8859_7
	case "ISO_IR 138":
		return charmap.ISO8859_8
	case "ISO_IR 148":
		return charmap.ISO8859_9
	case "ISO_IR 203":
		return charmap.ISO8859_15
	}
	return nil
}

// lookupCharset returns the character set named by a value of Specific
// Character Set, if Encode writes it.
func lookupCharset(name string) (charset, bool) {
	switch name {
	case "", CharsetDefault:
		return charset{"", appendASCII}, true
	case CharsetUTF8:
		return charset{CharsetUTF8, appendUTF8}, true
	}
	if cm := singleByteCharset(name); cm != nil {
		return charset{name, appendCharmap(cm)}, true
	}
	return charset{}, false
}

func appendASCII(dst []byte, s string) ([]byte, rune, bool) {
	for _, r := range s {
		if r >= utf8.RuneSelf {
			return dst, r, false
		}
	}
	return append(dst, s...), 0, true
}

// appendCharmap returns the encoder of text in the single-byte character
// set cm, with golang.org/x/text's table, which reports what it cannot
// map rather than replace it.
func appendCharmap(cm *charmap.Charmap) func(dst []byte, s string) ([]byte, rune, bool) {
	return func(dst []byte, s string) ([]byte, rune, bool) {
		start := len(dst)
		for _, r := range s {
			b, ok := cm.EncodeRune(r)
			if !ok || r == utf8.RuneError {
				return dst[:start], r, false
			}
			dst = append(dst, b)
		}
		return dst, 0, true
	}
}

func appendUTF8(dst []byte, s string) ([]byte, rune, bool) {
	if !utf8.ValidString(s) {
		return dst, utf8.RuneError, false
	}
	return append(dst, s...), 0, true
}

// ResponseCharset chooses the Specific Character Set of a response to a
// requester that asked in requested (its own (0008,0005) values): the
// requester's, if Encode supports it and every value of d that it applies
// to is representable in it, otherwise ISO_IR 192 (UTF-8), which holds
// every value. No Specific Character Set at all, "" or ISO_IR 6, is the
// default repertoire and is returned as "".
func ResponseCharset(requested []string, d *Dataset) string {
	var want string
	switch {
	case len(requested) == 0:
	case len(requested) == 1:
		want = strings.TrimSpace(requested[0])
	default:
		return CharsetUTF8 // code extensions, which Encode does not write
	}
	cs, ok := lookupCharset(want)
	if !ok {
		return CharsetUTF8
	}
	if !representable(d, cs, 0) {
		return CharsetUTF8
	}
	return cs.name
}

// representable reports whether every value of d that Specific Character
// Set applies to can be written in cs.
func representable(d *Dataset, cs charset, depth int) bool {
	if d == nil || depth > maxTranscodeDepth {
		return d == nil
	}
	var scratch [64]byte
	for i := range d.Elements {
		el := &d.Elements[i]
		if el.VR == "SQ" {
			for _, it := range el.Items {
				if !representable(it, cs, depth+1) {
					return false
				}
			}
			continue
		}
		if !usesCharset(el.VR) {
			continue
		}
		for _, v := range el.Values {
			if _, _, ok := cs.encode(scratch[:0], v); !ok {
				return false
			}
		}
	}
	return true
}

// usesCharset reports whether Specific Character Set applies to the text
// of vr; the other text VRs are restricted to the default repertoire
// (PS3.5 §6.1.2.3).
func usesCharset(vr string) bool {
	switch vr {
	case "SH", "LO", "ST", "LT", "PN", "UC", "UT":
		return true
	}
	return false
}

// textVR reports whether values of vr are character strings.
func textVR(vr string) bool {
	switch vr {
	case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT":
		return true
	}
	return false
}

// singleValued reports whether vr has one value that may contain
// backslashes (PS3.5 §6.2).
func singleValued(vr string) bool {
	return vr == "LT" || vr == "ST" || vr == "UT" || vr == "UR"
}

type encoder struct {
	sx    syntax
	cs    charset
	depth int
	// bitsAllocated is the Bits Allocated of the data set or item being
	// written, for the byte order of its Pixel Data (see SwapUnit).
	bitsAllocated int
	// itemCharsets keeps the Specific Character Set of an item whose
	// text is ASCII (see Amend).
	itemCharsets bool
}

func (e *encoder) appendElements(dst []byte, els []*Element) ([]byte, error) {
	outer := e.bitsAllocated
	defer func() { e.bitsAllocated = outer }()
	e.bitsAllocated = 0
	for _, el := range els {
		if el.Tag == tag.BitsAllocated && len(el.Values) == 1 {
			e.bitsAllocated, _ = strconv.Atoi(el.Values[0])
		}
	}
	for i, el := range els {
		if i > 0 && els[i-1].Tag == el.Tag {
			return nil, fmt.Errorf("dicom: encode %v: element given twice", el.Tag)
		}
		if el.Tag.Element() == 0x0000 {
			continue // a group length, which would be wrong
		}
		var err error
		if dst, err = e.appendElement(dst, el); err != nil {
			return nil, err
		}
	}
	return dst, nil
}

func (e *encoder) appendHeader(dst []byte, t tag.Tag, vr string, length uint32) []byte {
	bo := e.sx.order().(binary.AppendByteOrder)
	dst = bo.AppendUint16(dst, t.Group())
	dst = bo.AppendUint16(dst, t.Element())
	switch {
	case t.Group() == 0xFFFE || !e.sx.explicit:
		return bo.AppendUint32(dst, length)
	case longVR(vr):
		dst = append(dst, vr[0], vr[1], 0, 0)
		return bo.AppendUint32(dst, length)
	}
	dst = append(dst, vr[0], vr[1])
	return bo.AppendUint16(dst, uint16(length))
}

func (e *encoder) appendElement(dst []byte, el *Element) ([]byte, error) {
	fail := func(format string, args ...any) error {
		return fmt.Errorf("dicom: encode %v %s: %s", el.Tag, el.VR, fmt.Sprintf(format, args...))
	}
	if !knownVR(el.VR) {
		return nil, fail("unknown VR")
	}
	if el.VR == "SQ" {
		return e.appendSequence(dst, el)
	}
	// The value is appended after a header of the longest form, which is
	// then written in place once the length is known.
	start := len(dst)
	dst = append(dst, make([]byte, 12)...)
	valueAt := len(dst)
	dst, err := e.appendValue(dst, el)
	if err != nil {
		return nil, fail("%v", err)
	}
	if (len(dst)-valueAt)%2 == 1 {
		pad := byte(0)
		if textVR(el.VR) && el.VR != "UI" {
			pad = ' '
		}
		dst = append(dst, pad)
	}
	n := len(dst) - valueAt
	// A VR with a 16-bit length field in explicit VR is limited to it in
	// every syntax, so that the data set can be converted.
	if !longVR(el.VR) && n > 0xFFFE || int64(n) > 0xFFFFFFFE {
		return nil, fail("%d bytes are too long for the length field", n)
	}
	hdr := e.appendHeader(dst[start:start], el.Tag, el.VR, uint32(n))
	if len(hdr) < 12 {
		copy(dst[start+len(hdr):], dst[valueAt:])
		dst = dst[:len(dst)-(12-len(hdr))]
	}
	return dst, nil
}

func (e *encoder) appendSequence(dst []byte, el *Element) ([]byte, error) {
	if e.depth >= maxTranscodeDepth {
		return nil, fmt.Errorf("dicom: encode %v: sequences nested deeper than %d", el.Tag, maxTranscodeDepth)
	}
	e.depth++
	defer func() { e.depth-- }()
	dst = e.appendHeader(dst, el.Tag, "SQ", undefinedLength)
	for i, it := range el.Items {
		dst = e.appendHeader(dst, tag.Item, "", undefinedLength)
		items := it.sorted()
		// Text in items is in the character set of the whole data set.
		// An item of an amendment may keep its own, where its text is
		// the same in every character set (see Amend).
		if !e.itemCharsets || !representable(it, charset{encode: appendASCII}, 0) {
			items = slices.DeleteFunc(items, func(x *Element) bool { return x.Tag == tag.SpecificCharacterSet })
		}
		var err error
		if dst, err = e.appendElements(dst, items); err != nil {
			return nil, fmt.Errorf("dicom: encode %v item %d: %w", el.Tag, i+1, err)
		}
		dst = e.appendHeader(dst, tag.ItemDelimitationItem, "", 0)
	}
	return e.appendHeader(dst, tag.SequenceDelimitationItem, "", 0), nil
}

// appendValue appends the unpadded value of el.
func (e *encoder) appendValue(dst []byte, el *Element) ([]byte, error) {
	vr := el.VR
	switch {
	case textVR(vr):
		if el.Values == nil && el.Binary != nil && el.Binary.Length > 0 {
			return nil, fmt.Errorf("the value (%d bytes) is not held in memory as text", el.Binary.Length)
		}
		return e.appendText(dst, vr, el.Values)
	case vr == "AT":
		return e.appendTags(dst, el.Values)
	case el.Values != nil && (vr == "US" || vr == "SS" || vr == "UL" || vr == "SL" || vr == "FL" || vr == "FD" || vr == "SV" || vr == "UV"):
		return e.appendNumbers(dst, vr, el.Values)
	case el.Values != nil:
		return nil, fmt.Errorf("a binary value given as text")
	case el.Binary == nil || el.Binary.Data == nil:
		return dst, nil
	}
	start := len(dst)
	dst = append(dst, el.Binary.Data...)
	if e.sx.bigEndian {
		swapUnits(dst[start:], SwapUnit(el.Tag, vr, e.bitsAllocated))
	}
	return dst, nil
}

func (e *encoder) appendText(dst []byte, vr string, values []string) ([]byte, error) {
	if singleValued(vr) && len(values) > 1 {
		return nil, fmt.Errorf("%d values where one is allowed", len(values))
	}
	for i, v := range values {
		if !singleValued(vr) && strings.Contains(v, `\`) {
			return nil, fmt.Errorf("value %d contains a backslash, the value separator", i+1)
		}
		if i > 0 {
			dst = append(dst, '\\')
		}
		enc := appendASCII
		if usesCharset(vr) {
			enc = e.cs.encode
		}
		var bad rune
		var ok bool
		if dst, bad, ok = enc(dst, v); !ok {
			name := e.cs.name
			if !usesCharset(vr) || name == "" {
				name = "the default repertoire"
			}
			return nil, fmt.Errorf("value %d: %q is not representable in %s", i+1, bad, name)
		}
	}
	return dst, nil
}

func (e *encoder) appendTags(dst []byte, values []string) ([]byte, error) {
	bo := e.sx.order().(binary.AppendByteOrder)
	for i, v := range values {
		n, err := strconv.ParseUint(v, 16, 32)
		if err != nil || len(v) != 8 {
			return nil, fmt.Errorf("value %d: %q is not eight hexadecimal digits", i+1, v)
		}
		dst = bo.AppendUint16(dst, uint16(n>>16))
		dst = bo.AppendUint16(dst, uint16(n))
	}
	return dst, nil
}

func (e *encoder) appendNumbers(dst []byte, vr string, values []string) ([]byte, error) {
	bo := e.sx.order().(binary.AppendByteOrder)
	for i, v := range values {
		var err error
		var u uint64
		var n int64
		var f float64
		switch vr {
		case "US":
			u, err = strconv.ParseUint(v, 10, 16)
			dst = bo.AppendUint16(dst, uint16(u))
		case "UL":
			u, err = strconv.ParseUint(v, 10, 32)
			dst = bo.AppendUint32(dst, uint32(u))
		case "UV":
			u, err = strconv.ParseUint(v, 10, 64)
			dst = bo.AppendUint64(dst, u)
		case "SS":
			n, err = strconv.ParseInt(v, 10, 16)
			dst = bo.AppendUint16(dst, uint16(n))
		case "SL":
			n, err = strconv.ParseInt(v, 10, 32)
			dst = bo.AppendUint32(dst, uint32(n))
		case "SV":
			n, err = strconv.ParseInt(v, 10, 64)
			dst = bo.AppendUint64(dst, uint64(n))
		case "FL":
			f, err = strconv.ParseFloat(v, 32)
			dst = bo.AppendUint32(dst, math.Float32bits(float32(f)))
		case "FD":
			f, err = strconv.ParseFloat(v, 64)
			dst = bo.AppendUint64(dst, math.Float64bits(f))
		}
		if err != nil {
			return nil, fmt.Errorf("value %d: %q is not a number of VR %s", i+1, v, vr)
		}
	}
	return dst, nil
}
