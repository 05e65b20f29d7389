package dicom

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/pacsd/pacsd/dicom/tag"
)

// walker reads a data set element by element, keeping nothing of it but a
// normalized copy of its header for decoding (explicit VR little endian,
// every sequence and item of undefined length, every binary value replaced
// by a 16-byte marker) and the positions of the binary values. The copy is
// what suyashkumar/dicom decodes: it never sees a length that the bytes do
// not back, nor a value it cannot read, nor a byte of pixel data.
type walker struct {
	elementReader
	top      syntax
	topLevel level
	deflated bool
	lim      Limits

	out []byte // the normalized copy
	// kept counts the memory, in bytes, that the header takes beyond out
	// (see elementCost); out and kept together are bounded by
	// Limits.Header.
	kept     int
	overflow bool // the current top-level element does not fit
	full     bool // not even the list of omitted elements fits
	omitted  []tag.Tag

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
	// limit is the end of the innermost sequence or item of defined
	// length being walked, or -1: nothing inside it, however it is
	// delimited, may read past it.
	limit int64
}

type bulkValue struct {
	vr  string
	bin *Binary
}

// PixelData locates the top-level Pixel Data element of a data set.
type PixelData struct {
	// Offset and Length locate the value, counted from the first byte
	// of the data set (of the inflated data set, for a deflated transfer
	// syntax: see InflatedObject).
	Offset, Length int64
	// Encapsulated pixel data consists of Fragments; the first is the
	// Basic Offset Table (PS3.5 §A.4).
	Encapsulated bool
	Fragments    []Fragment
}

// Fragment locates one item of encapsulated pixel data.
type Fragment struct {
	Offset int64 // of the item's value, from the first byte of the data set, as PixelData.Offset
	Length int64
}

// maxFragments bounds the fragment table a hostile sender can make us keep.
const maxFragments = 1 << 20

// What the header takes in memory beyond the bytes of its copy, counted
// against Limits.Header so that the limit bounds memory, not bytes: a data
// set of tiny elements (thousands of empty binary values) would otherwise
// make the decoded header, and the list of the values located, many times
// larger than the data set. The figures are measured, rounded up.
const (
	// elementCost is what one element or item of the copy becomes once
	// decoded: an Element (or a Dataset) and its slices.
	elementCost = 128
	// bulkCost is one located value: its Binary and its entry in bulk.
	bulkCost = 80
	// omittedCost is one entry of Omitted.
	omittedCost = 4
)

// fits reports whether n more bytes of the header stay within
// Limits.Header; when they do not, the current top-level element is left
// out (see keep).
func (w *walker) fits(n int) bool {
	if w.overflow || w.full {
		return false
	}
	if len(w.out)+w.kept+n > w.lim.Header {
		w.overflow = true
		return false
	}
	return true
}

// emit appends b to the copy if it fits.
func (w *walker) emit(b ...byte) {
	if w.fits(len(b)) {
		w.out = append(w.out, b...)
	}
}

