package dicom

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/pacsd/pacsd/dicom/tag"
)

// ErrMalformed reports a data set whose element structure is broken:
// lengths that overrun their container, items outside sequences, nesting
// beyond Limits.Depth, a stream that ends inside an element.
var ErrMalformed = errors.New("dicom: malformed data set")

// ErrTruncated reports a data set that ends before its structure does:
// inside an element's header or value (a length runs past the bytes
// received), or inside a sequence or item of undefined length that is
// never closed. An error that wraps it wraps ErrMalformed too, since a
// truncated data set is a malformed one; an ErrMalformed that does not
// wrap ErrTruncated is a data set complete by its lengths with parts that
// cannot be interpreted.
var ErrTruncated = errors.New("dicom: data set truncated")

// truncation is an error wrapping both ErrTruncated and ErrMalformed.
type truncation struct{ msg string }

func (e *truncation) Error() string   { return ErrTruncated.Error() + ": " + e.msg }
func (e *truncation) Unwrap() []error { return []error{ErrTruncated, ErrMalformed} }

func truncated(format string, args ...any) error {
	return &truncation{fmt.Sprintf(format, args...)}
}

const undefinedLength = 0xFFFFFFFF

// syntax is the encoding of one level of a data set. Items of a sequence
// encoded as UN are implicit VR little endian whatever the outer syntax
// (PS3.5 §6.2.2), so it is a property of each level, not of the stream.
type syntax struct {
	explicit  bool
	bigEndian bool
}

func (s syntax) order() binary.ByteOrder {
	if s.bigEndian {
		return binary.BigEndian
	}
	return binary.LittleEndian
}

// walker reads a data set element by element, keeping nothing of it but a
// normalized copy of its header for decoding (explicit VR little endian,
// every sequence and item of undefined length, every binary value replaced
// by a 16-byte marker) and the positions of the binary values. The copy is
// what suyashkumar/dicom decodes: it never sees a length that the bytes do
// not back, nor a value it cannot read, nor a byte of pixel data.
type walker struct {
	r        *bufio.Reader
	pos      int64 // offset of the next unread byte of the data set
	top      syntax
	deflated bool
	lim      Limits

	out      []byte // the normalized copy
	overflow bool   // the current top-level element no longer fits in out
	omitted  []tag.Tag
	// signedPixels is Pixel Representation 1, read at the top level:
	// it decides the VR of implicit VR "US or SS" elements.
	signedPixels bool

	bulk     []bulkValue
	nonce    [8]byte
	pixel    *PixelData
	pixelIdx int // index of the top-level Pixel Data in bulk, or -1
	id       Identity

	// pending is a top-level element whose header walkBuffered read and
	// whose value it left to the next walk.
	pending *pendingElement
	// deferred counts the bytes of a bulk value, just after what
	// walkBuffered had buffered, that the walker does not need to see:
	// the source passes them on to the caller only.
	deferred int64

	scratch []byte
}

type bulkValue struct {
	vr  string
	bin *Binary
}

// PixelData locates the top-level Pixel Data element of a data set.
type PixelData struct {
	// Offset and Length locate the value, counted from the first byte
	// of the data set.
	Offset, Length int64
	// Encapsulated pixel data consists of Fragments; the first is the
	// Basic Offset Table (PS3.5 §A.4).
	Encapsulated bool
	Fragments    []Fragment
}

// Fragment locates one item of encapsulated pixel data.
type Fragment struct {
	Offset int64 // of the item's value, from the first byte of the data set
	Length int64
}

// maxFragments bounds the fragment table a hostile sender can make us keep.
const maxFragments = 1 << 20

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func (w *walker) read(n int) ([]byte, error) {
	if cap(w.scratch) < n {
		w.scratch = make([]byte, n)
	}
	b := w.scratch[:n]
	m, err := io.ReadFull(w.r, b)
	w.pos += int64(m)
	if err != nil {
		return nil, w.eof(err)
	}
	return b, nil
}

func (w *walker) skip(n int64) error {
	for n > 0 {
		step := n
		if step > math.MaxInt32 {
			step = math.MaxInt32
		}
		m, err := w.r.Discard(int(step))
		w.pos += int64(m)
		n -= int64(m)
		if err != nil {
			return w.eof(err)
		}
	}
	return nil
}

