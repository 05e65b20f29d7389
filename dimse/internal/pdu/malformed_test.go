package pdu

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// Builders for hand-made PDUs. They compute lengths honestly; the cases
// that lie about a length patch it afterwards.

// it returns an item (or sub-item) of type t with a 2-byte length.
func it(t byte, value ...[]byte) []byte {
	v := bytes.Join(value, nil)
	b := []byte{t, 0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], uint16(len(v)))
	return append(b, v...)
}

// str returns s as bytes, to keep the tables short.
func str(s string) []byte { return []byte(s) }

// u16 returns a 2-byte big-endian length field followed by s.
func u16(s string) []byte { return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...) }

// pdu returns a PDU of type t with body b.
func pdu(t Type, body ...[]byte) []byte {
	v := bytes.Join(body, nil)
	b := []byte{byte(t), 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[2:], uint32(len(v)))
	return append(b, v...)
}

// fixedPart is the fixed part of an A-ASSOCIATE-RQ or -AC body.
func fixedPart() []byte {
	b := []byte{0, 1, 0, 0}
	b = append(b, "PACSD           CT-SCANNER-7    "...)
	return append(b, make([]byte, 32)...)
}

var (
	appCtx = it(itemApplicationContext, str(ApplicationContextName))
	pcRQ1  = it(itemPresentationRQ, []byte{1, 0, 0, 0}, it(itemAbstractSyntax, str(uidVerification)), it(itemTransferSyntax, str(uidImplicitLE)))
	pcAC1  = it(itemPresentationAC, []byte{1, 0, 0, 0}, it(itemTransferSyntax, str(uidImplicitLE)))
	maxLen = it(subMaxLength, []byte{0, 0, 0x40, 0})
	user   = it(itemUserInfo, maxLen)
)

// rq returns an A-ASSOCIATE-RQ with the given items after its fixed part.
func rq(items ...[]byte) []byte {
	return pdu(TypeAssociateRQ, append([][]byte{fixedPart()}, items...)...)
}

// ac returns an A-ASSOCIATE-AC with the given items after its fixed part.
func ac(items ...[]byte) []byte {
	return pdu(TypeAssociateAC, append([][]byte{fixedPart()}, items...)...)
}

// rqUser returns a valid A-ASSOCIATE-RQ whose user information item holds
// the Maximum Length and the given sub-items.
func rqUser(subs ...[]byte) []byte {
	return rq(appCtx, pcRQ1, it(itemUserInfo, append([][]byte{maxLen}, subs...)...))
}

// pcWith returns a presentation context item of a request with ID id and
// the given sub-items.
func pcWith(id byte, subs ...[]byte) []byte {
	return it(itemPresentationRQ, append([][]byte{{id, 0, 0, 0}}, subs...)...)
}

// patch returns a copy of b with b[off:] overwritten by v.
func patch(b []byte, off int, v ...byte) []byte {
	b = bytes.Clone(b)
	copy(b[off:], v)
	return b
}

