package pdu

import (
	"encoding/binary"
	"fmt"
)

// AssociateRQ is an A-ASSOCIATE-RQ PDU (PS3.8 §9.3.2).
type AssociateRQ struct {
	// ProtocolVersion is encoded as given; set it to ProtocolVersion.
	ProtocolVersion uint16
	// CalledAETitle and CallingAETitle are the significant parts of the AE
	// titles, without padding; see PadAETitle.
	CalledAETitle  string
	CallingAETitle string
	// ApplicationContext is the Application Context Name;
	// ApplicationContextName for DICOM.
	ApplicationContext   string
	PresentationContexts []PresentationContextRQ
	UserInfo             UserInfo
}

// PresentationContextRQ is a presentation context item of an
// A-ASSOCIATE-RQ (PS3.8 §9.3.2.2).
type PresentationContextRQ struct {
	ID               byte // odd, 1 to 255; an even one received is kept, see checkUnique
	AbstractSyntax   string
	TransferSyntaxes []string // at least one
}

// AssociateAC is an A-ASSOCIATE-AC PDU (PS3.8 §9.3.3). It shares the
// layout of AssociateRQ but for its presentation contexts.
type AssociateAC struct {
	ProtocolVersion uint16
	// CalledAETitle and CallingAETitle echo the request's. PS3.8 says they
	// shall not be tested, so nothing here checks them.
	CalledAETitle        string
	CallingAETitle       string
	ApplicationContext   string
	PresentationContexts []PresentationContextAC
	UserInfo             UserInfo
}

// PresentationContextAC is a presentation context item of an
// A-ASSOCIATE-AC (PS3.8 §9.3.3.2).
type PresentationContextAC struct {
	ID     byte
	Result ContextResult
	// TransferSyntax is the accepted transfer syntax. When Result is not
	// ResultAcceptance it is not significant: it decodes as received, or
	// empty if the sub-item is absent, and encodes as given, possibly
	// empty.
	TransferSyntax string
}

// Type returns TypeAssociateRQ.
func (*AssociateRQ) Type() Type { return TypeAssociateRQ }

// Type returns TypeAssociateAC.
func (*AssociateAC) Type() Type { return TypeAssociateAC }

// fixedAssociateLength is the length of the fixed fields of an
// A-ASSOCIATE-RQ or -AC after the PDU header: protocol version, 2 reserved
// bytes, two AE titles and 32 reserved bytes.
const fixedAssociateLength = 2 + 2 + 2*AETitleLength + 32

// associateHeader holds the fields the RQ and AC share.
type associateHeader struct {
	version         uint16
	called, calling string
	appContext      string
	userInfo        UserInfo
}

// AppendTo appends the encoded PDU to dst.
func (p *AssociateRQ) AppendTo(dst []byte) ([]byte, error) {
	h := associateHeader{p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle, p.ApplicationContext, p.UserInfo}
	start := len(dst)
	out, err := h.appendTo(dst, TypeAssociateRQ, func(dst []byte) ([]byte, error) {
		if len(p.PresentationContexts) > MaxPresentationContexts {
			return dst, invalid("%d presentation contexts, more than %d", len(p.PresentationContexts), MaxPresentationContexts)
		}
		var ids idSet
		for _, pc := range p.PresentationContexts {
			if msg := ids.checkID(pc.ID); msg != "" {
				return dst, invalid("%s", msg)
			}
			if err := checkUID("abstract syntax", pc.AbstractSyntax); err != nil {
				return dst, err
			}
			if len(pc.TransferSyntaxes) == 0 || len(pc.TransferSyntaxes) > MaxTransferSyntaxes {
				return dst, invalid("presentation context %d has %d transfer syntaxes, not 1 to %d", pc.ID, len(pc.TransferSyntaxes), MaxTransferSyntaxes)
			}
			var off int
			dst, off = beginItem(dst, itemPresentationRQ)
			dst = append(dst, pc.ID, 0, 0, 0)
			dst = appendStringItem(dst, itemAbstractSyntax, pc.AbstractSyntax)
			for _, ts := range pc.TransferSyntaxes {
				if err := checkUID("transfer syntax", ts); err != nil {
					return dst, err
				}
				dst = appendStringItem(dst, itemTransferSyntax, ts)
			}
			var err error
			if dst, err = endItem(dst, off, "presentation context item"); err != nil {
				return dst, err
			}
		}
		return dst, nil
	})
	if err != nil {
		return dst[:start], fmt.Errorf("A-ASSOCIATE-RQ: %w", err)
	}
	return out, nil
}

