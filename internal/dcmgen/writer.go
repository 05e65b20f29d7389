// Package dcmgen writes synthetic DICOM Part-10 files for tests and
// benchmarks.
//
// It is deliberately independent of the project's own DICOM code: a test
// that reads what dcmgen wrote checks the reader against a second,
// separately written encoder, and the files are also checked against dcmtk
// and Orthanc in this package's tests. The encoder is small and strict: it
// writes Explicit or Implicit VR Little Endian, pads every value to an even
// length as PS3.5 §6.2 and §9.1 require, and streams large values (Pixel
// Data) from an io.Reader so that a multi-gigabyte instance is written with
// bounded memory.
package dcmgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ImplementationClassUID identifies dcmgen as the writer of the File Meta
// Information (PS3.7 D.3.3.2). It was generated once under the 2.25 root
// and must never change, so that a file can be traced back to this writer.
const ImplementationClassUID = "2.25.1508023583709540081546494285124299575"

// ImplementationVersionName is written with ImplementationClassUID. It is
// an SH value and so at most 16 characters.
const ImplementationVersionName = "PACSD_DCMGEN_1"

// maxLength32 is the largest defined length a 32-bit length field can hold:
// 0xFFFFFFFF means "undefined length" (PS3.5 §7.1.1) and values must be
// even, so 0xFFFFFFFE is the last usable one.
const maxLength32 = 0xFFFFFFFE

// Tag is a data element tag: the group number in the high 16 bits and the
// element number in the low 16 bits, so that numeric order is tag order.
type Tag uint32

// String formats t as "(gggg,eeee)", as PS3.5 does.
func (t Tag) String() string { return fmt.Sprintf("(%04X,%04X)", uint16(t>>16), uint16(t)) }

// Tags dcmgen writes by itself.
const (
	tagSpecificCharacterSet Tag = 0x00080005
	tagPixelData            Tag = 0x7FE00010
	tagItem                 Tag = 0xFFFEE000
)

// Syntax is one of the two uncompressed little-endian transfer syntaxes the
// dataset can be written in. The File Meta Information is always Explicit
// VR Little Endian, as PS3.10 §7.1 requires.
type Syntax int

const (
	// ExplicitVRLittleEndian is 1.2.840.10008.1.2.1, the zero value.
	ExplicitVRLittleEndian Syntax = iota
	// ImplicitVRLittleEndian is 1.2.840.10008.1.2, the default transfer
	// syntax every DICOM implementation must accept.
	ImplicitVRLittleEndian
)

// UID returns the transfer syntax UID of s.
func (s Syntax) UID() string {
	if s == ImplicitVRLittleEndian {
		return "1.2.840.10008.1.2"
	}
	return "1.2.840.10008.1.2.1"
}

// String names s.
func (s Syntax) String() string {
	if s == ImplicitVRLittleEndian {
		return "Implicit VR Little Endian"
	}
	return "Explicit VR Little Endian"
}

// Element is one data element to be written.
//
// Value may be:
//   - nil, for an empty (zero-length) value, as Type 2 attributes allow;
//   - string or []string (joined with a backslash) for text VRs; PN, SH, LO,
//     ST, LT, UC and UT are encoded in the Specific Character Set in force
//     (ISO_IR 6, ISO_IR 100 and ISO_IR 192 are supported), every other text
//     VR must be ASCII;
//   - an integer or a slice of integers for IS and for the binary VRs US,
//     SS, UL, SL, SV, UV, OW, OL, OV; a float or a slice of floats for DS,
//     FL, FD, OF and OD;
//   - Tag or []Tag for AT;
//   - []byte, written verbatim for any VR and padded to an even length,
//     which is how a test writes a value in a character set dcmgen does not
//     encode, or a deliberately malformed one;
//   - []Item for SQ.
type Element struct {
	Tag   Tag
	VR    string
	Value any
}

// Item is one item of a sequence (SQ) value. Its elements are written in
// tag order whatever order they are given in.
type Item []Element

// Meta is what the File Meta Information (group 0002) says about the
// dataset that follows it.
type Meta struct {
	SOPClassUID    string
	SOPInstanceUID string
	Syntax         Syntax
}

