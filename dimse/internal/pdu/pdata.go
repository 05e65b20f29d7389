package pdu

import (
	"encoding/binary"
	"math"
)

// PDVHeaderLength is the length of what precedes the data of a PDV in a
// P-DATA-TF PDU: the 4-byte item length, the presentation context ID and
// the message control header (PS3.8 §9.3.5.1, Annex E.2). A P-DATA-TF PDU
// that carries one PDV of n data bytes has a PDU length of
// n+PDVHeaderLength, which must not exceed the peer's UserInfo.MaxLength
// when that is not 0.
const PDVHeaderLength = 6

// Bits of the message control header (PS3.8 Annex E.2). The other bits are
// reserved: written as 0, not tested on read.
const (
	mchCommand = 0x01 // the fragment is of a command, not a data set
	mchLast    = 0x02 // the fragment is the last of its command or data set
)

// PDataTF is a P-DATA-TF PDU (PS3.8 §9.3.5).
//
// A *PDataTF returned by a Reader belongs to the Reader: it and the Data of
// its PDVs are overwritten by the next call of Next, Peek or Body. Copy what
// must outlive that.
type PDataTF struct {
	PDVs []PDV // at least one
}

// PDV is a presentation data value: one fragment of a DIMSE command or data
// set (PS3.8 Annex E).
type PDV struct {
	ContextID byte // the presentation context, odd as negotiated (or even, as a peer proposed it)
	Command   bool // the fragment belongs to a command set, not a data set
	Last      bool // the fragment is the last of its command set or data set
	Data      []byte
}

// Type returns TypePDataTF.
func (*PDataTF) Type() Type { return TypePDataTF }

// AppendTo appends the encoded PDU to dst. Writers of large data sets
// should rather write each fragment after a header from AppendPDataHeader.
func (p *PDataTF) AppendTo(dst []byte) ([]byte, error) {
	if len(p.PDVs) == 0 {
		return dst, invalid("P-DATA-TF without a PDV")
	}
	var n uint64
	for _, v := range p.PDVs {
		n += PDVHeaderLength + uint64(len(v.Data))
	}
	if n > math.MaxUint32 {
		return dst, invalid("P-DATA-TF of %d bytes", n)
	}
	dst = append(dst, byte(TypePDataTF), 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	for _, v := range p.PDVs {
		dst = appendPDVHeader(dst, v.ContextID, v.Command, v.Last, len(v.Data))
		dst = append(dst, v.Data...)
	}
	return dst, nil
}

// AppendPDataHeader appends the header of a P-DATA-TF PDU that carries a
// single PDV of n data bytes, HeaderLength+PDVHeaderLength bytes in all.
// The caller writes the n bytes of data right after it, typically with
// net.Buffers so that the data is not copied. command and last set the
// message control header: whether the data is a fragment of a command set
// rather than a data set, and whether it is the last fragment of it.
func AppendPDataHeader(dst []byte, contextID byte, command, last bool, n int) ([]byte, error) {
	if n < 0 || uint64(n) > math.MaxUint32-PDVHeaderLength {
		return dst, invalid("P-DATA-TF: PDV of %d bytes", n)
	}
	dst = append(dst, byte(TypePDataTF), 0)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n)+PDVHeaderLength)
	return appendPDVHeader(dst, contextID, command, last, n), nil
}

func appendPDVHeader(dst []byte, contextID byte, command, last bool, n int) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(n)+2)
	var mch byte
	if command {
		mch |= mchCommand
	}
	if last {
		mch |= mchLast
	}
	return append(dst, contextID, mch)
}

// decodePData decodes the body of a P-DATA-TF into p, reusing its PDV
// slice. The Data of each PDV aliases b, capped so that appending to it
// cannot overwrite the next PDV.
func decodePData(b []byte, p *PDataTF) error {
	p.PDVs = p.PDVs[:0]
	for len(b) > 0 {
		if len(b) < 4 {
			return malformed(AbortReasonInvalidPDUParameterValue, "%d bytes left, too few for a PDV item length", len(b))
		}
		n := binary.BigEndian.Uint32(b)
		if n < 2 {
			return malformed(AbortReasonInvalidPDUParameterValue, "PDV item length %d, less than 2", n)
		}
		if uint64(n) > uint64(len(b)-4) {
			return malformed(AbortReasonInvalidPDUParameterValue, "PDV item of length %d overruns the %d bytes left", n, len(b)-4)
		}
		id, mch := b[4], b[5]
		end := 4 + int(n)
		p.PDVs = append(p.PDVs, PDV{
			ContextID: id,
			Command:   mch&mchCommand != 0,
			Last:      mch&mchLast != 0,
			Data:      b[6:end:end],
		})
		b = b[end:]
	}
	if len(p.PDVs) == 0 {
		return malformed(AbortReasonInvalidPDUParameterValue, "no PDV item")
	}
	return nil
}
