// Package pdu encodes and decodes the protocol data units of the DICOM Upper
// Layer protocol for TCP/IP (PS3.8 §9.3). It is a pure codec: it never dials,
// listens, times out or keeps association state; the association state
// machine in package ul does all of that.
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
