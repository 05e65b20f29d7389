package pdu

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
)

func TestPeekBody(t *testing.T) {
	stream := bytes.Join([][]byte{goldenPDataTF, goldenAssociateRQ, goldenReleaseRQ, goldenAbort}, nil)
	r := NewReader(bytes.NewReader(stream), DefaultMaxLength)

	// Peek is idempotent until the body is read.
	for range 2 {
		h, err := r.Peek()
		if err != nil || h != (Header{TypePDataTF, uint32(len(goldenPDataTF) - HeaderLength)}) {
			t.Fatalf("Peek = %+v, %v", h, err)
		}
	}
	// Body streams the body of the pending PDU and stops at its end.
	body, err := io.ReadAll(r.Body())
	if err != nil || !bytes.Equal(body, goldenPDataTF[HeaderLength:]) {
		t.Fatalf("Body = %x, %v", body, err)
	}
	// A body read in part is skipped by the next Peek.
	if h, _ := r.Peek(); h.Type != TypeAssociateRQ {
		t.Fatalf("Peek = %+v", h)
	}
	if _, err := io.ReadFull(r.Body(), make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	p, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := p.(*ReleaseRQ); !ok {
		t.Fatalf("Next = %#v, want the A-RELEASE-RQ", p)
	}
	// Without a pending header, Body reads nothing.
	if n, err := r.Body().Read(make([]byte, 10)); n != 0 || err != io.EOF {
		t.Errorf("Body without a pending header = %d, %v", n, err)
	}
	if p, err := r.Next(); err != nil || p.Type() != TypeAbort {
		t.Errorf("Next = %v, %v", p, err)
	}
	if _, err := r.Peek(); err != io.EOF {
		t.Errorf("Peek at the end = %v", err)
	}
}

// TestBodyAfterRefusal shows how a caller that set a low maximum can still
// stream or skip a longer PDU: the header stays pending after the refusal.
func TestBodyAfterRefusal(t *testing.T) {
	stream := append(bytes.Clone(goldenAssociateRQ), goldenReleaseRP...)
	r := NewReader(bytes.NewReader(stream), 100)
	if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
		t.Fatalf("Next = %v, want ErrTooLong", err)
	}
	n, err := io.Copy(io.Discard, r.Body())
	if err != nil || n != int64(len(goldenAssociateRQ)-HeaderLength) {
		t.Fatalf("Body gave %d bytes, %v", n, err)
	}
	if p, err := r.Next(); err != nil || p.Type() != TypeReleaseRP {
		t.Fatalf("Next = %v, %v", p, err)
	}
	// An unknown PDU type can be skipped the same way.
	r = NewReader(bytes.NewReader(append(pdu(0x42, str("later")), goldenReleaseRQ...)), 100)
	if _, err := r.Next(); err == nil {
		t.Fatal("unknown PDU type decoded")
	}
	r.Body()
	if p, err := r.Next(); err != nil || p.Type() != TypeReleaseRQ {
		t.Fatalf("Next after skipping = %v, %v", p, err)
	}
}

func TestBodyTruncated(t *testing.T) {
	r := NewReader(bytes.NewReader(goldenAssociateRQ[:40]), DefaultMaxLength)
	if _, err := r.Peek(); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r.Body()); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("ReadAll(Body) = %v, want io.ErrUnexpectedEOF", err)
	}
}

func TestSetMaxLength(t *testing.T) {
	r := NewReader(bytes.NewReader(bytes.Repeat(goldenPDataTF, 2)), 1000)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	r.SetMaxLength(10)
	if _, err := r.Next(); !errors.Is(err, ErrTooLong) {
		t.Errorf("Next = %v, want ErrTooLong", err)
	}
}

