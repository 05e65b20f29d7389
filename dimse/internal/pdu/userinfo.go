package pdu

import "encoding/binary"

// UserInfo is the User Information item (0x50) of an A-ASSOCIATE-RQ or -AC,
// with its sub-items (PS3.8 Annex D, PS3.7 Annex D.3.3). The zero value
// encodes as a user information item holding only a Maximum Length of 0.
//
// Sub-items are encoded in ascending order of type, as older peers expect,
// whatever order they were received in.
type UserInfo struct {
	// MaxLength is the Maximum Length Received (0x51): the longest P-DATA-TF
	// PDU length the sender accepts; 0 means no limit. The sub-item is
	// mandatory, so it is always encoded; its absence decodes as 0.
	MaxLength uint32

	// ImplementationClassUID (0x52) is mandatory by PS3.7 D.3.3.2 but
	// encoded only when it is not empty.
	ImplementationClassUID string

	// AsyncOpsWindow (0x53) is nil when absent, which means one
	// outstanding operation each way.
	AsyncOpsWindow *AsyncOpsWindow

	// RoleSelections (0x54) holds one entry per SOP class whose roles are
	// negotiated.
	RoleSelections []RoleSelection

	// ImplementationVersionName (0x55) is encoded only when not empty.
	// PS3.7 allows 16 bytes; longer names from peers are kept, not
	// refused, since nothing depends on them.
	ImplementationVersionName string

	// ExtendedNegotiations (0x56) holds SOP Class Extended Negotiation
	// sub-items.
	ExtendedNegotiations []ExtendedNegotiation

	// CommonExtendedNegotiations (0x57) holds SOP Class Common Extended
	// Negotiation sub-items; PS3.7 allows them in the request only.
	CommonExtendedNegotiations []CommonExtendedNegotiation

	// UserIdentityRQ (0x58) belongs in an A-ASSOCIATE-RQ; nil when absent.
	UserIdentityRQ *UserIdentityRQ

	// UserIdentityAC (0x59) belongs in an A-ASSOCIATE-AC; nil when absent.
	UserIdentityAC *UserIdentityAC

	// Unknown holds the sub-items of types this package does not know
	// (0x5A to 0xFF), each as its complete encoding (type, second byte,
	// 2-byte length and value), in the order received. PS3.8 Annex D.2
	// requires that they be ignored rather than refused; they are encoded
	// unchanged after the known sub-items.
	Unknown [][]byte
}

// AsyncOpsWindow is the Asynchronous Operations Window sub-item (PS3.7
// D.3.3.3). A value of 0 means unlimited.
type AsyncOpsWindow struct {
	MaxOpsInvoked   uint16
	MaxOpsPerformed uint16
}

// RoleSelection is an SCP/SCU Role Selection sub-item (PS3.7 D.3.3.4). In a
// request, SCU and SCP say which roles the requestor proposes to take; in an
// acceptance, which of them the acceptor accepts.
type RoleSelection struct {
	SOPClassUID string
	SCU, SCP    bool
}

// ExtendedNegotiation is a SOP Class Extended Negotiation sub-item (PS3.7
// D.3.3.5). Info is the Service-class-application-information, whose
// layout each service class defines.
type ExtendedNegotiation struct {
	SOPClassUID string
	Info        []byte
}

// CommonExtendedNegotiation is a SOP Class Common Extended Negotiation
// sub-item (PS3.7 D.3.3.6).
type CommonExtendedNegotiation struct {
	SOPClassUID     string
	ServiceClassUID string
	// RelatedGeneralSOPClasses lists the Related General SOP Class UIDs.
	RelatedGeneralSOPClasses []string
}

// UserIdentityType is the User-Identity-Type of a User Identity
// Negotiation sub-item (PS3.7 D.3.3.7).
type UserIdentityType byte

