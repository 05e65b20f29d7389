package pdu

import (
	"encoding/binary"
	"strings"
)

// AETitleLength is the size of the Called and Calling AE Title fields of
// an A-ASSOCIATE-RQ or -AC.
const AETitleLength = 16

// PadAETitle returns title as the 16-byte field of an A-ASSOCIATE PDU:
// leading and trailing spaces, which PS3.5 says are not significant, are
// removed, and the rest is padded with spaces. It fails, wrapping
// ErrInvalid, if more than 16 bytes remain. It does not check the
// character repertoire; the association layer validates the titles it is
// configured with.
func PadAETitle(title string) ([AETitleLength]byte, error) {
	var f [AETitleLength]byte
	t := strings.Trim(title, " ")
	if len(t) > AETitleLength {
		return f, invalid("AE title %q is longer than %d bytes", title, AETitleLength)
	}
	n := copy(f[:], t)
	for i := n; i < len(f); i++ {
		f[i] = ' '
	}
	return f, nil
}

// TrimAETitle returns the significant part of an AE title field: without
// leading and trailing spaces, and without the NUL bytes some
// implementations pad with.
func TrimAETitle(field []byte) string {
	return string(trimPad(field, true))
}

// trimPad removes trailing spaces and NULs from b, and leading ones too if
// leading is set.
func trimPad(b []byte, leading bool) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	for leading && len(b) > 0 && (b[0] == ' ' || b[0] == 0) {
		b = b[1:]
	}
	return b
}

// decodeUID returns the UID in b. UIDs in items are not padded (PS3.8
// Annex F), but a trailing NUL or space from a peer that pads them anyway is
// removed.
func decodeUID(what string, b []byte) (string, error) {
	if len(b) > maxUIDLength {
		return "", malformed(AbortReasonInvalidPDUParameterValue, "%s of %d bytes is longer than %d", what, len(b), maxUIDLength)
	}
	return string(trimPad(b, false)), nil
}

// checkUID reports a UID too long to be encoded.
func checkUID(what, uid string) error {
	if len(uid) > maxUIDLength {
		return invalid("%s %q is longer than %d bytes", what, uid, maxUIDLength)
	}
	return nil
}

// clone returns a copy of b that does not alias the Reader's buffer, or nil
// if b is empty, so that decoded values compare equal however they came.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// item is an item or sub-item of the variable part of an A-ASSOCIATE PDU:
// a type byte, a byte that is reserved in all but one item type, a 2-byte
// length and the value.
type item struct {
	typ   byte
	byte2 byte
	value []byte
	raw   []byte // the whole item, header included
}

// nextItem splits the first item off b. The item's length must fit in b.
func nextItem(b []byte) (item, []byte, error) {
	if len(b) < 4 {
		return item{}, nil, malformed(AbortReasonInvalidPDUParameterValue, "%d bytes left, too few for an item header", len(b))
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if n > len(b)-4 {
		return item{}, nil, malformed(AbortReasonInvalidPDUParameterValue, "item 0x%02X of length %d overruns the %d bytes that enclose it", b[0], n, len(b)-4)
	}
	return item{typ: b[0], byte2: b[1], value: b[4 : 4+n], raw: b[:4+n]}, b[4+n:], nil
}

// beginItem appends the header of an item of type t with a placeholder
// length, and returns the offset endItem needs.
func beginItem(dst []byte, t byte) ([]byte, int) {
	return append(dst, t, 0, 0, 0), len(dst)
}

// endItem fills in the length of the item that starts at off.
func endItem(dst []byte, off int, what string) ([]byte, error) {
	n := len(dst) - off - 4
	if n > 0xFFFF {
		return dst, invalid("%s of %d bytes does not fit in an item", what, n)
	}
	binary.BigEndian.PutUint16(dst[off+2:], uint16(n))
	return dst, nil
}

// appendStringItem appends an item whose value is s.
func appendStringItem(dst []byte, t byte, s string) []byte {
	dst = append(dst, t, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// appendUint16String appends s preceded by its 2-byte length, the layout of
// the UIDs and fields inside user information sub-items.
func appendUint16String[T string | []byte](dst []byte, s T) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// field splits a field preceded by a 2-byte length off the value of a
// sub-item.
func field(what string, b []byte) ([]byte, []byte, error) {
	if len(b) < 2 {
		return nil, nil, malformed(AbortReasonInvalidPDUParameterValue, "%d bytes left, too few for the length of the %s", len(b), what)
	}
	n := int(binary.BigEndian.Uint16(b))
	if n > len(b)-2 {
		return nil, nil, malformed(AbortReasonInvalidPDUParameterValue, "%s of length %d overruns the %d bytes left", what, n, len(b)-2)
	}
	return b[2 : 2+n], b[2+n:], nil
}

// unexpectedOrUnrecognized returns the error for an item of type t where it
// is not allowed: unexpected if PS3.8 defines the type elsewhere,
// unrecognized if it defines it nowhere.
func unexpectedOrUnrecognized(t byte, where string) error {
	if knownItem(t) {
		return malformed(AbortReasonUnexpectedPDUParameter, "item 0x%02X is not allowed in %s", t, where)
	}
	return malformed(AbortReasonUnrecognizedPDUParameter, "unrecognized item 0x%02X in %s", t, where)
}
