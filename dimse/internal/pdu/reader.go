package pdu

import (
	"encoding/binary"
	"fmt"
	"io"
)

// DefaultMaxLength is a maximum PDU length suitable for a Reader before an
// association is negotiated. It is far above what an A-ASSOCIATE-RQ with
// 128 presentation contexts of 30 transfer syntaxes each needs (about
// 300 KB), and above the P-DATA-TF lengths peers commonly negotiate.
const DefaultMaxLength uint32 = 4 << 20

// growStep is the most a Reader allocates for a PDU body before the bytes
// are there: a peer that announces a long PDU and sends little makes it
// allocate in proportion to what was sent, not to what was announced.
const growStep = 64 << 10

// Reader reads PDUs from an io.Reader. It reads each header and body with
// io.ReadFull and buffers nothing beyond the PDU it decodes, so the source
// is left at a PDU boundary; wrap it in a bufio.Reader if many small PDUs
// are expected. A Reader is not safe for concurrent use.
//
// After Next or Peek returns an error other than an *Error for a PDU that
// is too long or of an unknown type, the position in the stream is
// undefined: the caller should abort the association and close the
// connection.
type Reader struct {
	r       io.Reader
	max     uint32
	hdr     [HeaderLength]byte
	h       Header
	pending bool   // h was read and its body was not
	left    uint32 // body bytes of h not yet read, once Body was called
	buf     []byte // body of the last PDU Next read; reused
	pdata   PDataTF
	body    bodyReader
}

// NewReader returns a Reader of r that refuses PDUs whose PDU length (the
// bytes after the 6-byte header) exceeds maxLength. The association layer
// sets it with SetMaxLength once the Maximum Length it announced applies.
func NewReader(r io.Reader, maxLength uint32) *Reader {
	rd := &Reader{r: r, max: maxLength}
	rd.body.r = rd
	return rd
}

// SetMaxLength sets the longest PDU length Next accepts from now on.
func (r *Reader) SetMaxLength(n uint32) { r.max = n }

// Peek reads the header of the next PDU, if it has not read it yet, and
// returns it without reading the body. The next call of Next decodes that
// PDU; a call of Body streams its body instead. Peek returns io.EOF if the
// stream ends cleanly before a new PDU, and io.ErrUnexpectedEOF if it ends
// inside a header.
func (r *Reader) Peek() (Header, error) {
	if r.pending {
		return r.h, nil
	}
	if r.left > 0 {
		// The caller streamed part of the last body with Body and left
		// the rest, which is skipped.
		n, err := io.CopyN(io.Discard, r.r, int64(r.left))
		r.left -= uint32(n)
		if err != nil {
			return Header{}, fmt.Errorf("pdu: skipping the rest of a %s body: %w", r.h.Type, noEOF(err))
		}
	}
	if _, err := io.ReadFull(r.r, r.hdr[:]); err != nil {
		if err == io.EOF {
			// The stream ended cleanly between PDUs; io.EOF is
			// returned as it is, as io.Reader does.
			return Header{}, err
		}
		return Header{}, fmt.Errorf("pdu: reading a PDU header: %w", err)
	}
	// Byte 2 is reserved and not tested.
	r.h = Header{Type: Type(r.hdr[0]), Length: binary.BigEndian.Uint32(r.hdr[2:])}
	r.pending = true
	return r.h, nil
}

// Next reads and decodes the next PDU; see the package documentation for
// what it returns and for how long a *PDataTF stays valid. A PDU longer
// than the maximum, or of an unknown type, yields an *Error before its body
// is read: the header stays pending, so the caller may still stream the
// body with Body, or skip it by calling Next or Peek after Body.
func (r *Reader) Next() (PDU, error) {
	h, err := r.Peek()
	if err != nil {
		return nil, err
	}
	switch h.Type {
	case TypeAssociateRQ, TypeAssociateAC, TypePDataTF:
	case TypeAssociateRJ, TypeReleaseRQ, TypeReleaseRP, TypeAbort:
		if h.Length != fixedLength {
			return nil, within(malformed(AbortReasonInvalidPDUParameterValue, "PDU length %d, not %d", h.Length, fixedLength), "%s", h.Type)
		}
	default:
		return nil, malformed(AbortReasonUnrecognizedPDU, "unrecognized PDU type 0x%02X", byte(h.Type))
	}
	if h.Length > r.max {
		// PS3.8 has no reason for "too long"; the length parameter
		// has a value this side does not accept.
		return nil, &Error{reason: AbortReasonInvalidPDUParameterValue, kind: ErrTooLong,
			detail: fmt.Sprintf("%s: PDU length %d, maximum %d", h.Type, h.Length, r.max)}
	}
	b, err := r.readBody(h.Length)
	if err != nil {
		return nil, fmt.Errorf("pdu: reading %s body: %w", h.Type, err)
	}
	p, err := r.decode(h.Type, b)
	if err != nil {
		return nil, within(err, "%s", h.Type)
	}
	return p, nil
}

func (r *Reader) decode(t Type, b []byte) (PDU, error) {
	switch t {
	case TypePDataTF:
		if err := decodePData(b, &r.pdata); err != nil {
			return nil, err
		}
		return &r.pdata, nil
	case TypeAssociateRQ, TypeAssociateAC:
		return decodeAssociate(t, b)
	case TypeAssociateRJ:
		return decodeAssociateRJ(b)
	case TypeReleaseRQ:
		// The four bytes of the body are reserved and not tested.
		return &ReleaseRQ{}, nil
	case TypeReleaseRP:
		return &ReleaseRP{}, nil
	case TypeAbort:
		return decodeAbort(b)
	}
	return nil, malformed(AbortReasonUnrecognizedPDU, "unrecognized PDU type 0x%02X", byte(t))
}

// readBody reads the n-byte body of the pending PDU into the reused buffer.
func (r *Reader) readBody(n uint32) ([]byte, error) {
	r.pending = false
	b := r.buf[:0]
	for uint32(len(b)) < n {
		want := n
		if uint32(cap(b)) < n {
			// Grow by at most growStep or by doubling, whichever is
			// more, so that memory follows the bytes received.
			step := max(uint32(len(b)), growStep)
			if n-uint32(len(b)) > step {
				want = uint32(len(b)) + step
			}
			if uint32(cap(b)) < want {
				nb := make([]byte, len(b), want)
				copy(nb, b)
				b = nb
			}
		}
		m, err := io.ReadFull(r.r, b[len(b):want])
		b = b[:len(b)+m]
		if err != nil {
			r.buf = b[:0]
			return nil, noEOF(err)
		}
	}
	r.buf = b
	return b, nil
}

// Body returns a reader of the body of the PDU whose header Peek returned,
// for a caller that streams it rather than have Next decode it. It reads
// nothing beyond that body and returns io.EOF at its end; whatever the
// caller leaves unread is skipped by the next call of Peek or Next. Body is
// not bounded by the maximum length. Without a pending header, the reader
// returns io.EOF at once.
func (r *Reader) Body() io.Reader {
	if r.pending {
		r.pending = false
		r.left = r.h.Length
	}
	return &r.body
}

// bodyReader reads the rest of the current PDU body.
type bodyReader struct{ r *Reader }

func (b *bodyReader) Read(p []byte) (int, error) {
	r := b.r
	if r.left == 0 {
		return 0, io.EOF
	}
	if uint64(len(p)) > uint64(r.left) {
		p = p[:r.left]
	}
	n, err := r.r.Read(p)
	r.left -= uint32(n)
	if err == io.EOF && r.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// noEOF turns io.EOF, which means a PDU was cut short here, into
// io.ErrUnexpectedEOF.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