// TestPDataReuse checks that the P-DATA-TF path does not allocate once the
// buffer has grown, and documents that what it returns is overwritten by
// the next call.
func TestPDataReuse(t *testing.T) {
	one := pdu(TypePDataTF, []byte{0, 0, 0, 6, 1, 0, 'a', 'a', 'a', 'a'}, []byte{0, 0, 0, 6, 3, 2, 'b', 'b', 'b', 'b'})
	two := pdu(TypePDataTF, []byte{0, 0, 0, 6, 1, 0, 'c', 'c', 'c', 'c'}, []byte{0, 0, 0, 6, 3, 2, 'd', 'd', 'd', 'd'})
	src := bytes.NewReader(nil)
	r := NewReader(src, DefaultMaxLength)
	src.Reset(append(bytes.Clone(one), two...))
	p1, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	first := p1.(*PDataTF).PDVs[0].Data
	if string(first) != "aaaa" {
		t.Fatalf("first PDV %q", first)
	}
	p2, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if p1 != p2 || string(first) != "cccc" {
		t.Errorf("the Reader did not reuse its P-DATA-TF and buffer (first PDV now %q)", first)
	}

	stream := bytes.Repeat(one, 100)
	allocs := testing.AllocsPerRun(10, func() {
		src.Reset(stream)
		for {
			if _, err := r.Next(); err != nil {
				if err != io.EOF {
					t.Fatal(err)
				}
				return
			}
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per 100 P-DATA-TF PDUs, want 0", allocs)
	}
}

// TestAllocationFollowsData checks that a peer announcing a long PDU and
// sending little cannot make the Reader allocate the announced length.
func TestAllocationFollowsData(t *testing.T) {
	const announced = 256 << 20
	b := pdu(TypePDataTF, make([]byte, 1000))
	b[2], b[3], b[4], b[5] = announced>>24, announced>>16&0xFF, announced>>8&0xFF, announced&0xFF
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := NewReader(bytes.NewReader(b), 1<<30).Next()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Next = %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("allocated %d bytes for a PDU of 1000 bytes announcing %d", n, announced)
	}
}

// TestPDataLarge checks a body that needs several growth steps.
func TestPDataLarge(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 40000) // 640000 bytes
	hdr, err := AppendPDataHeader(nil, 1, false, true, len(data))
	if err != nil {
		t.Fatal(err)
	}
	// net.Buffers is how the association layer writes header and payload
	// without copying; a net.Pipe stands in for the connection.
	c1, c2 := net.Pipe()
	go func() {
		bufs := net.Buffers{hdr, data}
		_, _ = bufs.WriteTo(c1)
		c1.Close()
	}()
	p, err := NewReader(c2, 1<<20).Next()
	if err != nil {
		t.Fatal(err)
	}
	if pdvs := p.(*PDataTF).PDVs; len(pdvs) != 1 || !bytes.Equal(pdvs[0].Data, data) {
		t.Errorf("payload did not survive")
	}
}

