package dimse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sync"
	"testing"

	"github.com/pacsd/pacsd/dicom"
	"github.com/pacsd/pacsd/dicom/tag"
	"github.com/pacsd/pacsd/dicom/uid"
)

// qrServer is a fake Query/Retrieve SCP: Find yields n matches (forever
// when n < 0), Move reports progress, Get stores data sets back.
type qrServer struct {
	n         int
	cancelled chan struct{}
	get       [][]byte
}

func (q *qrServer) Find(ctx context.Context, a *Association, req *FindRequest) iter.Seq2[*dicom.Dataset, error] {
	return func(yield func(*dicom.Dataset, error) bool) {
		if req.Identifier.First(tag.QueryRetrieveLevel) == "BAD" {
			yield(nil, Errorf(StatusDataSetMismatch, "unknown level"))
			return
		}
		for i := 0; q.n < 0 || i < q.n; i++ {
			if ctx.Err() != nil {
				if errors.Is(context.Cause(ctx), ErrCancelled) {
					close(q.cancelled)
				}
				return
			}
			ds := &dicom.Dataset{Elements: []dicom.Element{
				{Tag: tag.PatientName, VR: "PN", Values: []string{fmt.Sprintf("Müller^%d", i)}},
				{Tag: tag.StudyInstanceUID, VR: "UI", Values: []string{fmt.Sprintf("1.2.3.%d", i)}},
			}}
			if !yield(ds, nil) {
				return
			}
		}
	}
}

func (q *qrServer) Move(ctx context.Context, a *Association, req *MoveRequest, progress func(SubOperations)) (SubOperations, error) {
	if req.Destination != "DEST" {
		return SubOperations{}, Errorf(StatusMoveDestinationUnknown, "unknown destination %s", req.Destination)
	}
	s := SubOperations{Remaining: 3}
	for i := 0; i < 3; i++ {
		s.Remaining--
		if i == 1 {
			s.Failed++
			s.FailedInstances = append(s.FailedInstances, "1.2.3.1")
		} else {
			s.Completed++
		}
		progress(s)
	}
	return s, nil
}

func (q *qrServer) Get(ctx context.Context, a *Association, req *GetRequest, progress func(SubOperations)) (SubOperations, error) {
	s := SubOperations{Remaining: len(q.get)}
	for i, data := range q.get {
		s.Remaining--
		st, err := a.Store(ctx, &StoreRequest{SOPClassUID: uid.CTImageStorage, SOPInstanceUID: fmt.Sprintf("9.9.%d", i),
			TransferSyntaxUID: uid.ExplicitVRLittleEndian, Dataset: bytes.NewReader(data)})
		if err != nil || !st.IsSuccess() {
			s.Failed++
		} else {
			s.Completed++
		}
		progress(s)
	}
	return s, nil
}

func qrDialer(store StoreHandler) *Dialer {
	ts := []string{uid.ExplicitVRLittleEndian}
	return &Dialer{CallingAE: "SCU", CalledAE: "PACSD", Store: store, Proposals: []Proposal{
		{uid.Verification, ts},
		{uid.StudyRootQueryRetrieveInformationModelFind, ts},
		{uid.StudyRootQueryRetrieveInformationModelMove, ts},
		{uid.StudyRootQueryRetrieveInformationModelGet, ts},
		{uid.CTImageStorage, ts},
	}}
}

func ident(level string) *dicom.Dataset {
	return &dicom.Dataset{Elements: []dicom.Element{
		{Tag: tag.QueryRetrieveLevel, VR: "CS", Values: []string{level}},
		{Tag: tag.PatientName, VR: "PN"},
		{Tag: tag.StudyInstanceUID, VR: "UI"},
	}}
}

func TestFindOverPipe(t *testing.T) {
	q := &qrServer{n: 3}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Find: q, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	ctx := context.Background()
	var got []string
	for m, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident("STUDY")) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.First(tag.PatientName))
	}
	if fmt.Sprint(got) != "[Müller^0 Müller^1 Müller^2]" {
		t.Errorf("matches %q", got)
	}
	var final error
	for _, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident("BAD")) {
		final = err
	}
	var se *StatusError
	if !errors.As(final, &se) || se.Status != StatusDataSetMismatch || se.Comment != "unknown level" {
		t.Errorf("bad level: %v", final)
	}
}

func TestFindCancel(t *testing.T) {
	q := &qrServer{n: -1, cancelled: make(chan struct{})}
	s := &Server{AETitle: "PACSD", Echo: echoOK{}, Find: q, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	ctx := context.Background()
	n := 0
	for _, err := range a.Find(ctx, uid.StudyRootQueryRetrieveInformationModelFind, ident("STUDY")) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 5 {
			break // sends C-CANCEL
		}
	}
	<-q.cancelled
	// The association carries on after the cancelled operation.
	if err := a.Echo(ctx); err != nil {
		t.Fatalf("Echo after C-CANCEL: %v", err)
	}
}

func TestMoveOverPipe(t *testing.T) {
	s := &Server{AETitle: "PACSD", Move: &qrServer{}, Logger: testLogger(t)}
	a := pipePair(t, s, qrDialer(nil))
	ctx := context.Background()
	var seen []SubOperations
	subs, err := a.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, "DEST", ident("STUDY"), func(s SubOperations) { seen = append(seen, s) })
	var se *StatusError
	if !errors.As(err, &se) || se.Status != StatusSubOperationsWarning || subs.Completed != 2 || subs.Failed != 1 || fmt.Sprint(subs.FailedInstances) != "[1.2.3.1]" {
		t.Fatalf("Move = %+v, %v", subs, err)
	}
	if len(seen) == 0 {
		t.Error("no pending responses")
	}
	if _, err := a.Move(ctx, uid.StudyRootQueryRetrieveInformationModelMove, "ELSEWHERE", ident("STUDY"), nil); !errors.As(err, &se) || se.Status != StatusMoveDestinationUnknown {
		t.Errorf("unknown destination: %v", err)
	}
}

// collect is a StoreHandler keeping what it receives.
type collect struct {
	mu  sync.Mutex
	got [][]byte
}

func (c *collect) Store(ctx context.Context, a *Association, req *StoreRequest) error {
	b, err := io.ReadAll(req.Dataset)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, b)
	return nil
}

func TestGetOverPipe(t *testing.T) {
	q := &qrServer{get: [][]byte{bytes.Repeat([]byte{1}, 100000), bytes.Repeat([]byte{2}, 10)}}
	s := &Server{AETitle: "PACSD", Get: q, Logger: testLogger(t)}
	c := &collect{}
	a := pipePair(t, s, qrDialer(c))
	subs, err := a.Get(context.Background(), uid.StudyRootQueryRetrieveInformationModelGet, ident("STUDY"), nil)
	if err != nil || subs.Completed != 2 {
		t.Fatalf("Get = %+v, %v", subs, err)
	}
	if len(c.got) != 2 || !bytes.Equal(c.got[0], q.get[0]) || !bytes.Equal(c.got[1], q.get[1]) {
		t.Errorf("received %d data sets", len(c.got))
	}
}
