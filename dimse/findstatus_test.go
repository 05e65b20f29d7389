package dimse

import (
	"context"
	"errors"
	"iter"
	"net"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// warningFind yields two matches, then ends with a warning, as some
// archives end an answer they cut short.
type warningFind struct{}

func (warningFind) Find(ctx context.Context, a *Association, req *FindRequest) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		for _, u := range []string{"1.2.1", "1.2.2"} {
			if !yield(&dicom.Dataset{Elements: []dicom.Element{{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{u}}}}, nil) {
				return
			}
		}
		yield(nil, Errorf(StatusSubOperationsWarning, "more matches than shown"))
	}
}

func TestFindStatus(t *testing.T) {
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Find: warningFind{}, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	var final Status
	n := 0
	for _, err := range a.FindStatus(t.Context(), uid.StudyRootQueryRetrieveInformationModelFind, ident("STUDY"), &final) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 || final != StatusSubOperationsWarning || !final.IsWarning() {
		t.Errorf("%d matches, final status %v; want 2 and the warning", n, final)
	}
}

func TestDialTransient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, MaxAssociations: 1, Logger: testLogger(t)}
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	d := &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Proposals: []Proposal{{uid.Verification, []string{uid.ExplicitVRLittleEndian}}}}
	a, err := d.Dial(t.Context(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release(context.Background())
	_, err = d.Dial(t.Context(), l.Addr().String())
	if !errors.Is(err, ErrTransient) || !errors.Is(err, ErrRejected) {
		t.Errorf("second association beyond the limit: %v; want a transient rejection", err)
	}
	d.CalledAE = "NOBODY"
	if _, err := d.Dial(t.Context(), l.Addr().String()); !errors.Is(err, ErrRejected) || errors.Is(err, ErrTransient) {
		t.Errorf("unknown called AE: %v; want a permanent rejection", err)
	}
}