func TestMalformed(t *testing.T) {
	manyContexts := make([][]byte, 0, 130)
	manyContexts = append(manyContexts, appCtx)
	for i := range 129 {
		manyContexts = append(manyContexts, pcWith(byte(2*i+1), it(itemAbstractSyntax, str(uidVerification)), it(itemTransferSyntax, str(uidImplicitLE))))
	}
	manyTS := [][]byte{{1, 0, 0, 0}, it(itemAbstractSyntax, str(uidVerification))}
	for range MaxTransferSyntaxes + 1 {
		manyTS = append(manyTS, it(itemTransferSyntax))
	}
	long := strings.Repeat("1", 65)

	const (
		unrecognizedPDU = AbortReasonUnrecognizedPDU
		unrecognized    = AbortReasonUnrecognizedPDUParameter
		unexpected      = AbortReasonUnexpectedPDUParameter
		invalid         = AbortReasonInvalidPDUParameterValue
	)
	tests := []struct {
		name   string
		b      []byte
		reason AbortReason
	}{
		// The PDU header.
		{"PDU type 0x00", pdu(0, make([]byte, 4)), unrecognizedPDU},
		{"PDU type 0x08", pdu(8, make([]byte, 4)), unrecognizedPDU},
		{"PDU type 0xFF", pdu(0xFF), unrecognizedPDU},
		{"A-ASSOCIATE-RJ of length 5", pdu(TypeAssociateRJ, []byte{0, 1, 1, 1, 0}), invalid},
		{"A-RELEASE-RQ of length 0", pdu(TypeReleaseRQ), invalid},
		{"A-RELEASE-RP of length 8", pdu(TypeReleaseRP, make([]byte, 8)), invalid},
		{"A-ABORT of length 3", pdu(TypeAbort, []byte{0, 0, 0}), invalid},
		{"A-ABORT lying length 0xFFFFFFFF", patch(pdu(TypeAbort, make([]byte, 4)), 2, 0xFF, 0xFF, 0xFF, 0xFF), invalid},

		// Fixed-size PDUs.
		{"A-ASSOCIATE-RJ result 0", pdu(TypeAssociateRJ, []byte{0, 0, 1, 1}), invalid},
		{"A-ASSOCIATE-RJ result 3", pdu(TypeAssociateRJ, []byte{0, 3, 1, 1}), invalid},
		{"A-ASSOCIATE-RJ source 0", pdu(TypeAssociateRJ, []byte{0, 1, 0, 1}), invalid},
		{"A-ASSOCIATE-RJ source 4", pdu(TypeAssociateRJ, []byte{0, 1, 4, 1}), invalid},
		{"A-ABORT source 3", pdu(TypeAbort, []byte{0, 0, 3, 0}), invalid},

		// P-DATA-TF.
		{"P-DATA-TF without PDV", pdu(TypePDataTF), invalid},
		{"PDV item length 0", pdu(TypePDataTF, []byte{0, 0, 0, 0}), invalid},
		{"PDV item length 1", pdu(TypePDataTF, []byte{0, 0, 0, 1, 1}), invalid},
		{"PDV item length beyond the PDU", pdu(TypePDataTF, []byte{0, 0, 0, 9, 1, 3, 'a', 'b'}), invalid},
		{"PDV item length 0xFFFFFFFF", pdu(TypePDataTF, []byte{0xFF, 0xFF, 0xFF, 0xFF, 1, 3}), invalid},
		{"PDV item length short, leaving 3 bytes", pdu(TypePDataTF, []byte{0, 0, 0, 2, 1, 3, 0, 0, 0}), invalid},
		{"PDV truncated header", pdu(TypePDataTF, []byte{0, 0}), invalid},

		// A-ASSOCIATE fixed part and items.
		{"A-ASSOCIATE-RQ of length 0", pdu(TypeAssociateRQ), invalid},
		{"A-ASSOCIATE-RQ shorter than its fixed part", pdu(TypeAssociateRQ, fixedPart()[:67]), invalid},
		{"A-ASSOCIATE-AC shorter than its fixed part", pdu(TypeAssociateAC, fixedPart()[:10]), invalid},
		{"item header truncated", rq(appCtx, []byte{0x20, 0}), invalid},
		{"item length beyond the PDU", rq(appCtx, patch(pcRQ1, 2, 0x01, 0x00)), invalid},
		{"item length 0xFFFF", rq(appCtx, patch(pcRQ1, 2, 0xFF, 0xFF)), invalid},
		{"item length one short", rq(patch(appCtx, 2, 0, byte(len(appCtx)-5)), pcRQ1, user), invalid},
		{"second application context", rq(appCtx, appCtx, pcRQ1, user), unexpected},
		{"application context of 65 bytes", rq(it(itemApplicationContext, str(long)), pcRQ1, user), invalid},
		{"second user information", rq(appCtx, pcRQ1, user, user), unexpected},
		{"AC presentation context in an RQ", rq(appCtx, pcAC1, user), unexpected},
		{"RQ presentation context in an AC", ac(appCtx, pcRQ1, user), unexpected},
		{"abstract syntax at top level", rq(appCtx, it(itemAbstractSyntax, str(uidVerification)), user), unexpected},
		{"transfer syntax at top level", ac(appCtx, it(itemTransferSyntax, str(uidImplicitLE)), user), unexpected},
		{"maximum length at top level", rq(appCtx, pcRQ1, maxLen), unexpected},

		// Presentation contexts of a request.
		{"presentation context ID used twice", rq(appCtx, pcRQ1, pcRQ1, user), invalid},
		{"129 presentation contexts", rq(append(manyContexts, user)...), invalid},
		{"presentation context item of length 0", rq(appCtx, it(itemPresentationRQ), user), invalid},
		{"presentation context item of length 3", rq(appCtx, it(itemPresentationRQ, []byte{1, 0, 0}), user), invalid},
		{"no abstract syntax", rq(appCtx, pcWith(1, it(itemTransferSyntax, str(uidImplicitLE))), user), invalid},
		{"no transfer syntax", rq(appCtx, pcWith(1, it(itemAbstractSyntax, str(uidVerification))), user), invalid},
		{"two abstract syntaxes", rq(appCtx, pcWith(1, it(itemAbstractSyntax, str(uidVerification)), it(itemAbstractSyntax, str(uidVerification)), it(itemTransferSyntax, str(uidImplicitLE))), user), unexpected},
		{"abstract syntax of 65 bytes", rq(appCtx, pcWith(1, it(itemAbstractSyntax, str(long)), it(itemTransferSyntax, str(uidImplicitLE))), user), invalid},
		{"transfer syntax of 65 bytes", rq(appCtx, pcWith(1, it(itemAbstractSyntax, str(uidVerification)), it(itemTransferSyntax, str(long))), user), invalid},
		{"transfer syntax beyond its context", rq(appCtx, pcWith(1, it(itemAbstractSyntax, str(uidVerification)), patch(it(itemTransferSyntax, str(uidImplicitLE)), 2, 0, 40)), user), invalid},
		{"user information inside a context", rq(appCtx, pcWith(1, it(itemAbstractSyntax, str(uidVerification)), it(itemTransferSyntax, str(uidImplicitLE)), user), user), unexpected},
		{"257 transfer syntaxes", rq(appCtx, it(itemPresentationRQ, manyTS...), user), invalid},

		// Presentation contexts of an acceptance.
		{"accepted without transfer syntax", ac(appCtx, it(itemPresentationAC, []byte{1, 0, 0, 0}), user), invalid},
		{"accepted with two transfer syntaxes", ac(appCtx, it(itemPresentationAC, []byte{1, 0, 0, 0}, it(itemTransferSyntax, str(uidImplicitLE)), it(itemTransferSyntax, str(uidImplicitLE))), user), unexpected},
		{"accepted with a transfer syntax of 65 bytes", ac(appCtx, it(itemPresentationAC, []byte{1, 0, 0, 0}, it(itemTransferSyntax, str(long))), user), invalid},
		{"result 5", ac(appCtx, it(itemPresentationAC, []byte{1, 0, 5, 0}, it(itemTransferSyntax, str(uidImplicitLE))), user), invalid},
		{"abstract syntax in an AC context", ac(appCtx, it(itemPresentationAC, []byte{1, 0, 0, 0}, it(itemAbstractSyntax, str(uidVerification)), it(itemTransferSyntax, str(uidImplicitLE))), user), unexpected},
		{"AC presentation context ID used twice", ac(appCtx, pcAC1, pcAC1, user), invalid},

		// User information.
		{"sub-item 0x10 in user information", rqUser(appCtx), unexpected},
		{"sub-item 0x05 in user information", rqUser(it(0x05)), unrecognized},
		{"sub-item header truncated", rq(appCtx, pcRQ1, it(itemUserInfo, maxLen, []byte{0x52, 0})), invalid},
		{"sub-item length beyond user information", rq(appCtx, pcRQ1, it(itemUserInfo, maxLen, []byte{0x52, 0, 0, 9, '1'})), invalid},
		{"maximum length of length 2", rq(appCtx, pcRQ1, it(itemUserInfo, it(subMaxLength, []byte{0, 1}))), invalid},
		{"maximum length of length 0", rq(appCtx, pcRQ1, it(itemUserInfo, it(subMaxLength))), invalid},
		{"two maximum lengths", rqUser(maxLen), unexpected},
		{"two implementation class UIDs", rqUser(it(subImplementationClass, str("1.2")), it(subImplementationClass, str("1.2"))), unexpected},
		{"implementation class UID of 65 bytes", rqUser(it(subImplementationClass, str(long))), invalid},
		{"two implementation version names", rqUser(it(subImplementationVersion, str("A")), it(subImplementationVersion, str("B"))), unexpected},
		{"asynchronous operations window of length 3", rqUser(it(subAsyncOpsWindow, []byte{0, 1, 0})), invalid},
		{"two asynchronous operations windows", rqUser(it(subAsyncOpsWindow, []byte{0, 1, 0, 1}), it(subAsyncOpsWindow, []byte{0, 1, 0, 1})), unexpected},
		{"role selection of length 0", rqUser(it(subRoleSelection)), invalid},
		{"role selection UID length beyond the item", rqUser(it(subRoleSelection, []byte{0, 40}, str(uidCTImage), []byte{1, 1})), invalid},
		{"role selection without roles", rqUser(it(subRoleSelection, u16(uidCTImage))), invalid},
		{"role selection with a trailing byte", rqUser(it(subRoleSelection, u16(uidCTImage), []byte{1, 1, 0})), invalid},
		{"role selection SCU role 2", rqUser(it(subRoleSelection, u16(uidCTImage), []byte{2, 1})), invalid},
		{"role selection SCP role 0xFF", rqUser(it(subRoleSelection, u16(uidCTImage), []byte{0, 0xFF})), invalid},
		{"role selection UID of 65 bytes", rqUser(it(subRoleSelection, u16(long), []byte{1, 1})), invalid},
		{"extended negotiation of length 1", rqUser(it(subExtendedNegotiation, []byte{0})), invalid},
		{"extended negotiation UID length beyond the item", rqUser(it(subExtendedNegotiation, []byte{0, 30}, str(uidStudyRootFind))), invalid},
		{"common extended negotiation of length 0", rqUser(it(subCommonExtNegotiation)), invalid},
		{"common extended negotiation without service class", rqUser(it(subCommonExtNegotiation, u16(uidCTImage))), invalid},
		{"common extended negotiation without related length", rqUser(it(subCommonExtNegotiation, u16(uidCTImage), u16("1.2.840.10008.4.2"))), invalid},
		{"common extended negotiation related length beyond the item", rqUser(it(subCommonExtNegotiation, u16(uidCTImage), u16("1.2.840.10008.4.2"), []byte{0, 50}, u16(uidMRImage))), invalid},
		{"common extended negotiation related UID length beyond its field", rqUser(it(subCommonExtNegotiation, u16(uidCTImage), u16("1.2.840.10008.4.2"), []byte{0, 4}, []byte{0, 25, '1', '.'})), invalid},
		{"common extended negotiation related UID of 65 bytes", rqUser(it(subCommonExtNegotiation, u16(uidCTImage), u16("1.2.840.10008.4.2"), []byte{0, 67}, u16(long))), invalid},
		{"user identity of length 1", rqUser(it(subUserIdentityRQ, []byte{1})), invalid},
		{"user identity without primary field", rqUser(it(subUserIdentityRQ, []byte{1, 0})), invalid},
		{"user identity primary field beyond the item", rqUser(it(subUserIdentityRQ, []byte{1, 0, 0, 20}, str("alice"), []byte{0, 0})), invalid},
		{"user identity without secondary field length", rqUser(it(subUserIdentityRQ, []byte{1, 0}, u16("alice"))), invalid},
		{"user identity secondary field beyond the item", rqUser(it(subUserIdentityRQ, []byte{2, 0}, u16("alice"), []byte{0, 9}, str("pw"))), invalid},
		{"user identity with trailing bytes", rqUser(it(subUserIdentityRQ, []byte{1, 0}, u16("alice"), u16(""), []byte{0})), invalid},
		{"user identity positive response 2", rqUser(it(subUserIdentityRQ, []byte{1, 2}, u16("alice"), u16(""))), invalid},
		{"two user identities", rqUser(it(subUserIdentityRQ, []byte{1, 0}, u16("a"), u16("")), it(subUserIdentityRQ, []byte{1, 0}, u16("a"), u16(""))), unexpected},
		{"user identity response of length 1", rqUser(it(subUserIdentityAC, []byte{0})), invalid},
		{"user identity response beyond the item", rqUser(it(subUserIdentityAC, []byte{0, 5}, str("ok"))), invalid},
		{"user identity response with trailing bytes", rqUser(it(subUserIdentityAC, u16("ok"), []byte{0})), invalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewReader(bytes.NewReader(tt.b), DefaultMaxLength).Next()
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Next = %#v, %v; want an *Error", p, err)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %v does not wrap ErrMalformed", err)
			}
			if e.AbortReason() != tt.reason {
				t.Errorf("abort reason %v, want %v (error: %v)", e.AbortReason(), tt.reason, err)
			}
			if !strings.HasPrefix(err.Error(), "pdu: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// TestTruncated checks that a stream cut short is an I/O error, not a PDU to
// answer with an A-ABORT: there is nobody left to answer.
func TestTruncated(t *testing.T) {
	for _, b := range [][]byte{goldenAssociateRQ, goldenAssociateAC, goldenPDataTF, goldenAbort, goldenReleaseRQ} {
		for n := 1; n < len(b); n++ {
			_, err := NewReader(bytes.NewReader(b[:n]), DefaultMaxLength).Next()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("%v cut to %d bytes: %v, want io.ErrUnexpectedEOF", Type(b[0]), n, err)
			}
		}
	}
	if _, err := NewReader(bytes.NewReader(nil), DefaultMaxLength).Next(); err != io.EOF {
		t.Errorf("empty stream: %v, want io.EOF", err)
	}
}

func TestTooLong(t *testing.T) {
	// The header promises 4 GiB; the Reader must refuse it before reading
	// or allocating anything for the body.
	src := &countingReader{r: bytes.NewReader([]byte{4, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0})}
	r := NewReader(src, 1<<16)
	_, err := r.Next()
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrTooLong) || e.AbortReason() != AbortReasonInvalidPDUParameterValue {
		t.Fatalf("Next = %v, want an *Error wrapping ErrTooLong", err)
	}
	if src.n != HeaderLength {
		t.Errorf("read %d bytes, want only the header", src.n)
	}
	// One byte over the maximum is too long; the maximum itself is not.
	b := pdu(TypePDataTF, []byte{0, 0, 0, 6, 1, 3, 'a', 'b', 'c', 'd'})
	if _, err := NewReader(bytes.NewReader(b), uint32(len(b)-HeaderLength-1)).Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("one byte over: %v", err)
	}
	if _, err := NewReader(bytes.NewReader(b), uint32(len(b)-HeaderLength)).Next(); err != nil {
		t.Errorf("at the maximum: %v", err)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// TestLiberal checks what PS3.8 says shall be ignored or not tested, and
// what peers send that a strict reading would refuse.
func TestLiberal(t *testing.T) {
	decode := func(t *testing.T, b []byte) PDU {
		t.Helper()
		p, err := NewReader(bytes.NewReader(b), DefaultMaxLength).Next()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	t.Run("reserved fields set", func(t *testing.T) {
		b := bytes.Clone(goldenAssociateRQ)
		b[1] = 0xFF                // PDU header
		b[8], b[9] = 0xFF, 0xFF    // after the protocol version
		for i := 42; i < 74; i++ { // 32 reserved bytes
			b[i] = 0xEE
		}
		b[75] = 0xFF                                              // application context item
		b[HeaderLength+fixedAssociateLength+len(appCtx)+5] = 0xFF // first presentation context
		if got := decode(t, b); !reflect.DeepEqual(got, wantAssociateRQ) {
			t.Errorf("decoded %#v", got)
		}
		for _, g := range [][]byte{goldenAbort, goldenReleaseRQ, goldenReleaseRP, goldenAssociateRJ} {
			b := bytes.Clone(g)
			b[1], b[6] = 0xFF, 0xFF
			if g[0] != byte(TypeAssociateRJ) {
				b[7] = 0xFF
			}
			if g[0] == byte(TypeReleaseRQ) || g[0] == byte(TypeReleaseRP) {
				b[8], b[9] = 0xFF, 0xFF
			}
			decode(t, b)
		}
	})
	t.Run("unknown items skipped", func(t *testing.T) {
		b := rq(appCtx, it(0x99, str("future")), pcWith(1, it(itemAbstractSyntax, str(uidVerification)), it(0x3F), it(itemTransferSyntax, str(uidImplicitLE))), user, it(0xA0))
		p := decode(t, b).(*AssociateRQ)
		want := []PresentationContextRQ{{ID: 1, AbstractSyntax: uidVerification, TransferSyntaxes: []string{uidImplicitLE}}}
		if !reflect.DeepEqual(p.PresentationContexts, want) || p.UserInfo.MaxLength != 0x4000 {
			t.Errorf("decoded %#v", p)
		}
	})
	t.Run("unknown user information sub-item kept", func(t *testing.T) {
		p := decode(t, rqUser(it(0xFF, str("x")), it(0x5A))).(*AssociateRQ)
		if want := [][]byte{{0xFF, 0, 0, 1, 'x'}, {0x5A, 0, 0, 0}}; !reflect.DeepEqual(p.UserInfo.Unknown, want) {
			t.Errorf("Unknown = %v", p.UserInfo.Unknown)
		}
	})
	t.Run("padded UIDs and AE titles", func(t *testing.T) {
		b := rq(it(itemApplicationContext, str(ApplicationContextName+"\x00")),
			pcWith(1, it(itemAbstractSyntax, str(uidVerification+"\x00")), it(itemTransferSyntax, str(uidImplicitLE+" "))), user)
		copy(b[HeaderLength+4:], "  PACSD\x00\x00\x00\x00\x00\x00\x00\x00\x00")
		p := decode(t, b).(*AssociateRQ)
		if p.ApplicationContext != ApplicationContextName || p.PresentationContexts[0].AbstractSyntax != uidVerification ||
			p.PresentationContexts[0].TransferSyntaxes[0] != uidImplicitLE || p.CalledAETitle != "PACSD" {
			t.Errorf("decoded %#v", p)
		}
	})
	t.Run("empty and absent items", func(t *testing.T) {
		p := decode(t, rq(it(itemApplicationContext))).(*AssociateRQ)
		if !reflect.DeepEqual(p, &AssociateRQ{ProtocolVersion: 1, CalledAETitle: "PACSD", CallingAETitle: "CT-SCANNER-7"}) {
			t.Errorf("decoded %#v", p)
		}
		p = decode(t, rq(it(itemUserInfo), pcWith(1, it(itemAbstractSyntax), it(itemTransferSyntax)))).(*AssociateRQ)
		want := []PresentationContextRQ{{ID: 1, TransferSyntaxes: []string{""}}}
		if !reflect.DeepEqual(p.PresentationContexts, want) {
			t.Errorf("decoded %#v", p)
		}
	})
	t.Run("rejected context transfer syntax not tested", func(t *testing.T) {
		for _, pc := range [][]byte{
			it(itemPresentationAC, []byte{1, 0, 3, 0}, it(itemTransferSyntax, str(strings.Repeat("9", 100)))),
			it(itemPresentationAC, []byte{1, 0, 1, 0}, it(itemTransferSyntax, str("1.2")), it(itemTransferSyntax, str("1.3"))),
			it(itemPresentationAC, []byte{1, 0, 2, 0}),
		} {
			p := decode(t, ac(appCtx, pc, user)).(*AssociateAC)
			if len(p.PresentationContexts) != 1 || p.PresentationContexts[0].Result == ResultAcceptance {
				t.Errorf("decoded %#v", p)
			}
		}
	})
	t.Run("unsupported protocol version", func(t *testing.T) {
		p := decode(t, patch(rq(appCtx, pcRQ1, user), HeaderLength, 0, 2)).(*AssociateRQ)
		if p.ProtocolVersion != 2 {
			t.Errorf("protocol version %d", p.ProtocolVersion)
		}
	})
	t.Run("A-ABORT reserved source and any reason", func(t *testing.T) {
		if got := decode(t, pdu(TypeAbort, []byte{0, 0, 1, 9})); !reflect.DeepEqual(got, &Abort{Source: 1, Reason: 9}) {
			t.Errorf("decoded %#v", got)
		}
	})
	t.Run("even presentation context ID", func(t *testing.T) {
		// PS3.8 9.3.2.2 says odd, but dcm4che's stgcmtscu proposes 2;
		// the ID still names one context, so it decodes.
		p := decode(t, rq(appCtx, patch(pcRQ1, 4, 2), user)).(*AssociateRQ)
		if len(p.PresentationContexts) != 1 || p.PresentationContexts[0].ID != 2 {
			t.Errorf("decoded %#v", p.PresentationContexts)
		}
		d := decode(t, pdu(TypePDataTF, []byte{0, 0, 0, 3, 2, 3, 'x'})).(*PDataTF)
		if !reflect.DeepEqual(d.PDVs, []PDV{{ContextID: 2, Command: true, Last: true, Data: []byte("x")}}) {
			t.Errorf("decoded %+v", d.PDVs)
		}
	})
	t.Run("reserved bits of the message control header", func(t *testing.T) {
		p := decode(t, pdu(TypePDataTF, []byte{0, 0, 0, 3, 1, 0xFE, 'x'})).(*PDataTF)
		if !reflect.DeepEqual(p.PDVs, []PDV{{ContextID: 1, Last: true, Data: []byte("x")}}) {
			t.Errorf("decoded %+v", p.PDVs)
		}
	})
}