// AppendTo appends the encoded PDU to dst.
func (p *AssociateAC) AppendTo(dst []byte) ([]byte, error) {
	h := associateHeader{p.ProtocolVersion, p.CalledAETitle, p.CallingAETitle, p.ApplicationContext, p.UserInfo}
	start := len(dst)
	out, err := h.appendTo(dst, TypeAssociateAC, func(dst []byte) ([]byte, error) {
		if len(p.PresentationContexts) > MaxPresentationContexts {
			return dst, invalid("%d presentation contexts, more than %d", len(p.PresentationContexts), MaxPresentationContexts)
		}
		var ids idSet
		for _, pc := range p.PresentationContexts {
			if msg := ids.checkUnique(pc.ID); msg != "" {
				return dst, invalid("%s", msg)
			}
			if pc.Result > resultMax {
				return dst, invalid("presentation context %d has result %d", pc.ID, pc.Result)
			}
			if err := checkUID("transfer syntax", pc.TransferSyntax); err != nil {
				return dst, err
			}
			dst = append(dst, itemPresentationAC, 0, 0, byte(8+len(pc.TransferSyntax)), pc.ID, 0, byte(pc.Result), 0)
			dst = appendStringItem(dst, itemTransferSyntax, pc.TransferSyntax)
		}
		return dst, nil
	})
	if err != nil {
		return dst[:start], fmt.Errorf("A-ASSOCIATE-AC: %w", err)
	}
	return out, nil
}

// appendTo appends the PDU around the presentation context items that
// contexts appends.
func (h *associateHeader) appendTo(dst []byte, t Type, contexts func([]byte) ([]byte, error)) ([]byte, error) {
	called, err := PadAETitle(h.called)
	if err != nil {
		return dst, fmt.Errorf("called AE title: %w", err)
	}
	calling, err := PadAETitle(h.calling)
	if err != nil {
		return dst, fmt.Errorf("calling AE title: %w", err)
	}
	if err := checkUID("application context name", h.appContext); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = append(dst, byte(t), 0, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, h.version)
	dst = append(dst, 0, 0)
	dst = append(dst, called[:]...)
	dst = append(dst, calling[:]...)
	dst = append(dst, make([]byte, 32)...)
	dst = appendStringItem(dst, itemApplicationContext, h.appContext)
	if dst, err = contexts(dst); err != nil {
		return dst, err
	}
	if dst, err = h.userInfo.appendTo(dst); err != nil {
		return dst, err
	}
	n := len(dst) - start - HeaderLength
	if uint64(n) > 0xFFFFFFFF {
		return dst, invalid("PDU of %d bytes", n)
	}
	binary.BigEndian.PutUint32(dst[start+2:], uint32(n))
	return dst, nil
}

// idSet records presentation context IDs, to find one used twice.
type idSet [4]uint64

// add records id and reports whether it was new.
func (s *idSet) add(id byte) bool {
	if s[id/64]&(1<<(id%64)) != 0 {
		return false
	}
	s[id/64] |= 1 << (id % 64)
	return true
}

// checkID reports a presentation context ID that is even or used twice,
// for what this side proposes: PS3.8 §9.3.2.2 numbers contexts 1, 3...
func (s *idSet) checkID(id byte) string {
	if id%2 == 0 {
		return fmt.Sprintf("presentation context ID %d is not odd", id)
	}
	return s.checkUnique(id)
}

// checkUnique reports a presentation context ID used twice. It is the
// only check of what is received and answered: an even ID, which some
// peers propose (dcm4che's stgcmtscu numbers from 2), still names its
// context without ambiguity, so the association layer accepts it and
// answers by that ID.
func (s *idSet) checkUnique(id byte) string {
	if !s.add(id) {
		return fmt.Sprintf("presentation context ID %d is used twice", id)
	}
	return ""
}

// decodeAssociate decodes the body of an A-ASSOCIATE-RQ (t is
// TypeAssociateRQ) or -AC and returns the PDU.
func decodeAssociate(t Type, b []byte) (PDU, error) {
	if len(b) < fixedAssociateLength {
		return nil, malformed(AbortReasonInvalidPDUParameterValue, "length %d, too short for the fixed fields", len(b))
	}
	// Bytes 9-10 and 43-74 are reserved and not tested.
	h := associateHeader{
		version: binary.BigEndian.Uint16(b),
		called:  TrimAETitle(b[4 : 4+AETitleLength]),
		calling: TrimAETitle(b[4+AETitleLength : 4+2*AETitleLength]),
	}
	var (
		rq        []PresentationContextRQ
		ac        []PresentationContextAC
		ids       idSet
		seenApp   bool
		seenUser  bool
		contextIT byte = itemPresentationRQ
	)
	if t == TypeAssociateAC {
		contextIT = itemPresentationAC
	}
	for v := b[fixedAssociateLength:]; len(v) > 0; {
		it, rest, err := nextItem(v)
		if err != nil {
			return nil, err
		}
		v = rest
		switch it.typ {
		case itemApplicationContext:
			if seenApp {
				return nil, malformed(AbortReasonUnexpectedPDUParameter, "second application context item")
			}
			seenApp = true
			if h.appContext, err = decodeUID("application context name", it.value); err != nil {
				return nil, err
			}
		case contextIT:
			if len(rq)+len(ac) == MaxPresentationContexts {
				return nil, malformed(AbortReasonInvalidPDUParameterValue, "more than %d presentation context items", MaxPresentationContexts)
			}
			if len(it.value) < 4 {
				return nil, malformed(AbortReasonInvalidPDUParameterValue, "presentation context item of length %d", len(it.value))
			}
			id := it.value[0]
			if msg := ids.checkUnique(id); msg != "" {
				return nil, malformed(AbortReasonInvalidPDUParameterValue, "%s", msg)
			}
			if t == TypeAssociateRQ {
				pc, err := decodeContextRQ(it.value)
				if err != nil {
					return nil, within(err, "presentation context %d", id)
				}
				rq = append(rq, pc)
			} else {
				pc, err := decodeContextAC(it.value)
				if err != nil {
					return nil, within(err, "presentation context %d", id)
				}
				ac = append(ac, pc)
			}
		case itemUserInfo:
			if seenUser {
				return nil, malformed(AbortReasonUnexpectedPDUParameter, "second user information item")
			}
			seenUser = true
			if h.userInfo, err = decodeUserInfo(it.value); err != nil {
				return nil, err
			}
		default:
			// PS3.8 §9.3: items of unrecognized types shall be ignored
			// and skipped. Items PS3.8 defines for other places are an
			// error, not unrecognized.
			if knownItem(it.typ) {
				return nil, unexpectedOrUnrecognized(it.typ, t.String())
			}
		}
	}
	if t == TypeAssociateRQ {
		return &AssociateRQ{
			ProtocolVersion:      h.version,
			CalledAETitle:        h.called,
			CallingAETitle:       h.calling,
			ApplicationContext:   h.appContext,
			PresentationContexts: rq,
			UserInfo:             h.userInfo,
		}, nil
	}
	return &AssociateAC{
		ProtocolVersion:      h.version,
		CalledAETitle:        h.called,
		CallingAETitle:       h.calling,
		ApplicationContext:   h.appContext,
		PresentationContexts: ac,
		UserInfo:             h.userInfo,
	}, nil
}

