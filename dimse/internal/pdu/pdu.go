// Package pdu encodes and decodes the protocol data units of the DICOM Upper
// Layer protocol for TCP/IP (PS3.8 §9.3). It is a pure codec: it never dials,
// listens, times out or keeps association state; the association state
// machine in the enclosing dimse package does all of that.
//
// # Decoding
//
// A Reader reads PDUs from an io.Reader:
//
//	r := pdu.NewReader(conn, pdu.DefaultMaxLength)
//	for {
//		p, err := r.Next()
//		...
//		switch p := p.(type) {
//		case *pdu.PDataTF:
//			for _, v := range p.PDVs { ... } // v.Data is valid until the next call on r
//		case *pdu.AssociateRQ:
//			...
//		}
//	}
//
// Next returns one of *AssociateRQ, *AssociateAC, *AssociateRJ, *PDataTF,
// *ReleaseRQ, *ReleaseRP or *Abort. Every length read from the wire is
// checked against the length that encloses it, and the PDU length against
// the Reader's maximum before anything is allocated for it. A PDU that breaks
// PS3.8 yields an *Error whose AbortReason is the reason to put in the
// A-ABORT that answers it. Peek reports the type and length of the next PDU
// before its body is read, and Body streams a body the caller does not want
// decoded or buffered.
//
// P-DATA-TF is the hot path, so a Reader decodes it without allocating: the
// returned *PDataTF and the Data of its PDVs point into a buffer the Reader
// reuses, and stay valid only until the next call of Next, Peek or Body.
// Every other PDU is decoded into memory of its own that the caller keeps.
//
// Decoding checks structure, not policy: an A-ASSOCIATE-RQ with an unknown
// application context, an unsupported protocol version or no presentation
// context decodes, so that the association layer can answer it with an
// A-ASSOCIATE-RJ or a rejected presentation context rather than an abort.
// Fields PS3.8 calls reserved, or says shall not be tested, are ignored on
// read and written as zeros on write. Items of unrecognized types are
// skipped, as PS3.8 §9.3 requires, and unknown user information sub-items
// are kept verbatim in UserInfo.Unknown so that they can be passed on; but
// an item of a type PS3.8 defines for another place (a transfer syntax
// sub-item at the top level, say) is an unexpected-PDU-parameter error.
//
// # Encoding
//
// Every PDU type has an AppendTo method that appends its encoding to a byte
// slice, checking the values it encodes; anything a Reader decoded encodes
// again. AppendPDataHeader writes just the header of a P-DATA-TF PDU holding
// one PDV, so that a large payload can be written after it without being
// copied:
//
//	hdr, err := pdu.AppendPDataHeader(buf[:0], ctxID, false, last, len(chunk))
//	bufs := net.Buffers{hdr, chunk}
//	_, err = bufs.WriteTo(conn)
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