// User identity types. Values not listed are decoded as they are, so that
// the association layer can refuse them.
const (
	UserIdentityUsername         UserIdentityType = 1 // username as a string in UTF-8
	UserIdentityUsernamePasscode UserIdentityType = 2 // username and passcode
	UserIdentityKerberos         UserIdentityType = 3 // Kerberos service ticket
	UserIdentitySAML             UserIdentityType = 4 // SAML assertion
	UserIdentityJWT              UserIdentityType = 5 // JSON Web Token
)

// UserIdentityRQ is the User Identity Negotiation sub-item of a request
// (PS3.7 D.3.3.7.1). SecondaryField is the passcode with
// UserIdentityUsernamePasscode and empty otherwise.
type UserIdentityRQ struct {
	Type                      UserIdentityType
	PositiveResponseRequested bool
	PrimaryField              []byte
	SecondaryField            []byte
}

// UserIdentityAC is the User Identity Negotiation sub-item of an acceptance
// (PS3.7 D.3.3.7.2).
type UserIdentityAC struct {
	// ServerResponse is the Kerberos server ticket, SAML response or JWT;
	// empty for the other identity types.
	ServerResponse []byte
}

// decodeUserInfo decodes the value of a user information item.
func decodeUserInfo(b []byte) (UserInfo, error) {
	var u UserInfo
	var seen [subUserIdentityAC + 1]bool
	for len(b) > 0 {
		it, rest, err := nextItem(b)
		if err != nil {
			return UserInfo{}, err
		}
		b = rest
		if it.typ < subMaxLength {
			return UserInfo{}, unexpectedOrUnrecognized(it.typ, "user information")
		}
		if it.typ > subUserIdentityAC {
			u.Unknown = append(u.Unknown, clone(it.raw))
			continue
		}
		switch it.typ {
		case subMaxLength, subImplementationClass, subAsyncOpsWindow, subImplementationVersion,
			subUserIdentityRQ, subUserIdentityAC:
			// PS3.7 allows at most one of each of these; two would leave
			// the association layer guessing which one counts.
			if seen[it.typ] {
				return UserInfo{}, malformed(AbortReasonUnexpectedPDUParameter, "user information: second sub-item 0x%02X", it.typ)
			}
			seen[it.typ] = true
		}
		if err := u.decodeSubItem(it); err != nil {
			return UserInfo{}, within(err, "user information: sub-item 0x%02X", it.typ)
		}
	}
	return u, nil
}

