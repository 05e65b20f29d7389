package dimse

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/pacsd/pacsd/dicom/uid"
)

// committer commits the instances whose UID does not end in ".9" and
// reports on the same association.
type committer struct{ got chan *CommitRequest }

func (c *committer) Commit(ctx context.Context, a *Association, req *CommitRequest) error {
	c.got <- req
	go func() {
		<-req.Answered // the N-ACTION response goes first
		res := &CommitResult{TransactionUID: req.TransactionUID}
		for _, r := range req.Instances {
			if r.InstanceUID[len(r.InstanceUID)-2:] == ".9" {
				res.Failed = append(res.Failed, FailedSOP{SOPRef: r, Reason: StatusNoSuchObjectInstance})
			} else {
				res.Committed = append(res.Committed, r)
			}
		}
		a.ReportCommit(context.Background(), res)
	}()
	return nil
}

type results chan *CommitResult

func (r results) CommitResult(ctx context.Context, a *Association, res *CommitResult) error {
	r <- res
	return nil
}

func TestStorageCommitmentOverPipe(t *testing.T) {
	c := &committer{got: make(chan *CommitRequest, 1)}
	s := &Server{AETitle: "PACSD", Commit: c, Logger: testLogger(t)}
	got := make(results, 1)
	a := pipePair(t, s, &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Logger: testLogger(t), CommitResult: got,
		Proposals: []Proposal{{uid.StorageCommitmentPushModel, []string{uid.ExplicitVRLittleEndian}}}})
	req := &CommitRequest{TransactionUID: "1.2.3.100", Instances: []SOPRef{
		{uid.CTImageStorage, "1.2.3.1"}, {uid.CTImageStorage, "1.2.3.9"}, {uid.MRImageStorage, "1.2.3.2"},
	}}
	if err := a.RequestCommit(t.Context(), req); err != nil {
		t.Fatalf("RequestCommit: %v", err)
	}
	if r := <-c.got; r.TransactionUID != req.TransactionUID || !reflect.DeepEqual(r.Instances, req.Instances) {
		t.Errorf("SCP received %+v, want %+v", r, req)
	}
	select {
	case res := <-got:
		want := &CommitResult{TransactionUID: "1.2.3.100",
			Committed: []SOPRef{{uid.CTImageStorage, "1.2.3.1"}, {uid.MRImageStorage, "1.2.3.2"}},
			Failed:    []FailedSOP{{SOPRef{uid.CTImageStorage, "1.2.3.9"}, StatusNoSuchObjectInstance}}}
		if !reflect.DeepEqual(res, want) {
			t.Errorf("result %+v, want %+v", res, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no N-EVENT-REPORT")
	}
	// A request without instances is refused with a reason.
	err := a.RequestCommit(t.Context(), &CommitRequest{TransactionUID: "1.2.3.101"})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusMissingAttribute {
		t.Errorf("empty request: %v, want status 0x0120", err)
	}
	if err := a.Release(t.Context()); err != nil {
		t.Errorf("Release: %v", err)
	}
}

// TestStorageCommitmentResultOnNewAssociation is the other way of
// reporting: the SCP requests an association, taking the SCP role, and
// sends the result on it.
func TestStorageCommitmentResultOnNewAssociation(t *testing.T) {
	got := make(results, 1)
	s := &Server{AETitle: "MODALITY", CommitResult: got, Logger: testLogger(t)}
	a := pipePair(t, s, &Dialer{CallingAE: "PACSD", CalledAE: "MODALITY", Logger: testLogger(t),
		SCPRoles:  []string{uid.StorageCommitmentPushModel},
		Proposals: []Proposal{{uid.StorageCommitmentPushModel, []string{uid.ImplicitVRLittleEndian}}}})
	res := &CommitResult{TransactionUID: "1.2.3.200", Committed: []SOPRef{{uid.CTImageStorage, "1.2.3.1"}}}
	if err := a.ReportCommit(t.Context(), res); err != nil {
		t.Fatalf("ReportCommit: %v", err)
	}
	if r := <-got; !reflect.DeepEqual(r, res) {
		t.Errorf("received %+v, want %+v", r, res)
	}
	a.Release(t.Context())
}
