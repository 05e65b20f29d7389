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

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
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

// elementReader reads the element structure of a data set: the headers of
// elements, items and delimiters, and the values between them, keeping
// the offset of every byte. The Scanner's walker and Transcode both read
// with it, so that a data set means the same to both.
//
// A stream that ends inside a header or a value is ErrTruncated; any
// other error of the stream passes through unchanged.
type elementReader struct {
	r       *bufio.Reader
	pos     int64 // offset of the next unread byte of the data set
	hdr     [12]byte
	scratch []byte
}

// eof turns the end of the stream inside a header or value (what) into
// ErrTruncated.
func (er *elementReader) eof(err error, what string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return truncated("data set ends inside %s at offset %d", what, er.pos)
	}
	return err
}

// readHeader reads n ≤ 12 bytes of a header.
func (er *elementReader) readHeader(n int) ([]byte, error) {
	b := er.hdr[:n]
	m, err := io.ReadFull(er.r, b)
	er.pos += int64(m)
	if err != nil {
		return nil, er.eof(err, "an element header")
	}
	return b, nil
}

// header reads an element, item or delimiter header in syntax sx. The VR
// is "" for items and delimiters (which have none in any syntax, PS3.5
// §7.5) and for elements of implicit VR, whose VR the caller chooses (see
// level.implicitVR).
func (er *elementReader) header(sx syntax) (t tag.Tag, vr string, length uint32, err error) {
	b, err := er.readHeader(4)
	if err != nil {
		return 0, "", 0, err
	}
	bo := sx.order()
	t = tag.New(bo.Uint16(b), bo.Uint16(b[2:]))
	if t.Group() == 0xFFFE || !sx.explicit {
		if b, err = er.readHeader(4); err != nil {
			return 0, "", 0, err
		}
		return t, "", bo.Uint32(b), nil
	}
	if b, err = er.readHeader(2); err != nil {
		return 0, "", 0, err
	}
	if b[0] < 'A' || b[0] > 'Z' || b[1] < 'A' || b[1] > 'Z' {
		return 0, "", 0, malformed("element %v at offset %d has VR %q", t, er.pos-6, b)
	}
	vr = internVR(b)
	if longVR(vr) {
		if b, err = er.readHeader(6); err != nil {
			return 0, "", 0, err
		}
		return t, vr, bo.Uint32(b[2:]), nil
	}
	if b, err = er.readHeader(2); err != nil {
		return 0, "", 0, err
	}
	return t, vr, uint32(bo.Uint16(b)), nil
}

// read reads n bytes of a value into a buffer that the next read reuses.
func (er *elementReader) read(n int) ([]byte, error) {
	if cap(er.scratch) < n {
		er.scratch = make([]byte, n)
	}
	b := er.scratch[:n]
	return b, er.fill(b)
}

// fill reads len(p) bytes of a value into p.
func (er *elementReader) fill(p []byte) error {
	m, err := io.ReadFull(er.r, p)
	er.pos += int64(m)
	if err != nil {
		return er.eof(err, "a value")
	}
	return nil
}

// skip discards n bytes of a value.
func (er *elementReader) skip(n int64) error {
	for n > 0 {
		m, err := er.r.Discard(int(min(n, math.MaxInt32)))
		er.pos += int64(m)
		n -= int64(m)
		if err != nil {
			return er.eof(err, "a value")
		}
	}
	return nil
}

// peekTag returns the tag of the next element of a data set's top level,
// in syntax sx, without reading it; ok is false at the end of the stream.
func (er *elementReader) peekTag(sx syntax) (t tag.Tag, ok bool, err error) {
	b, err := er.r.Peek(4)
	switch {
	case len(b) == 4:
		bo := sx.order()
		return tag.New(bo.Uint16(b), bo.Uint16(b[2:])), true, nil
	case len(b) == 0 && errors.Is(err, io.EOF):
		return 0, false, nil
	case errors.Is(err, io.EOF):
		return 0, false, truncated("data set ends inside an element header at offset %d", er.pos+int64(len(b)))
	}
	return 0, false, err
}