// emitHeader appends an element, item or delimiter header to the copy,
// charging an element's or item's decoded cost.
func (w *walker) emitHeader(t tag.Tag, vr string, length uint32) {
	if vr != "" || t == tag.Item {
		if !w.fits(elementCost) {
			return
		}
		w.kept += elementCost
	}
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

// emitMarker puts a located value in w.bulk and its marker in the copy:
// an OB value of the walker's random nonce and the value's index in
// w.bulk. data, the value when it is small enough to hold (see
// Limits.Inline), is copied. pixel says that the value is the top-level
// Pixel Data.
func (w *walker) emitMarker(t tag.Tag, vr string, b Binary, data []byte, pixel bool) {
	if !w.fits(bulkCost + len(data)) {
		return
	}
	w.kept += bulkCost + len(data)
	bin := new(Binary) // only now: b would escape, allocated for every value
	*bin = b
	if data != nil {
		bin.Data = append([]byte(nil), data...)
	}
	var m [16]byte
	copy(m[:], w.nonce[:])
	binary.LittleEndian.PutUint64(m[8:], uint64(len(w.bulk)))
	if pixel {
		w.pixelIdx = len(w.bulk)
	}
	w.bulk = append(w.bulk, bulkValue{vr, bin})
	w.emitHeader(t, "OB", 16)
	w.emit(m[:]...)
}

// topMark is where the header stood before an element.
type topMark struct{ out, kept, bulk int }

func (w *walker) mark() topMark { return topMark{len(w.out), w.kept, len(w.bulk)} }

// settle ends top-level element t begun at m. An element that did not
// fit, or whose walk failed (err), is taken out of the header again; one
// that did not fit is listed in Omitted, while that list fits. Past that
// the header is full, and later elements are walked but not kept.
func (w *walker) settle(m topMark, t tag.Tag, err error) error {
	if !w.overflow && err == nil {
		return nil
	}
	w.rollback(m)
	if w.overflow && err == nil {
		w.overflow = false
		if w.fits(omittedCost) {
			w.kept += omittedCost
			w.omitted = append(w.omitted, t)
		} else {
			w.full = true
		}
	}
	w.overflow = false
	return err
}

// rollback takes out of the header what was put in it since m.
func (w *walker) rollback(m topMark) {
	w.out, w.kept, w.bulk = w.out[:m.out], m.kept, w.bulk[:m.bulk]
	if w.pixelIdx >= m.bulk {
		w.pixelIdx = -1
	}
}

type pendingElement struct {
	t      tag.Tag
	vr     string
	length uint32
}

// header reads an element, item or delimiter header, choosing the VR of an
// implicit VR element from the dictionary.
func (w *walker) header(sx syntax, lv *level) (t tag.Tag, vr string, length uint32, err error) {
	t, vr, length, err = w.elementReader.header(sx)
	if err == nil && vr == "" && t.Group() != 0xFFFE {
		vr = lv.implicitVR(t, length)
	}
	return t, vr, length, err
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
		t, vr, length, err := w.header(w.top, &w.topLevel)
		if err != nil {
			return err
		}
		if t.Group() == 0xFFFE {
			return malformed("%v outside a sequence at offset %d", t, w.pos-8)
		}
		buffered := w.r.Buffered()
		valueVR, _ := w.topLevel.valueVR(w.top, t, vr, length)
		switch {
		case length != undefinedLength && int64(length) <= int64(buffered):
			if err := w.topElement(t, vr, length); err != nil {
				return err
			}
		case length != undefinedLength && binaryVR(valueVR) && int64(length) > int64(w.lim.Inline):
			pixel := isPixelData(t)
			if pixel {
				w.pixel = &PixelData{Offset: w.pos, Length: int64(length)}
			}
			m := w.mark()
			w.emitMarker(t, valueVR, Binary{Offset: w.pos, Length: int64(length)}, nil, pixel)
			if err := w.settle(m, t, w.skip(int64(buffered))); err != nil {
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
	m := w.mark()
	return w.settle(m, t, w.value(w.top, &w.topLevel, t, vr, length, 0, true))
}

// isPixelData reports whether t is one of the pixel data elements, which
// Header.PixelData locates at the top level.
func isPixelData(t tag.Tag) bool {
	return t == tag.PixelData || t == tag.FloatPixelData || t == tag.DoubleFloatPixelData
}

// walkUntil walks top-level elements up to and including those with tag
// stop, and reports whether any element follows. Elements out of order do
// not hide the identity: the walk goes on past stop until the identity is
// complete.
func (w *walker) walkUntil(stop tag.Tag) (more bool, err error) {
	if w.pos == 0 {
		w.top = w.detectSyntax(w.top)
	}
	if p := w.pending; p != nil {
		w.pending = nil
		if err := w.topElement(p.t, p.vr, p.length); err != nil {
			return false, err
		}
	}
	for {
		t, ok, err := w.peekTag(w.top)
		if err != nil || !ok {
			return false, err
		}
		if t > stop && w.id.complete() {
			return true, nil
		}
		t, vr, length, err := w.header(w.top, &w.topLevel)
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

// valueVR returns the VR to read the value of an element with and the
// syntax it is in: an element sent as UN in explicit VR whose tag the
// dictionary knows is read with the dictionary's VR, as little endian
// whatever the transfer syntax (PS3.5 §6.2.2), so that standard
// attributes forwarded by an application without their dictionary (as UN)
// are still known. Its items, if it is a sequence, are implicit VR little
// endian. The stored bytes are not changed. A value too long for the
// dictionary VR's explicit header stays UN, and so does a big endian
// Pixel Data, whose frames are read back by the transfer syntax's order.
func (lv level) valueVR(sx syntax, t tag.Tag, vr string, length uint32) (string, syntax) {
	if vr != "UN" || !sx.explicit {
		return vr, sx
	}
	if length == undefinedLength {
		return "SQ", syntax{} // what else an undefined length can be
	}
	dict := lv.implicitVR(t, length)
	switch {
	case dict == "UN":
		return vr, sx
	case !longVR(dict) && length > math.MaxUint16:
		return vr, sx
	case t == tag.PixelData && sx.bigEndian:
		return vr, sx
	}
	return dict, syntax{}
}

// value walks the value of an element whose header has been read; lv is
// the level of the data set or item the element is in.
func (w *walker) value(sx syntax, lv *level, t tag.Tag, vr string, length uint32, depth int, top bool) error {
	if t == tag.SpecificCharacterSet {
		return w.charset(length)
	}
	sent := vr
	vr, sx = lv.valueVR(sx, t, vr, length)
	switch {
	case vr == "SQ":
		at, m := w.pos, w.mark()
		w.emitHeader(t, "SQ", undefinedLength)
		if err := w.sequence(sx, length, depth+1); err != nil {
			end := at + int64(length)
			if sent != "UN" || length == undefinedLength || errors.Is(err, ErrTruncated) || w.pos > end {
				return fmt.Errorf("sequence %v at offset %d: %w", t, at, err)
			}
			// A sequence sent as UN whose value is not the implicit
			// VR items PS3.5 §6.2.2 promises (some forwarders keep
			// the items' original encoding) stays what it was sent
			// as: a UN value, located.
			w.rollback(m)
			if err := w.skip(end - w.pos); err != nil {
				return err
			}
			w.emitMarker(t, sent, Binary{Offset: at, Length: int64(length)}, nil, false)
			return nil
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
			return fmt.Errorf("encapsulated %v at offset %d: %w", t, start, err)
		}
		if px != nil {
			px.Length = w.pos - start
			w.pixel = px
		}
		w.emitMarker(t, vr, Binary{Offset: start, Length: w.pos - start, Encapsulated: true}, nil, px != nil)
		return nil

	case binaryVR(vr) || length > maxText || (!longVR(vr) && length > math.MaxUint16):
		// Oversized text is located like a binary value rather than
		// held; the last case is an implicit VR value too long for
		// its VR's explicit header.
		b := Binary{Offset: w.pos, Length: int64(length)}
		pixel := top && isPixelData(t)
		if pixel {
			w.pixel = &PixelData{Offset: w.pos, Length: int64(length)}
		}
		var data []byte
		if int(length) <= w.lim.Inline {
			v, err := w.read(int(length))
			if err != nil {
				return err
			}
			data = v[:len(v):len(v)]
			if sx.bigEndian {
				swapUnits(data, lv.swapUnit(t, vr))
			}
		} else if err := w.skip(int64(length)); err != nil {
			return err
		}
		w.emitMarker(t, vr, b, data, pixel)
		return nil
	}

	v, err := w.read(int(length))
	if err != nil {
		return err
	}
	if sx.bigEndian {
		swapUnits(v, lv.swapUnit(t, vr))
	}
	lv.observe(t, v, binary.LittleEndian)
	if top {
		w.id.capture(t, v)
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

// enclose narrows w.limit to end, if end is defined, and returns the
// limit to restore when the container is walked.
func (w *walker) enclose(end int64) (outer int64) {
	outer = w.limit
	if end >= 0 && (outer < 0 || end < outer) {
		w.limit = end
	}
	return outer
}

// room checks that n more bytes, of what, stay within w.limit.
func (w *walker) room(n int64, what string) error {
	if w.limit >= 0 && w.pos+n > w.limit {
		return malformed("%s at offset %d runs past the end of its sequence or item at offset %d", what, w.pos, w.limit)
	}
	return nil
}

// sequence walks the items of a sequence, each a level of its own.
func (w *walker) sequence(sx syntax, length uint32, depth int) error {
	if depth > w.lim.Depth {
		return malformed("sequences nested deeper than %d at offset %d", w.lim.Depth, w.pos)
	}
	end := int64(-1)
	if length != undefinedLength {
		end = w.pos + int64(length)
	}
	defer func(outer int64) { w.limit = outer }(w.enclose(end))
	for {
		if end >= 0 {
			if w.pos == end {
				return nil
			}
			if w.pos > end {
				return malformed("sequence overruns its length by %d bytes", w.pos-end)
			}
		}
		if err := w.room(8, "an item header"); err != nil {
			return err
		}
		t, _, n, err := w.elementReader.header(sx)
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
	lv := newLevel()
	defer func(outer int64) { w.limit = outer }(w.enclose(end))
	for {
		if end >= 0 {
			if w.pos == end {
				return nil
			}
			if w.pos > end {
				return malformed("item overruns its length by %d bytes", w.pos-end)
			}
		}
		if err := w.room(8, "an element header"); err != nil {
			return err
		}
		t, vr, length, err := w.header(sx, &lv)
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
		if length != undefinedLength {
			if err := w.room(int64(length), "the value of "+t.String()); err != nil {
				return err
			}
		}
		if err := w.value(sx, &lv, t, vr, length, depth, false); err != nil {
			return err
		}
	}
}

// fragments walks the items of an encapsulated value to its sequence
// delimiter, recording them in px if px is not nil.
func (w *walker) fragments(sx syntax, px *PixelData) error {
	for {
		if err := w.room(8, "a fragment header"); err != nil {
			return err
		}
		t, _, n, err := w.elementReader.header(sx)
		if err != nil {
			return err
		}
		switch {
		case t == tag.SequenceDelimitationItem:
			return nil
		case t != tag.Item || n == undefinedLength:
			return malformed("%v of length %#x among pixel data fragments at offset %d", t, n, w.pos-8)
		}
		if err := w.room(int64(n), "a fragment"); err != nil {
			return err
		}
		if px != nil && len(px.Fragments) < maxFragments {
			px.Fragments = append(px.Fragments, Fragment{Offset: w.pos, Length: int64(n)})
		}
		if err := w.skip(int64(n)); err != nil {
			return err
		}
	}
}