// decodeContextRQ decodes the value of a presentation context item of a
// request: the ID, three reserved bytes, one abstract syntax sub-item and
// one or more transfer syntax sub-items.
func decodeContextRQ(b []byte) (PresentationContextRQ, error) {
	pc := PresentationContextRQ{ID: b[0]}
	seenAbstract := false
	for v := b[4:]; len(v) > 0; {
		it, rest, err := nextItem(v)
		if err != nil {
			return pc, err
		}
		v = rest
		switch it.typ {
		case itemAbstractSyntax:
			if seenAbstract {
				return pc, malformed(AbortReasonUnexpectedPDUParameter, "second abstract syntax sub-item")
			}
			seenAbstract = true
			if pc.AbstractSyntax, err = decodeUID("abstract syntax", it.value); err != nil {
				return pc, err
			}
		case itemTransferSyntax:
			if len(pc.TransferSyntaxes) == MaxTransferSyntaxes {
				return pc, malformed(AbortReasonInvalidPDUParameterValue, "more than %d transfer syntaxes", MaxTransferSyntaxes)
			}
			ts, err := decodeUID("transfer syntax", it.value)
			if err != nil {
				return pc, err
			}
			pc.TransferSyntaxes = append(pc.TransferSyntaxes, ts)
		default:
			if knownItem(it.typ) {
				return pc, unexpectedOrUnrecognized(it.typ, "a presentation context")
			}
		}
	}
	if !seenAbstract {
		return pc, malformed(AbortReasonInvalidPDUParameterValue, "no abstract syntax sub-item")
	}
	if len(pc.TransferSyntaxes) == 0 {
		return pc, malformed(AbortReasonInvalidPDUParameterValue, "no transfer syntax sub-item")
	}
	return pc, nil
}

// decodeContextAC decodes the value of a presentation context item of an
// acceptance: the ID, a reserved byte, the result, a reserved byte and one
// transfer syntax sub-item, which a rejected context may omit.
func decodeContextAC(b []byte) (PresentationContextAC, error) {
	pc := PresentationContextAC{ID: b[0], Result: ContextResult(b[2])}
	if pc.Result > resultMax {
		return pc, malformed(AbortReasonInvalidPDUParameterValue, "result %d", pc.Result)
	}
	seenTS := false
	for v := b[4:]; len(v) > 0; {
		it, rest, err := nextItem(v)
		if err != nil {
			return pc, err
		}
		v = rest
		switch it.typ {
		case itemTransferSyntax:
			if pc.Result != ResultAcceptance {
				// The transfer syntax of a rejected context is not
				// significant and shall not be tested (PS3.8 §9.3.3.2):
				// keep the first one if it is a plausible UID, and
				// nothing else.
				if !seenTS && len(it.value) <= maxUIDLength {
					pc.TransferSyntax = string(trimPad(it.value, false))
				}
				seenTS = true
				continue
			}
			if seenTS {
				return pc, malformed(AbortReasonUnexpectedPDUParameter, "second transfer syntax sub-item")
			}
			seenTS = true
			if pc.TransferSyntax, err = decodeUID("transfer syntax", it.value); err != nil {
				return pc, err
			}
		default:
			if knownItem(it.typ) {
				return pc, unexpectedOrUnrecognized(it.typ, "a presentation context")
			}
		}
	}
	if !seenTS && pc.Result == ResultAcceptance {
		return pc, malformed(AbortReasonInvalidPDUParameterValue, "accepted without a transfer syntax sub-item")
	}
	return pc, nil
}