func TestAETitle(t *testing.T) {
	for _, tt := range []struct{ in, field string }{
		{"PACSD", "PACSD           "},
		{"  PACSD  ", "PACSD           "},
		{"", "                "},
		{"ABCDEFGHIJKLMNOP", "ABCDEFGHIJKLMNOP"},
		{"A B", "A B             "},
	} {
		f, err := PadAETitle(tt.in)
		if err != nil || string(f[:]) != tt.field {
			t.Errorf("PadAETitle(%q) = %q, %v", tt.in, f, err)
		}
	}
	if _, err := PadAETitle("ABCDEFGHIJKLMNOPQ"); !errors.Is(err, ErrInvalid) {
		t.Errorf("17 bytes: %v", err)
	}
	for in, want := range map[string]string{
		"PACSD           ":                  "PACSD",
		"   PACSD        ":                  "PACSD",
		"PACSD\x00\x00\x00\x00\x00\x00\x00": "PACSD",
		"                ":                  "",
		"A B":                               "A B",
	} {
		if got := TrimAETitle([]byte(in)); got != want {
			t.Errorf("TrimAETitle(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestEncodeInvalid checks that AppendTo refuses what PS3.8 cannot carry and
// leaves dst alone when it does.
func TestEncodeInvalid(t *testing.T) {
	long := strings.Repeat("1", 65)
	pc := func(id byte) PresentationContextRQ {
		return PresentationContextRQ{ID: id, AbstractSyntax: uidVerification, TransferSyntaxes: []string{uidImplicitLE}}
	}
	many := make([]PresentationContextRQ, 129)
	for i := range many {
		many[i] = pc(byte(2*i + 1))
	}
	tests := []struct {
		name string
		p    PDU
	}{
		{"called AE title of 17 bytes", &AssociateRQ{CalledAETitle: "ABCDEFGHIJKLMNOPQ"}},
		{"calling AE title of 17 bytes", &AssociateAC{CallingAETitle: "ABCDEFGHIJKLMNOPQ"}},
		{"application context of 65 bytes", &AssociateRQ{ApplicationContext: long}},
		{"even context ID", &AssociateRQ{PresentationContexts: []PresentationContextRQ{pc(2)}}},
		{"context ID twice", &AssociateRQ{PresentationContexts: []PresentationContextRQ{pc(1), pc(1)}}},
		{"129 contexts", &AssociateRQ{PresentationContexts: many}},
		{"no transfer syntax", &AssociateRQ{PresentationContexts: []PresentationContextRQ{{ID: 1, AbstractSyntax: uidVerification}}}},
		{"abstract syntax of 65 bytes", &AssociateRQ{PresentationContexts: []PresentationContextRQ{{ID: 1, AbstractSyntax: long, TransferSyntaxes: []string{uidImplicitLE}}}}},
		{"transfer syntax of 65 bytes", &AssociateRQ{PresentationContexts: []PresentationContextRQ{{ID: 1, AbstractSyntax: uidVerification, TransferSyntaxes: []string{long}}}}},
		{"AC context ID twice", &AssociateAC{PresentationContexts: []PresentationContextAC{{ID: 3}, {ID: 3}}}},
		{"AC result 5", &AssociateAC{PresentationContexts: []PresentationContextAC{{ID: 1, Result: 5}}}},
		{"AC transfer syntax of 65 bytes", &AssociateAC{PresentationContexts: []PresentationContextAC{{ID: 1, TransferSyntax: long}}}},
		{"implementation class UID of 65 bytes", &AssociateRQ{UserInfo: UserInfo{ImplementationClassUID: long}}},
		{"role selection UID of 65 bytes", &AssociateRQ{UserInfo: UserInfo{RoleSelections: []RoleSelection{{SOPClassUID: long}}}}},
		{"extended negotiation too long", &AssociateRQ{UserInfo: UserInfo{ExtendedNegotiations: []ExtendedNegotiation{{SOPClassUID: "1.2", Info: make([]byte, 70000)}}}}},
		{"user identity too long", &AssociateRQ{UserInfo: UserInfo{UserIdentityRQ: &UserIdentityRQ{Type: 4, PrimaryField: make([]byte, 40000), SecondaryField: make([]byte, 40000)}}}},
		{"user identity response too long", &AssociateAC{UserInfo: UserInfo{UserIdentityAC: &UserIdentityAC{ServerResponse: make([]byte, 0xFFFF)}}}},
		{"unknown sub-item of a known type", &AssociateRQ{UserInfo: UserInfo{Unknown: [][]byte{{0x52, 0, 0, 0}}}}},
		{"unknown sub-item with a wrong length", &AssociateRQ{UserInfo: UserInfo{Unknown: [][]byte{{0x70, 0, 0, 5, 1}}}}},
		{"unknown sub-item of 2 bytes", &AssociateRQ{UserInfo: UserInfo{Unknown: [][]byte{{0x70, 0}}}}},
		{"user information too long", &AssociateRQ{UserInfo: UserInfo{Unknown: [][]byte{it(0x70, make([]byte, 40000)), it(0x71, make([]byte, 40000))}}}},
		{"A-ASSOCIATE-RJ result 0", &AssociateRJ{Source: 1}},
		{"A-ASSOCIATE-RJ source 0", &AssociateRJ{Result: 1}},
		{"A-ABORT source 3", &Abort{Source: 3}},
		{"P-DATA-TF without PDV", &PDataTF{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []byte("keep")
			got, err := tt.p.AppendTo(dst)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("AppendTo = %v, want ErrInvalid", err)
			}
			if string(got) != "keep" {
				t.Errorf("AppendTo returned %q, want dst unchanged", got)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	for _, tt := range []struct{ got, want string }{
		{TypeAssociateRQ.String(), "A-ASSOCIATE-RQ"},
		{TypePDataTF.String(), "P-DATA-TF"},
		{Type(0x42).String(), "PDU type 0x42"},
		{AbortReasonInvalidPDUParameterValue.String(), "invalid-PDU-parameter-value"},
		{AbortReason(3).String(), "reason 3"},
		{ResultAbstractSyntaxNotSupported.String(), "abstract-syntax-not-supported (provider rejection)"},
		{ContextResult(9).String(), "result 9"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// BenchmarkReaderPData measures the hot path: P-DATA-TF PDUs of the size
// dcmtk negotiates by default.
func BenchmarkReaderPData(b *testing.B) {
	one, err := (&PDataTF{PDVs: []PDV{{ContextID: 1, Data: make([]byte, 16384-PDVHeaderLength)}}}).AppendTo(nil)
	if err != nil {
		b.Fatal(err)
	}
	stream := bytes.Repeat(one, 64)
	src := bytes.NewReader(stream)
	r := NewReader(src, DefaultMaxLength)
	b.SetBytes(int64(len(stream)))
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(stream)
		for {
			if _, err := r.Next(); err != nil {
				if err != io.EOF {
					b.Fatal(err)
				}
				break
			}
		}
	}
}
