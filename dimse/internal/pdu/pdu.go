package pdu

import (
	"errors"
	"fmt"
)

// Type is the PDU-type field, the first byte of every PDU.
type Type byte

// The PDU types of PS3.8 §9.3.1.
const (
	TypeAssociateRQ Type = 0x01
	TypeAssociateAC Type = 0x02
	TypeAssociateRJ Type = 0x03
	TypePDataTF     Type = 0x04
	TypeReleaseRQ   Type = 0x05
	TypeReleaseRP   Type = 0x06
	TypeAbort       Type = 0x07
)

// String returns the PS3.8 name of t, such as "A-ASSOCIATE-RQ".
func (t Type) String() string {
	switch t {
	case TypeAssociateRQ:
		return "A-ASSOCIATE-RQ"
	case TypeAssociateAC:
		return "A-ASSOCIATE-AC"
	case TypeAssociateRJ:
		return "A-ASSOCIATE-RJ"
	case TypePDataTF:
		return "P-DATA-TF"
	case TypeReleaseRQ:
		return "A-RELEASE-RQ"
	case TypeReleaseRP:
		return "A-RELEASE-RP"
	case TypeAbort:
		return "A-ABORT"
	}
	return fmt.Sprintf("PDU type 0x%02X", byte(t))
}

// HeaderLength is the length of the header that starts every PDU: the type,
// a reserved byte and the 4-byte PDU length. The PDU length counts the bytes
// after the header.
const HeaderLength = 6

// Header is the start of a PDU, as Reader.Peek reports it.
type Header struct {
	Type   Type
	Length uint32 // bytes that follow the header
}

// PDU is one of *AssociateRQ, *AssociateAC, *AssociateRJ, *PDataTF,
// *ReleaseRQ, *ReleaseRP and *Abort.
type PDU interface {
	// Type returns the PDU type.
	Type() Type
	// AppendTo appends the encoded PDU, header included, to dst and
	// returns the extended slice. It fails, wrapping ErrInvalid, if a
	// value cannot be encoded; dst is then returned unchanged.
	AppendTo(dst []byte) ([]byte, error)
}

var (
	// ErrMalformed is wrapped by every *Error a Reader returns for a PDU
	// that breaks PS3.8, except one longer than the Reader's maximum.
	ErrMalformed = errors.New("pdu: malformed PDU")

	// ErrTooLong is wrapped by the *Error a Reader returns for a PDU
	// whose length exceeds the Reader's maximum.
	ErrTooLong = errors.New("pdu: PDU longer than the maximum")

	// ErrInvalid is wrapped by the errors of AppendTo and
	// AppendPDataHeader for values PS3.8 cannot carry.
	ErrInvalid = errors.New("pdu: invalid value")
)

// Error is a PDU that a Reader refused. It carries the reason PS3.8 §9.3.8
// gives for the A-ABORT that should answer it. Errors of the underlying
// io.Reader are returned as they are, never as an *Error.
type Error struct {
	reason AbortReason
	kind   error  // ErrMalformed or ErrTooLong
	detail string // where and what, e.g. "A-ASSOCIATE-RQ: user information: ..."
}

// Error returns the description of the problem.
func (e *Error) Error() string { return e.kind.Error() + ": " + e.detail }

// Unwrap returns ErrMalformed or ErrTooLong.
func (e *Error) Unwrap() error { return e.kind }

// AbortReason returns the reason to send in the A-ABORT (source: service
// provider) that answers the PDU.
func (e *Error) AbortReason() AbortReason { return e.reason }

// malformed returns an *Error wrapping ErrMalformed.
func malformed(reason AbortReason, format string, args ...any) *Error {
	return &Error{reason: reason, kind: ErrMalformed, detail: fmt.Sprintf(format, args...)}
}

// within prefixes the detail of err, an *Error, with where it happened,
// keeping its reason. Decoders call it on the way out so that the message
// names the whole path, from the PDU down to the field.
func within(err error, format string, args ...any) error {
	e, ok := err.(*Error)
	if !ok {
		return fmt.Errorf(format+": %w", append(args, err)...)
	}
	return &Error{reason: e.reason, kind: e.kind, detail: fmt.Sprintf(format, args...) + ": " + e.detail}
}

// invalid returns an encoding error wrapping ErrInvalid.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
