package cmdset

import (
	"encoding/binary"
	"fmt"

	"github.com/pacsd/pacsd/dicom/tag"
)

// kind says how an element is represented in a Command.
type kind uint8

const (
	kindGroupLength kind = iota // UL, computed on encode, ignored on decode
	kindField                   // US, Command.CommandField, required
	kindDataSetType             // US, Command.CommandDataSetType, required
	kindPriority                // US, Command.Priority
	kindUS                      // US, an optional *uint16
	kindUI                      // UI, a string
	kindAE                      // AE, a string
	kindLO                      // LO, a string
	kindAT                      // AT, a []tag.Tag
)

// element describes one command element; exactly one accessor is set,
// according to kind.
type element struct {
	tag  tag.Tag
	kind kind
	us   func(*Command) **uint16
	str  func(*Command) *string
	at   func(*Command) *[]tag.Tag
}

// elements lists the command elements Command holds, in ascending tag
// order, which is the order AppendTo writes them in. There are fewer than
// 32, so that a uint32 can record which were seen.
var elements = [...]element{
	{tag: tag.CommandGroupLength, kind: kindGroupLength},
	{tag: tag.AffectedSOPClassUID, kind: kindUI, str: func(c *Command) *string { return &c.AffectedSOPClassUID }},
	{tag: tag.RequestedSOPClassUID, kind: kindUI, str: func(c *Command) *string { return &c.RequestedSOPClassUID }},
	{tag: tag.CommandField, kind: kindField},
	{tag: tag.MessageID, kind: kindUS, us: func(c *Command) **uint16 { return &c.MessageID }},
	{tag: tag.MessageIDBeingRespondedTo, kind: kindUS, us: func(c *Command) **uint16 { return &c.MessageIDBeingRespondedTo }},
	{tag: tag.MoveDestination, kind: kindAE, str: func(c *Command) *string { return &c.MoveDestination }},
	{tag: tag.Priority, kind: kindPriority},
	{tag: tag.CommandDataSetType, kind: kindDataSetType},
	{tag: tag.Status, kind: kindUS, us: func(c *Command) **uint16 { return &c.Status }},
	{tag: tag.OffendingElement, kind: kindAT, at: func(c *Command) *[]tag.Tag { return &c.OffendingElement }},
	{tag: tag.ErrorComment, kind: kindLO, str: func(c *Command) *string { return &c.ErrorComment }},
	{tag: tag.ErrorID, kind: kindUS, us: func(c *Command) **uint16 { return &c.ErrorID }},
	{tag: tag.AffectedSOPInstanceUID, kind: kindUI, str: func(c *Command) *string { return &c.AffectedSOPInstanceUID }},
	{tag: tag.RequestedSOPInstanceUID, kind: kindUI, str: func(c *Command) *string { return &c.RequestedSOPInstanceUID }},
	{tag: tag.EventTypeID, kind: kindUS, us: func(c *Command) **uint16 { return &c.EventTypeID }},
	{tag: tag.AttributeIdentifierList, kind: kindAT, at: func(c *Command) *[]tag.Tag { return &c.AttributeIdentifierList }},
	{tag: tag.ActionTypeID, kind: kindUS, us: func(c *Command) **uint16 { return &c.ActionTypeID }},
	{tag: tag.NumberOfRemainingSuboperations, kind: kindUS, us: func(c *Command) **uint16 { return &c.NumberOfRemainingSuboperations }},
	{tag: tag.NumberOfCompletedSuboperations, kind: kindUS, us: func(c *Command) **uint16 { return &c.NumberOfCompletedSuboperations }},
	{tag: tag.NumberOfFailedSuboperations, kind: kindUS, us: func(c *Command) **uint16 { return &c.NumberOfFailedSuboperations }},
	{tag: tag.NumberOfWarningSuboperations, kind: kindUS, us: func(c *Command) **uint16 { return &c.NumberOfWarningSuboperations }},
	{tag: tag.MoveOriginatorApplicationEntityTitle, kind: kindAE, str: func(c *Command) *string { return &c.MoveOriginatorApplicationEntityTitle }},
	{tag: tag.MoveOriginatorMessageID, kind: kindUS, us: func(c *Command) **uint16 { return &c.MoveOriginatorMessageID }},
}

// lookup returns the index in elements of the element with tag t.
func lookup(t tag.Tag) (int, bool) {
	for i := range elements {
		if elements[i].tag == t {
			return i, true
		}
	}
	return 0, false
}

// elementHeaderLength is the length of an element header in Implicit VR
// Little Endian: tag group, tag element and a 4-byte value length.
const elementHeaderLength = 8