// eof turns the end of the stream inside an element into ErrTruncated;
// any other read error is the stream's own and passes through.
func (w *walker) eof(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated("data set ends inside an element at offset %d", w.pos)
	}
	return err
}

// header reads an element, item or delimiter header.
func (w *walker) header(sx syntax) (t tag.Tag, vr string, length uint32, err error) {
	b, err := w.read(4)
	if err != nil {
		return 0, "", 0, err
	}
	bo := sx.order()
	t = tag.New(bo.Uint16(b), bo.Uint16(b[2:]))
	if t.Group() == 0xFFFE {
		// Items and delimiters have no VR in any syntax (PS3.5 §7.5).
		if b, err = w.read(4); err != nil {
			return 0, "", 0, err
		}
		return t, "", bo.Uint32(b), nil
	}
	if !sx.explicit {
		if b, err = w.read(4); err != nil {
			return 0, "", 0, err
		}
		length = binary.LittleEndian.Uint32(b)
		return t, implicitVR(t, length, w.signedPixels), length, nil
	}
	if b, err = w.read(2); err != nil {
		return 0, "", 0, err
	}
	if b[0] < 'A' || b[0] > 'Z' || b[1] < 'A' || b[1] > 'Z' {
		return 0, "", 0, malformed("element %v at offset %d has VR %q", t, w.pos-6, b)
	}
	vr = string(b)
	if longVR(vr) {
		if b, err = w.read(6); err != nil {
			return 0, "", 0, err
		}
		return t, vr, bo.Uint32(b[2:]), nil
	}
	if b, err = w.read(2); err != nil {
		return 0, "", 0, err
	}
	return t, vr, uint32(bo.Uint16(b)), nil
}

// longVR reports whether vr has the 12-byte explicit header (PS3.5
// §7.1.2). VRs this code does not know are taken to, as later editions of
// the standard give every new VR that form.
func longVR(vr string) bool {
	switch vr {
	case "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "PN", "SH", "SL", "SS", "ST", "TM", "UI", "UL", "US":
		return false
	}
	return true
}

// binaryVR reports whether values of vr are kept out of the copy. SV and
// UV are among them because the decoder does not know them; they are
// decoded here.
func binaryVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN", "SV", "UV":
		return true
	}
	return false
}

// implicitVR chooses the VR of an element of an implicit VR data set from
// the data dictionary; signed says whether Pixel Representation (0028,0103)
// is 1, which makes the "US or SS" pixel values SS (PS3.5 Annex A.1).
func implicitVR(t tag.Tag, length uint32, signed bool) string {
	switch {
	case t.Element() == 0x0000:
		return "UL" // group length
	case t.IsPrivate() && t.Element() >= 0x0010 && t.Element() <= 0x00FF:
		return "LO" // private creator (PS3.5 §7.8.1)
	}
	info, ok := tag.Lookup(t)
	if !ok {
		if length == undefinedLength {
			return "SQ" // only a sequence can have an undefined length here
		}
		return "UN"
	}
	switch info.VR {
	case "OB or OW", "US or OW":
		if length == undefinedLength {
			return "OB" // encapsulated (PS3.5 §A.4)
		}
		return "OW" // PS3.5 §8.1.2 and §8.2: OW in implicit VR
	case "US or SS", "US or SS or OW":
		if signed && pixelValue(t) {
			return "SS"
		}
		return "US"
	case "NONE":
		return "UN"
	}
	return info.VR
}

// emit appends b to the copy unless the current top-level element has
// outgrown Limits.Header.
func (w *walker) emit(b ...byte) {
	if w.overflow {
		return
	}
	if len(w.out)+len(b) > w.lim.Header {
		w.overflow = true
		return
	}
	w.out = append(w.out, b...)
}

func (w *walker) emitHeader(t tag.Tag, vr string, length uint32) {
	var h [12]byte
	binary.LittleEndian.PutUint16(h[0:], t.Group())
	binary.LittleEndian.PutUint16(h[2:], t.Element())
	switch {
	case vr == "":
		binary.LittleEndian.PutUint32(h[4:], length)
		w.emit(h[:8]...)
	case longVR(vr):
		copy(h[4:], vr)
		binary.LittleEndian.PutUint32(h[8:], length)
		w.emit(h[:12]...)
	default:
		copy(h[4:], vr)
		binary.LittleEndian.PutUint16(h[6:], uint16(length))
		w.emit(h[:8]...)
	}
}

