package pdu

import "fmt"

// The A-ASSOCIATE-RJ, A-RELEASE-RQ, A-RELEASE-RP and A-ABORT PDUs have a
// 4-byte body of fixed layout.

// fixedLength is the PDU length of the four fixed-size PDUs.
const fixedLength = 4

// AssociateRJ is an A-ASSOCIATE-RJ PDU (PS3.8 §9.3.4).
type AssociateRJ struct {
	Result RejectResult
	Source RejectSource
	Reason RejectReason // meaning depends on Source; not checked
}

// Type returns TypeAssociateRJ.
func (*AssociateRJ) Type() Type { return TypeAssociateRJ }

// AppendTo appends the encoded PDU to dst.
func (p *AssociateRJ) AppendTo(dst []byte) ([]byte, error) {
	if msg := p.problem(); msg != "" {
		return dst, invalid("A-ASSOCIATE-RJ: %s", msg)
	}
	return append(dst, byte(TypeAssociateRJ), 0, 0, 0, 0, fixedLength, 0, byte(p.Result), byte(p.Source), byte(p.Reason)), nil
}

// problem describes what PS3.8 forbids in p, or returns "".
func (p *AssociateRJ) problem() string {
	if p.Result != RejectedPermanent && p.Result != RejectedTransient {
		return fmt.Sprintf("result %d is neither 1 nor 2", p.Result)
	}
	if p.Source < rejectSourceMin || p.Source > rejectSourceMax {
		return fmt.Sprintf("source %d is not 1, 2 or 3", p.Source)
	}
	return ""
}

func decodeAssociateRJ(b []byte) (*AssociateRJ, error) {
	// Byte 7 is reserved and not tested.
	p := &AssociateRJ{Result: RejectResult(b[1]), Source: RejectSource(b[2]), Reason: RejectReason(b[3])}
	if msg := p.problem(); msg != "" {
		return nil, malformed(AbortReasonInvalidPDUParameterValue, "%s", msg)
	}
	return p, nil
}

// ReleaseRQ is an A-RELEASE-RQ PDU (PS3.8 §9.3.6). Its body is reserved.
type ReleaseRQ struct{}

// Type returns TypeReleaseRQ.
func (*ReleaseRQ) Type() Type { return TypeReleaseRQ }

// AppendTo appends the encoded PDU to dst.
func (*ReleaseRQ) AppendTo(dst []byte) ([]byte, error) {
	return append(dst, byte(TypeReleaseRQ), 0, 0, 0, 0, fixedLength, 0, 0, 0, 0), nil
}

// ReleaseRP is an A-RELEASE-RP PDU (PS3.8 §9.3.7). Its body is reserved.
type ReleaseRP struct{}

// Type returns TypeReleaseRP.
func (*ReleaseRP) Type() Type { return TypeReleaseRP }

// AppendTo appends the encoded PDU to dst.
func (*ReleaseRP) AppendTo(dst []byte) ([]byte, error) {
	return append(dst, byte(TypeReleaseRP), 0, 0, 0, 0, fixedLength, 0, 0, 0, 0), nil
}

// Abort is an A-ABORT PDU (PS3.8 §9.3.8).
type Abort struct {
	Source AbortSource
	// Reason is significant only when Source is
	// AbortSourceServiceProvider. It is decoded and encoded as it is,
	// whatever the source, so that nothing is lost in passing.
	Reason AbortReason
}

// Type returns TypeAbort.
func (*Abort) Type() Type { return TypeAbort }

// AppendTo appends the encoded PDU to dst.
func (p *Abort) AppendTo(dst []byte) ([]byte, error) {
	if msg := p.problem(); msg != "" {
		return dst, invalid("A-ABORT: %s", msg)
	}
	return append(dst, byte(TypeAbort), 0, 0, 0, 0, fixedLength, 0, 0, byte(p.Source), byte(p.Reason)), nil
}

// problem describes what PS3.8 forbids in p, or returns "". It accepts the
// reserved source 1, which PS3.8 lists, so that a peer using it is not
// aborted for it.
func (p *Abort) problem() string {
	if p.Source > AbortSourceServiceProvider {
		return fmt.Sprintf("source %d is not 0, 1 or 2", p.Source)
	}
	return ""
}

func decodeAbort(b []byte) (*Abort, error) {
	// Bytes 7 and 8 are reserved and not tested.
	p := &Abort{Source: AbortSource(b[2]), Reason: AbortReason(b[3])}
	if msg := p.problem(); msg != "" {
		return nil, malformed(AbortReasonInvalidPDUParameterValue, "%s", msg)
	}
	return p, nil
}