// Decode decodes the command set b, which must be complete: the command
// fragments of one message, concatenated. It returns an error wrapping
// ErrMalformed if b breaks PS3.7 in a way described in the package
// documentation. The Command does not alias b.
func Decode(b []byte) (*Command, error) {
	if len(b) > MaxLength {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxLength)
	}
	c := new(Command)
	var seen uint32
	var hasField, hasDataSetType bool
	for off := 0; off < len(b); {
		if len(b)-off < elementHeaderLength {
			return nil, fmt.Errorf("%w: %d bytes at offset %d, too few for an element header", ErrMalformed, len(b)-off, off)
		}
		t := tag.New(binary.LittleEndian.Uint16(b[off:]), binary.LittleEndian.Uint16(b[off+2:]))
		n := binary.LittleEndian.Uint32(b[off+4:])
		if t.Group() != 0 {
			return nil, fmt.Errorf("%w: element %s at offset %d is not in group 0000", ErrMalformed, t, off)
		}
		if n == 0xFFFFFFFF {
			return nil, fmt.Errorf("%w: element %s has an undefined length", ErrMalformed, t)
		}
		if uint64(n) > uint64(len(b)-off-elementHeaderLength) {
			return nil, fmt.Errorf("%w: element %s of length %d overruns the %d bytes left", ErrMalformed, t, n, len(b)-off-elementHeaderLength)
		}
		v := b[off+elementHeaderLength : off+elementHeaderLength+int(n)]
		off += elementHeaderLength + int(n)
		i, ok := lookup(t)
		if !ok {
			// Retired and future command elements: PS3.7 lets a
			// receiver ignore what it does not know.
			continue
		}
		if seen&(1<<i) != 0 {
			return nil, fmt.Errorf("%w: element %s appears twice", ErrMalformed, t)
		}
		seen |= 1 << i
		if err := decodeElement(c, &elements[i], v); err != nil {
			return nil, fmt.Errorf("%w: element %s: %v", ErrMalformed, t, err)
		}
		switch elements[i].kind {
		case kindField:
			hasField = len(v) > 0
		case kindDataSetType:
			hasDataSetType = len(v) > 0
		}
	}
	if !hasField {
		return nil, fmt.Errorf("%w: no Command Field %s", ErrMalformed, tag.CommandField)
	}
	if !hasDataSetType {
		return nil, fmt.Errorf("%w: no Command Data Set Type %s", ErrMalformed, tag.CommandDataSetType)
	}
	return c, nil
}

// decodeElement stores the value v of element e in c. A zero-length value
// of a numeric element counts as absent, the way PS3.5 treats empty values.
func decodeElement(c *Command, e *element, v []byte) error {
	switch e.kind {
	case kindGroupLength:
		if len(v) != 0 && len(v) != 4 {
			return fmt.Errorf("UL of length %d, not 4", len(v))
		}
	case kindField, kindDataSetType, kindPriority, kindUS:
		if len(v) == 0 {
			return nil
		}
		if len(v) != 2 {
			return fmt.Errorf("US of length %d, not 2", len(v))
		}
		x := binary.LittleEndian.Uint16(v)
		switch e.kind {
		case kindField:
			c.CommandField = Field(x)
		case kindDataSetType:
			c.CommandDataSetType = x
		case kindPriority:
			p := Priority(x)
			c.Priority = &p
		default:
			*e.us(c) = &x
		}
	case kindUI:
		// A UID longer than PS3.5 allows is kept, for Check to find:
		// the command is otherwise understood, and answered with a
		// failure status rather than an abort.
		*e.str(c) = string(trimRight(v))
	case kindAE:
		*e.str(c) = string(trimLeft(trimRight(v)))
	case kindLO:
		// PS3.5 limits LO to 64 characters, but a longer error comment
		// does no harm and is worth reading, so it is kept.
		*e.str(c) = string(trimRight(v))
	case kindAT:
		if len(v)%4 != 0 {
			return fmt.Errorf("AT of length %d, not a multiple of 4", len(v))
		}
		if len(v) == 0 {
			return nil
		}
		tags := make([]tag.Tag, 0, len(v)/4)
		for ; len(v) > 0; v = v[4:] {
			tags = append(tags, tag.New(binary.LittleEndian.Uint16(v), binary.LittleEndian.Uint16(v[2:])))
		}
		*e.at(c) = tags
	}
	return nil
}

// trimRight removes the padding of a string value: trailing spaces, and
// the trailing NULs that pad UIDs and that some peers use for other VRs.
func trimRight(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == 0) {
		b = b[:len(b)-1]
	}
	return b
}

// trimLeft removes leading spaces and NULs, which are not significant in
// an AE title.
func trimLeft(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == 0) {
		b = b[1:]
	}
	return b
}