// Writer writes one Part-10 file: NewWriter writes the preamble and the
// File Meta Information, then each call writes one data element of the
// dataset. Elements must come in ascending tag order, as PS3.5 §7.1
// requires; Writer checks this because a file that violates it is not a
// useful test input by accident.
//
// Writer does no buffering of its own: every element header and value is
// handed to the underlying writer in a single Write call, and streamed values
// in large chunks, so wrap a file in a bufio.Writer only to save system calls
// on many small elements.
//
// After an error every further call returns that error.
type Writer struct {
	w       io.Writer
	syntax  Syntax
	charset charset
	last    Tag
	started bool
	n       int64
	err     error
}

// NewWriter writes the 128-byte preamble, "DICM" and the File Meta
// Information described by m to w, and returns a Writer for the dataset.
func NewWriter(w io.Writer, m Meta) (*Writer, error) {
	if m.Syntax != ExplicitVRLittleEndian && m.Syntax != ImplicitVRLittleEndian {
		return nil, fmt.Errorf("dcmgen: unknown transfer syntax %d", m.Syntax)
	}
	if m.SOPClassUID == "" || m.SOPInstanceUID == "" {
		return nil, errors.New("dcmgen: the File Meta Information needs a SOP Class UID and a SOP Instance UID")
	}
	// The group is encoded first without its length element, because that
	// element's value is the byte count of everything after it.
	meta := []Element{
		{0x00020001, "OB", []byte{0x00, 0x01}},
		{0x00020002, "UI", m.SOPClassUID},
		{0x00020003, "UI", m.SOPInstanceUID},
		{0x00020010, "UI", m.Syntax.UID()},
		{0x00020012, "UI", ImplementationClassUID},
		{0x00020013, "SH", ImplementationVersionName},
	}
	var body []byte
	for _, e := range meta {
		var err error
		if body, err = appendElement(body, e, ExplicitVRLittleEndian, charset{}); err != nil {
			return nil, err
		}
	}
	head := make([]byte, 128, 128+4+12+len(body))
	head = append(head, "DICM"...)
	head, err := appendElement(head, Element{0x00020000, "UL", uint32(len(body))}, ExplicitVRLittleEndian, charset{})
	if err != nil {
		return nil, err
	}
	wr := &Writer{w: w, syntax: m.Syntax}
	wr.write(append(head, body...))
	if wr.err != nil {
		return nil, wr.err
	}
	return wr, nil
}

// Written returns the number of bytes written so far, preamble included.
func (w *Writer) Written() int64 { return w.n }

// WriteElement encodes e and writes it. A Specific Character Set element
// (0008,0005) switches the encoding of the text elements after it.
func (w *Writer) WriteElement(e Element) error {
	if err := w.order(e.Tag); err != nil {
		return err
	}
	if e.Tag == tagSpecificCharacterSet {
		cs, err := charsetOf(e.Value)
		if err != nil {
			return w.fail(err)
		}
		w.charset = cs
	}
	b, err := appendElement(nil, e, w.syntax, w.charset)
	if err != nil {
		return w.fail(err)
	}
	w.write(b)
	return w.err
}

// WriteStream writes an element whose value of length bytes is copied from
// r, without holding it in memory: this is how Pixel Data of a large
// multi-frame instance is written. If length is odd one padding byte of
// zero follows, as for any binary value. r must supply at least length
// bytes; io.ErrUnexpectedEOF reports fewer.
func (w *Writer) WriteStream(tag Tag, vr string, length int64, r io.Reader) error {
	if err := w.order(tag); err != nil {
		return err
	}
	padded := length + length%2
	if length < 0 || padded > maxLength32 {
		return w.fail(fmt.Errorf("dcmgen: %s: a value of %d bytes does not fit a 32-bit length", tag, length))
	}
	if !isLongVR(vr) && w.syntax == ExplicitVRLittleEndian {
		return w.fail(fmt.Errorf("dcmgen: %s: VR %s cannot be streamed: its length field has 16 bits", tag, vr))
	}
	w.write(appendHeader(nil, tag, vr, uint32(padded), w.syntax))
	if w.err != nil {
		return w.err
	}
	n, err := io.CopyN(w.w, r, length)
	w.n += n
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return w.fail(fmt.Errorf("dcmgen: %s: value after %d of %d bytes: %w", tag, n, length, err))
	}
	if padded != length {
		w.write([]byte{0})
	}
	return w.err
}