// emitMarker puts a binary value's marker in the copy: an OB value of the
// walker's random nonce and the value's index in w.bulk.
func (w *walker) emitMarker(t tag.Tag, vr string, b *Binary) {
	if w.deflated {
		b.Offset = -1
	}
	var m [16]byte
	copy(m[:], w.nonce[:])
	binary.LittleEndian.PutUint64(m[8:], uint64(len(w.bulk)))
	w.bulk = append(w.bulk, bulkValue{vr, b})
	w.emitHeader(t, "OB", 16)
	w.emit(m[:]...)
}

// peekTag returns the tag of the next top-level element; ok is false at
// the end of the stream.
func (w *walker) peekTag() (t tag.Tag, ok bool, err error) {
	b, err := w.r.Peek(4)
	switch {
	case len(b) == 4:
		bo := w.top.order()
		return tag.New(bo.Uint16(b), bo.Uint16(b[2:])), true, nil
	case len(b) == 0 && errors.Is(err, io.EOF):
		return 0, false, nil
	case errors.Is(err, io.EOF):
		return 0, false, truncated("data set ends inside an element header at offset %d", w.pos+int64(len(b)))
	}
	return 0, false, err
}

// detectSyntax corrects the VR encoding of the data set from its first
// element when the transfer syntax claims the other one, as dcmtk and
// pydicom do: some writers label implicit VR data sets with an explicit
// syntax, and the other way round.
func (w *walker) detectSyntax() {
	b, err := w.r.Peek(6)
	if err != nil || w.top.bigEndian {
		return
	}
	letters := b[4] >= 'A' && b[4] <= 'Z' && b[5] >= 'A' && b[5] <= 'Z'
	t := tag.New(binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]))
	switch {
	case w.top.explicit && !letters:
		w.top.explicit = false
	case !w.top.explicit && letters:
		if info, ok := tag.Lookup(t); ok && strings.Contains(info.VR, string(b[4:6])) {
			w.top.explicit = true
		}
	}
}

type pendingElement struct {
	t      tag.Tag
	vr     string
	length uint32
}

// walkBuffered walks on, after the identity, through the top-level
// elements the reader has already buffered, without reading more. A bulk
// value it reaches (Pixel Data, typically) is located and its bytes beyond
// the buffer are left to the caller alone (deferred): the walker need not
// see the bulk of an image, which then flows from the connection to
// storage without a detour. An element that does not fit in the buffer
// is left pending.
func (w *walker) walkBuffered() error {
	if w.deflated {
		return nil // offsets in the inflated stream are not the source's
	}
	for w.r.Buffered() >= 12 {
		t, vr, length, err := w.header(w.top)
		if err != nil {
			return err
		}
		if t.Group() == 0xFFFE {
			return malformed("%v outside a sequence at offset %d", t, w.pos-8)
		}
		buffered := w.r.Buffered()
		switch {
		case length != undefinedLength && int64(length) <= int64(buffered):
			if err := w.topElement(t, vr, length); err != nil {
				return err
			}
		case length != undefinedLength && binaryVR(vr) && int64(length) > int64(w.lim.Inline):
			b := &Binary{Offset: w.pos, Length: int64(length)}
			if t == tag.PixelData || t == tag.FloatPixelData || t == tag.DoubleFloatPixelData {
				w.pixel, w.pixelIdx = &PixelData{Offset: w.pos, Length: int64(length)}, len(w.bulk)
			}
			w.emitMarker(t, vr, b)
			if err := w.skip(int64(buffered)); err != nil {
				return err
			}
			w.deferred = int64(length) - int64(buffered)
			w.pos += w.deferred
			return nil
		default:
			w.pending = &pendingElement{t, vr, length}
			return nil
		}
	}
	return nil
}

// topElement walks the value of a top-level element whose header has been
// read, leaving it out of the header copy if it outgrows Limits.Header.
func (w *walker) topElement(t tag.Tag, vr string, length uint32) error {
	mark := len(w.out)
	if err := w.value(w.top, t, vr, length, 0, true); err != nil {
		return err
	}
	if w.overflow {
		w.out = w.out[:mark]
		w.overflow = false
		w.omitted = append(w.omitted, t)
	}
	return nil
}