// detectSyntax returns sx, the VR encoding the transfer syntax claims for
// the data set, corrected from the first element when that shows the
// other one, as dcmtk and pydicom read it: some writers label implicit
// VR data sets with an explicit syntax, and the other way round.
func (er *elementReader) detectSyntax(sx syntax) syntax {
	b, err := er.r.Peek(6)
	if err != nil || sx.bigEndian {
		return sx
	}
	letters := b[4] >= 'A' && b[4] <= 'Z' && b[5] >= 'A' && b[5] <= 'Z'
	t := tag.New(binary.LittleEndian.Uint16(b), binary.LittleEndian.Uint16(b[2:]))
	switch {
	case sx.explicit && !letters:
		sx.explicit = false
	case !sx.explicit && letters:
		if info, ok := tag.Lookup(t); ok && strings.Contains(info.VR, string(b[4:6])) {
			sx.explicit = true
		}
	}
	return sx
}

// vrs are the VRs of PS3.5 Table 6.2-1.
var vrs = [...]string{"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
	"PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"}

// internVR returns the two letters of b as a string, without allocating
// for the VRs of the standard: a data set has one per element.
func internVR(b []byte) string {
	for _, vr := range vrs {
		if vr[0] == b[0] && vr[1] == b[1] {
			return vr
		}
	}
	return string(b[:2])
}

// knownVR reports whether vr is a VR of PS3.5 Table 6.2-1.
func knownVR(vr string) bool {
	for _, v := range vrs {
		if v == vr {
			return true
		}
	}
	return false
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

// binaryVR reports whether values of vr are kept out of the Scanner's
// header copy. SV and UV are among them because the decoder does not
// know them; they are decoded here.
func binaryVR(vr string) bool {
	switch vr {
	case "OB", "OD", "OF", "OL", "OV", "OW", "UN", "SV", "UV":
		return true
	}
	return false
}

// level is what one data set or item says about the encoding of its own
// values: Pixel Representation (0028,0103), which makes the "US or SS"
// pixel values SS in implicit VR (PS3.5 Annex A.1), and Bits Allocated
// (0028,0100), which sets the unit in which Pixel Data is byte-swapped.
// Both precede what they apply to in tag order.
type level struct {
	pixelRep      int // -1 when not seen
	bitsAllocated int // 0 when not seen
}

func newLevel() level { return level{pixelRep: -1} }

// observe notes the value v of element t, in byte order bo, if it is
// one that level keeps.
func (lv *level) observe(t tag.Tag, v []byte, bo binary.ByteOrder) {
	if len(v) != 2 {
		return
	}
	switch t {
	case tag.PixelRepresentation:
		lv.pixelRep = int(bo.Uint16(v))
	case tag.BitsAllocated:
		lv.bitsAllocated = int(bo.Uint16(v))
	}
}

// implicitVR chooses the VR of an element of an implicit VR data set from
// the data dictionary, as an element sent as UN in explicit VR is read
// too (PS3.5 §6.2.2).
func (lv level) implicitVR(t tag.Tag, length uint32) string {
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
		if lv.pixelRep == 1 && pixelValue(t) {
			return "SS"
		}
		return "US"
	case "NONE":
		return "UN"
	}
	return info.VR
}

// pixelValue reports whether t is one of the "US or SS" attributes whose
// VR follows Pixel Representation. The LUT descriptors, also "US or SS",
// are US whatever the pixels are (PS3.3 C.11.1.1.1 makes their first and
// third values unsigned), as dcmtk writes them.
func pixelValue(t tag.Tag) bool {
	switch t {
	case tag.LUTDescriptor,
		tag.GrayLookupTableDescriptor,
		tag.RedPaletteColorLookupTableDescriptor,
		tag.GreenPaletteColorLookupTableDescriptor,
		tag.BluePaletteColorLookupTableDescriptor,
		tag.LargeRedPaletteColorLookupTableDescriptor,
		tag.LargeGreenPaletteColorLookupTableDescriptor,
		tag.LargeBluePaletteColorLookupTableDescriptor:
		return false
	}
	return true
}

// swapUnit returns SwapUnit for an element of this level.
func (lv level) swapUnit(t tag.Tag, vr string) int {
	return SwapUnit(t, vr, lv.bitsAllocated)
}