// reserve accounts for a streamed element without writing its value. It is
// only used to measure a file with a Writer over io.Discard.
func (w *Writer) reserve(tag Tag, vr string, length int64) error {
	if err := w.order(tag); err != nil {
		return err
	}
	padded := length + length%2
	if length < 0 || padded > maxLength32 {
		return w.fail(fmt.Errorf("dcmgen: %s: a value of %d bytes does not fit a 32-bit length", tag, length))
	}
	w.write(appendHeader(nil, tag, vr, uint32(padded), w.syntax))
	w.n += padded
	return w.err
}

func (w *Writer) order(t Tag) error {
	if w.err != nil {
		return w.err
	}
	if t>>16 == 0x0002 {
		return w.fail(fmt.Errorf("dcmgen: %s: group 0002 belongs to the File Meta Information, which NewWriter writes", t))
	}
	if w.started && t <= w.last {
		return w.fail(fmt.Errorf("dcmgen: %s written after %s: elements must be in ascending tag order", t, w.last))
	}
	w.started, w.last = true, t
	return nil
}

func (w *Writer) write(b []byte) {
	if w.err != nil {
		return
	}
	n, err := w.w.Write(b)
	w.n += int64(n)
	if err != nil {
		w.err = err
	}
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return w.err
}

// isLongVR reports whether vr has the 2 reserved bytes and a 32-bit length
// in Explicit VR (PS3.5 Table 7.1-1); every other VR has a 16-bit length.
func isLongVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV":
		return true
	}
	return false
}

func appendHeader(b []byte, t Tag, vr string, length uint32, s Syntax) []byte {
	b = binary.LittleEndian.AppendUint16(b, uint16(t>>16))
	b = binary.LittleEndian.AppendUint16(b, uint16(t))
	if s == ImplicitVRLittleEndian || t>>16 == 0xFFFE {
		// Item and delimitation tags have no VR in either syntax.
		return binary.LittleEndian.AppendUint32(b, length)
	}
	b = append(b, vr...)
	if isLongVR(vr) {
		b = append(b, 0, 0)
		return binary.LittleEndian.AppendUint32(b, length)
	}
	return binary.LittleEndian.AppendUint16(b, uint16(length))
}

// appendElement encodes e in syntax s, with text in character set cs.
func appendElement(b []byte, e Element, s Syntax, cs charset) ([]byte, error) {
	if len(e.VR) != 2 {
		return nil, fmt.Errorf("dcmgen: %s: VR %q is not two letters", e.Tag, e.VR)
	}
	v, err := encodeValue(e, s, cs)
	if err != nil {
		return nil, fmt.Errorf("dcmgen: %s %s: %w", e.Tag, e.VR, err)
	}
	if len(v)%2 == 1 {
		v = append(v, padByte(e.VR))
	}
	switch {
	case s == ExplicitVRLittleEndian && !isLongVR(e.VR) && len(v) > 0xFFFE:
		return nil, fmt.Errorf("dcmgen: %s %s: %d bytes do not fit a 16-bit length", e.Tag, e.VR, len(v))
	case int64(len(v)) > maxLength32:
		return nil, fmt.Errorf("dcmgen: %s %s: %d bytes do not fit a 32-bit length", e.Tag, e.VR, len(v))
	}
	b = appendHeader(b, e.Tag, e.VR, uint32(len(v)), s)
	return append(b, v...), nil
}

// padByte is what makes an odd-length value even: UI values are padded
// with NUL (PS3.5 §9.1), other text with a space, binary values with zero
// (PS3.5 §6.2).
func padByte(vr string) byte {
	if isText(vr) && vr != "UI" {
		return ' '
	}
	return 0
}

func isText(vr string) bool {
	switch vr {
	case "AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI", "UR", "UT":
		return true
	}
	return false
}

// usesCharset reports whether values of vr are encoded in the Specific
// Character Set; the other text VRs are restricted to the default
// repertoire (PS3.5 §6.1.2.3).
func usesCharset(vr string) bool {
	switch vr {
	case "PN", "SH", "LO", "ST", "LT", "UC", "UT":
		return true
	}
	return false
}

func encodeValue(e Element, s Syntax, cs charset) ([]byte, error) {
	switch v := e.Value.(type) {
	case nil:
		return nil, nil
	case []byte:
		return v, nil
	case []Item:
		if e.VR != "SQ" {
			return nil, fmt.Errorf("items need VR SQ")
		}
		return encodeItems(v, s, cs)
	}
	switch {
	case e.VR == "SQ":
		return nil, fmt.Errorf("a sequence value must be []Item, not %T", e.Value)
	case isText(e.VR):
		return encodeText(e.VR, e.Value, cs)
	}
	return encodeBinary(e.VR, e.Value)
}