// walkUntil walks top-level elements up to and including those with tag
// stop, and reports whether any element follows. Elements out of order do
// not hide the identity: the walk goes on past stop until the identity is
// complete.
func (w *walker) walkUntil(stop tag.Tag) (more bool, err error) {
	if w.pos == 0 {
		w.detectSyntax()
	}
	if p := w.pending; p != nil {
		w.pending = nil
		if err := w.topElement(p.t, p.vr, p.length); err != nil {
			return false, err
		}
	}
	for {
		t, ok, err := w.peekTag()
		if err != nil || !ok {
			return false, err
		}
		if t > stop && w.id.complete() {
			return true, nil
		}
		t, vr, length, err := w.header(w.top)
		if err != nil {
			return false, err
		}
		if t.Group() == 0xFFFE {
			return false, malformed("%v outside a sequence at offset %d", t, w.pos-8)
		}
		if err := w.topElement(t, vr, length); err != nil {
			return false, err
		}
	}
}

// value walks the value of an element whose header has been read.
func (w *walker) value(sx syntax, t tag.Tag, vr string, length uint32, depth int, top bool) error {
	if t == tag.SpecificCharacterSet {
		return w.charset(length)
	}
	switch {
	case vr == "SQ" || (vr == "UN" && length == undefinedLength):
		// A sequence encoded as UN keeps implicit VR little endian
		// items; decoding it as SQ recovers it.
		items := sx
		if vr == "UN" {
			items = syntax{}
		}
		w.emitHeader(t, "SQ", undefinedLength)
		if err := w.sequence(items, length, depth+1); err != nil {
			return err
		}
		w.emitHeader(tag.SequenceDelimitationItem, "", 0)
		return nil

	case length == undefinedLength:
		// Only encapsulated binary values have an undefined length.
		if !binaryVR(vr) {
			return malformed("element %v (%s) has an undefined length", t, vr)
		}
		start := w.pos
		var px *PixelData
		if top && t == tag.PixelData {
			px = &PixelData{Offset: start, Encapsulated: true}
		}
		if err := w.fragments(sx, px); err != nil {
			return err
		}
		b := &Binary{Offset: start, Length: w.pos - start, Encapsulated: true}
		if px != nil {
			px.Length = b.Length
			w.pixel, w.pixelIdx = px, len(w.bulk)
		}
		w.emitMarker(t, vr, b)
		return nil

	case binaryVR(vr) || length > maxText || (!longVR(vr) && length > math.MaxUint16):
		// Oversized text is located like a binary value rather than
		// held; the last case is an implicit VR value too long for
		// its VR's explicit header.
		b := &Binary{Offset: w.pos, Length: int64(length)}
		if top && (t == tag.PixelData || t == tag.FloatPixelData || t == tag.DoubleFloatPixelData) {
			w.pixel, w.pixelIdx = &PixelData{Offset: w.pos, Length: int64(length)}, len(w.bulk)
		}
		if int(length) <= w.lim.Inline {
			v, err := w.read(int(length))
			if err != nil {
				return err
			}
			b.Data = append([]byte(nil), v...)
			if sx.bigEndian {
				swap(vr, b.Data)
			}
		} else if err := w.skip(int64(length)); err != nil {
			return err
		}
		w.emitMarker(t, vr, b)
		return nil
	}

	v, err := w.read(int(length))
	if err != nil {
		return err
	}
	if sx.bigEndian {
		swap(vr, v)
	}
	if top {
		w.id.capture(t, v)
		if t == tag.PixelRepresentation && len(v) == 2 {
			w.signedPixels = binary.LittleEndian.Uint16(v) == 1
		}
	}
	w.emitHeader(t, vr, length)
	w.emit(v...)
	return nil
}

// charset copies a Specific Character Set into the copy as CS, whatever
// its VR (the decoder takes it for text whatever its VR says, and fails
// otherwise), with charsetMark before its value. A value of undefined or
// absurd length is left out.
func (w *walker) charset(length uint32) error {
	if length == undefinedLength {
		return malformed("Specific Character Set of undefined length at offset %d", w.pos)
	}
	if length > math.MaxUint16-uint32(len(charsetMark)) {
		return w.skip(int64(length))
	}
	v, err := w.read(int(length))
	if err != nil {
		return err
	}
	w.emitHeader(tag.SpecificCharacterSet, "CS", length+uint32(len(charsetMark)))
	w.emit([]byte(charsetMark)...)
	w.emit(v...)
	return nil
}

