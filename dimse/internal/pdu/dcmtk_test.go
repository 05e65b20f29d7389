package pdu

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// readFixture returns the bytes of testdata/dcmtk/name.
func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "dcmtk", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeOne decodes b, which must hold exactly one PDU.
func decodeOne(t testing.TB, b []byte) PDU {
	t.Helper()
	r := NewReader(bytes.NewReader(b), DefaultMaxLength)
	p, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Peek(); err == nil {
		t.Fatal("bytes left after the PDU")
	}
	return p
}

// clearContextReserved returns a copy of the A-ASSOCIATE-RQ b with the
// reserved bytes of its presentation context items set to 0, as this
// package writes them.
func clearContextReserved(t testing.TB, b []byte) []byte {
	t.Helper()
	b = bytes.Clone(b)
	for off := HeaderLength + fixedAssociateLength; off+4 <= len(b); {
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		if b[off] == itemPresentationRQ {
			b[off+5], b[off+6], b[off+7] = 0, 0, 0
		}
		off += 4 + n
	}
	return b
}

func TestDcmtkRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "dcmtk", "*.bin"))
	if err != nil || len(files) < 17 {
		t.Fatalf("found %d fixtures (%v)", len(files), err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			b := readFixture(t, filepath.Base(f))
			p := decodeOne(t, b)
			want := b
			if p.Type() == TypeAssociateRQ {
				want = clearContextReserved(t, b)
			}
			enc, err := p.AppendTo(nil)
			if err != nil {
				t.Fatal(err)
			}
			if d := diff(enc, want); d != "" {
				t.Error(d)
			}
		})
	}
}

// dcmtkUserInfo is the user information every dcmtk 3.6.7 tool sends.
var dcmtkUserInfo = UserInfo{
	MaxLength:                 16384,
	ImplementationClassUID:    "1.2.276.0.7230010.3.0.3.6.7",
	ImplementationVersionName: "OFFIS_DCMTK_367",
}

func TestDcmtkEcho(t *testing.T) {
	rq := decodeOne(t, readFixture(t, "echoscu-a-associate-rq.bin"))
	wantRQ := &AssociateRQ{
		ProtocolVersion:    1,
		CalledAETitle:      "STORESCP",
		CallingAETitle:     "ECHOSCU",
		ApplicationContext: ApplicationContextName,
		PresentationContexts: []PresentationContextRQ{
			{ID: 1, AbstractSyntax: uidVerification, TransferSyntaxes: []string{uidImplicitLE}},
		},
		UserInfo: dcmtkUserInfo,
	}
	if !reflect.DeepEqual(rq, wantRQ) {
		t.Errorf("A-ASSOCIATE-RQ = %#v", rq)
	}
	ac := decodeOne(t, readFixture(t, "storescp-a-associate-ac.bin"))
	wantAC := &AssociateAC{
		ProtocolVersion:      1,
		CalledAETitle:        "STORESCP",
		CallingAETitle:       "ECHOSCU",
		ApplicationContext:   ApplicationContextName,
		PresentationContexts: []PresentationContextAC{{ID: 1, Result: ResultAcceptance, TransferSyntax: uidImplicitLE}},
		UserInfo:             dcmtkUserInfo,
	}
	if !reflect.DeepEqual(ac, wantAC) {
		t.Errorf("A-ASSOCIATE-AC = %#v", ac)
	}
	pd, ok := decodeOne(t, readFixture(t, "echoscu-p-data-tf-c-echo-rq.bin")).(*PDataTF)
	if !ok || len(pd.PDVs) != 1 || pd.PDVs[0].ContextID != 1 || !pd.PDVs[0].Command || !pd.PDVs[0].Last || len(pd.PDVs[0].Data) != 68 {
		t.Errorf("C-ECHO-RQ P-DATA-TF = %+v", pd)
	}
	for name, want := range map[string]PDU{
		"echoscu-a-release-rq.bin":    &ReleaseRQ{},
		"storescp-a-release-rp.bin":   &ReleaseRP{},
		"echoscu-a-abort.bin":         &Abort{Source: AbortSourceServiceUser, Reason: AbortReasonNotSpecified},
		"storescp-a-associate-rj.bin": &AssociateRJ{Result: RejectedPermanent, Source: RejectSourceServiceUser, Reason: RejectReasonNoReasonGiven},
	} {
		if got := decodeOne(t, readFixture(t, name)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", name, got, want)
		}
	}
}

func TestDcmtkStore(t *testing.T) {
	rq := decodeOne(t, readFixture(t, "storescu-a-associate-rq.bin")).(*AssociateRQ)
	if n := len(rq.PresentationContexts); n != MaxPresentationContexts {
		t.Fatalf("%d presentation contexts, want %d", n, MaxPresentationContexts)
	}
	for i, pc := range rq.PresentationContexts {
		if pc.ID != byte(2*i+1) || pc.AbstractSyntax == "" || len(pc.TransferSyntaxes) == 0 {
			t.Errorf("context %d = %+v", i, pc)
		}
	}
	wantID := &UserIdentityRQ{Type: UserIdentityUsernamePasscode, PrimaryField: []byte("alice"), SecondaryField: []byte("s3cret")}
	if !reflect.DeepEqual(rq.UserInfo.UserIdentityRQ, wantID) {
		t.Errorf("user identity = %+v", rq.UserInfo.UserIdentityRQ)
	}
	ac := decodeOne(t, readFixture(t, "storescp-a-associate-ac-storage.bin")).(*AssociateAC)
	if len(ac.PresentationContexts) != MaxPresentationContexts {
		t.Errorf("%d presentation contexts in the AC", len(ac.PresentationContexts))
	}
	rej := decodeOne(t, readFixture(t, "storescp-a-associate-ac-rejected.bin")).(*AssociateAC)
	want := []PresentationContextAC{{ID: 1, Result: ResultAbstractSyntaxNotSupported, TransferSyntax: uidImplicitLE}}
	if !reflect.DeepEqual(rej.PresentationContexts, want) {
		t.Errorf("rejected context = %+v", rej.PresentationContexts)
	}
	data := decodeOne(t, readFixture(t, "storescu-p-data-tf-data-set.bin")).(*PDataTF)
	if len(data.PDVs) != 1 || data.PDVs[0].Command || !data.PDVs[0].Last || data.PDVs[0].ContextID != 201 {
		t.Errorf("data set P-DATA-TF = %+v", data)
	}
}

func TestDcmtkRoleSelection(t *testing.T) {
	rq := decodeOne(t, readFixture(t, "getscu-a-associate-rq.bin")).(*AssociateRQ)
	ac := decodeOne(t, readFixture(t, "dcmqrscp-a-associate-ac.bin")).(*AssociateAC)
	for name, roles := range map[string][]RoleSelection{"RQ": rq.UserInfo.RoleSelections, "AC": ac.UserInfo.RoleSelections} {
		if len(roles) < 100 {
			t.Errorf("%s: %d role selections", name, len(roles))
		}
		for _, r := range roles {
			if r.SCU || !r.SCP || r.SOPClassUID == "" {
				t.Errorf("%s: role selection %+v, want SCP only", name, r)
			}
		}
	}
	if ac.UserInfo.RoleSelections[0].SOPClassUID != "1.2.840.10008.5.1.4.1.1.9.1.3" {
		t.Errorf("first role selection = %+v", ac.UserInfo.RoleSelections[0])
	}
}