func (u *UserInfo) decodeSubItem(it item) error {
	v := it.value
	bad := func(format string, args ...any) error {
		return malformed(AbortReasonInvalidPDUParameterValue, format, args...)
	}
	switch it.typ {
	case subMaxLength:
		if len(v) != 4 {
			return bad("length %d, not 4", len(v))
		}
		u.MaxLength = binary.BigEndian.Uint32(v)
	case subImplementationClass:
		s, err := decodeUID("implementation class UID", v)
		if err != nil {
			return err
		}
		u.ImplementationClassUID = s
	case subAsyncOpsWindow:
		if len(v) != 4 {
			return bad("length %d, not 4", len(v))
		}
		u.AsyncOpsWindow = &AsyncOpsWindow{
			MaxOpsInvoked:   binary.BigEndian.Uint16(v),
			MaxOpsPerformed: binary.BigEndian.Uint16(v[2:]),
		}
	case subRoleSelection:
		uid, rest, err := field("SOP class UID", v)
		if err != nil {
			return err
		}
		if len(rest) != 2 {
			return bad("%d bytes after the SOP class UID, not 2", len(rest))
		}
		s, err := decodeUID("SOP class UID", uid)
		if err != nil {
			return err
		}
		scu, err := decodeBool("SCU-role", rest[0])
		if err != nil {
			return err
		}
		scp, err := decodeBool("SCP-role", rest[1])
		if err != nil {
			return err
		}
		u.RoleSelections = append(u.RoleSelections, RoleSelection{SOPClassUID: s, SCU: scu, SCP: scp})
	case subImplementationVersion:
		u.ImplementationVersionName = string(v)
	case subExtendedNegotiation:
		uid, rest, err := field("SOP class UID", v)
		if err != nil {
			return err
		}
		s, err := decodeUID("SOP class UID", uid)
		if err != nil {
			return err
		}
		u.ExtendedNegotiations = append(u.ExtendedNegotiations, ExtendedNegotiation{SOPClassUID: s, Info: clone(rest)})
	case subCommonExtNegotiation:
		// The second byte is the sub-item version, 0 in PS3.7 D.3.3.6; a
		// later version may only add fields, which land in the trailing
		// bytes this decoder ignores.
		var c CommonExtendedNegotiation
		var f []byte
		var err error
		if f, v, err = field("SOP class UID", v); err != nil {
			return err
		}
		if c.SOPClassUID, err = decodeUID("SOP class UID", f); err != nil {
			return err
		}
		if f, v, err = field("service class UID", v); err != nil {
			return err
		}
		if c.ServiceClassUID, err = decodeUID("service class UID", f); err != nil {
			return err
		}
		if f, _, err = field("related general SOP class identification", v); err != nil {
			return err
		}
		for len(f) > 0 {
			var uid []byte
			if uid, f, err = field("related general SOP class UID", f); err != nil {
				return err
			}
			s, err := decodeUID("related general SOP class UID", uid)
			if err != nil {
				return err
			}
			c.RelatedGeneralSOPClasses = append(c.RelatedGeneralSOPClasses, s)
		}
		u.CommonExtendedNegotiations = append(u.CommonExtendedNegotiations, c)
	case subUserIdentityRQ:
		if len(v) < 2 {
			return bad("length %d, too short for the identity type", len(v))
		}
		id := &UserIdentityRQ{Type: UserIdentityType(v[0])}
		var err error
		if id.PositiveResponseRequested, err = decodeBool("positive-response-requested", v[1]); err != nil {
			return err
		}
		prim, rest, err := field("primary field", v[2:])
		if err != nil {
			return err
		}
		sec, rest, err := field("secondary field", rest)
		if err != nil {
			return err
		}
		if len(rest) != 0 {
			return bad("%d bytes after the secondary field", len(rest))
		}
		id.PrimaryField, id.SecondaryField = clone(prim), clone(sec)
		u.UserIdentityRQ = id
	case subUserIdentityAC:
		resp, rest, err := field("server response", v)
		if err != nil {
			return err
		}
		if len(rest) != 0 {
			return bad("%d bytes after the server response", len(rest))
		}
		u.UserIdentityAC = &UserIdentityAC{ServerResponse: clone(resp)}
	}
	return nil
}

