package migrate_test

import (
	"context"
	"iter"
	"net"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
	"github.com/pacsd/pacsd/dimse"
	"github.com/pacsd/pacsd/migrate"
)

// oneStudy answers every C-FIND with one study.
type oneStudy struct{}

func (oneStudy) Find(ctx context.Context, a *dimse.Association, req *dimse.FindRequest) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		yield(&dicom.Dataset{Elements: []dicom.Element{{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{"1.2.3"}}}}, nil)
	}
}

func (oneStudy) Echo(context.Context, *dimse.Association) error { return nil }

// TestBusySource checks that a source that refuses an association as
// too busy is asked again after a pause, not failed.
func TestBusySource(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dimse.Server{AETitle: "OLDPACS", Echo: oneStudy{}, Find: oneStudy{}, MaxAssociations: 1}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	// Another user of the source holds its only association for a while.
	d := &dimse.Dialer{CallingAE: "OTHER", CalledAE: "OLDPACS", Proposals: []dimse.Proposal{{AbstractSyntax: uid.Verification, TransferSyntaxes: []string{uid.ExplicitVRLittleEndian}}}}
	busy, err := d.Dial(t.Context(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		busy.Release(context.Background())
	}()
	src := &migrate.DIMSESource{AETitle: "PACSD", CalledAE: "OLDPACS", Addr: l.Addr().String(), Backoff: 50 * time.Millisecond}
	defer src.Close()
	start := time.Now()
	ans, err := src.FindStudies(t.Context(), migrate.Query{})
	if err != nil || len(ans.Studies) != 1 {
		t.Fatalf("FindStudies: %v, %+v", err, ans)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Errorf("answered after %v, before the busy association ended", waited)
	}
}