func encodeItems(items []Item, s Syntax, cs charset) ([]byte, error) {
	var b []byte
	for _, it := range items {
		sorted := append(Item(nil), it...)
		sortElements(sorted)
		itemCS := cs
		var body []byte
		for i, e := range sorted {
			if i > 0 && e.Tag == sorted[i-1].Tag {
				return nil, fmt.Errorf("item has %s twice", e.Tag)
			}
			if e.Tag == tagSpecificCharacterSet {
				c, err := charsetOf(e.Value)
				if err != nil {
					return nil, err
				}
				itemCS = c
			}
			var err error
			if body, err = appendElement(body, e, s, itemCS); err != nil {
				return nil, err
			}
		}
		b = appendHeader(b, tagItem, "", uint32(len(body)), s)
		b = append(b, body...)
	}
	return b, nil
}

func encodeText(vr string, value any, cs charset) ([]byte, error) {
	var parts []string
	switch v := value.(type) {
	case string:
		parts = []string{v}
	case []string:
		parts = v
	default:
		nums, ok := numbers(value)
		if !ok || (vr != "IS" && vr != "DS") {
			return nil, fmt.Errorf("cannot encode %T as text", value)
		}
		for _, n := range nums {
			s, err := n.text(vr)
			if err != nil {
				return nil, err
			}
			parts = append(parts, s)
		}
	}
	joined := strings.Join(parts, `\`)
	if !usesCharset(vr) {
		for i := 0; i < len(joined); i++ {
			if joined[i] >= 0x80 {
				return nil, fmt.Errorf("%q is not in the default repertoire", joined)
			}
		}
		return []byte(joined), nil
	}
	return cs.encode(joined)
}

// number is one numeric value, kept as both integer and float so that
// 64-bit integers survive without passing through float64.
type number struct {
	i     int64
	u     uint64
	f     float64
	float bool
	neg   bool
}

func (n number) text(vr string) (string, error) {
	if vr == "IS" {
		if n.float {
			return "", fmt.Errorf("IS needs an integer, not %v", n.f)
		}
		s := strconv.FormatInt(n.i, 10)
		if !n.neg && n.u > math.MaxInt64 {
			s = strconv.FormatUint(n.u, 10)
		}
		if len(s) > 12 {
			return "", fmt.Errorf("IS %s is longer than 12 characters", s)
		}
		return s, nil
	}
	f := n.f
	if !n.float {
		f = float64(n.i)
	}
	s := strconv.FormatFloat(f, 'G', -1, 64)
	if len(s) > 16 {
		s = strconv.FormatFloat(f, 'G', 10, 64)
	}
	return s, nil
}

// numbers flattens the numeric Go values Element.Value may hold.
func numbers(value any) ([]number, bool) {
	var out []number
	add := func(x int64) { out = append(out, number{i: x, u: uint64(x), f: float64(x), neg: x < 0}) }
	addU := func(x uint64) { out = append(out, number{i: int64(x), u: x, f: float64(x)}) }
	addF := func(x float64) { out = append(out, number{f: x, float: true}) }
	switch v := value.(type) {
	case int:
		add(int64(v))
	case int8:
		add(int64(v))
	case int16:
		add(int64(v))
	case int32:
		add(int64(v))
	case int64:
		add(v)
	case uint:
		addU(uint64(v))
	case uint16:
		addU(uint64(v))
	case uint32:
		addU(uint64(v))
	case uint64:
		addU(v)
	case float32:
		addF(float64(v))
	case float64:
		addF(v)
	case []int:
		for _, x := range v {
			add(int64(x))
		}
	case []int16:
		for _, x := range v {
			add(int64(x))
		}
	case []int32:
		for _, x := range v {
			add(int64(x))
		}
	case []int64:
		for _, x := range v {
			add(x)
		}
	case []uint16:
		for _, x := range v {
			addU(uint64(x))
		}
	case []uint32:
		for _, x := range v {
			addU(uint64(x))
		}
	case []uint64:
		for _, x := range v {
			addU(x)
		}
	case []float32:
		for _, x := range v {
			addF(float64(x))
		}
	case []float64:
		for _, x := range v {
			addF(x)
		}
	default:
		return nil, false
	}
	return out, true
}

func encodeBinary(vr string, value any) ([]byte, error) {
	if vr == "AT" {
		var tags []Tag
		switch v := value.(type) {
		case Tag:
			tags = []Tag{v}
		case []Tag:
			tags = v
		default:
			return nil, fmt.Errorf("AT needs Tag or []Tag, not %T", value)
		}
		var b []byte
		for _, t := range tags {
			b = binary.LittleEndian.AppendUint16(b, uint16(t>>16))
			b = binary.LittleEndian.AppendUint16(b, uint16(t))
		}
		return b, nil
	}
	nums, ok := numbers(value)
	if !ok {
		return nil, fmt.Errorf("cannot encode %T", value)
	}
	var b []byte
	for _, n := range nums {
		if n.float && vr != "FL" && vr != "FD" && vr != "OF" && vr != "OD" {
			return nil, fmt.Errorf("%v is not an integer", n.f)
		}
		f := n.f
		switch vr {
		case "US", "OW":
			if n.neg || n.u > math.MaxUint16 {
				return nil, fmt.Errorf("%d out of range", n.i)
			}
			b = binary.LittleEndian.AppendUint16(b, uint16(n.u))
		case "SS":
			if n.i < math.MinInt16 || n.i > math.MaxInt16 || (!n.neg && n.u > math.MaxInt16) {
				return nil, fmt.Errorf("%d out of range", n.i)
			}
			b = binary.LittleEndian.AppendUint16(b, uint16(int16(n.i)))
		case "UL", "OL":
			if n.neg || n.u > math.MaxUint32 {
				return nil, fmt.Errorf("%d out of range", n.i)
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(n.u))
		case "SL":
			if n.i < math.MinInt32 || n.i > math.MaxInt32 || (!n.neg && n.u > math.MaxInt32) {
				return nil, fmt.Errorf("%d out of range", n.i)
			}
			b = binary.LittleEndian.AppendUint32(b, uint32(int32(n.i)))
		case "UV", "OV":
			if n.neg {
				return nil, fmt.Errorf("%d out of range", n.i)
			}
			b = binary.LittleEndian.AppendUint64(b, n.u)
		case "SV":
			if !n.neg && n.u > math.MaxInt64 {
				return nil, fmt.Errorf("%d out of range", n.u)
			}
			b = binary.LittleEndian.AppendUint64(b, uint64(n.i))
		case "FL", "OF":
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(f)))
		case "FD", "OD":
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
		default:
			return nil, fmt.Errorf("cannot encode numbers in VR %s; give []byte", vr)
		}
	}
	return b, nil
}

// charset is the subset of Specific Character Set values dcmgen can encode
// Go strings in. Any other value is accepted, but then only ASCII strings
// (or []byte values) can be written.
type charset struct {
	name string // the defined term, e.g. "ISO_IR 100"; "" is the default repertoire
}

func charsetOf(value any) (charset, error) {
	switch v := value.(type) {
	case nil:
		return charset{}, nil
	case string:
		return charset{strings.TrimSpace(v)}, nil
	case []string:
		return charset{strings.TrimSpace(strings.Join(v, `\`))}, nil
	case []byte:
		return charset{strings.TrimSpace(string(v))}, nil
	}
	return charset{}, fmt.Errorf("dcmgen: Specific Character Set must be a string, not %T", value)
}

func (c charset) encode(s string) ([]byte, error) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			ascii = false
			break
		}
	}
	if ascii {
		return []byte(s), nil
	}
	switch c.name {
	case "ISO_IR 192":
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("%q is not valid UTF-8", s)
		}
		return []byte(s), nil
	case "ISO_IR 100":
		b := make([]byte, 0, len(s))
		for _, r := range s {
			if r > 0xFF {
				return nil, fmt.Errorf("%q has %q, which is not in ISO_IR 100 (Latin-1)", s, r)
			}
			b = append(b, byte(r))
		}
		return b, nil
	case "", "ISO_IR 6":
		return nil, fmt.Errorf("%q is not ASCII: set a Specific Character Set such as ISO_IR 192", s)
	}
	return nil, fmt.Errorf("dcmgen cannot encode %q in %q; give the value as []byte", s, c.name)
}
