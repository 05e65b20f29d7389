package dimse

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse/internal/pdu"
)

type discardStore struct{}

func (discardStore) Store(ctx context.Context, _ *Association, req *StoreRequest) error {
	_, err := io.Copy(io.Discard, req.Dataset)
	return err
}

// TestRoleSelectionPerClass checks that a C-GET SCU that proposes a
// storage class in several contexts, one per transfer syntax, asks for
// the SCP role of that class in one item (PS3.7 D.3.3.4).
func TestRoleSelectionPerClass(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	d := &Dialer{CalledAE: "SRC", CallingAE: "PACSD", Store: discardStore{}, Proposals: []Proposal{
		{AbstractSyntax: uid.StudyRootQueryRetrieveInformationModelGet, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
		{AbstractSyntax: uid.CTImageStorage, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
		{AbstractSyntax: uid.CTImageStorage, TransferSyntaxes: []string{uid.JPEGLosslessSV1}},
		{AbstractSyntax: uid.MRImageStorage, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}},
		{AbstractSyntax: uid.MRImageStorage, TransferSyntaxes: []string{uid.ImplicitVRLittleEndian}},
	}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go d.DialConn(ctx, c2)
	p, err := pdu.NewReader(c1, pdu.DefaultMaxLength).Next()
	if err != nil {
		t.Fatal(err)
	}
	rq, ok := p.(*pdu.AssociateRQ)
	if !ok {
		t.Fatalf("got %T, want an A-ASSOCIATE-RQ", p)
	}
	var got []string
	for _, r := range rq.UserInfo.RoleSelections {
		if !r.SCP || !r.SCU {
			t.Errorf("role selection %+v: want SCU and SCP", r)
		}
		got = append(got, r.SOPClassUID)
	}
	if want := []string{uid.CTImageStorage, uid.MRImageStorage}; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("role selections for %v, want one each for %v", got, want)
	}
}