// decodeBool decodes a one-byte flag that PS3.7 defines as 0 or 1.
func decodeBool(what string, b byte) (bool, error) {
	if b > 1 {
		return false, malformed(AbortReasonInvalidPDUParameterValue, "%s is %d, neither 0 nor 1", what, b)
	}
	return b == 1, nil
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// appendTo appends the user information item.
func (u *UserInfo) appendTo(dst []byte) ([]byte, error) {
	dst, off := beginItem(dst, itemUserInfo)
	dst = append(dst, subMaxLength, 0, 0, 4)
	dst = binary.BigEndian.AppendUint32(dst, u.MaxLength)
	if u.ImplementationClassUID != "" {
		if err := checkUID("implementation class UID", u.ImplementationClassUID); err != nil {
			return dst, err
		}
		dst = appendStringItem(dst, subImplementationClass, u.ImplementationClassUID)
	}
	if w := u.AsyncOpsWindow; w != nil {
		dst = append(dst, subAsyncOpsWindow, 0, 0, 4)
		dst = binary.BigEndian.AppendUint16(dst, w.MaxOpsInvoked)
		dst = binary.BigEndian.AppendUint16(dst, w.MaxOpsPerformed)
	}
	for _, r := range u.RoleSelections {
		if err := checkUID("role selection SOP class UID", r.SOPClassUID); err != nil {
			return dst, err
		}
		dst = append(dst, subRoleSelection, 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(r.SOPClassUID)+4))
		dst = appendUint16String(dst, r.SOPClassUID)
		dst = append(dst, boolByte(r.SCU), boolByte(r.SCP))
	}
	if u.ImplementationVersionName != "" {
		if len(u.ImplementationVersionName) > 0xFFFF {
			return dst, invalid("implementation version name of %d bytes", len(u.ImplementationVersionName))
		}
		dst = appendStringItem(dst, subImplementationVersion, u.ImplementationVersionName)
	}
	for _, e := range u.ExtendedNegotiations {
		if err := checkUID("extended negotiation SOP class UID", e.SOPClassUID); err != nil {
			return dst, err
		}
		var sub int
		dst, sub = beginItem(dst, subExtendedNegotiation)
		dst = appendUint16String(dst, e.SOPClassUID)
		dst = append(dst, e.Info...)
		var err error
		if dst, err = endItem(dst, sub, "extended negotiation sub-item"); err != nil {
			return dst, err
		}
	}
	for _, c := range u.CommonExtendedNegotiations {
		if err := checkUID("common extended negotiation SOP class UID", c.SOPClassUID); err != nil {
			return dst, err
		}
		if err := checkUID("common extended negotiation service class UID", c.ServiceClassUID); err != nil {
			return dst, err
		}
		var sub int
		dst, sub = beginItem(dst, subCommonExtNegotiation)
		dst = appendUint16String(dst, c.SOPClassUID)
		dst = appendUint16String(dst, c.ServiceClassUID)
		rel := len(dst)
		dst = append(dst, 0, 0)
		for _, r := range c.RelatedGeneralSOPClasses {
			if err := checkUID("related general SOP class UID", r); err != nil {
				return dst, err
			}
			dst = appendUint16String(dst, r)
		}
		n := len(dst) - rel - 2
		if n > 0xFFFF {
			return dst, invalid("related general SOP class identification of %d bytes", n)
		}
		binary.BigEndian.PutUint16(dst[rel:], uint16(n))
		var err error
		if dst, err = endItem(dst, sub, "common extended negotiation sub-item"); err != nil {
			return dst, err
		}
	}
	if id := u.UserIdentityRQ; id != nil {
		if len(id.PrimaryField) > 0xFFFF || len(id.SecondaryField) > 0xFFFF {
			return dst, invalid("user identity fields of %d and %d bytes", len(id.PrimaryField), len(id.SecondaryField))
		}
		var sub int
		dst, sub = beginItem(dst, subUserIdentityRQ)
		dst = append(dst, byte(id.Type), boolByte(id.PositiveResponseRequested))
		dst = appendUint16String(dst, id.PrimaryField)
		dst = appendUint16String(dst, id.SecondaryField)
		var err error
		if dst, err = endItem(dst, sub, "user identity sub-item"); err != nil {
			return dst, err
		}
	}
	if id := u.UserIdentityAC; id != nil {
		if len(id.ServerResponse) > 0xFFFF-2 {
			return dst, invalid("user identity server response of %d bytes", len(id.ServerResponse))
		}
		dst = append(dst, subUserIdentityAC, 0)
		dst = binary.BigEndian.AppendUint16(dst, uint16(len(id.ServerResponse)+2))
		dst = appendUint16String(dst, id.ServerResponse)
	}
	for _, raw := range u.Unknown {
		if len(raw) < 4 || int(binary.BigEndian.Uint16(raw[2:])) != len(raw)-4 {
			return dst, invalid("unknown user information sub-item of %d bytes is not one whole item", len(raw))
		}
		if raw[0] <= subUserIdentityAC {
			return dst, invalid("unknown user information sub-item has type 0x%02X, which is not unknown", raw[0])
		}
		dst = append(dst, raw...)
	}
	return endItem(dst, off, "user information item")
}