// AppendTo appends the encoded command set to dst: the Command Group
// Length, then every element of c that is present, in ascending tag order,
// in Implicit VR Little Endian. It fails, wrapping ErrInvalid and leaving
// dst unchanged, if a UID or AE title is too long for its VR. Strings are
// padded to even length, UIDs with a NUL and the others with a space.
func (c *Command) AppendTo(dst []byte) ([]byte, error) {
	start := len(dst)
	for i := range elements {
		e := &elements[i]
		var err error
		switch e.kind {
		case kindGroupLength:
			dst = appendHeader(dst, e.tag, 4)
			dst = append(dst, 0, 0, 0, 0) // filled in below
		case kindField:
			dst = appendUS(dst, e.tag, uint16(c.CommandField))
		case kindDataSetType:
			dst = appendUS(dst, e.tag, c.CommandDataSetType)
		case kindPriority:
			if c.Priority != nil {
				dst = appendUS(dst, e.tag, uint16(*c.Priority))
			}
		case kindUS:
			if p := *e.us(c); p != nil {
				dst = appendUS(dst, e.tag, *p)
			}
		case kindUI:
			if s := *e.str(c); s != "" {
				if err = checkLength(e, s); err != nil {
					break
				}
				dst = appendString(dst, e.tag, s, 0)
			}
		case kindAE:
			if s := string(trimLeft(trimRight([]byte(*e.str(c))))); s != "" {
				if err = checkLength(e, s); err != nil {
					break
				}
				dst = appendString(dst, e.tag, s, ' ')
			}
		case kindLO:
			if s := *e.str(c); s != "" {
				if len(s) > MaxLength {
					err = fmt.Errorf("%w: %s: string of %d bytes", ErrInvalid, e.tag, len(s))
					break
				}
				dst = appendString(dst, e.tag, s, ' ')
			}
		case kindAT:
			if tags := *e.at(c); len(tags) > 0 {
				if len(tags) > MaxLength/4 {
					err = fmt.Errorf("%w: %s: %d tags", ErrInvalid, e.tag, len(tags))
					break
				}
				dst = appendHeader(dst, e.tag, uint32(4*len(tags)))
				for _, t := range tags {
					dst = binary.LittleEndian.AppendUint16(dst, t.Group())
					dst = binary.LittleEndian.AppendUint16(dst, t.Element())
				}
			}
		}
		if err != nil {
			return dst[:start], err
		}
	}
	// The group length counts the bytes after its own element.
	binary.LittleEndian.PutUint32(dst[start+elementHeaderLength:], uint32(len(dst)-start-elementHeaderLength-4))
	return dst, nil
}

// ValueError is a UID or AE title longer than its VR allows (PS3.5
// §6.2). It wraps ErrInvalid.
type ValueError struct {
	Tag           tag.Tag
	Length, Limit int
}

func (e *ValueError) Error() string {
	return fmt.Sprintf("%v: %s value of %d bytes, more than %d", ErrInvalid, e.Tag, e.Length, e.Limit)
}

func (e *ValueError) Unwrap() error { return ErrInvalid }

// checkLength checks the length of the value s of a UI or AE element.
func checkLength(e *element, s string) error {
	limit := maxUI
	if e.kind == kindAE {
		limit = maxAE
	}
	if len(s) > limit {
		return &ValueError{Tag: e.tag, Length: len(s), Limit: limit}
	}
	return nil
}

// Check reports the first UID or AE title of c longer than its VR allows,
// as a *ValueError. Decode accepts such values, since the rest of the
// command can be understood and deserves an answer: a request with one is
// answered with a failure status, where AppendTo would refuse to encode
// the value.
func (c *Command) Check() error {
	for i := range elements {
		e := &elements[i]
		switch e.kind {
		case kindUI, kindAE:
			if err := checkLength(e, *e.str(c)); err != nil {
				return err
			}
		}
	}
	return nil
}

func appendHeader(dst []byte, t tag.Tag, n uint32) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, t.Group())
	dst = binary.LittleEndian.AppendUint16(dst, t.Element())
	return binary.LittleEndian.AppendUint32(dst, n)
}

func appendUS(dst []byte, t tag.Tag, v uint16) []byte {
	dst = appendHeader(dst, t, 2)
	return binary.LittleEndian.AppendUint16(dst, v)
}

// appendString appends a string element padded to even length with pad.
func appendString(dst []byte, t tag.Tag, s string, pad byte) []byte {
	n := len(s) + len(s)%2
	dst = appendHeader(dst, t, uint32(n))
	dst = append(dst, s...)
	if len(s)%2 == 1 {
		dst = append(dst, pad)
	}
	return dst
}