// charsetMark is what the walker puts before every Specific Character Set
// value in the copy. A value that begins with it names no character set
// suyashkumar/dicom knows, so that decoder, which would decode the text
// after a top-level Specific Character Set (wrongly with code extensions,
// and ignoring those of sequence items), leaves every text value as the
// bytes it read. decode removes the mark and decodes the text itself (see
// textDecoder).
const charsetMark = "\x01"

// maxText is the longest text value kept in the copy; longer ones (UT,
// UC, UR can be up to 4 GiB) are located like bulk data.
const maxText = 1 << 20

// sequence walks the items of a sequence.
func (w *walker) sequence(sx syntax, length uint32, depth int) error {
	if depth > w.lim.Depth {
		return malformed("sequences nested deeper than %d at offset %d", w.lim.Depth, w.pos)
	}
	end := int64(-1)
	if length != undefinedLength {
		end = w.pos + int64(length)
	}
	for {
		if end >= 0 {
			if w.pos == end {
				return nil
			}
			if w.pos > end {
				return malformed("sequence overruns its length by %d bytes", w.pos-end)
			}
		}
		t, _, n, err := w.header(sx)
		if err != nil {
			return err
		}
		switch t {
		case tag.SequenceDelimitationItem:
			if end >= 0 {
				return malformed("sequence delimiter inside a sequence of defined length at offset %d", w.pos-8)
			}
			return nil
		case tag.Item:
		default:
			return malformed("%v where a sequence item belongs, at offset %d", t, w.pos-8)
		}
		itemEnd := int64(-1)
		if n != undefinedLength {
			itemEnd = w.pos + int64(n)
			if end >= 0 && itemEnd > end {
				return malformed("item overruns its sequence at offset %d", w.pos-8)
			}
		}
		w.emitHeader(tag.Item, "", undefinedLength)
		if err := w.item(sx, itemEnd, depth); err != nil {
			return err
		}
		w.emitHeader(tag.ItemDelimitationItem, "", 0)
	}
}

// item walks the elements of a sequence item up to end, or to its item
// delimiter when end is -1.
func (w *walker) item(sx syntax, end int64, depth int) error {
	for {
		if end >= 0 {
			if w.pos == end {
				return nil
			}
			if w.pos > end {
				return malformed("item overruns its length by %d bytes", w.pos-end)
			}
		}
		t, vr, length, err := w.header(sx)
		if err != nil {
			return err
		}
		if t == tag.ItemDelimitationItem {
			if end >= 0 {
				return malformed("item delimiter inside an item of defined length at offset %d", w.pos-8)
			}
			return nil
		}
		if t.Group() == 0xFFFE {
			return malformed("%v inside an item at offset %d", t, w.pos-8)
		}
		if end >= 0 && length != undefinedLength && w.pos+int64(length) > end {
			return malformed("element %v overruns its item at offset %d", t, w.pos)
		}
		if err := w.value(sx, t, vr, length, depth, false); err != nil {
			return err
		}
	}
}

// fragments walks the items of an encapsulated value to its sequence
// delimiter, recording them in px if px is not nil.
func (w *walker) fragments(sx syntax, px *PixelData) error {
	for {
		t, _, n, err := w.header(sx)
		if err != nil {
			return err
		}
		switch {
		case t == tag.SequenceDelimitationItem:
			return nil
		case t != tag.Item || n == undefinedLength:
			return malformed("%v of length %#x among pixel data fragments at offset %d", t, n, w.pos-8)
		}
		if px != nil && len(px.Fragments) < maxFragments {
			px.Fragments = append(px.Fragments, Fragment{Offset: w.pos, Length: int64(n)})
		}
		if err := w.skip(int64(n)); err != nil {
			return err
		}
	}
}

// swap turns big endian values of vr into little endian in place.
func swap(vr string, v []byte) {
	size := 0
	switch vr {
	case "US", "SS", "OW", "AT":
		size = 2
	case "UL", "SL", "FL", "OF", "OL":
		size = 4
	case "FD", "OD", "SV", "UV", "OV":
		size = 8
	}
	for i := 0; size > 1 && i+size <= len(v); i += size {
		for a, b := i, i+size-1; a < b; a, b = a+1, b-1 {
			v[a], v[b] = v[b], v[a]
		}
	}
}
